//! The `flaredock` binary.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = flaredock::cli::Cli::parse();
    let code = flaredock::cli::main_with(cli).await;
    std::process::exit(code);
}

//! `flaredock import`: prints the manifests of a wrangler project (src/import/); every
//! wrangler key flaredock does not support goes to stderr by its path, and the command
//! fails unless `--allow-unsupported`.

use super::*;

/// `flaredock import [FILE] [--env NAME] [--namespace NS] [--bundle DIR]`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The wrangler configuration (default: wrangler.jsonc, wrangler.json, then
    /// wrangler.toml in the current directory).
    pub file: Option<PathBuf>,
    /// Apply wrangler's rules for this environment (`env.NAME`).
    #[arg(long, short = 'e')]
    pub env: Option<String>,
    /// Namespace of the objects printed.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// The modules `wrangler deploy --dry-run --outdir DIR` wrote (default: the `main`
    /// file alone, which must import nothing it does not hold).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Print the manifests even when some wrangler keys are not supported (they are
    /// still listed on stderr).
    #[arg(long)]
    pub allow_unsupported: bool,
}

pub(super) fn import(args: ImportArgs) -> i32 {
    let options = crate::import::Options {
        file: args.file,
        dir: PathBuf::from("."),
        env: args.env,
        namespace: args.namespace,
        bundle: args.bundle,
    };
    let imported = match crate::import::import(&options) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    for n in &imported.findings.notes {
        eprintln!("note: {n}");
    }
    for u in &imported.findings.unsupported {
        eprintln!("unsupported: {u}");
    }
    if !imported.findings.unsupported.is_empty() && !args.allow_unsupported {
        eprintln!(
            "{} wrangler key(s) flaredock does not support; nothing printed (--allow-unsupported prints the manifests without them)",
            imported.findings.unsupported.len()
        );
        return EXIT_INVALID;
    }
    print!("{}", imported.yaml);
    EXIT_OK
}

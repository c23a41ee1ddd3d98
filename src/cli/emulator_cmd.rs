//! `flaredock emulator`: the Cloudflare API emulator as a process.

use super::*;

pub(super) async fn run_emulator(args: EmulatorArgs) -> i32 {
    let registry = match (
        args.registry_host,
        args.registry_username,
        args.registry_password,
    ) {
        (Some(host), Some(username), Some(password)) => Some(ExternalRegistry {
            host,
            username,
            password,
        }),
        _ => None,
    };
    let config = EmulatorConfig {
        listen: args.listen,
        account_id: args.account_id,
        api_token: args.api_token,
        rate_limit: args.rate_limit,
        registry,
        fault_rate: args.fault_rate,
        latency: Duration::from_millis(args.latency_ms),
        rollout_step: Duration::from_millis(args.rollout_step_ms),
        delete_delay: Duration::from_millis(args.delete_delay_ms),
        rollout_revert_rate: args.rollout_revert_rate,
        state_file: args.state,
        seed_demo: true,
        ..Default::default()
    };
    let config = EmulatorConfig {
        zones: if args.zones.is_empty() {
            config.zones.clone()
        } else {
            args.zones
        },
        ..config
    };
    let default_token = config.api_token == emulator::DEFAULT_API_TOKEN;
    let em = match emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    println!("flaredock emulator: Cloudflare API at {}", em.base_url());
    println!("  export CLOUDFLARE_API_BASE_URL={}", em.base_url());
    println!("  export CLOUDFLARE_ACCOUNT_ID={}", em.account_id());
    if default_token {
        println!("  export CLOUDFLARE_API_TOKEN={}", em.api_token());
    }
    println!("  registry: {}", em.registry_host());
    // Without workerd, `emulator::start` has said so (once).
    if let Some(runtime) = em.shared.runtime() {
        println!(
            "  Workers: served by workerd ({}), Host <script>.{}.workers.dev",
            runtime.binary().display(),
            em.shared
                .config
                .subdomain
                .as_deref()
                .unwrap_or("<subdomain>"),
        );
    }
    if !em.addr.ip().to_canonical().is_loopback() {
        // Beyond loopback the test hooks need the API token; the default one is public.
        println!("  test hooks (/__emulator/*): Authorization: Bearer <the API token> required");
        if default_token {
            eprintln!(
                "warning: listening on {} with the default API token, which anyone can read in flaredock's documentation: pass --api-token",
                em.addr
            );
        }
    }
    tracing::info!(address = %em.addr, "emulator listening");
    // Ctrl-C or SIGTERM: a graceful stop, which also ends the Workers' workerd processes.
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    em.stop().await;
    EXIT_OK
}

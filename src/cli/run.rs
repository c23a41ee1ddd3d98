//! `flaredock run`: the controller, configured from the command line.

use super::*;

pub(super) async fn run_controller(args: RunArgs) -> i32 {
    let cluster_id = match args
        .access
        .cluster_id
        .as_deref()
        .map(|id| crate::spec::ClusterIdentity::new(id, args.access.cluster_name.as_deref()))
    {
        Some(Err(e)) => {
            eprintln!("error: --cluster-id: {e}");
            return EXIT_INVALID;
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let registry_timeouts = args.access.registry_timeouts();
    let default_credentials = match (args.access.account_id, args.access.api_token) {
        (Some(a), Some(t)) if !a.is_empty() && !t.is_empty() => Some((a, Secret::new(t))),
        _ => None,
    };
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("flaredock-{:08x}", fastrand::u32(..)));
    let config = crate::controller::RunConfig {
        settings: crate::controller::Settings {
            namespace: args.namespace,
            resync: args.resync,
            progress_poll: args.progress_poll,
            concurrency: args.concurrency,
            api_base_url: args.access.api_base_url,
            rate_limit: args.access.rate_limit,
            api_timeout: args.access.api_timeout,
            reconcile_timeout: args.access.reconcile_timeout,
            connect_timeout: args.access.connect_timeout,
            registry_timeouts,
            insecure_registries: args.access.insecure_registries,
            default_credentials,
            default_credentials_namespaces: args.default_credentials_namespaces,
            cluster: cluster_id
                .clone()
                .unwrap_or_else(crate::spec::ClusterIdentity::cli),
            build: crate::build::job::JobSettings {
                enabled: args.enable_builds,
                namespace: args.build_namespace,
                image: args.builder_image,
                active_deadline_seconds: args.build_deadline.as_secs().max(60) as i64,
                ..Default::default()
            },
        },
        metrics_address: args.metrics_address,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_duration: args.lease_duration,
        identity,
        cluster_from_kube_system: cluster_id.is_none(),
        cluster_name: args.access.cluster_name,
    };
    crate::controller::run(config).await
}

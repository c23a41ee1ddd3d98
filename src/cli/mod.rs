//! The `flaredock` command line: `crd`, `plan`, `apply`, `delete`, `emulator`,
//! `import` and `image copy`. Exit codes: 0 done, 1 could not converge, 2 invalid input (3: `plan
//! --exit-code` found something to change). This file holds the arguments, loading the
//! manifests and connecting; each command lives in its room: `run`, `plan`,
//! `apply` (and `delete`), `emulator_cmd`, `image`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cloudflare::{ClientConfig, CloudflareClient, DEFAULT_BASE_URL, RateLimit, Secret};
use crate::emulator::{self, EmulatorConfig, ExternalRegistry, RunningEmulator};
use crate::manifest;
use crate::oci::copy::{CopyOptions, copy_image};
use crate::oci::{Credentials, Reference, RegistryClient};
use crate::reconcile::converge::Manifests;
use crate::reconcile::images::PeerIndex;
use crate::reconcile::images::{ImageResolver, SourceCredentials};
use crate::reconcile::plan::Plan;
use crate::reconcile::view::AccountView;
use crate::reconcile::worker::classes_for;
use crate::reconcile::{ConvergeOptions, DeleteOutcome, Reconciler, converge_all};
use crate::spec::{CloudflareContainer, CloudflareWorker};
use crate::telemetry::{self, LogFormat};

mod apply;
mod emulator_cmd;
mod image;
mod import;
mod plan;
mod run;

use apply::{apply, delete};
use emulator_cmd::run_emulator;
use image::image_copy;
use import::{ImportArgs, import};
use plan::plan;
use run::run_controller;

/// Exit code: converged / done.
pub const EXIT_OK: i32 = 0;
/// Exit code: could not converge.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: invalid input (nothing was sent to Cloudflare).
pub const EXIT_INVALID: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "flaredock",
    version,
    about = "Runs Docker images on Cloudflare Containers, declaratively",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log format (default: json for `run`, pretty otherwise).
    #[arg(long, global = true, value_enum, env = "FLAREDOCK_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand, flaredock runs the controller.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `flaredock run`: the Kubernetes controller. Every flag has an environment variable.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "FLAREDOCK_NAMESPACE")]
    pub namespace: Option<String>,

    /// Namespaces whose objects may use the default credentials (`--api-token` and
    /// `--account-id`) without `credentialsSecretRef`, besides namespaces labelled
    /// `flaredock.dev/default-credentials: allow`. Elsewhere such objects are Stalled.
    #[arg(
        long,
        value_delimiter = ',',
        env = "FLAREDOCK_DEFAULT_CREDENTIALS_NAMESPACES"
    )]
    pub default_credentials_namespaces: Vec<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "FLAREDOCK_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,
    /// Full resync period (drift detection), with ±10% jitter.
    #[arg(long, env = "FLAREDOCK_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// How often an object with a rollout in progress is looked at again.
    #[arg(long, env = "FLAREDOCK_PROGRESS_POLL", default_value = "5s", value_parser = parse_duration)]
    pub progress_poll: Duration,
    /// Objects reconciled at once.
    #[arg(long, env = "FLAREDOCK_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Elect a leader among replicas through a Lease; only the leader writes.
    #[arg(long, env = "FLAREDOCK_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "FLAREDOCK_LEASE_NAME", default_value = "flaredock")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "flaredock-system")]
    pub lease_namespace: String,
    /// How long a leader holds the Lease without renewing it; a standby takes over after.
    #[arg(long, env = "FLAREDOCK_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (default: the pod name or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub access: ApiAccess,
    /// Run in-cluster builds (`spec.build`) as BuildKit Jobs. Off by default: objects
    /// with `spec.build` are then Stalled, naming this flag.
    #[arg(long, env = "FLAREDOCK_ENABLE_BUILDS")]
    pub enable_builds: bool,
    /// Namespace of the build Jobs and their push credentials (its Pod Security level
    /// and NetworkPolicy come with deploy/optional/builds).
    #[arg(long, env = "FLAREDOCK_BUILD_NAMESPACE", default_value = crate::build::job::DEFAULT_BUILD_NAMESPACE)]
    pub build_namespace: String,
    /// Rootless BuildKit image of in-cluster build Jobs.
    #[arg(long, env = "FLAREDOCK_BUILDER_IMAGE", default_value = crate::build::job::DEFAULT_BUILDKIT_IMAGE)]
    pub builder_image: String,
    /// Deadline of a build Job.
    #[arg(long, env = "FLAREDOCK_BUILD_DEADLINE", default_value = "30m", value_parser = parse_duration)]
    pub build_deadline: Duration,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Kubernetes controller (the default).
    Run(RunArgs),
    /// Print the CloudflareContainer CustomResourceDefinition (YAML).
    Crd,
    /// Show what apply would change, object by object; changes nothing.
    Plan(PlanCommand),
    /// Make Cloudflare match the manifests and wait until each object is Ready.
    Apply(ApplyArgs),
    /// Delete what the manifests' objects own at Cloudflare (as deletionPolicy says).
    Delete(DeleteArgs),
    /// Run the Cloudflare API emulator (with an embedded registry) on loopback.
    Emulator(EmulatorArgs),
    /// Print the manifests of a wrangler project (wrangler.jsonc, .json or .toml).
    Import(ImportArgs),
    /// Image operations.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Build helpers run inside in-cluster build Jobs.
    Build {
        #[command(subcommand)]
        command: BuildCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BuildCommand {
    /// Fetch and unpack an https tarball context under the build rules (https only,
    /// same-host redirects, size and time caps): the build Job's init container.
    FetchContext(crate::build::fetch::FetchContextArgs),
}

/// The Cloudflare account, the API and the registries: flags shared by the command
/// line and the controller.
#[derive(Args, Debug, Clone)]
pub struct ApiAccess {
    /// Cloudflare API token (the controller uses it for objects without
    /// credentialsSecretRef).
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Cloudflare account id (the controller: for objects without credentialsSecretRef).
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Cloudflare API base URL.
    #[arg(long, env = "CLOUDFLARE_API_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub api_base_url: String,
    /// Client-side rate limit per token, REQUESTS/SECONDS.
    #[arg(long, env = "FLAREDOCK_RATE_LIMIT", default_value = "1200/300", value_parser = RateLimit::parse)]
    pub rate_limit: RateLimit,
    /// Overall timeout of one Cloudflare API request.
    #[arg(long, env = "FLAREDOCK_API_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub api_timeout: Duration,
    /// The deadline of one reconcile of one object: past it, the object is looked at
    /// again (its status says ReconcileTimedOut).
    #[arg(long, env = "FLAREDOCK_RECONCILE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub reconcile_timeout: Duration,
    /// Connect timeout of Cloudflare API and registry requests.
    #[arg(long, env = "FLAREDOCK_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Overall timeout of one registry request (a layer upload or download).
    #[arg(long, env = "FLAREDOCK_REGISTRY_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub registry_timeout: Duration,
    /// Registry host reached over plain HTTP (loopback hosts always are). Repeatable.
    #[arg(
        long = "insecure-registry",
        env = "FLAREDOCK_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// The cluster id in the owner recorded at Cloudflare (`<id>/<namespace>.<name>`),
    /// so that two clusters sharing an account never take each other's applications
    /// or scripts. The controller takes the UID of its cluster's `kube-system`
    /// namespace when this is not set; the command line takes `cli`.
    #[arg(long, env = "FLAREDOCK_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// A readable name for this cluster, shown in logs (ownership rests on the id).
    #[arg(long, env = "FLAREDOCK_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
}

impl ApiAccess {
    /// The registry timeouts these flags ask for.
    pub fn registry_timeouts(&self) -> crate::oci::client::RegistryTimeouts {
        crate::oci::client::RegistryTimeouts {
            connect: self.connect_timeout,
            request: self.registry_timeout,
            ..Default::default()
        }
    }
}

/// Where Cloudflare is and how to talk to it.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    #[command(flatten)]
    pub access: ApiAccess,
    /// Run against an in-process Cloudflare API emulator (nothing else needed).
    #[arg(long)]
    pub emulator: bool,
    /// Docker config file with credentials for source registries.
    #[arg(long, env = "FLAREDOCK_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Read each Worker's workers.dev state and cron triggers from Cloudflare rather
    /// than trusting the record flaredock left on its script (finds a change made
    /// outside flaredock; two more calls per Worker).
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Manifest files or directories (multi-document YAML).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub connection: Connection,
}

/// `flaredock delete`: the manifests, and how long to wait for Cloudflare.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Manifest files or directories (multi-document YAML).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// How long to wait for the deletes to finish (Cloudflare deletes applications
    /// asynchronously; a Worker script goes after the applications on its classes).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connection: Connection,
}

/// `flaredock plan`: the manifests, and how to report.
#[derive(Args, Debug)]
pub struct PlanCommand {
    #[command(flatten)]
    pub args: PlanArgs,
    /// Output: text for people, json for CI (stable; schemas/plan.schema.json).
    #[arg(short = 'o', long = "output", default_value = "text")]
    pub output: PlanOutput,
    /// Exit 3 when something would change, 0 when nothing would (2: invalid
    /// manifests, 1: errors), as `terraform plan -detailed-exitcode`.
    #[arg(long)]
    pub exit_code: bool,
}

/// Output format of plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Text,
    Json,
}

/// `plan --exit-code`: something would change.
pub const EXIT_CHANGES: i32 = 3;

/// Output format of apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest files or directories (multi-document YAML).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Do not wait for Ready: one reconcile per object.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for Ready (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Objects reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Output: text for people; json or yaml for CI, the document of
    /// schemas/apply.schema.json (what changed, what was done, Events, final status).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    #[arg(long, default_value = emulator::DEFAULT_ACCOUNT_ID)]
    pub account_id: String,
    /// The API token the emulator accepts.
    #[arg(long, default_value = emulator::DEFAULT_API_TOKEN, hide_default_value = true)]
    pub api_token: String,
    /// Rate limit per token, REQUESTS/SECONDS; over it: 429 and a block of SECONDS.
    #[arg(long, default_value = "1200/300", value_parser = RateLimit::parse)]
    pub rate_limit: RateLimit,
    /// External registry standing in for Cloudflare's (host:port); default: embedded.
    #[arg(long, requires_all = ["registry_username", "registry_password"])]
    pub registry_host: Option<String>,
    #[arg(long)]
    pub registry_username: Option<String>,
    #[arg(long, hide_env_values = true)]
    pub registry_password: Option<String>,
    /// Share of API requests that fail with a 5xx or a dropped connection (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fault_rate: f64,
    /// Delay added to every API answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Duration of one rollout step, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub rollout_step_ms: u64,
    /// How long a deleted application stays listed, its name and namespace taken
    /// (Cloudflare deletes asynchronously), in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub delete_delay_ms: u64,
    /// Share of rollouts that end reverted (0 to 1).
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    pub rollout_revert_rate: f64,
    /// Keep the account's state in this file across restarts.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A zone of the account, by name (repeatable; default: example.com).
    #[arg(long = "zone", value_name = "NAME")]
    pub zones: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Copy an image between registries (prints the destination digest reference).
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source image reference (with registry host), or `oci:DIR`, an OCI image layout
    /// directory.
    pub source: String,
    /// Destination image reference (with registry host).
    pub destination: String,
    /// Source credentials USER:PASSWORD.
    #[arg(long, env = "FLAREDOCK_SRC_CREDS", hide_env_values = true)]
    pub src_creds: Option<String>,
    /// Destination credentials USER:PASSWORD.
    #[arg(long, env = "FLAREDOCK_DEST_CREDS", hide_env_values = true)]
    pub dest_creds: Option<String>,
    /// Platform picked from an index.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Copy every platform of an index.
    #[arg(long)]
    pub all: bool,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 6)]
    pub jobs: usize,
    /// Registry host reached over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} must be between 0 and 1"))
    }
}

/// `90s`, `5m`, `1h`, `250ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_creds(text: &str, what: &str) -> Result<Credentials, String> {
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| format!("{what} must be USER:PASSWORD"))?;
    Ok(Credentials {
        username: u.to_string(),
        password: Secret::new(p),
    })
}

/// Credentials for source registries from a Docker config file (`auths.HOST.auth`).
pub fn docker_config_credentials(path: &std::path::Path) -> Result<SourceCredentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::oci::client::docker_config_auths(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses arguments, sets up logging and runs; returns the exit code.
pub async fn main_with(cli: Cli) -> i32 {
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let (default_format, default_filter) = match command {
        Command::Run(_) => (LogFormat::Json, "info"),
        Command::Emulator(_) => (LogFormat::Pretty, "info"),
        _ => (LogFormat::Pretty, "warn"),
    };
    telemetry::init(cli.log_format.unwrap_or(default_format), default_filter);
    match command {
        Command::Run(args) => run_controller(args).await,
        Command::Crd => {
            print!("{}", crate::spec::all_crds_yaml());
            EXIT_OK
        }
        Command::Plan(args) => plan(args).await,
        Command::Apply(args) => apply(args).await,
        Command::Delete(args) => delete(args).await,
        Command::Emulator(args) => run_emulator(args).await,
        Command::Import(args) => import(args),
        Command::Image {
            command: ImageCommand::Copy(args),
        } => image_copy(args).await,
        Command::Build {
            command: BuildCommand::FetchContext(args),
        } => crate::build::fetch::fetch_context_command(args).await,
    }
}

/// Everything the manifest files hold.
pub struct Loaded {
    pub containers: Vec<CloudflareContainer>,
    pub workers: Vec<CloudflareWorker>,
    pub data: crate::reconcile::worker::inputs::SourceData,
}

impl Loaded {
    fn manifests(&self) -> Manifests<'_> {
        Manifests {
            containers: &self.containers,
            workers: &self.workers,
            data: &self.data,
        }
    }

    /// The CloudflareWorkers' script names, for the containers that name them, and the
    /// Secrets among the files.
    fn peers(&self) -> PeerIndex {
        PeerIndex {
            images: HashMap::new(),
            workers: self
                .workers
                .iter()
                .map(|w| (w.key(), w.script_name().to_string()))
                .collect(),
            data: self.data.clone(),
            deleting: vec![],
        }
    }
}

/// Loads manifests or prints every problem; `None` means exit 2.
fn load_or_report(files: &[PathBuf]) -> Option<Loaded> {
    let loaded = manifest::load(files);
    for note in &loaded.notes {
        eprintln!("note: {note}");
    }
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} invalid manifest problem(s); nothing was sent to Cloudflare",
            loaded.errors.len()
        );
        return None;
    }
    Some(Loaded {
        containers: loaded.objects.into_iter().map(|l| l.object).collect(),
        workers: loaded.workers.into_iter().map(|l| l.object).collect(),
        data: loaded.data,
    })
}

/// Loads the manifests (all valid, or exit 2 before any API call), then connects.
async fn load_and_connect(files: &[PathBuf], conn: &Connection) -> Result<(Loaded, Session), i32> {
    let objects = load_or_report(files).ok_or(EXIT_INVALID)?;
    match connect(conn).await {
        Ok(session) => Ok((objects, session)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_INVALID)
        }
    }
}

/// How long a command-line call may wait for its token's rate budget or a 429's
/// `retry-after` (the controller waits at most a few seconds, then requeues).
const CLI_MAX_RATE_WAIT: Duration = Duration::from_secs(300);

/// A reconciler for the connection, plus the emulator when `--emulator` started one.
pub struct Session {
    pub reconciler: Reconciler,
    pub client: CloudflareClient,
    pub emulator: Option<RunningEmulator>,
}

pub async fn connect(conn: &Connection) -> Result<Session, String> {
    let cluster = crate::spec::ClusterIdentity::new(
        conn.access
            .cluster_id
            .as_deref()
            .unwrap_or(crate::spec::ClusterIdentity::CLI),
        conn.access.cluster_name.as_deref(),
    )
    .map_err(|e| format!("--cluster-id: {e}"))?;
    let mut emulator = None;
    let (base_url, account_id, token) = if conn.emulator {
        let em = emulator::start(EmulatorConfig::default())
            .await
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let out = (
            em.base_url(),
            em.account_id().to_string(),
            em.api_token().to_string(),
        );
        emulator = Some(em);
        out
    } else {
        let token = conn
            .access
            .api_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or("no API token: set CLOUDFLARE_API_TOKEN or --api-token (or use --emulator)")?;
        let account = conn
            .access
            .account_id
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or(
                "no account id: set CLOUDFLARE_ACCOUNT_ID or --account-id (or use --emulator)",
            )?;
        (conn.access.api_base_url.clone(), account, token)
    };
    let mut config = ClientConfig::new(base_url, account_id, Secret::new(token));
    config.rate_limit = conn.access.rate_limit;
    config.timeout = conn.access.api_timeout;
    config.connect_timeout = conn.access.connect_timeout;
    // The command line serves one person's objects and holds no slot another tenant
    // waits for: it waits out its own rate budget (and a retry-after) instead of
    // failing and observing again, bounded by the command's own --timeout.
    config.max_rate_wait = CLI_MAX_RATE_WAIT;
    let client = CloudflareClient::new(config).map_err(|e| e.to_string())?;
    let registry = RegistryClient::with_timeouts(
        conn.access.insecure_registries.clone(),
        conn.access.registry_timeouts(),
    )
    .map_err(|e| e.to_string())?;
    let docker_config = conn.docker_config.clone().or_else(|| {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".docker/config.json"))
            .filter(|p| p.exists())
    });
    let sources = match docker_config {
        Some(p) => docker_config_credentials(&p)?,
        None => SourceCredentials::new(),
    };
    let mut images = ImageResolver::new(client.clone(), registry, sources, CopyOptions::default());
    match crate::build::local::LocalBuilder::detect(conn.access.insecure_registries.clone()) {
        Ok(builder) => images = images.with_builder(Arc::new(builder), true),
        Err(why) => images = images.without_builder(why, true),
    }
    let images = Arc::new(images);
    let view = Arc::new(AccountView::new(client.clone()));
    Ok(Session {
        reconciler: Reconciler::new(view, images, cluster)
            .with_reconcile_timeout(conn.access.reconcile_timeout)
            .with_reach_reads(if conn.refresh {
                crate::reconcile::worker::reach::ReachReads::OncePerResync
            } else {
                crate::reconcile::worker::reach::ReachReads::WhenRecorded
            }),
        client,
        emulator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

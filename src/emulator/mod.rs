//! A Cloudflare API emulator: a real HTTP server on loopback that answers the
//! operations flaredock uses with Cloudflare's paths, envelope, status codes, error
//! codes, validation, bearer-token check and sliding-window rate limit, plus fault
//! injection, latency, a request log and (without `--registry-host`) an embedded OCI
//! registry standing in for Cloudflare's.
//!
//! Applications and rollouts live in [`state`]; Worker scripts, namespaces and container
//! enablement in [`scripts`]; subdomains, zones, routes, custom domains and schedules
//! in [`routing`]; the local Workers runtime (workerd) that loads and serves uploads in
//! [`workerd`]; the official schema in [`schema`]; the embedded registry in
//! [`registry`]; HTTP in [`api`].
//!
//! **Workers run.** An upload is loaded by workerd before it is accepted (a module that
//! does not start is refused with 400, code 10021 and the runtime's message, secrets
//! scrubbed; the exports the checks use are the runtime's), and a request whose `Host`
//! is `<script>.<account subdomain>.workers.dev` (the script's workers.dev enabled), a
//! custom domain or a matching route is answered by the script through workerd, one
//! process per script started on its first request ([`workerd`] lists what the local
//! runtime does not reproduce, [`routing`] what route matching does not). Any other
//! host under `workers.dev` or in a zone of the account gets Cloudflare's answer for a
//! host it does not serve (530, `error code: 1001`); an address, `localhost` or another
//! host reaches the API and the registry as before. Without workerd the emulator says
//! so once at start, checks uploads statically ([`workerd::static_exports`]) and
//! answers a Worker's host with 503 saying Workers are not served.
//!
//! **Containers run.** A container-enabled class's `ctx.container` starts the image of
//! its application's current version with buildah (chroot isolation, host network),
//! one instance per Durable Object, and `getTcpPort(p).fetch()` reaches it
//! ([`containers`] says how, and what is not reproduced). Without buildah, `start()`
//! fails with [`containers::NO_CONTAINER_RUNTIME`] and the rest works as before.
//!
//! Every request body is checked against the official extract (`cloudflare-api/`,
//! [`schema`]) with unknown fields refused, and in tests every answer is checked against
//! the status and schema the extract declares ([`contract`]).
//!
//! **Run as a server** (`flaredock emulator`), it keeps what it holds to itself:
//! - **Test hooks** (`/__emulator/*`) answer, on a loopback listener, only clients whose
//!   TCP peer address is loopback; on any other listener (`0.0.0.0`, a host address)
//!   only requests with `Authorization: Bearer <the API token>`, loopback clients
//!   included. The peer address comes from the connection (axum `ConnectInfo`), never
//!   from a header. Others get 403 with a message naming the rule ([`api`]'s hooks).
//!   The API token is the token: it already opens the whole account.
//! - **Redaction** ([`redact`]): the state dump (`GET /__emulator/state`), the `--state`
//!   file and the contract log show a Worker's `secret_text` (and `secret_key`) values
//!   and every container environment variable's value as `[redacted by the emulator]`,
//!   names kept. Registry passwords (minted, or `--registry-password`) are never in
//!   the account. The request log keeps method, path and status only.
//! - **Body limits** ([`limits`], with their sources): a Worker upload 100 MB as a
//!   request (Cloudflare's network-wide limit) and 10 MiB of modules after compression
//!   (the Workers Paid plan's Worker size, code 10027); other API bodies and hook
//!   bodies 1 MiB (the emulator's own bound); registry manifests 4 MiB and blobs 20 GB
//!   (the largest image Cloudflare runs), blob uploads streamed and bounded per request
//!   and per session. An oversize body is answered 413 (Cloudflare's envelope, or the
//!   OCI error `SIZE_INVALID`) as soon as its declared length or the bytes read pass
//!   the limit; the rest is never read.
//! - **The runtime's working directory** ([`workerd`]) is a private temporary directory
//!   (mode 0700, removed when the emulator stops): the configs it gives workerd hold the
//!   Workers' secret values, as workerd needs them; a refused upload's message has them
//!   scrubbed.
//! - **The containers' directory** ([`containers`]) is a private temporary directory
//!   too (`flaredock-containers-*`, removed when the emulator stops): the buildah store
//!   of the pulled images, and each pull's registry auth file (mode 0600, removed after
//!   the pull); container environment values never reach a log or an answer.
//! - **The state file** is written with mode 0600, into a new temporary file next to it
//!   that is renamed over it (atomic), one write at a time.
//!
//! **Remaining deviations from the official schema and from wrangler's behaviour.**
//! Where the two disagree, the official schema is followed:
//! - `scheduling_policy` accepts only `default`, rollout `strategy` `rolling` and
//!   `new_instances`, registry permissions `pull`, `push`, `list` (official enums;
//!   wrangler's client also knows `moon`, `gpu`, `regional`, `fill_metals`).
//! - Unknown fields are refused everywhere ([`schema`] closes the extract's objects);
//!   the extract itself never says `additionalProperties: false`.
//! - Validation errors use code 1000 (`VALIDATE_INPUT`), a missing application 1404,
//!   rate limiting 1015, a Worker upload that breaks a Durable Object rule 10021;
//!   Cloudflare's exact numbers for these are not documented. Containers failures carry
//!   their error enum as JSON inside `errors[].message`, as Cloudflare writes them:
//!   input errors `{"error": "VALIDATE_INPUT", "details": {"message": …}}` (the shape
//!   of `details` for this enum is not documented: the emulator puts the text there),
//!   `DURABLE_OBJECT_NOT_CONTAINER_ENABLED` with code 1000 and
//!   `DURABLE_OBJECT_ALREADY_HAS_APPLICATION` with 1608 (the number Alchemy reports);
//!   the client reads the enum, not the number. Not-found answers stay plain text.
//! - Sizes are answered expanded (`vcpu`, `memory_mib`, `disk.size_mb`) even when the
//!   request named an `instance_type`; wrangler's client rebuilds the name from them.
//! - `instances` is whatever the creator sent (flaredock: 0), and the instances the
//!   local container runtime runs are not counted: `health.instances` stays at zero and the versions carry the percentages of the
//!   rollout's current step.
//! - Wrangler-only endpoints ([`api::WRANGLER_ONLY`]): `GET /containers/dash/applications`
//!   and `…/dash/applications/{id}/instances` are served (checked against wrangler's own
//!   definitions), their `health` derived from the official one (`healthy` = `assigned`,
//!   `failed`/`starting`/`scheduling` 0). Not served (404): `GET`/`PATCH /me`, the
//!   rollout list, get, step/revert (`POST …/rollouts/{id}`) and delete, and the
//!   registry list/create/delete; so `wrangler containers apply`/`deploy` and the
//!   registry commands other than `credentials` do not work against the emulator.
//! - `registries credentials` works for Cloudflare's own registry only (the domain in
//!   the path is not checked); the answer's `registry_host` is the emulator's registry.
//! - `metadata.containers` of an upload: the official `workers_multipart-script.metadata`
//!   does not list it, but `workers_durable_object_export.container` refers to it and
//!   wrangler sends it; the emulator accepts it and checks it against the official
//!   `workers_containers` schema. Items linked by `name` through declarative `exports`
//!   (wrangler's other form) are not emulated: each item needs `class_name`.
//! - Uploads: module syntax only (`main_module`; a `body_part` service-worker upload is
//!   refused), text modules only; `renamed_classes` and `transferred_classes` migrations
//!   are refused as not emulated. Exported classes are those the runtime reports (a
//!   class the main module exports under that name); only without workerd are they read
//!   from the text. Dropping a class from `containers` turns its namespace's container
//!   enablement off. A compatibility date newer than workerd's own runs at workerd's.
//! - Routing ([`routing`]): the account starts with the workers.dev subdomain
//!   [`DEFAULT_SUBDOMAIN`] and the zones of `--zone` ([`DEFAULT_ZONE`] by default); a
//!   script's workers.dev is off until enabled (the official default). Error codes of
//!   routing failures are not documented (the emulator's own, [`state::codes`]). A
//!   request body's `readOnly` (and `computed_optional`) properties are not required,
//!   as OpenAPI says; the extract lists them as required (`workers_route.id`, the
//!   custom domain's `id`, `cert_id`, `zone_id`, `zone_name`).
//! - `GET /workers/services/{name}`, wrangler's first call of `deploy`, is not in the
//!   official extract ([`api::NOT_IN_EXTRACT`]): a known script answers its
//!   `default_environment`, an unknown one 404 with code 10090.
//! - The rest of `wrangler deploy`'s path: `GET /workers/scripts/{name}/versions/{id}`
//!   (official, vendored: the current version only, with its bindings, where wrangler
//!   finds a container class's namespace; its declared 4XX is `allOf` the success answer
//!   and the failure envelope, which no body meets, so a failure is checked against the
//!   failure envelope alone, [`contract::UNSATISFIABLE_FAILURE`]); in
//!   [`api::NOT_IN_EXTRACT`]: `PUT /workers/scripts/{name}/routes`
//!   (the script's zone routes become the list given). An upload's answer carries
//!   `deployment_id` (its version), which wrangler reads and the extract does not list
//!   ([`contract::WRANGLER_READ`]). `constraints.tiers`, which wrangler always sends,
//!   is accepted and kept ([`schema::WRANGLER_SENT`], from wrangler's own client
//!   definitions). D1's `id`, which the official schema marks renamed to `database_id`
//!   and wrangler 4.86 still sends, is taken as `database_id`. wrangler re-deploys an
//!   existing Worker without containers or migrations through the Versions API:
//!   `POST …/versions` (official, vendored: `worker-versions-upload-version`) is the
//!   same upload answered as its version (`workers_version-item-uploaded`), and takes
//!   effect at once (the emulator keeps one version). Its `metadata` part is checked
//!   against the official `workers_version-post` schema, which lists fewer fields than
//!   the script upload's: the script settings wrangler 4.86 sends there anyway
//!   ([`schema::VERSION_UPLOAD_FROM_SCRIPT_UPLOAD`]) are checked against the script
//!   upload's definitions of them; its declared 4XX cannot be met either
//!   ([`contract::UNSATISFIABLE_FAILURE`]); `GET`/`POST …/deployments`
//!   (official, vendored: `workers_deployment`; requests and answers are checked as
//!   for every vendored operation; wrangler 4.86's body passes it) answer and accept
//!   only that version at 100 %; `PATCH …/script-settings`
//!   (official) replaces the tags and echoes the rest. A container application's
//!   `PATCH` with `configuration.image` (wrangler's way of changing one) is refused as
//!   the official schema says.
//! - `DELETE /workers/scripts/{name}`: the official operation declares a JSON request
//!   body with no schema; the emulator accepts the delete without one (as flaredock
//!   sends it). Without `force=true` a script with Durable Object namespaces is refused;
//!   a namespace that backs a container application blocks the delete either way.
//! - Settings (`GET`/`PATCH …/settings`) are served for other tools; a namespace a
//!   settings migration creates is never container-enabled. An upload's
//!   `observability`, `placement`, `limits` and `tail_consumers` (checked against their
//!   official schemas with the rest of the metadata) are kept as uploaded and returned
//!   by `GET …/settings`; the next upload replaces them (a field it leaves out is gone),
//!   a `PATCH` replaces those it names.
//! - A finished rollout clears `active_rollout_id`. A rollout chosen to revert
//!   (`--rollout-revert-rate`, or the scripted fault `revert`) runs its steps, then ends
//!   `reverted` with the application still on its version.
//! - An application being deleted (`--delete-delay-ms`, default 2000) looks exactly
//!   like a live one in lists and reads — nothing in the official schema marks it —
//!   while its name and namespace stay taken; changing it answers 409.
//! - `--state FILE` persists the account (applications, rollouts, namespaces, scripts),
//!   not the embedded registry's content, and redacted: after a restart a Worker's
//!   secret values and the containers' environment values read back as the redaction
//!   marker (flaredock sees the drift and writes them again).
//! - Body limits ([`limits`]): the 1 MiB bound on JSON bodies is the emulator's own;
//!   Cloudflare documents neither that nor the status of a too-large Worker (413 here)
//!   or a code for an oversize API body (1000 here, 10027 on the Worker routes).

pub mod api;
pub mod containers;
pub mod contract;
pub mod limits;
pub mod redact;
pub mod registry;
pub mod routing;
pub mod schema;
pub mod scripts;
pub mod state;
pub mod storage;
pub mod workerd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::cloudflare::RateLimit;
use registry::Registry;
use state::AccountState;

/// The account id the emulator uses unless told otherwise.
pub const DEFAULT_ACCOUNT_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
/// The API token the emulator accepts unless told otherwise.
pub const DEFAULT_API_TOKEN: &str = "flaredock-emulator-token";
/// The demo image the embedded registry is seeded with (`<account>/hello:v1`).
pub const DEMO_REPOSITORY: &str = "hello";
pub const DEMO_TAG: &str = "v1";
/// The demo Worker script and the Durable Object class it exports.
pub const DEMO_SCRIPT: &str = "hello-worker";
pub const DEMO_CLASS: &str = "HelloContainer";

/// The zone the emulator has unless told otherwise (`--zone`).
pub const DEFAULT_ZONE: &str = "example.com";
/// The account's workers.dev subdomain unless told otherwise.
pub const DEFAULT_SUBDOMAIN: &str = "flaredock";

/// An external registry standing in for Cloudflare's (e.g. a `docker-registry` process).
#[derive(Clone, Debug)]
pub struct ExternalRegistry {
    pub host: String,
    pub username: String,
    pub password: String,
}

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub account_id: String,
    pub api_token: String,
    /// More tokens of the same account (several tenants' tokens), accepted like
    /// `api_token`.
    pub other_api_tokens: Vec<String>,
    /// Per token: each token has its own window and its own 429 block.
    pub rate_limit: RateLimit,
    /// `None`: serve the embedded registry on the same listener.
    pub registry: Option<ExternalRegistry>,
    /// Share of API requests that fail (5xx or dropped connection).
    pub fault_rate: f64,
    pub latency: Duration,
    pub rollout_step: Duration,
    /// How long a deleted application stays listed (Cloudflare deletes asynchronously).
    pub delete_delay: Duration,
    /// Share of rollouts that end reverted.
    pub rollout_revert_rate: f64,
    pub state_file: Option<PathBuf>,
    /// Seed the demo image (embedded registry) and the demo Worker script.
    pub seed_demo: bool,
    /// Keep every API request and response body (for contract tests).
    pub capture_bodies: bool,
    /// Check every exchange against the official contract (`contract`), keeping the
    /// problems; on by default when `FLAREDOCK_CONTRACT_LOG` is set.
    pub check_contract: bool,
    /// Request body limits per kind of route ([`limits`]; Cloudflare's by default).
    pub limits: limits::BodyLimits,
    /// The workerd binary that loads and serves uploads ([`workerd::locate`] by
    /// default); `None`: uploads are checked statically and Workers are not served.
    pub workerd: Option<PathBuf>,
    /// The buildah binary that runs container instances ([`containers::locate`] by
    /// default); `None`: a container's `start()` fails, the rest works as before.
    pub buildah: Option<PathBuf>,
    /// Zones of the account (`--zone`), by name.
    pub zones: Vec<String>,
    /// The account's workers.dev subdomain at start (`None`: not registered yet).
    pub subdomain: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            account_id: DEFAULT_ACCOUNT_ID.into(),
            api_token: DEFAULT_API_TOKEN.into(),
            other_api_tokens: vec![],
            rate_limit: RateLimit::CLOUDFLARE,
            registry: None,
            fault_rate: 0.0,
            latency: Duration::ZERO,
            rollout_step: Duration::from_millis(20),
            delete_delay: Duration::from_millis(2000),
            rollout_revert_rate: 0.0,
            state_file: None,
            seed_demo: true,
            capture_bodies: false,
            check_contract: std::env::var_os(contract::LOG_ENV).is_some(),
            limits: limits::BodyLimits::default(),
            workerd: workerd::locate(),
            buildah: containers::locate(),
            zones: vec![DEFAULT_ZONE.to_string()],
            subdomain: Some(DEFAULT_SUBDOMAIN.to_string()),
        }
    }
}

/// One request as the test hooks report it (`status` 0: the connection was dropped).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A fault scripted for the next API request (`POST /__emulator/faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptedFault {
    /// Answer with this 5xx status before applying anything.
    ServerError(u16),
    /// Drop the connection before applying anything.
    DropBefore,
    /// Apply the request, then drop the connection (the answer is lost).
    DropAfter,
    /// Answer 429 with this `retry-after` (seconds) and block the token that long.
    RateLimit(u64),
    /// Refuse with a 400 whose message quotes the request body, as some APIs' parse
    /// errors do: what the client puts in status and logs must not repeat a secret.
    RejectQuotingBody,
}

impl ScriptedFault {
    /// `500`, `502`, `503`, `drop`, `drop_after`, `429:SECONDS`, `reject_quoting_body`.
    pub fn parse(text: &str) -> Result<ScriptedFault, String> {
        match text {
            "drop" => Ok(ScriptedFault::DropBefore),
            "reject_quoting_body" => Ok(ScriptedFault::RejectQuotingBody),
            "drop_after" => Ok(ScriptedFault::DropAfter),
            t if t.starts_with("429:") => t[4..]
                .parse()
                .map(ScriptedFault::RateLimit)
                .map_err(|_| format!("{t:?}: 429:SECONDS")),
            t => match t.parse::<u16>() {
                Ok(s) if (500..600).contains(&s) => Ok(ScriptedFault::ServerError(s)),
                _ => Err(format!(
                    "unknown fault {t:?} (500..599, drop, drop_after, 429:SECONDS, reject_quoting_body)"
                )),
            },
        }
    }
}

/// One API exchange with its bodies (when `capture_bodies` is on).
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub request_content_type: String,
    pub user_agent: String,
    pub request_body: bytes::Bytes,
    pub status: u16,
    pub response_body: bytes::Bytes,
}

/// Registry credentials minted by the emulator.
struct Minted {
    username: String,
    password: String,
    expires: std::time::Instant,
}

/// A scripted fault with the method and token of the requests it is for.
type ScriptedFor = (Option<String>, Option<String>, ScriptedFault);

/// Everything the handlers share.
pub struct Shared {
    pub config: EmulatorConfig,
    pub registry_host: String,
    account: Mutex<AccountState>,
    registry: Mutex<Registry>,
    log: Mutex<Vec<RequestRecord>>,
    /// The server-side rate limit of each token.
    limiters: Mutex<std::collections::HashMap<String, api::ServerLimiter>>,
    minted: Mutex<Vec<Minted>>,
    /// Scripted faults: (method, token, fault); `None` matches any.
    faults: Mutex<std::collections::VecDeque<ScriptedFor>>,
    exchanges: Mutex<Vec<Exchange>>,
    contract_problems: Mutex<Vec<String>>,
    /// Held while the state file is written, so that writes land in order.
    persisting: Mutex<u64>,
    /// The local Workers runtime, when workerd is installed.
    runtime: Option<Arc<workerd::Runtime>>,
    /// Container instances ([`containers`]).
    pub containers: containers::Containers,
}

impl Shared {
    pub fn account(&self) -> MutexGuard<'_, AccountState> {
        crate::lock(&self.account)
    }

    /// The local Workers runtime (workerd), when installed.
    pub fn runtime(&self) -> Option<Arc<workerd::Runtime>> {
        self.runtime.clone()
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        crate::lock(&self.registry)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        crate::lock(&self.log).clone()
    }

    pub fn clear_requests(&self) {
        crate::lock(&self.log).clear();
    }

    fn record(&self, r: RequestRecord) {
        crate::lock(&self.log).push(r);
    }

    /// Scripts a fault for the next API request whose method is `method` (any when `None`).
    pub fn push_fault(&self, method: Option<&str>, fault: ScriptedFault) {
        self.push_fault_for_token(method, None, fault);
    }

    /// Scripts a fault for the next API request of `method` that bears `token` (any
    /// method, any token, when `None`).
    pub fn push_fault_for_token(
        &self,
        method: Option<&str>,
        token: Option<&str>,
        fault: ScriptedFault,
    ) {
        crate::lock(&self.faults).push_back((
            method.map(str::to_uppercase),
            token.map(str::to_string),
            fault,
        ));
    }

    fn take_fault(&self, method: &str, token: &str) -> Option<ScriptedFault> {
        let mut faults = crate::lock(&self.faults);
        let i = faults.iter().position(|(m, t, _)| {
            m.as_deref().is_none_or(|m| m == method) && t.as_deref().is_none_or(|t| t == token)
        })?;
        faults.remove(i).map(|(_, _, f)| f)
    }

    /// Whether the emulator accepts this API token.
    fn accepts(&self, token: &str) -> bool {
        token == self.config.api_token || self.config.other_api_tokens.iter().any(|t| t == token)
    }

    /// Runs `f` on the rate limiter of `token`.
    fn limiter<R>(&self, token: &str, f: impl FnOnce(&mut api::ServerLimiter) -> R) -> R {
        let mut limiters = crate::lock(&self.limiters);
        let limiter = limiters
            .entry(token.to_string())
            .or_insert_with(|| api::ServerLimiter::new(self.config.rate_limit));
        f(limiter)
    }

    /// Every exchange kept so far (with `capture_bodies`).
    pub fn exchanges(&self) -> Vec<Exchange> {
        crate::lock(&self.exchanges).clone()
    }

    /// Every contract problem found so far (with `check_contract`).
    pub fn contract_problems(&self) -> Vec<String> {
        crate::lock(&self.contract_problems).clone()
    }

    fn capture(&self, e: Exchange) {
        if self.config.check_contract {
            let (_, problems) = contract::check(&e);
            if !problems.is_empty() {
                // A schema violation may quote the request: never a secret's value.
                let secrets = request_secrets(&e);
                let problems: Vec<String> = problems
                    .iter()
                    .map(|p| redact::scrub(p, &secrets))
                    .collect();
                contract::log(&problems);
                crate::lock(&self.contract_problems).extend(problems);
            }
        }
        if self.config.capture_bodies {
            crate::lock(&self.exchanges).push(e);
        }
    }

    /// The account as the state dump and the state file show it: secret and
    /// environment values replaced by [`redact::REDACTED`].
    pub fn state_dump(&self) -> serde_json::Value {
        let value = {
            let mut account = self.account();
            account.advance_rollouts();
            serde_json::to_value(&*account)
        };
        match value {
            Ok(v) => redact::redact(v),
            Err(e) => serde_json::json!({"error": format!("cannot serialize the state: {e}")}),
        }
    }

    fn mint(&self, minutes: i64) -> (String, String) {
        let username = "v1".to_string();
        let password = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut minted = crate::lock(&self.minted);
        let now = std::time::Instant::now();
        minted.retain(|m| m.expires > now);
        minted.push(Minted {
            username: username.clone(),
            password: password.clone(),
            expires: now + Duration::from_secs(minutes.max(1) as u64 * 60),
        });
        (username, password)
    }

    fn registry_login_ok(&self, username: &str, password: &str) -> bool {
        let now = std::time::Instant::now();
        crate::lock(&self.minted)
            .iter()
            .any(|m| m.expires > now && m.username == username && m.password == password)
    }

    /// Persists the account to `--state FILE`, when set: redacted, into a temporary
    /// file created with mode 0600 next to it, then renamed over it.
    fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let mut writes = crate::lock(&self.persisting);
        *writes += 1;
        let json = serde_json::to_value(&*self.account())
            .map(redact::redact)
            .and_then(|v| serde_json::to_vec_pretty(&v));
        let json = match json {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "emulator: could not serialize state");
                return;
            }
        };
        if let Err(e) = write_private(path, &json, *writes) {
            tracing::warn!(error = %e, path = %path.display(), "emulator: could not save state");
        }
    }
}

/// The secret values an exchange's request carries (JSON body, or a Worker upload's
/// metadata), to scrub from what is logged about it.
fn request_secrets(e: &Exchange) -> Vec<String> {
    let body = serde_json::from_slice::<serde_json::Value>(&e.request_body).or_else(|_| {
        contract::multipart_json(&e.request_content_type, &e.request_body, "metadata")
    });
    body.map(|v| redact::secret_values(&v)).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: a new file `path.<pid>.<n>.tmp` created with
/// mode 0600 (owner only), synced, then renamed over `path`.
fn write_private(path: &std::path::Path, bytes: &[u8], n: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|_| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningEmulator {
    /// `http://ADDR/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn account_id(&self) -> &str {
        &self.shared.config.account_id
    }

    pub fn api_token(&self) -> &str {
        &self.shared.config.api_token
    }

    /// `host:port` of the registry standing in for Cloudflare's.
    pub fn registry_host(&self) -> &str {
        &self.shared.registry_host
    }

    /// Seeds a Worker script as `wrangler deploy` with these classes in `containers`
    /// leaves it: classes exported, namespaces created and container-enabled.
    pub fn put_script(&self, name: &str, classes: &[&str]) {
        self.shared.account().seed_script(
            name,
            classes.iter().map(|c| c.to_string()).collect(),
            None,
            true,
            true,
        );
    }

    /// Stops the server and waits for it, and for its container instances to be gone.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.containers.stop_all().await;
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.shared.containers.kill_all();
    }
}

/// Error starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read emulator state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("cannot seed the demo image: {0}")]
    Seed(String),
}

/// Starts the emulator on `config.listen` and serves until stopped.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let registry_host = match &config.registry {
        Some(r) => r.host.clone(),
        None => addr.to_string(),
    };
    let rollout_step_ms = config.rollout_step.as_millis() as u64;
    let mut account = match &config.state_file {
        Some(path) if path.exists() => {
            let text = std::fs::read(path).map_err(|e| StartError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            serde_json::from_slice::<AccountState>(&text).map_err(|e| StartError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
        _ => AccountState::new(&config.account_id, rollout_step_ms),
    };
    account.rollout_step_ms = rollout_step_ms;
    account.delete_delay_ms = config.delete_delay.as_millis() as u64;
    account.rollout_revert_rate = config.rollout_revert_rate;
    let mut registry = Registry::default();
    if config.seed_demo {
        if !account.scripts.contains_key(DEMO_SCRIPT) {
            account.seed_script(DEMO_SCRIPT, vec![DEMO_CLASS.to_string()], None, true, true);
        }
        if config.registry.is_none() {
            registry
                .seed_demo_image(
                    &format!("{}/{}", config.account_id, DEMO_REPOSITORY),
                    DEMO_TAG,
                    "flaredock quickstart",
                )
                .map_err(|e| StartError::Seed(e.message))?;
        }
    }
    let runtime = match &config.workerd {
        Some(bin) => match workerd::Runtime::new(bin.clone(), addr) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, workerd = %bin.display(), "emulator: workerd does not run: uploads are checked statically and Workers are not served");
                None
            }
        },
        None => {
            tracing::warn!(
                "emulator: workerd not found (FLAREDOCK_WORKERD, PATH, npm's global install): uploads are checked statically and Workers are not served"
            );
            None
        }
    };
    account.seed_routing(&config.zones, config.subdomain.as_deref());
    let containers = containers::Containers::new(config.buildah.clone());
    if !containers.available() {
        tracing::warn!(
            "emulator: buildah not found: container instances do not run (ctx.container.start() fails), the rest works as before"
        );
    }
    let shared = Arc::new(Shared {
        config,
        registry_host,
        account: Mutex::new(account),
        registry: Mutex::new(registry),
        log: Mutex::new(Vec::new()),
        limiters: Mutex::new(Default::default()),
        minted: Mutex::new(Vec::new()),
        faults: Mutex::new(Default::default()),
        exchanges: Mutex::new(Vec::new()),
        contract_problems: Mutex::new(Vec::new()),
        persisting: Mutex::new(0),
        runtime,
        containers,
    });
    if shared.containers.available() {
        // Instances whose image a rollout changed, or whose application is gone, stop
        // (the task ends with the emulator).
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(containers::SWEEP_EVERY).await;
                let Some(shared) = weak.upgrade() else { break };
                shared.containers.sweep(&shared).await;
            }
        });
    }
    let app = api::router(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // The peer address reaches the handlers: the test hooks' access rule reads it.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "emulator server stopped");
        }
    });
    Ok(RunningEmulator {
        addr,
        shared,
        shutdown: Some(tx),
        task: Some(task),
    })
}

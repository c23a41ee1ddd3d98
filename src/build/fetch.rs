//! Fetching a build context from a tenant's URL, with the same rules wherever it
//! happens — in the build Job's `fetch-context` init container (`flaredock build
//! fetch-context`), or on a workstation (`flaredock apply` of a remote context):
//!
//! - **https only**: `http://` and every other scheme are refused, the message says
//!   https; URLs carrying credentials are refused (they would show in the Job);
//! - **no redirect to another host**: redirects are followed only to the same scheme,
//!   host and port, at most [`MAX_REDIRECTS`]; any other redirect is an error naming
//!   both ends;
//! - **a size cap**: a `Content-Length` over [`FetchLimits::max_bytes`] is refused
//!   before the body is read, and the body is cut off when it passes the cap; unpacked
//!   contents are capped too ([`FetchLimits::max_unpacked_bytes`], entry count);
//! - **a time cap**: connect timeout and an overall deadline per request.
//!
//! The controller never calls any of this for a tenant's source: the content tag comes
//! from [`BuildSource::identity`](super::BuildSource::identity), which reads nothing.
//! Git contexts are fetched by `git` with the same rules as configuration
//! ([`git_environment`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Redirects followed (same host only).
pub const MAX_REDIRECTS: usize = 5;

/// The caps of one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Bytes downloaded (the tarball, the git pack).
    pub max_bytes: u64,
    /// Bytes of the unpacked context.
    pub max_unpacked_bytes: u64,
    /// Files, directories and links of the unpacked context.
    pub max_entries: u64,
    /// Connecting to the server.
    pub connect_timeout: Duration,
    /// The whole download.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 256 << 20,
            max_unpacked_bytes: 1 << 30,
            max_entries: 100_000,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not an https URL, or one with credentials.
    #[error("{0}")]
    Refused(String),
    #[error("{from} redirects to {to}: a context is fetched from its own host only")]
    CrossHostRedirect { from: String, to: String },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
    #[error("{url}: larger than the {limit}-byte cap of a build context")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: no answer within {seconds} s")]
    TimedOut { url: String, seconds: u64 },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: its SHA-256 is {actual}, not the declared {expected}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot unpack the context: {0}")]
    Unpack(String),
    #[error("{0}")]
    Io(String),
}

/// An HTTP client for tenant URLs: https only, same-host redirects, both timeouts.
/// `roots` replaces the system's trust roots when given (PEM; a private git server,
/// the tests).
pub fn client(limits: &FetchLimits, roots: Option<&[u8]>) -> Result<reqwest::Client, FetchError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let (Some(first), to) = (attempt.previous().first(), attempt.url()) else {
            return attempt.stop();
        };
        let same = first.scheme() == to.scheme()
            && first.host_str() == to.host_str()
            && first.port_or_known_default() == to.port_or_known_default();
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            // The 3xx is handed back and turned into an error naming both ends.
            attempt.stop()
        }
    });
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .redirect(policy)
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.timeout)
        .user_agent(concat!("flaredock/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = roots {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| FetchError::Io(format!("the trust roots are not PEM: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| FetchError::Io(format!("cannot set up an HTTP client: {e}")))
}

fn transport(url: &str, e: &reqwest::Error, limits: &FetchLimits) -> FetchError {
    if e.is_timeout() {
        return FetchError::TimedOut {
            url: url.to_string(),
            seconds: limits.timeout.as_secs(),
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    FetchError::Transport {
        url: url.to_string(),
        message,
    }
}

/// GETs `url` under the rules and streams the body into `sink`, at most
/// `limits.max_bytes`; returns the body's SHA-256 (hex) and length.
pub async fn download<W: tokio::io::AsyncWrite + Unpin>(
    client: &reqwest::Client,
    url: &str,
    limits: &FetchLimits,
    sink: &mut W,
) -> Result<(String, u64), FetchError> {
    super::check_remote_url(url).map_err(FetchError::Refused)?;
    let work = async {
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| transport(url, &e, limits))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
                .map(|u| u.to_string())
                .unwrap_or_default();
            let from = resp.url().to_string();
            let same_host = url::Url::parse(&to).ok().is_some_and(|t| {
                t.scheme() == resp.url().scheme()
                    && t.host_str() == resp.url().host_str()
                    && t.port_or_known_default() == resp.url().port_or_known_default()
            });
            return Err(if same_host {
                FetchError::TooManyRedirects {
                    url: url.to_string(),
                }
            } else {
                FetchError::CrossHostRedirect { from, to }
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: limits.max_bytes,
        };
        if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
            return Err(too_large());
        }
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| transport(url, &e, limits))?;
            total += chunk.len() as u64;
            if total > limits.max_bytes {
                return Err(too_large());
            }
            hasher.update(&chunk);
            sink.write_all(&chunk)
                .await
                .map_err(|e| FetchError::Io(format!("writing the download: {e}")))?;
        }
        sink.flush()
            .await
            .map_err(|e| FetchError::Io(format!("writing the download: {e}")))?;
        Ok((hex::encode(hasher.finalize()), total))
    };
    // The client's timeout bounds each request; this bounds the whole, redirects and
    // a slow sink included.
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::TimedOut {
            url: url.to_string(),
            seconds: limits.timeout.as_secs(),
        }),
    }
}

/// GETs a small document (a git ref listing) under the rules, into memory.
pub async fn get_small(
    client: &reqwest::Client,
    url: &str,
    limits: &FetchLimits,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    download(client, url, limits, &mut out).await?;
    Ok(out)
}

/// What [`fetch_tarball`] unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// SHA-256 of the tarball (hex).
    pub sha256: String,
    pub downloaded_bytes: u64,
    pub unpacked_bytes: u64,
    pub entries: u64,
}

/// Downloads a tarball context under the rules, checks its declared SHA-256 and
/// unpacks it into `into` (created; plain or gzip tar; regular files, directories and
/// symbolic links only, nothing outside `into`, permissions not kept beyond the
/// executable bit).
pub async fn fetch_tarball(
    client: &reqwest::Client,
    url: &str,
    sha256: Option<&str>,
    into: &Path,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let io = |what: &str, e: std::io::Error| FetchError::Io(format!("{what}: {e}"));
    std::fs::create_dir_all(into).map_err(|e| io(&into.display().to_string(), e))?;
    let parent = into.parent().unwrap_or(Path::new("."));
    let download_file =
        tempfile::NamedTempFile::new_in(parent).map_err(|e| io("a temporary file", e))?;
    let mut file = tokio::fs::File::from_std(
        download_file
            .reopen()
            .map_err(|e| io("a temporary file", e))?,
    );
    let (actual, downloaded) = download(client, url, limits, &mut file).await?;
    drop(file);
    if let Some(expected) = sha256
        && !expected.eq_ignore_ascii_case(&actual)
    {
        return Err(FetchError::DigestMismatch {
            url: url.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual,
        });
    }
    let path = download_file.path().to_path_buf();
    let target = into.to_path_buf();
    let limits = limits.clone();
    let (unpacked_bytes, entries) =
        tokio::task::spawn_blocking(move || unpack(&path, &target, &limits))
            .await
            .map_err(|e| FetchError::Unpack(e.to_string()))??;
    Ok(Fetched {
        sha256: actual,
        downloaded_bytes: downloaded,
        unpacked_bytes,
        entries,
    })
}

/// Unpacks a plain or gzip tar (told apart by its first bytes) within the caps.
pub fn unpack(tarball: &Path, into: &Path, limits: &FetchLimits) -> Result<(u64, u64), FetchError> {
    std::fs::create_dir_all(into)
        .map_err(|e| FetchError::Unpack(format!("{}: {e}", into.display())))?;
    let open = || std::fs::File::open(tarball).map_err(|e| FetchError::Unpack(e.to_string()));
    let mut magic = [0u8; 2];
    let gzip = open()?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(open()?))
    } else {
        Box::new(open()?)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let (mut bytes, mut entries) = (0u64, 0u64);
    let bad = |e: std::io::Error| FetchError::Unpack(e.to_string());
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            // Devices, FIFOs, pax and GNU metadata: nothing a build context needs.
            continue;
        }
        entries += 1;
        bytes += entry.header().size().map_err(bad)?;
        if entries > limits.max_entries {
            return Err(FetchError::Unpack(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        if bytes > limits.max_unpacked_bytes {
            return Err(FetchError::Unpack(format!(
                "more than {} bytes unpacked",
                limits.max_unpacked_bytes
            )));
        }
        // `unpack_in` refuses paths that leave `into` (`..`, absolute, through links).
        let inside = entry.unpack_in(into).map_err(bad)?;
        if !inside {
            return Err(FetchError::Unpack(format!(
                "{} lies outside the context",
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok((bytes, entries))
}

/// Git configuration, as `GIT_CONFIG_*` environment variables, that applies the rules
/// to `git fetch`: https only (every other protocol, submodules' included, refused),
/// no redirect at all (git cannot tell a same-host one), a stall timeout, no system or
/// global configuration, no prompt. Used by the build Job and the command line alike.
pub fn git_environment() -> Vec<(String, String)> {
    let config = [
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        ("http.followRedirects", "false"),
        ("http.lowSpeedLimit", "1024"),
        ("http.lowSpeedTime", "30"),
        // Packs are kept as one file, so that the file-size limit caps the download.
        ("fetch.unpackLimit", "1"),
        ("transfer.fsckObjects", "true"),
        ("core.symlinks", "true"),
        ("advice.detachedHead", "false"),
        ("init.defaultBranch", "main"),
    ];
    let mut env = vec![
        ("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string()),
        ("GIT_CONFIG_GLOBAL".to_string(), "/dev/null".to_string()),
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
        ("GIT_CONFIG_COUNT".to_string(), config.len().to_string()),
    ];
    for (i, (k, v)) in config.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), k.to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), v.to_string()));
    }
    env
}

/// Fetches a git context with the `git` binary on PATH (command line builds) under
/// [`git_environment`], a file-size limit, the time cap and a size check; `.git` is
/// removed. Returns the checked-out directory (`into`, or its subdirectory).
pub async fn fetch_git(
    url: &str,
    reference: Option<&str>,
    subdir: Option<&str>,
    into: &Path,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    super::check_remote_url(url).map_err(FetchError::Refused)?;
    std::fs::create_dir_all(into).map_err(|e| FetchError::Io(e.to_string()))?;
    let reference = reference.unwrap_or("HEAD");
    let git = |args: &[&str]| {
        let mut c = tokio::process::Command::new("git");
        c.args(args)
            .current_dir(into)
            .envs(git_environment())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    };
    let run = |mut c: tokio::process::Command, what: String| async move {
        let out = tokio::time::timeout(limits.timeout, c.output())
            .await
            .map_err(|_| FetchError::TimedOut {
                url: url.to_string(),
                seconds: limits.timeout.as_secs(),
            })?
            .map_err(|e| FetchError::Io(format!("cannot run git ({what}): {e}")))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(FetchError::Transport {
                url: url.to_string(),
                message: format!(
                    "git {what} failed: {}",
                    super::log_tail(&String::from_utf8_lossy(&out.stderr), 5, 1000)
                ),
            })
        }
    };
    run(git(&["init", "-q", "."]), "init".into()).await?;
    run(
        git(&[
            "fetch",
            "-q",
            "--depth",
            "1",
            "--no-tags",
            "--",
            url,
            reference,
        ]),
        "fetch".into(),
    )
    .await?;
    let head = run(git(&["rev-parse", "FETCH_HEAD"]), "rev-parse".into()).await?;
    if super::is_commit(reference)
        && !String::from_utf8_lossy(&head)
            .trim()
            .eq_ignore_ascii_case(reference)
    {
        return Err(FetchError::Transport {
            url: url.to_string(),
            message: format!(
                "fetched {} instead of {reference}",
                String::from_utf8_lossy(&head).trim()
            ),
        });
    }
    run(git(&["checkout", "-q", "FETCH_HEAD"]), "checkout".into()).await?;
    std::fs::remove_dir_all(into.join(".git")).map_err(|e| FetchError::Io(e.to_string()))?;
    let size = dir_size(into).map_err(|e| FetchError::Io(e.to_string()))?;
    if size > limits.max_unpacked_bytes {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit: limits.max_unpacked_bytes,
        });
    }
    Ok(match subdir {
        Some(s) => into.join(s),
        None => into.to_path_buf(),
    })
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            let meta = e.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// `flaredock build fetch-context`: what the build Job's init container runs for a
/// tarball context.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchContextArgs {
    /// The tarball's https URL.
    pub url: String,
    /// Its declared SHA-256 (hex): a different download fails.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Directory to unpack into.
    #[arg(long)]
    pub into: PathBuf,
    /// Cap of the download, bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_bytes)]
    pub max_bytes: u64,
    /// Cap of the unpacked context, bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_unpacked_bytes)]
    pub max_unpacked_bytes: u64,
    /// Cap of the download's duration, seconds.
    #[arg(long, default_value_t = FetchLimits::default().timeout.as_secs())]
    pub timeout_seconds: u64,
}

/// Runs `build fetch-context`; the exit code (0 fetched, 1 refused or failed).
pub async fn fetch_context_command(args: FetchContextArgs) -> i32 {
    let limits = FetchLimits {
        max_bytes: args.max_bytes,
        max_unpacked_bytes: args.max_unpacked_bytes,
        timeout: Duration::from_secs(args.timeout_seconds.max(1)),
        ..FetchLimits::default()
    };
    let (url, declared) = super::BuildSource::tarball_parts(&args.url);
    let sha = args.sha256.as_deref().or(declared);
    let result = async {
        let client = client(&limits, None)?;
        fetch_tarball(&client, url, sha, &args.into, &limits).await
    }
    .await;
    match result {
        Ok(f) => {
            eprintln!(
                "fetched {url}: {} bytes, sha256 {}, {} entries ({} bytes) unpacked into {}",
                f.downloaded_bytes,
                f.sha256,
                f.entries,
                f.unpacked_bytes,
                args.into.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

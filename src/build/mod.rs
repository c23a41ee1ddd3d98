//! Building images from a Dockerfile: where the context comes from ([`BuildSource`]),
//! the content-derived tag that makes an unchanged source cost nothing, and the
//! builders — buildah or `docker buildx` on a workstation ([`local`]), a rootless
//! BuildKit Job in the cluster ([`job`]).

pub mod fetch;
pub mod job;
pub mod local;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::oci::{Credentials, Reference};
use crate::spec::BuildSpec;

/// Where the build context comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildSource {
    /// A local directory (command line only).
    Local(PathBuf),
    /// `https://host/org/repo.git#ref:subdir` (ref and subdir optional).
    Git {
        url: String,
        reference: Option<String>,
        subdir: Option<String>,
    },
    /// An HTTPS tarball of the context (`.tar`, `.tar.gz`, `.tgz`), as written: the URL
    /// with an optional `#sha256=<64 hex>` fragment declaring its digest
    /// ([`BuildSource::tarball_parts`]).
    Tarball(String),
}

/// Annotation of a `CloudflareContainer` whose value takes part in the identity of a
/// moving source (a branch, a tag, `HEAD`, a tarball without a declared digest):
/// changing it rebuilds. Pinned sources (a 40-hex commit, a tarball with `#sha256=`,
/// local files) ignore it: their identity is their content already.
pub const REBUILD_ANNOTATION: &str = "flaredock.dev/rebuild";

/// The tarball extensions a context may have (what `build fetch-context` unpacks).
const TARBALL_EXTENSIONS: [&str; 3] = [".tar", ".tar.gz", ".tgz"];

fn is_commit(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A git ref as the build Job passes it to `git fetch`: no option look-alike, no `..`,
/// the characters refs are made of.
fn check_git_ref(context: &str, r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 255
        && !r.starts_with('-')
        && !r.contains("..")
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-+@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{context}: {r:?} is not a git ref flaredock fetches (letters, digits and ._/-+@, not starting with -)"
        ))
    }
}

fn check_subdir(context: &str, s: &str) -> Result<(), String> {
    if s.split('/').any(|p| p == ".." || p == ".") || s.contains('\\') || s.contains('\0') {
        return Err(format!(
            "{context}: the subdirectory may not leave the repository"
        ));
    }
    if s.len() > 512 || s.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!("{context}: the subdirectory is not a plain path"));
    }
    Ok(())
}

/// The URL of a remote context: https only, with a host and no credentials (they would
/// show in the Job, its logs and the status).
pub fn check_remote_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text}: not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{text}: only https:// contexts are fetched ({}:// is refused)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text}: the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{}: credentials in a context URL are refused (they would show in the build Job and the status)",
            redact_userinfo(&url)
        ));
    }
    Ok(url)
}

fn redact_userinfo(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

impl BuildSource {
    /// Parses `spec.build.context`. Local directories only when `allow_local`.
    pub fn parse(context: &str, allow_local: bool) -> Result<BuildSource, String> {
        let context = context.trim();
        if context.contains("://") {
            let (url, fragment) = match context.split_once('#') {
                Some((u, f)) => (u, Some(f)),
                None => (context, None),
            };
            let parsed = check_remote_url(url)?;
            let path = parsed.path();
            let tarball = TARBALL_EXTENSIONS.iter().any(|x| path.ends_with(x));
            if tarball {
                match fragment {
                    None => return Ok(BuildSource::Tarball(url.to_string())),
                    Some(f) => {
                        let Some(hex) = f.strip_prefix("sha256=") else {
                            return Err(format!(
                                "{context}: a tarball's only fragment is #sha256=<64 hex digits>"
                            ));
                        };
                        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(format!(
                                "{context}: #sha256= takes the 64 hex digits of the tarball's SHA-256"
                            ));
                        }
                        return Ok(BuildSource::Tarball(format!(
                            "{url}#sha256={}",
                            hex.to_ascii_lowercase()
                        )));
                    }
                }
            }
            if path.ends_with(".git") || fragment.is_some() {
                let (reference, subdir) = match fragment {
                    Some(f) => match f.split_once(':') {
                        Some((r, s)) => (
                            Some(r.to_string()).filter(|r| !r.is_empty()),
                            Some(s.trim_matches('/').to_string()).filter(|s| !s.is_empty()),
                        ),
                        None => (Some(f.to_string()).filter(|r| !r.is_empty()), None),
                    },
                    None => (None, None),
                };
                if let Some(r) = &reference {
                    check_git_ref(context, r)?;
                }
                if let Some(s) = &subdir {
                    check_subdir(context, s)?;
                }
                return Ok(BuildSource::Git {
                    url: url.to_string(),
                    reference: reference.map(|r| if is_commit(&r) { r.to_lowercase() } else { r }),
                    subdir,
                });
            }
            return Err(format!(
                "{context}: an HTTPS context must be a git repository (…/repo.git#ref:subdir) or a tarball (.tar, .tar.gz, .tgz)"
            ));
        }
        if !allow_local {
            return Err(format!(
                "{context}: a local directory context works with the command line only; in a cluster use a git URL or an HTTPS tarball"
            ));
        }
        let path = PathBuf::from(context);
        if !path.is_dir() {
            return Err(format!("{context}: no such directory"));
        }
        Ok(BuildSource::Local(path))
    }

    /// A tarball's URL (without fragment) and its declared SHA-256 (hex), if any.
    pub fn tarball_parts(text: &str) -> (&str, Option<&str>) {
        match text.split_once("#sha256=") {
            Some((url, hex)) => (url, Some(hex)),
            None => (text.split('#').next().unwrap_or(text), None),
        }
    }

    /// Whether the source names fixed content: a 40-hex commit, a tarball with a
    /// declared digest, or local files (hashed).
    pub fn is_pinned(&self) -> bool {
        match self {
            BuildSource::Local(_) => true,
            BuildSource::Git { reference, .. } => reference.as_deref().is_some_and(is_commit),
            BuildSource::Tarball(text) => BuildSource::tarball_parts(text).1.is_some(),
        }
    }

    /// What identifies the content the build sees, from which [`content_tag`] derives
    /// the tag. **Never a network call**: the controller does not fetch tenant URLs
    /// (the build Job does, [`fetch`]).
    ///
    /// - git at a 40-hex commit: the commit and subdirectory (`git:<commit>:<subdir>`);
    /// - git at a branch, a tag or `HEAD`: the URL, ref and subdirectory as written,
    ///   and `rebuild` (the [`REBUILD_ANNOTATION`]'s value). A moving ref is therefore
    ///   rebuilt when the spec or that annotation changes, not when the branch moves:
    ///   pin a commit for builds that follow the content;
    /// - a tarball with `#sha256=`: that digest (`tar:sha256:<hex>`; the Job verifies
    ///   it); without: its URL and `rebuild`, like a moving ref;
    /// - a local directory (command line only): a hash of its files
    ///   ([`local_context_hash`]): local file reads, so call it off the async runtime.
    pub fn identity(&self, rebuild: Option<&str>) -> std::io::Result<String> {
        let moving = |text: String| match rebuild.filter(|r| !r.is_empty()) {
            Some(r) => format!("{text}\0rebuild:{r}"),
            None => text,
        };
        Ok(match self {
            BuildSource::Local(dir) => local_context_hash(dir)?,
            BuildSource::Git {
                url,
                reference,
                subdir,
            } => {
                let subdir = subdir.as_deref().unwrap_or("");
                match reference.as_deref() {
                    Some(r) if is_commit(r) => format!("git:{}:{subdir}", r.to_lowercase()),
                    r => moving(format!("git-ref:{url}#{}:{subdir}", r.unwrap_or("HEAD"))),
                }
            }
            BuildSource::Tarball(text) => match BuildSource::tarball_parts(text) {
                (_, Some(hex)) => format!("tar:sha256:{hex}"),
                (url, None) => moving(format!("tar-url:{url}")),
            },
        })
    }

    /// The content tag of this source and inputs ([`BuildSource::identity`], then
    /// [`content_tag`]).
    pub fn tag(&self, inputs: &BuildInputs, rebuild: Option<&str>) -> std::io::Result<String> {
        Ok(content_tag(&self.identity(rebuild)?, inputs))
    }
}

impl BuildSource {
    /// The context as builders take it: a path, `url#ref:subdir`, or a tarball URL.
    pub fn context_argument(&self) -> String {
        match self {
            BuildSource::Local(dir) => dir.display().to_string(),
            BuildSource::Git {
                url,
                reference,
                subdir,
            } => {
                let mut c = url.clone();
                if reference.is_some() || subdir.is_some() {
                    c.push('#');
                    c.push_str(reference.as_deref().unwrap_or(""));
                    if let Some(s) = subdir {
                        c.push(':');
                        c.push_str(s);
                    }
                }
                c
            }
            BuildSource::Tarball(text) => text.clone(),
        }
    }
}

/// Docker config JSON holding push credentials for one registry host.
pub fn docker_config_json(host: &str, credentials: &crate::oci::Credentials) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        credentials.username,
        credentials.password.expose()
    ));
    serde_json::json!({"auths": {host: {"auth": auth}}}).to_string()
}

/// Everything that decides what a build produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInputs {
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: String,
}

impl BuildInputs {
    /// `--build-arg K=V …` and `--target T`, as buildah and docker take them.
    pub fn cli_arguments(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.args {
            out.push("--build-arg".into());
            out.push(format!("{k}={v}"));
        }
        if let Some(t) = &self.target {
            out.push("--target".into());
            out.push(t.clone());
        }
        out
    }

    pub fn from_spec(spec: &BuildSpec) -> BuildInputs {
        BuildInputs {
            dockerfile: spec
                .dockerfile
                .clone()
                .unwrap_or_else(|| "Dockerfile".into()),
            args: spec.args.clone(),
            target: spec.target.clone(),
            platform: spec
                .platform
                .clone()
                .unwrap_or_else(|| "linux/amd64".into()),
        }
    }
}

/// The tag derived from the content: the source's identity (git commit, tarball digest
/// or hash of the local files) plus Dockerfile path, args, target and platform.
pub fn content_tag(source_identity: &str, inputs: &BuildInputs) -> String {
    let mut h = Sha256::new();
    h.update(b"flaredock-build-v1\0");
    h.update(source_identity.as_bytes());
    h.update(b"\0");
    h.update(inputs.dockerfile.as_bytes());
    h.update(b"\0");
    for (k, v) in &inputs.args {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    h.update(inputs.target.as_deref().unwrap_or("").as_bytes());
    h.update(b"\0");
    h.update(inputs.platform.as_bytes());
    format!("build-{}", &hex::encode(h.finalize())[..24])
}

/// `.dockerignore` patterns (the common forms: names, paths, `*` and `**` globs, `!`).
struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn load(dir: &Path) -> Ignore {
        let text = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negate, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, l),
                };
                let parts = pattern
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect();
                (negate, parts)
            })
            .collect();
        Ignore { rules }
    }

    fn ignored(&self, rel: &[String]) -> bool {
        let mut ignored = false;
        for (negate, pattern) in &self.rules {
            // A pattern matches the path or any of its parent directories.
            let hit = (1..=rel.len()).any(|n| glob_path(pattern, &rel[..n]));
            if hit {
                ignored = !negate;
            }
        }
        ignored
    }
}

fn glob_path(pattern: &[String], path: &[String]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => (0..=path.len()).any(|i| glob_path(&pattern[1..], &path[i..])),
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && glob_path(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// A hash of the files of a local context that a build can see (`.dockerignore`
/// honoured, `.git` left out): paths, executable bits and contents.
pub fn local_context_hash(dir: &Path) -> std::io::Result<String> {
    let ignore = Ignore::load(dir);
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), Vec::<String>::new())];
    while let Some((path, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let mut child = rel.clone();
            child.push(name.clone());
            if (rel.is_empty() && name == ".git") || ignore.ignored(&child) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else {
                files.push((child.join("/"), entry.path()));
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for (rel, path) in files {
        h.update(rel.as_bytes());
        h.update(b"\0");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::symlink_metadata(&path)?.permissions().mode();
            h.update(if mode & 0o111 != 0 { b"x" } else { b"-" });
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
        } else {
            let mut f = std::fs::File::open(&path)?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update(b"\0");
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// One build to run.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// `namespace/name` of the object.
    pub object: String,
    pub source: BuildSource,
    pub inputs: BuildInputs,
    /// Where to push: `host/account/repo:tag`.
    pub destination: Reference,
    /// Push credentials for the destination.
    pub credentials: Credentials,
    /// The object, for builders that create Kubernetes resources it owns.
    pub owner: Option<job::Owner>,
}

/// How a build went.
#[derive(Clone, Debug, PartialEq)]
pub enum BuildOutcome {
    /// The image is pushed to the destination tag.
    Pushed,
    /// Still running (in-cluster builds): look again later.
    InProgress(String),
    /// The build failed; the last lines of its log.
    Failed { message: String, log_tail: String },
}

/// A builder: something that turns a [`BuildRequest`] into a pushed image.
pub trait Builder: Send + Sync {
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, BuildOutcome>;

    /// How long a build's push credentials must stay valid, when the builder needs
    /// its own (a Job that may run until its deadline); `None` uses the shared ones.
    fn credentials_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The last `lines` lines of a log, at most `max_bytes` long.
pub fn log_tail(log: &str, lines: usize, max_bytes: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.len() <= max_bytes {
        return tail;
    }
    let mut start = tail.len() - max_bytes;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &tail[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contexts() {
        assert_eq!(
            BuildSource::parse("https://github.com/org/repo.git#main:services/shop", false)
                .unwrap(),
            BuildSource::Git {
                url: "https://github.com/org/repo.git".into(),
                reference: Some("main".into()),
                subdir: Some("services/shop".into())
            }
        );
        assert_eq!(
            BuildSource::parse("https://github.com/org/repo.git", false).unwrap(),
            BuildSource::Git {
                url: "https://github.com/org/repo.git".into(),
                reference: None,
                subdir: None
            }
        );
        assert_eq!(
            BuildSource::parse("https://x.io/ctx.tar.gz", false).unwrap(),
            BuildSource::Tarball("https://x.io/ctx.tar.gz".into())
        );
        assert!(BuildSource::parse("https://x.io/page.html", false).is_err());
        assert!(
            BuildSource::parse(".", false)
                .unwrap_err()
                .contains("command line only")
        );
        assert!(matches!(
            BuildSource::parse(".", true).unwrap(),
            BuildSource::Local(_)
        ));
        assert!(BuildSource::parse("https://g.io/r.git#main:../x", false).is_err());
        assert!(BuildSource::parse("s3://bucket/x", true).is_err());
    }

    #[test]
    fn the_tag_follows_every_input() {
        let base = BuildInputs {
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::new(),
            target: None,
            platform: "linux/amd64".into(),
        };
        let t = content_tag("abc", &base);
        assert!(t.starts_with("build-") && t.len() == 30);
        assert_eq!(t, content_tag("abc", &base.clone()));
        assert_ne!(t, content_tag("abd", &base));
        let mut other = base.clone();
        other.args.insert("A".into(), "1".into());
        assert_ne!(t, content_tag("abc", &other));
        let mut other = base.clone();
        other.target = Some("prod".into());
        assert_ne!(t, content_tag("abc", &other));
        let mut other = base;
        other.dockerfile = "Dockerfile.prod".into();
        assert_ne!(t, content_tag("abc", &other));
    }

    #[test]
    fn local_hash_sees_what_the_build_sees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("app.txt"), "v1").unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/a.log"), "x").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "logs\n*.tmp\n").unwrap();
        let h1 = local_context_hash(dir.path()).unwrap();
        std::fs::write(dir.path().join("logs/a.log"), "changed").unwrap();
        std::fs::write(dir.path().join("scratch.tmp"), "ignored").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        assert_eq!(
            h1,
            local_context_hash(dir.path()).unwrap(),
            "ignored files do not count"
        );
        std::fs::write(dir.path().join("app.txt"), "v2").unwrap();
        assert_ne!(
            h1,
            local_context_hash(dir.path()).unwrap(),
            "a changed file does"
        );
    }

    #[test]
    fn log_tails_are_short() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = log_tail(&log, 3, 1000);
        assert_eq!(t, "line 97\nline 98\nline 99");
        assert!(log_tail(&log, 100, 20).len() <= 24);
    }
}

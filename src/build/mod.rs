//! Building images from a Dockerfile: where the context comes from ([`BuildSource`]),
//! the content-derived tag that makes an unchanged source cost nothing, and the
//! builders — buildah or `docker buildx` on a workstation ([`local`]), a rootless
//! BuildKit Job in the cluster ([`job`]).

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
    /// An HTTPS tarball of the context.
    Tarball(String),
}

impl BuildSource {
    /// Parses `spec.build.context`. Local directories only when `allow_local`.
    pub fn parse(context: &str, allow_local: bool) -> Result<BuildSource, String> {
        let context = context.trim();
        if context.starts_with("https://") || context.starts_with("http://") {
            let (url, fragment) = match context.split_once('#') {
                Some((u, f)) => (u, Some(f)),
                None => (context, None),
            };
            if url.ends_with(".git") || fragment.is_some() {
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
                if subdir
                    .as_deref()
                    .is_some_and(|s| s.split('/').any(|p| p == ".."))
                {
                    return Err(format!(
                        "{context}: the subdirectory may not leave the repository"
                    ));
                }
                return Ok(BuildSource::Git {
                    url: url.to_string(),
                    reference,
                    subdir,
                });
            }
            if [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst"]
                .iter()
                .any(|x| url.ends_with(x))
            {
                return Ok(BuildSource::Tarball(url.to_string()));
            }
            return Err(format!(
                "{context}: an HTTP context must be a git repository (…/repo.git#ref:subdir) or a tarball (.tar, .tar.gz, .tgz, …)"
            ));
        }
        if context.contains("://") {
            return Err(format!(
                "{context}: only https:// git and tarball contexts are supported"
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
            BuildSource::Tarball(url) => url.clone(),
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

/// Resolves a git ref to its commit with the smart HTTP protocol (`info/refs`): no git
/// binary needed. A 40-hex ref is taken as the commit itself.
pub async fn resolve_git_commit(
    http: &reqwest::Client,
    url: &str,
    reference: Option<&str>,
) -> Result<String, String> {
    if let Some(r) = reference
        && r.len() == 40
        && r.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(r.to_lowercase());
    }
    let info = format!(
        "{}/info/refs?service=git-upload-pack",
        url.trim_end_matches('/')
    );
    let resp = http
        .get(&info)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {} listing refs", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&body);
    let mut refs: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        // pkt-line: 4 hex length, then "<sha> <ref>" (first ref line carries \0 caps).
        let line = line.get(4..).unwrap_or("");
        let line = line.split('\0').next().unwrap_or("");
        if let Some((sha, name)) = line.split_once(' ')
            && sha.len() == 40
            && sha.bytes().all(|b| b.is_ascii_hexdigit())
        {
            refs.push((name.trim().to_string(), sha.to_string()));
        }
    }
    let wanted: Vec<String> = match reference {
        None => vec!["HEAD".into()],
        Some(r) => vec![
            r.to_string(),
            format!("refs/heads/{r}"),
            format!("refs/tags/{r}^{{}}"),
            format!("refs/tags/{r}"),
        ],
    };
    for w in &wanted {
        if let Some((_, sha)) = refs.iter().find(|(name, _)| name == w) {
            return Ok(sha.clone());
        }
    }
    Err(format!("{url}: no ref {}", reference.unwrap_or("HEAD")))
}

/// Downloads a tarball context and returns its digest (streamed, memory bounded).
pub async fn tarball_digest(http: &reqwest::Client, url: &str) -> Result<String, String> {
    use futures::StreamExt;
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let mut h = Sha256::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk.map_err(|e| format!("{url}: {e}"))?);
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

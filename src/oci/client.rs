//! A client for the OCI distribution API: authentication (anonymous, basic, and the
//! bearer-token challenge of Docker Hub, GHCR and others), manifest and blob requests.
//! Plain HTTP only for loopback hosts or hosts named insecure.
//!
//! Bounded ([`RegistryTimeouts`]): a connect timeout, a read timeout (no byte for that
//! long ends a request) and an overall timeout per request, long enough for a large
//! layer. Pushes pass the write gate ([`RegistryClient::with_write_gate`], the
//! controller's leader Lease): no push request is sent while it is closed, and a
//! manifest write — the one that moves a tag — gets a timeout that ends before the
//! gate closes. Blob uploads are only checked when they start: a blob is stored under
//! its digest, so one landing late changes nothing anyone reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::bounded::BoundedMap;
use crate::cloudflare::{Secret, WriteGate};

/// Media types of manifests flaredock reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Username and password for a registry.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Bearer tokens a registry client keeps at most.
pub const TOKEN_ENTRIES: usize = 1024;

/// (host, scope, credentials fingerprint): the key of a cached bearer token.
type TokenKey = (String, String, [u8; 32]);

/// Who asks: a fingerprint of the credentials (all zeros when anonymous).
fn asker(creds: Option<&Credentials>) -> [u8; 32] {
    match creds {
        Some(c) => Secret::new(format!("{}\0{}", c.username, c.password.expose())).fingerprint(),
        None => [0; 32],
    }
}

/// A registry failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "registry {host}: authentication failed for {repository} (HTTP {status}): check the credentials"
    )]
    Unauthorized {
        host: String,
        repository: String,
        status: u16,
    },
    #[error("registry {host}: {what} not found in {repository}")]
    NotFound {
        host: String,
        repository: String,
        what: String,
    },
    #[error("registry {host}: {message}")]
    Protocol { host: String, message: String },
    #[error("registry {host}: {message}")]
    Transport { host: String, message: String },
    /// A push refused by the write gate (the leader Lease): nothing was sent. Reported
    /// like the Cloudflare client's `ApiError::NotLeader`: waiting, never a verdict.
    #[error(
        "registry {host}: {what}: not sent: this replica does not hold the leader Lease long enough for the push to land"
    )]
    NotLeader { host: String, what: String },
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }
}

/// What a manifest HEAD/GET tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Is this host reached over plain HTTP (loopback, as Docker does)?
pub fn is_loopback(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .unwrap_or(host);
    h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "::1"
}

/// How long registry requests may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryTimeouts {
    /// To establish a connection (10 s).
    pub connect: Duration,
    /// Without a byte read (60 s).
    pub read: Duration,
    /// One request, start to end of its body: a layer of several GiB (30 min).
    pub request: Duration,
}

impl Default for RegistryTimeouts {
    fn default() -> Self {
        RegistryTimeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
            request: Duration::from_secs(30 * 60),
        }
    }
}

/// A registry client. Clones share the connection pool and the token cache.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    timeouts: RegistryTimeouts,
    /// Asked before each push request (none: pushes are not gated).
    write_gate: Option<WriteGate>,
    insecure: Arc<Vec<String>>,
    /// Bearer tokens by (host, scope, the credentials that obtained them): a token one
    /// namespace's pull Secret obtained is only ever sent again with those same
    /// credentials, never for an object without them (another namespace's, or an
    /// anonymous one). At most `TOKEN_ENTRIES`, least recently used evicted first (a
    /// token evicted is simply asked for again): one scope per repository, and every
    /// object has its own repository.
    tokens: Arc<Mutex<BoundedMap<TokenKey, String>>>,
}

impl RegistryClient {
    pub fn new(insecure: Vec<String>) -> Result<Self, RegistryError> {
        Self::with_timeouts(insecure, RegistryTimeouts::default())
    }

    pub fn with_timeouts(
        insecure: Vec<String>,
        timeouts: RegistryTimeouts,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.request)
            .pool_max_idle_per_host(16)
            .user_agent(concat!("flaredock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(RegistryClient {
            http,
            timeouts,
            write_gate: None,
            insecure: Arc::new(insecure),
            tokens: Arc::new(Mutex::new(BoundedMap::with_entries(TOKEN_ENTRIES))),
        })
    }

    /// How full the bearer-token cache is.
    pub fn token_cache_stats(&self) -> crate::bounded::CacheStats {
        crate::lock(&self.tokens).stats()
    }

    /// Pushes only while `gate` is open (the controller's leadership).
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        self.write_gate = Some(gate);
        self
    }

    pub fn timeouts(&self) -> RegistryTimeouts {
        self.timeouts
    }

    /// Sends one request, through the write gate when it writes: refused while the
    /// gate is closed; a manifest write's timeout ends before it closes.
    async fn execute(&self, host: &str, req: RequestBuilder) -> Result<Response, RegistryError> {
        let mut req = req.build().map_err(|e| transport(host, &e))?;
        if let Some(gate) = &self.write_gate
            && !matches!(*req.method(), Method::GET | Method::HEAD)
        {
            let normal = req.timeout().copied().unwrap_or(self.timeouts.request);
            let fenced = gate.fence(normal);
            let what = format!("{} {}", req.method(), req.url().path());
            let Some(timeout) = fenced else {
                return Err(not_leader(host, &what));
            };
            if req.url().path().contains("/manifests/") {
                *req.timeout_mut() = Some(timeout);
            }
        }
        self.http
            .execute(req)
            .await
            .map_err(|e| transport(host, &e))
    }

    pub fn base(&self, host: &str) -> String {
        let scheme = if is_loopback(host) || self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// Sends a request, answering one authentication challenge (basic or bearer).
    pub async fn send(
        &self,
        host: &str,
        repository: &str,
        creds: Option<&Credentials>,
        push: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = format!(
            "repository:{repository}:{}",
            if push { "pull,push" } else { "pull" }
        );
        let cached = self.token(host, &scope, creds);
        let mut req = build(&self.http);
        if let Some(t) = &cached {
            req = req.bearer_auth(t);
        } else if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(c.password.expose()));
        }
        let resp = self.execute(host, req).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let unauthorized = || RegistryError::Unauthorized {
            host: host.to_string(),
            repository: repository.to_string(),
            status: 401,
        };
        if challenge.to_ascii_lowercase().starts_with("bearer") {
            let token = self.fetch_token(host, &challenge, &scope, creds).await?;
            let resp = self
                .execute(host, build(&self.http).bearer_auth(&token))
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(unauthorized());
            }
            return Ok(resp);
        }
        // Basic challenge: answer once with the credentials, if not already sent.
        match creds {
            Some(c) if cached.is_some() => {
                let resp = self
                    .execute(
                        host,
                        build(&self.http).basic_auth(&c.username, Some(c.password.expose())),
                    )
                    .await?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(unauthorized());
                }
                Ok(resp)
            }
            _ => Err(unauthorized()),
        }
    }

    /// Sends a request whose body can be sent only once (a stream), with the token or
    /// credentials an earlier request of the same scope already established.
    pub async fn send_once_streaming(
        &self,
        host: &str,
        repository: &str,
        creds: Option<&Credentials>,
        build: impl FnOnce(&reqwest::Client) -> RequestBuilder,
        body: reqwest::Body,
    ) -> Result<Response, RegistryError> {
        let scope = format!("repository:{repository}:pull,push");
        let mut req = build(&self.http).body(body);
        if let Some(t) = self.token(host, &scope, creds) {
            req = req.bearer_auth(t);
        } else if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(c.password.expose()));
        }
        let resp = self.execute(host, req).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                host: host.to_string(),
                repository: repository.to_string(),
                status: 401,
            });
        }
        Ok(resp)
    }

    fn token(&self, host: &str, scope: &str, creds: Option<&Credentials>) -> Option<String> {
        crate::lock(&self.tokens)
            .get(&(host.to_string(), scope.to_string(), asker(creds)))
            .cloned()
    }

    async fn fetch_token(
        &self,
        host: &str,
        challenge: &str,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| RegistryError::Protocol {
            host: host.to_string(),
            message: "bearer challenge without a realm".into(),
        })?;
        let mut req = self.http.get(realm.as_str()).query(&[("scope", scope)]);
        if let Some(service) = params.get("service") {
            req = req.query(&[("service", service.as_str())]);
        }
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(c.password.expose()));
        }
        let resp = req.send().await.map_err(|e| transport(host, &e))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Unauthorized {
                host: host.to_string(),
                repository: scope.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|e| RegistryError::Protocol {
            host: host.to_string(),
            message: format!("unreadable token response: {e}"),
        })?;
        let token = body
            .token
            .or(body.access_token)
            .ok_or_else(|| RegistryError::Protocol {
                host: host.to_string(),
                message: "token response without a token".into(),
            })?;
        crate::lock(&self.tokens).insert(
            (host.to_string(), scope.to_string(), asker(creds)),
            token.clone(),
        );
        Ok(token)
    }

    /// HEAD of a manifest: its digest and media type, or `None` when absent.
    pub async fn head_manifest(
        &self,
        host: &str,
        repository: &str,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base(host));
        let resp = self
            .send(host, repository, creds, false, |c| {
                c.request(Method::HEAD, &url)
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let digest = header_str(&resp, "docker-content-digest");
                let media_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                match digest {
                    Some(d) => Ok(Some(ManifestInfo {
                        digest: d,
                        media_type,
                    })),
                    // Without the header, GET the manifest and hash it.
                    None => self
                        .get_manifest(host, repository, reference, creds)
                        .await
                        .map(|(info, _)| Some(info)),
                }
            }
            s => Err(status_error(host, s, "HEAD manifest")),
        }
    }

    /// GET of a manifest: its info and exact bytes.
    pub async fn get_manifest(
        &self,
        host: &str,
        repository: &str,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<(ManifestInfo, bytes::Bytes), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base(host));
        let resp = self
            .send(host, repository, creds, false, |c| {
                c.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                host: host.to_string(),
                repository: repository.to_string(),
                what: format!("manifest {reference}"),
            }),
            s if s.is_success() => {
                let media_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let bytes = resp.bytes().await.map_err(|e| transport(host, &e))?;
                let digest = crate::emulator::registry::sha256_digest(&bytes);
                if reference.starts_with("sha256:") && reference != digest {
                    return Err(RegistryError::Protocol {
                        host: host.to_string(),
                        message: format!("manifest {reference} hashes to {digest}"),
                    });
                }
                Ok((ManifestInfo { digest, media_type }, bytes))
            }
            s => Err(status_error(host, s, "GET manifest")),
        }
    }
}

/// Registry credentials from Docker config JSON (`~/.docker/config.json`, or the
/// `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson` Secret), by host.
pub fn docker_config_auths(json: &str) -> Result<HashMap<String, Credentials>, String> {
    use base64::Engine;
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not Docker config JSON: {e}"))?;
    let mut out = HashMap::new();
    for (host, entry) in doc
        .get("auths")
        .and_then(|a| a.as_object())
        .into_iter()
        .flatten()
    {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches("/v1/")
            .trim_end_matches('/');
        let host = if host == "index.docker.io" {
            "docker.io"
        } else {
            host
        };
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (username, password) = match (field("username"), field("password"), field("auth")) {
            (Some(u), Some(p), _) => (u, p),
            (_, _, Some(a)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(a)
                    .map_err(|_| format!("auths.{host}.auth is not base64"))?;
                let text = String::from_utf8_lossy(&decoded).to_string();
                match text.split_once(':') {
                    Some((u, p)) => (u.to_string(), p.to_string()),
                    None => return Err(format!("auths.{host}.auth is not USER:PASSWORD")),
                }
            }
            _ => continue,
        };
        out.insert(
            host.to_string(),
            Credentials {
                username,
                password: Secret::new(password),
            },
        );
    }
    Ok(out)
}

pub fn header_str(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

pub fn status_error(host: &str, status: StatusCode, what: &str) -> RegistryError {
    match status.as_u16() {
        401 | 403 => RegistryError::Unauthorized {
            host: host.to_string(),
            repository: what.to_string(),
            status: status.as_u16(),
        },
        500..=599 | 429 => RegistryError::Transport {
            host: host.to_string(),
            message: format!("{what}: HTTP {status}"),
        },
        _ => RegistryError::Protocol {
            host: host.to_string(),
            message: format!("{what}: HTTP {status}"),
        },
    }
}

pub fn transport(host: &str, e: &reqwest::Error) -> RegistryError {
    let mut detail = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    RegistryError::Transport {
        host: host.to_string(),
        message: detail,
    }
}

/// A push refused by the write gate: tried again later (by the next reconcile, not
/// within this copy: the Lease will not come back in a retry's time), never a verdict
/// on the image; the registry was not contacted.
fn not_leader(host: &str, what: &str) -> RegistryError {
    RegistryError::NotLeader {
        host: host.to_string(),
        what: what.to_string(),
    }
}

/// `Bearer realm="…",service="…",scope="…"` → its parameters.
fn parse_challenge(challenge: &str) -> HashMap<String, String> {
    let rest = challenge.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_string();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                value.push(c);
            }
            // skip to the comma
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        chars.next_if_eq(&',');
        out.insert(key.to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auths() {
        let json = r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}, "ghcr.io": {"username": "a", "password": "b"}}}"#;
        let auths = docker_config_auths(json).unwrap();
        assert_eq!(auths["docker.io"].username, "u");
        assert_eq!(auths["docker.io"].password.expose(), "p");
        assert_eq!(auths["ghcr.io"].password.expose(), "b");
        assert!(docker_config_auths("{").is_err());
    }

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
    }

    #[test]
    fn loopback_hosts_use_http() {
        let c = RegistryClient::new(vec!["reg.internal:5000".into()]).unwrap();
        assert_eq!(c.base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base("localhost"), "http://localhost");
        assert_eq!(c.base("reg.internal:5000"), "http://reg.internal:5000");
        assert_eq!(c.base("ghcr.io"), "https://ghcr.io");
    }
}

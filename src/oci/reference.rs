//! Image references, parsed as Docker does, with one flaredock rule: a name with no
//! registry (`shop:v1`) means the account's repository in Cloudflare's registry.

use std::fmt;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `None`: Cloudflare's registry (a short name such as `shop:v1`).
    pub registry: Option<String>,
    /// Repository path, e.g. `library/nginx` or `shop`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

const DOCKER_HUB: &str = "docker.io";

fn is_component(s: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    if s.is_empty() {
        return false;
    }
    let bytes = s.as_bytes();
    if !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit() {
        return false;
    }
    let last = bytes[bytes.len() - 1];
    if !last.is_ascii_lowercase() && !last.is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        }
        Some(("sha512", hex)) => {
            hex.len() == 128
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        }
        _ => false,
    }
}

fn is_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.len() > 255 + 64 + 136 {
            return Err(err("too long"));
        }
        if text.chars().any(|c| c.is_whitespace()) {
            return Err(err("contains white space"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(err("the digest must be sha256:<64 lowercase hex digits>"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !is_tag(t) {
                    return Err(err(
                        "the tag may hold letters, digits, '_', '.', '-' (at most 128)",
                    ));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            let d = parts.remove(0);
            if !is_domain(d) {
                return Err(err("the registry host is not a valid host[:port]"));
            }
            Some(d.to_string())
        } else {
            None
        };
        if parts.iter().any(|p| !is_component(p)) {
            return Err(err(
                "repository path components must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
        let mut repository = parts.join("/");
        if repository.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        let registry = registry.map(|r| {
            if r == "index.docker.io" || r == "registry-1.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                r
            }
        });
        if registry.as_deref() == Some(DOCKER_HUB) && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// A reference with a registry: a Docker Hub name is served by `registry-1.docker.io`.
    pub fn api_host(&self) -> Option<&str> {
        match self.registry.as_deref() {
            Some(DOCKER_HUB) => Some("registry-1.docker.io"),
            other => other,
        }
    }

    /// What the manifest is fetched by: the digest when pinned, else the tag (`latest`).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository pinned to a digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let r = p("docker.io/nginx:alpine");
        assert_eq!(r.registry.as_deref(), Some("docker.io"));
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.tag.as_deref(), Some("alpine"));
        assert_eq!(r.api_host(), Some("registry-1.docker.io"));
        assert_eq!(p("index.docker.io/foo/bar").repository, "foo/bar");
    }

    #[test]
    fn short_names_mean_cloudflare() {
        let r = p("shop:v1");
        assert_eq!(r.registry, None);
        assert_eq!(r.repository, "shop");
        assert_eq!(r.manifest_reference(), "v1");
        assert_eq!(p("team/shop").manifest_reference(), "latest");
    }

    #[test]
    fn hosts_ports_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("localhost:5000/x/y:1.0@{d}"));
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.to_string(), format!("localhost:5000/x/y:1.0@{d}"));
        assert_eq!(
            p("127.0.0.1:8787/acc/hello:v1").registry.as_deref(),
            Some("127.0.0.1:8787")
        );
        assert_eq!(
            p("ghcr.io/org/app@".to_string().trim_end_matches('@')).repository,
            "org/app"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER:v1",
            "shop:",
            "shop:-bad",
            "a b",
            "shop@sha256:123",
            "x//y",
            "-x",
            "ghcr.io:port/x",
            "shop:v1:v2/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}

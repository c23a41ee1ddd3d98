//! An in-memory OCI distribution registry, emulating Cloudflare's registry when the
//! emulator runs without `--registry-host`: basic auth with minted credentials,
//! repositories scoped to the account, manifests kept byte for byte, blob uploads
//! (monolithic, chunked, cross-repository mount) verified against their digest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Default, Clone)]
struct Repository {
    blobs: BTreeSet<String>,
    manifests: HashMap<String, (String, Bytes)>,
    tags: BTreeMap<String, String>,
}

/// An error in the OCI distribution spec's format.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl RegistryError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        RegistryError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({"errors": [{"code": self.code, "message": self.message}]}).to_string()
    }
}

/// The registry's content.
#[derive(Default)]
pub struct Registry {
    blobs: HashMap<String, Bytes>,
    repos: HashMap<String, Repository>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
}

/// A manifest as stored: media type and exact bytes.
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Registry {
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<StoredManifest, RegistryError> {
        let r = self.repos.get(repo).ok_or_else(|| {
            RegistryError::new(404, "NAME_UNKNOWN", format!("repository {repo} not known"))
        })?;
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            r.tags.get(reference).cloned().ok_or_else(|| {
                RegistryError::new(
                    404,
                    "MANIFEST_UNKNOWN",
                    format!("tag {reference} not known"),
                )
            })?
        };
        let (media_type, bytes) = r.manifests.get(&digest).cloned().ok_or_else(|| {
            RegistryError::new(
                404,
                "MANIFEST_UNKNOWN",
                format!("manifest {digest} not known"),
            )
        })?;
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Stores a manifest after checking that every blob it names is in the repository.
    pub fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::new(
                400,
                "DIGEST_INVALID",
                "manifest digest does not match its content",
            ));
        }
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::new(
                400,
                "MANIFEST_INVALID",
                format!("manifest is not JSON: {e}"),
            )
        })?;
        let r = self.repos.entry(repo.to_string()).or_default();
        let mut referenced = Vec::new();
        if let Some(c) = doc.pointer("/config/digest").and_then(|d| d.as_str()) {
            referenced.push(c.to_string());
        }
        for l in doc
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = l.get("digest").and_then(|d| d.as_str()) {
                referenced.push(d.to_string());
            }
        }
        for d in &referenced {
            if !r.blobs.contains(d) {
                return Err(RegistryError::new(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("blob {d} not in repository"),
                ));
            }
        }
        for m in doc
            .get("manifests")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = m.get("digest").and_then(|d| d.as_str())
                && !r.manifests.contains_key(d)
            {
                return Err(RegistryError::new(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("manifest {d} not in repository"),
                ));
            }
        }
        r.manifests
            .insert(digest.clone(), (media_type.to_string(), bytes));
        if !reference.starts_with("sha256:") {
            r.tags.insert(reference.to_string(), digest.clone());
        }
        Ok(digest)
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Option<Bytes> {
        if !self.repos.get(repo)?.blobs.contains(digest) {
            return None;
        }
        self.blobs.get(digest).cloned()
    }

    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        self.repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
    }

    /// Cross-repository mount: links a blob of `from` into `repo`.
    pub fn mount(&mut self, repo: &str, digest: &str, from: &str) -> bool {
        let present = self
            .repos
            .get(from)
            .is_some_and(|r| r.blobs.contains(digest))
            && self.blobs.contains_key(digest);
        if present {
            self.repos
                .entry(repo.to_string())
                .or_default()
                .blobs
                .insert(digest.to_string());
        }
        present
    }

    pub fn start_upload(&mut self, repo: &str) -> String {
        self.next_upload += 1;
        let id = format!("{:016x}{:08x}", fastrand::u64(..), self.next_upload);
        self.uploads
            .insert(id.clone(), (repo.to_string(), Vec::new()));
        id
    }

    /// How many bytes an upload session holds so far (`None`: no such session).
    pub fn upload_len(&self, id: &str) -> Option<usize> {
        self.uploads.get(id).map(|(_, data)| data.len())
    }

    pub fn append_upload(&mut self, id: &str, chunk: &[u8]) -> Result<usize, RegistryError> {
        let (_, data) = self
            .uploads
            .get_mut(id)
            .ok_or_else(|| RegistryError::new(404, "BLOB_UPLOAD_UNKNOWN", "upload not known"))?;
        data.extend_from_slice(chunk);
        Ok(data.len())
    }

    /// Completes an upload: the content must hash to `digest`, or nothing is stored.
    pub fn finish_upload(
        &mut self,
        id: &str,
        last: &[u8],
        digest: &str,
    ) -> Result<(), RegistryError> {
        let (repo, mut data) = self
            .uploads
            .remove(id)
            .ok_or_else(|| RegistryError::new(404, "BLOB_UPLOAD_UNKNOWN", "upload not known"))?;
        data.extend_from_slice(last);
        self.put_blob(&repo, digest, data)
    }

    pub fn put_blob(
        &mut self,
        repo: &str,
        digest: &str,
        data: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(RegistryError::new(
                400,
                "DIGEST_INVALID",
                format!("content hashes to {actual}, not {digest}"),
            ));
        }
        self.blobs.insert(actual.clone(), Bytes::from(data));
        self.repos
            .entry(repo.to_string())
            .or_default()
            .blobs
            .insert(actual);
        Ok(())
    }

    /// Pushes a minimal single-layer `linux/amd64` image (an empty tar layer) and returns
    /// its manifest digest.
    pub fn seed_demo_image(
        &mut self,
        repo: &str,
        tag: &str,
        note: &str,
    ) -> Result<String, RegistryError> {
        let layer = vec![0u8; 1024];
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Labels": {"dev.flaredock.demo": note}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string()
        .into_bytes();
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        self.put_blob(repo, &layer_digest, layer)?;
        self.put_blob(repo, &config_digest, config)?;
        self.put_manifest(
            repo,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            Bytes::from(manifest),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_with_wrong_digest_stores_nothing() {
        let mut r = Registry::default();
        let id = r.start_upload("acc/x");
        r.append_upload(&id, b"hello").unwrap();
        let err = r
            .finish_upload(&id, b"", &sha256_digest(b"other"))
            .unwrap_err();
        assert_eq!(err.code, "DIGEST_INVALID");
        assert!(r.blob("acc/x", &sha256_digest(b"hello")).is_none());
    }

    #[test]
    fn manifest_needs_its_blobs_and_keeps_bytes() {
        let mut r = Registry::default();
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:00"},"layers":[]}"#;
        assert!(
            r.put_manifest("acc/x", "v1", "application/json", Bytes::from_static(m))
                .is_err()
        );
        let d = r.seed_demo_image("acc/x", "v1", "t").unwrap();
        let got = r.manifest("acc/x", "v1").unwrap();
        assert_eq!(got.digest, d);
        assert_eq!(sha256_digest(&got.bytes), d);
        assert!(r.mount("acc/y", &sha256_digest(&[0u8; 1024]), "acc/x"));
    }
}

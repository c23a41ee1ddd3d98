//! Registry-to-registry image copy, the way the best tools do it and then some: the
//! manifest bytes are kept unchanged (the digest survives), `linux/amd64` is picked
//! from an index, a destination that already has the digest costs no blob request,
//! each blob is HEADed, mounted across repositories of one registry, or streamed with
//! its digest verified on the fly (a mismatch aborts the upload, nothing is
//! committed), several blobs at a time, with a failed blob upload restarted.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::{
    Credentials, ManifestInfo, RegistryClient, RegistryError, header_str, status_error,
};
use super::reference::Reference;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Blobs copied at once (crane uses 4, skopeo up to 6).
    pub jobs: usize,
    /// `os/arch` picked from an index.
    pub platform: String,
    /// Copy a whole index instead of one platform.
    pub all: bool,
    /// Attempts per blob for transient failures.
    pub attempts: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            jobs: 6,
            platform: "linux/amd64".into(),
            all: false,
            attempts: 3,
        }
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Digest of the manifest now in the destination.
    pub digest: String,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
    pub bytes_skipped: u64,
}

/// A copy failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{reference} has no {wanted} image; the index holds: {}", if available.is_empty() { "nothing".to_string() } else { available.join(", ") })]
    NoPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error(
        "blob {expected} from {source_host} hashed to {actual}: corrupted in transit; nothing was committed"
    )]
    DigestMismatch {
        source_host: String,
        expected: String,
        actual: String,
    },
    #[error("manifest of {0} is not a valid image manifest: {1}")]
    InvalidManifest(String, String),
}

#[derive(Deserialize, Clone)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub(super) _media_type: String,
    pub(super) digest: String,
    #[serde(default)]
    pub(super) size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ManifestDoc {
    #[serde(rename = "mediaType", default)]
    pub(super) media_type: Option<String>,
    #[serde(default)]
    pub(super) config: Option<Descriptor>,
    #[serde(default)]
    pub(super) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(super) manifests: Vec<Descriptor>,
}

pub(super) fn is_index(media_type: &str, doc: &ManifestDoc) -> bool {
    let mt = doc.media_type.as_deref().unwrap_or(media_type);
    mt == OCI_INDEX || mt == DOCKER_LIST || (!doc.manifests.is_empty() && doc.config.is_none())
}

pub(super) struct Endpoint<'a> {
    pub(super) host: String,
    pub(super) repository: String,
    pub(super) creds: Option<&'a Credentials>,
}

impl<'a> Endpoint<'a> {
    /// `reference`'s registry and repository; `role` names it in the error when the
    /// reference has no registry host ("source", "destination").
    pub(super) fn of(
        reference: &Reference,
        creds: Option<&'a Credentials>,
        role: &str,
    ) -> Result<Endpoint<'a>, RegistryError> {
        Ok(Endpoint {
            host: reference
                .api_host()
                .ok_or_else(|| {
                    RegistryError::Invalid(format!("{reference}: the {role} needs a registry host"))
                })?
                .to_string(),
            repository: reference.repository.clone(),
            creds,
        })
    }
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    skipped: AtomicUsize,
    bytes_uploaded: AtomicU64,
    bytes_skipped: AtomicU64,
}

/// Copies `src` to `dst` (which must have a tag or be copied by digest) and returns the
/// digest now in the destination.
pub async fn copy_image(
    client: &RegistryClient,
    src: &Reference,
    src_creds: Option<&Credentials>,
    dst: &Reference,
    dst_creds: Option<&Credentials>,
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let source = Endpoint::of(src, src_creds, "source")?;
    let dest = Endpoint::of(dst, dst_creds, "destination")?;
    let counters = Counters::default();
    let (info, bytes) = client
        .get_manifest(
            &source.host,
            &source.repository,
            src.manifest_reference(),
            source.creds,
        )
        .await?;
    let doc: ManifestDoc = serde_json::from_slice(&bytes)
        .map_err(|e| CopyError::InvalidManifest(src.to_string(), e.to_string()))?;
    let (info, bytes) = if is_index(&info.media_type, &doc) {
        if opts.all {
            for child in &doc.manifests {
                let (ci, cb) = client
                    .get_manifest(
                        &source.host,
                        &source.repository,
                        &child.digest,
                        source.creds,
                    )
                    .await?;
                copy_one(
                    client,
                    &source,
                    &dest,
                    &ci,
                    cb,
                    &child.digest,
                    opts,
                    &counters,
                )
                .await?;
            }
            (info, bytes)
        } else {
            let chosen = pick_platform(src, &doc, &opts.platform)?;
            client
                .get_manifest(&source.host, &source.repository, &chosen, source.creds)
                .await?
        }
    } else {
        (info, bytes)
    };
    let reference = dst.tag.clone().unwrap_or_else(|| info.digest.clone());
    copy_one(
        client, &source, &dest, &info, bytes, &reference, opts, &counters,
    )
    .await?;
    Ok(CopyReport {
        digest: info.digest,
        blobs_uploaded: counters.uploaded.load(Ordering::Relaxed),
        blobs_mounted: counters.mounted.load(Ordering::Relaxed),
        blobs_skipped: counters.skipped.load(Ordering::Relaxed),
        bytes_uploaded: counters.bytes_uploaded.load(Ordering::Relaxed),
        bytes_skipped: counters.bytes_skipped.load(Ordering::Relaxed),
    })
}

/// The digest of the index entry for `wanted` (`os/arch[/variant]`), or an error naming
/// the platforms the index has.
pub(super) fn pick_platform(
    src: &impl std::fmt::Display,
    doc: &ManifestDoc,
    wanted: &str,
) -> Result<String, CopyError> {
    let name = |p: &Platform| match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    };
    let chosen = doc.manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == wanted || name(p) == wanted)
    });
    match chosen {
        Some(m) => Ok(m.digest.clone()),
        None => Err(CopyError::NoPlatform {
            reference: src.to_string(),
            wanted: wanted.to_string(),
            available: doc
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(name)
                .collect(),
        }),
    }
}

/// The digest a copy of `src` would deploy (the chosen platform's manifest, or the whole
/// index with `all`), read from the source without copying anything.
pub async fn source_digest(
    client: &RegistryClient,
    src: &Reference,
    src_creds: Option<&Credentials>,
    opts: &CopyOptions,
) -> Result<String, CopyError> {
    let host = src.api_host().ok_or_else(|| {
        RegistryError::Invalid(format!("{src}: the source needs a registry host"))
    })?;
    let (info, bytes) = client
        .get_manifest(host, &src.repository, src.manifest_reference(), src_creds)
        .await?;
    let doc: ManifestDoc = serde_json::from_slice(&bytes)
        .map_err(|e| CopyError::InvalidManifest(src.to_string(), e.to_string()))?;
    if is_index(&info.media_type, &doc) && !opts.all {
        return pick_platform(src, &doc, &opts.platform);
    }
    Ok(info.digest)
}

/// Copies one manifest (image or index whose children are already there) and its blobs.
#[allow(clippy::too_many_arguments)]
async fn copy_one(
    client: &RegistryClient,
    source: &Endpoint<'_>,
    dest: &Endpoint<'_>,
    info: &ManifestInfo,
    bytes: Bytes,
    reference: &str,
    opts: &CopyOptions,
    counters: &Counters,
) -> Result<(), CopyError> {
    let present = client
        .head_manifest(&dest.host, &dest.repository, &info.digest, dest.creds)
        .await?
        .is_some();
    if !present {
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| CopyError::InvalidManifest(info.digest.clone(), e.to_string()))?;
        // Owned descriptors: a closure over references would make the future's Send-ness
        // depend on higher-ranked lifetimes the compiler cannot prove.
        let blobs: Vec<Descriptor> = doc.config.into_iter().chain(doc.layers).collect();
        futures::stream::iter(blobs)
            .map(|blob| copy_blob(client, source, dest, blob, opts, counters))
            .buffer_unordered(opts.jobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    } else if reference == info.digest {
        return Ok(());
    }
    put_manifest(client, dest, info, bytes, reference).await
}

pub(super) async fn put_manifest(
    client: &RegistryClient,
    dest: &Endpoint<'_>,
    info: &ManifestInfo,
    bytes: Bytes,
    reference: &str,
) -> Result<(), CopyError> {
    let url = format!(
        "{}/v2/{}/manifests/{reference}",
        client.base(&dest.host),
        dest.repository
    );
    let media_type = if info.media_type.is_empty() {
        "application/vnd.oci.image.manifest.v1+json".to_string()
    } else {
        info.media_type.clone()
    };
    let resp = client
        .send(&dest.host, &dest.repository, dest.creds, true, |c| {
            c.put(&url)
                .header(CONTENT_TYPE, media_type.clone())
                .body(bytes.clone())
        })
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(RegistryError::Protocol {
            host: dest.host.clone(),
            message: format!(
                "PUT manifest {reference}: HTTP {status}: {}",
                crate::cloudflare::error::excerpt(body.as_bytes())
            ),
        }
        .into());
    }
    if let Some(d) = header_str(&resp, "docker-content-digest")
        && d != info.digest
    {
        return Err(RegistryError::Protocol {
            host: dest.host.clone(),
            message: format!(
                "the destination stored the manifest as {d}, not {}",
                info.digest
            ),
        }
        .into());
    }
    Ok(())
}

pub(super) async fn blob_exists(
    client: &RegistryClient,
    ep: &Endpoint<'_>,
    digest: &str,
) -> Result<bool, RegistryError> {
    let url = format!(
        "{}/v2/{}/blobs/{digest}",
        client.base(&ep.host),
        ep.repository
    );
    let resp = client
        .send(&ep.host, &ep.repository, ep.creds, true, |c| c.head(&url))
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        s => Err(status_error(&ep.host, s, "HEAD blob")),
    }
}

pub(super) fn absolute(client: &RegistryClient, host: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{}{location}", client.base(host))
    }
}

async fn copy_blob(
    client: &RegistryClient,
    source: &Endpoint<'_>,
    dest: &Endpoint<'_>,
    blob: Descriptor,
    opts: &CopyOptions,
    counters: &Counters,
) -> Result<(), CopyError> {
    if blob_exists(client, dest, &blob.digest).await? {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_skipped
            .fetch_add(blob.size, Ordering::Relaxed);
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match upload_blob(client, source, dest, &blob, counters).await {
            Ok(()) => return Ok(()),
            Err(CopyError::Registry(e)) if e.is_retryable() && attempt < opts.attempts => {
                tracing::debug!(digest = %blob.digest, attempt, error = %e, "restarting blob upload");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn upload_blob(
    client: &RegistryClient,
    source: &Endpoint<'_>,
    dest: &Endpoint<'_>,
    blob: &Descriptor,
    counters: &Counters,
) -> Result<(), CopyError> {
    let base = client.base(&dest.host);
    // Same registry: ask for a cross-repository mount; otherwise open an upload.
    let start_url = if source.host == dest.host {
        format!(
            "{base}/v2/{}/blobs/uploads/?mount={}&from={}",
            dest.repository, blob.digest, source.repository
        )
    } else {
        format!("{base}/v2/{}/blobs/uploads/", dest.repository)
    };
    let resp = client
        .send(&dest.host, &dest.repository, dest.creds, true, |c| {
            c.post(&start_url).header(CONTENT_LENGTH, 0)
        })
        .await?;
    match resp.status() {
        StatusCode::CREATED => {
            counters.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        StatusCode::ACCEPTED => {}
        s => return Err(status_error(&dest.host, s, "start blob upload").into()),
    }
    let location = header_str(&resp, LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
        host: dest.host.clone(),
        message: "upload started without a Location".into(),
    })?;
    let upload = absolute(client, &dest.host, &location);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let put_url = format!("{upload}{sep}digest={}", blob.digest);

    let get_url = format!(
        "{}/v2/{}/blobs/{}",
        client.base(&source.host),
        source.repository,
        blob.digest
    );
    let src_resp = client
        .send(&source.host, &source.repository, source.creds, false, |c| {
            c.get(&get_url)
        })
        .await?;
    if !src_resp.status().is_success() {
        return Err(status_error(&source.host, src_resp.status(), "GET blob").into());
    }
    let size = src_resp.content_length().unwrap_or(blob.size);
    let verified: Verdict = Arc::new(std::sync::Mutex::new(None));
    let stream = Verifying {
        inner: Box::pin(src_resp.bytes_stream()),
        hasher: Some(Sha256::new()),
        expected: blob.digest.clone(),
        result: verified.clone(),
        source_host: source.host.clone(),
    };
    let body = reqwest::Body::wrap_stream(stream);
    // The body can be sent once: no challenge round trip may need to resend it, so the
    // upload URL (already authorised above) is used with the same credentials.
    let put = client
        .send_once_streaming(
            &dest.host,
            &dest.repository,
            dest.creds,
            |c| {
                c.put(&put_url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
            },
            body,
        )
        .await;
    if let Some(Err((expected, actual))) = crate::lock(&verified).clone() {
        return Err(CopyError::DigestMismatch {
            source_host: source.host.clone(),
            expected,
            actual,
        });
    }
    let put = put?;
    if !put.status().is_success() {
        let status = put.status();
        let text = put.text().await.unwrap_or_default();
        if text.contains("DIGEST_INVALID") {
            return Err(CopyError::DigestMismatch {
                source_host: source.host.clone(),
                expected: blob.digest.clone(),
                actual: "a different digest (the destination rejected it)".into(),
            });
        }
        return Err(status_error(&dest.host, status, "PUT blob").into());
    }
    counters.uploaded.fetch_add(1, Ordering::Relaxed);
    counters.bytes_uploaded.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;
/// The verification outcome: `Err((expected, actual))` on a mismatch.
type Verdict = Arc<std::sync::Mutex<Option<Result<(), (String, String)>>>>;

/// Passes the source blob through, hashing it; at the end a digest mismatch fails the
/// stream, which aborts the upload before the registry can commit it.
struct Verifying {
    inner: ByteStream,
    hasher: Option<Sha256>,
    expected: String,
    result: Verdict,
    source_host: String,
}

impl Stream for Verifying {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "reading from {}: {e}",
                self.source_host
            ))))),
            Poll::Ready(None) => {
                let Some(h) = self.hasher.take() else {
                    return Poll::Ready(None);
                };
                let actual = format!("sha256:{}", hex::encode(h.finalize()));
                let ok = actual == self.expected || !self.expected.starts_with("sha256:");
                let outcome = if ok {
                    Ok(())
                } else {
                    Err((self.expected.clone(), actual.clone()))
                };
                *crate::lock(&self.result) = Some(outcome);
                if ok {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("digest mismatch: expected {}, got {actual}", self.expected),
                    ))))
                }
            }
        }
    }
}

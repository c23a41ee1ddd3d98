//! How large a request body the emulator reads, per kind of route, with Cloudflare's
//! documented figures, and the bounded read every handler's body goes through.
//!
//! | Route | Limit | Source |
//! |---|---|---|
//! | Worker upload / settings (`PUT`, `PATCH …/workers/scripts/…`, multipart) | 100 MB for the request | "Cloudflare has network-wide limits on the request body size … Free 100 MB, Pro 100 MB, Business 200 MB, Enterprise 500 MB … rejected with a (413) Request entity too large error" — <https://developers.cloudflare.com/workers/platform/limits/> (request limits) |
//! | the Worker's modules, gzip-compressed | 10 MiB (code 10027) | "A Worker can be up to 10 MB in size after compression on the Workers Paid plan" — same page (Worker size; Containers need the Paid plan); wrangler quotes the answer as "Your Worker exceeded the size limit of 10 MiB … [code: 10027]" (`workers.api.error.script_too_large`) |
//! | every other API body (JSON) and the test hooks | 1 MiB | **not documented by Cloudflare**: the emulator's own bound, far above any request of these operations, so that a JSON body is never parsed from 100 MB |
//! | registry manifest `PUT` | 4 MiB | the OCI distribution spec ("registries SHOULD accept manifests up to at least 4 megabytes"); Cloudflare documents none for its registry |
//! | registry blob upload (each `POST`/`PATCH`/`PUT`, and an upload session in total) | 20 GB | "Image size: Same as instance disk space", the largest disk being 20 GB — <https://developers.cloudflare.com/containers/platform/limits/> |
//!
//! A body larger than its limit is refused with 413 before it is read when its
//! `content-length` says so, and otherwise as soon as the bytes read pass the limit:
//! the rest is never read. API routes answer 413 with Cloudflare's envelope: code 10027
//! (`workers.api.error.script_too_large`, "Your Worker exceeded the size limit of …")
//! on the Worker upload routes, for the request and for the compressed modules alike;
//! elsewhere `VALIDATE_INPUT` (1000; on the containers routes as its JSON enum in the
//! message). Cloudflare documents neither the status of a too-large script nor a code
//! for an oversize API body; the envelope's codes must be ≥ 1000. The registry answers
//! 413 in the OCI error shape with `SIZE_INVALID`.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;

/// The network-wide request body limit of the Free and Pro plans (bytes).
pub const CLOUDFLARE_REQUEST_BODY: usize = 100_000_000;
/// A Worker's size after compression on the Workers Paid plan (bytes).
pub const WORKER_COMPRESSED: usize = 10 * 1024 * 1024;
/// The emulator's own bound on a JSON body (not a Cloudflare figure).
pub const JSON_BODY: usize = 1024 * 1024;
/// The manifest size registries accept at least (OCI distribution spec).
pub const MANIFEST: usize = 4 * 1024 * 1024;
/// The largest image Cloudflare runs: the largest instance disk (20 GB).
pub const BLOB: usize = 20_000_000_000;

/// Request body limits, per kind of route (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// JSON bodies of the API and the test hooks.
    pub json: usize,
    /// A Worker upload or settings change (the multipart request as a whole).
    pub worker_upload: usize,
    /// A Worker's modules after gzip compression.
    pub worker_compressed: usize,
    /// A registry manifest.
    pub manifest: usize,
    /// A registry blob: one request, and an upload session in total.
    pub blob: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            json: JSON_BODY,
            worker_upload: CLOUDFLARE_REQUEST_BODY,
            worker_compressed: WORKER_COMPRESSED,
            manifest: MANIFEST,
            blob: BLOB,
        }
    }
}

impl BodyLimits {
    /// The limit of an API request (`path` below `/client/v4`): Worker uploads and
    /// settings changes are multipart and large, everything else is JSON.
    pub fn api(&self, method: &str, path: &str) -> usize {
        let worker_write = matches!(method, "PUT" | "PATCH") && path.contains("/workers/scripts/");
        if worker_write {
            self.worker_upload
        } else {
            self.json
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Larger than the limit (declared by `content-length`, or found while reading).
    TooLarge { limit: usize },
    /// The connection failed while reading.
    Broken(String),
}

/// The `content-length` a request declares, when it declares one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses a body whose declared length is over `limit` (nothing read).
pub fn check_declared(headers: &HeaderMap, limit: usize) -> Result<(), ReadError> {
    match declared_length(headers) {
        Some(n) if n > limit as u64 => Err(ReadError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads a body, stopping as soon as it passes `limit` (the rest is never read).
pub async fn read_bounded(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Broken(e.to_string()))?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The gzip-compressed size of `parts` taken together (nothing kept but the count).
pub fn compressed_size<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> usize {
    use std::io::Write;
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Count(0), flate2::Compression::default());
    for p in parts {
        // Writing into a counter cannot fail.
        let _ = gz.write_all(p);
    }
    gz.finish().map(|c| c.0).unwrap_or(usize::MAX)
}

/// `100 MB`, `10 MiB`, `1 MiB`: a limit as people write it.
pub fn human(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= 1_000_000_000 && bytes.is_multiple_of(1_000_000_000) {
        format!("{} GB", bytes / 1_000_000_000)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1_000_000 && bytes.is_multiple_of(1_000_000) {
        format!("{} MB", bytes / 1_000_000)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_writes_get_the_upload_limit_and_the_rest_the_json_limit() {
        let l = BodyLimits::default();
        assert_eq!(
            l.api("PUT", "/accounts/a/workers/scripts/shop"),
            100_000_000
        );
        assert_eq!(
            l.api("PATCH", "/accounts/a/workers/scripts/shop/settings"),
            100_000_000
        );
        assert_eq!(
            l.api("POST", "/accounts/a/containers/applications"),
            JSON_BODY
        );
        assert_eq!(
            l.api("DELETE", "/accounts/a/workers/scripts/shop"),
            JSON_BODY
        );
    }

    #[tokio::test]
    async fn a_bounded_read_stops_past_the_limit() {
        let chunks = futures::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 100]))),
        );
        let err = read_bounded(Body::from_stream(chunks), 250)
            .await
            .unwrap_err();
        assert_eq!(err, ReadError::TooLarge { limit: 250 });
        let ok = read_bounded(Body::from(vec![1u8; 250]), 250).await.unwrap();
        assert_eq!(ok.len(), 250);
    }

    #[test]
    fn compressed_size_counts_gzip_output() {
        let text = vec![b'a'; 1_000_000];
        let small = compressed_size([text.as_slice()]);
        assert!(small < 10_000, "{small}");
        let noise: Vec<u8> = (0..100_000).map(|_| fastrand::u8(..)).collect();
        assert!(compressed_size([noise.as_slice()]) > 100_000);
    }

    #[test]
    fn limits_read_as_documented() {
        assert_eq!(human(CLOUDFLARE_REQUEST_BODY), "100 MB");
        assert_eq!(human(WORKER_COMPRESSED), "10 MiB");
        assert_eq!(human(BLOB), "20 GB");
        assert_eq!(human(64 * 1024), "64 KiB");
        assert_eq!(human(12), "12 bytes");
    }
}

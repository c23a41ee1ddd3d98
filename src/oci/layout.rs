//! Pushing an image from an [OCI image layout] directory (`oci:<dir>` as the source of
//! `flaredock image copy`): what the build Job's push container runs after BuildKit
//! wrote the image with `--output type=oci,tar=false`.
//!
//! The layout was written by a container that ran a tenant's `RUN` steps, so it is
//! read as untrusted input: digests must be `sha256:<64 hex>` (no path leaves
//! `blobs/`), the index and manifests are size-capped, and every blob and manifest is
//! hashed before it is sent — a mismatch aborts before anything is committed (the
//! registry checks again on its side).
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::client::{
    Credentials, ManifestInfo, RegistryClient, RegistryError, header_str, status_error,
};
use super::copy::{
    CopyError, CopyOptions, CopyReport, Descriptor, Endpoint, ManifestDoc, absolute, blob_exists,
    is_index, pick_platform, put_manifest,
};
use super::reference::Reference;

/// An index or manifest larger than this is refused.
const MAX_DOCUMENT: u64 = 4 << 20;

/// `oci:<dir>` as a copy source: the directory, when `text` is one.
pub fn parse_source(text: &str) -> Option<PathBuf> {
    text.strip_prefix("oci:")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

fn invalid(dir: &Path, message: impl std::fmt::Display) -> CopyError {
    CopyError::InvalidManifest(format!("oci:{}", dir.display()), message.to_string())
}

/// The file of a blob, for a digest of the only form accepted.
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, CopyError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| invalid(dir, format!("{digest:?} is not a sha256 digest")))?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

async fn read_capped(dir: &Path, path: &Path) -> Result<Bytes, CopyError> {
    let meta = tokio::fs::symlink_metadata(path)
        .await
        .map_err(|e| invalid(dir, format!("{}: {e}", path.display())))?;
    if !meta.is_file() || meta.len() > MAX_DOCUMENT {
        return Err(invalid(
            dir,
            format!(
                "{} is not a regular file of at most {MAX_DOCUMENT} bytes",
                path.display()
            ),
        ));
    }
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| invalid(dir, format!("{}: {e}", path.display())))
}

/// A manifest (or index) blob, its digest checked.
async fn read_document(dir: &Path, digest: &str) -> Result<(Bytes, ManifestDoc), CopyError> {
    let bytes = read_capped(dir, &blob_path(dir, digest)?).await?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != digest {
        return Err(CopyError::DigestMismatch {
            source_host: format!("oci:{}", dir.display()),
            expected: digest.to_string(),
            actual,
        });
    }
    let doc: ManifestDoc = serde_json::from_slice(&bytes).map_err(|e| invalid(dir, e))?;
    Ok((bytes, doc))
}

fn media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string())
}

/// Pushes the image of the layout in `dir` to `dst` (a tag, or by digest): the one
/// image its `index.json` names, or the `opts.platform` entry of an index. Returns the
/// digest now in the destination.
pub async fn push_layout(
    client: &RegistryClient,
    dir: &Path,
    dst: &Reference,
    dst_creds: Option<&Credentials>,
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let dest = Endpoint::of(dst, dst_creds, "destination")?;
    let index_bytes = read_capped(dir, &dir.join("index.json")).await?;
    let index: ManifestDoc = serde_json::from_slice(&index_bytes).map_err(|e| invalid(dir, e))?;
    let first = match index.manifests.as_slice() {
        [one] => one.digest.clone(),
        [] => return Err(invalid(dir, "index.json names no image")),
        _ => pick_platform(&format!("oci:{}", dir.display()), &index, &opts.platform)?,
    };
    let (mut bytes, mut doc) = read_document(dir, &first).await?;
    let mut digest = first;
    // An image index (several platforms, or attestations): its platform's image.
    if is_index(&media_type(&bytes), &doc) {
        digest = pick_platform(&format!("oci:{}", dir.display()), &doc, &opts.platform)?;
        (bytes, doc) = read_document(dir, &digest).await?;
        if is_index(&media_type(&bytes), &doc) {
            return Err(invalid(dir, "an index inside an index"));
        }
    }
    let mut report = CopyReport {
        digest: digest.clone(),
        ..Default::default()
    };
    let present = client
        .head_manifest(&dest.host, &dest.repository, &digest, dest.creds)
        .await?
        .is_some();
    if !present {
        let blobs: Vec<Descriptor> = doc.config.into_iter().chain(doc.layers).collect();
        let done: Vec<(bool, u64)> = futures::stream::iter(blobs)
            .map(|blob| push_blob(client, dir, &dest, blob))
            .buffer_unordered(opts.jobs.max(1))
            .try_collect()
            .await?;
        for (uploaded, size) in done {
            if uploaded {
                report.blobs_uploaded += 1;
                report.bytes_uploaded += size;
            } else {
                report.blobs_skipped += 1;
                report.bytes_skipped += size;
            }
        }
    }
    let reference = dst.tag.clone().unwrap_or_else(|| digest.clone());
    if present && reference == digest {
        return Ok(report);
    }
    let info = ManifestInfo {
        digest: digest.clone(),
        media_type: media_type(&bytes),
    };
    put_manifest(client, &dest, &info, bytes, &reference).await?;
    Ok(report)
}

/// Hashes a blob's file, checks it against its digest and size, and uploads it unless
/// the destination has it; `(uploaded, size)`.
async fn push_blob(
    client: &RegistryClient,
    dir: &Path,
    dest: &Endpoint<'_>,
    blob: Descriptor,
) -> Result<(bool, u64), CopyError> {
    let path = blob_path(dir, &blob.digest)?;
    let meta = tokio::fs::symlink_metadata(&path)
        .await
        .map_err(|e| invalid(dir, format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(invalid(
            dir,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let size = meta.len();
    if blob_exists(client, dest, &blob.digest).await? {
        return Ok((false, size));
    }
    // The writer has exited before this runs (the build is an init container): what is
    // hashed now is what is sent.
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| invalid(dir, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(|e| invalid(dir, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != blob.digest || (blob.size != 0 && blob.size != size) {
        return Err(CopyError::DigestMismatch {
            source_host: format!("oci:{}", dir.display()),
            expected: blob.digest.clone(),
            actual,
        });
    }
    let start_url = format!(
        "{}/v2/{}/blobs/uploads/",
        client.base(&dest.host),
        dest.repository
    );
    let resp = client
        .send(&dest.host, &dest.repository, dest.creds, true, |c| {
            c.post(&start_url).header(CONTENT_LENGTH, 0)
        })
        .await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(status_error(&dest.host, resp.status(), "start blob upload").into());
    }
    let location = header_str(&resp, LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
        host: dest.host.clone(),
        message: "upload started without a Location".into(),
    })?;
    let upload = absolute(client, &dest.host, &location);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let put_url = format!("{upload}{sep}digest={}", blob.digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| invalid(dir, e))?;
    let chunks = futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    });
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
            reqwest::Body::wrap_stream(chunks),
        )
        .await?;
    if !put.status().is_success() {
        return Err(status_error(&dest.host, put.status(), "PUT blob").into());
    }
    Ok((true, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_digests_name_a_blob() {
        let dir = Path::new("/layout");
        let hex = "a".repeat(64);
        assert_eq!(
            blob_path(dir, &format!("sha256:{hex}")).unwrap(),
            dir.join("blobs/sha256").join(&hex)
        );
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha512:{hex}"),
            format!("sha256:{}", "A".repeat(64)),
            "sha256:".to_string(),
        ] {
            assert!(blob_path(dir, &bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_source("oci:/out/image"),
            Some(PathBuf::from("/out/image"))
        );
        assert_eq!(parse_source("registry.example/x:1"), None);
    }
}

//! Reads a Worker bundle from a registry: an OCI artifact whose layers are single files
//! named by `org.opencontainers.image.title` (as `oras push` makes them), or an image
//! whose layers are tar archives (plain or gzip) of the bundle's files. Any CI can push
//! either. An index is resolved to its linux/amd64 entry, else its first.

use std::collections::BTreeMap;
use std::io::Read;

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::{Credentials, RegistryClient, RegistryError, status_error, transport};
use super::reference::Reference;

/// The annotation naming a file layer.
pub const TITLE: &str = "org.opencontainers.image.title";
/// Largest bundle read, in bytes (Cloudflare's own script limit is 10 MiB compressed).
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn invalid(message: String) -> RegistryError {
    RegistryError::Invalid(message)
}

/// A file path inside an archive as a module name: relative, without `.` or `..`.
fn module_name(path: &str) -> Option<String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.is_empty() && !parts.contains(&"..")).then(|| parts.join("/"))
}

/// The files of a tar layer (gzip-compressed or not).
pub fn untar(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = Vec::new();
    let mut total = 0usize;
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("broken tar entry: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| format!("tar entry without a path: {e}"))?
            .to_string_lossy()
            .to_string();
        let Some(name) = module_name(&path) else {
            return Err(format!("tar entry {path:?} is outside the bundle"));
        };
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        total += content.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(format!(
                "the bundle is larger than {MAX_BUNDLE_BYTES} bytes"
            ));
        }
        files.push((name, content));
    }
    Ok(files)
}

async fn blob(
    client: &RegistryClient,
    host: &str,
    repository: &str,
    creds: Option<&Credentials>,
    d: &Descriptor,
) -> Result<Vec<u8>, RegistryError> {
    if d.size as usize > MAX_BUNDLE_BYTES {
        return Err(invalid(format!(
            "layer {} is {} bytes, more than a Worker bundle may be",
            d.digest, d.size
        )));
    }
    let url = format!("{}/v2/{repository}/blobs/{}", client.base(host), d.digest);
    let resp = client
        .send(host, repository, creds, false, |c| c.get(&url))
        .await?;
    match resp.status() {
        s if s.is_success() => {
            let bytes = resp.bytes().await.map_err(|e| transport(host, &e))?;
            let digest = crate::emulator::registry::sha256_digest(&bytes);
            if digest != d.digest {
                return Err(RegistryError::Protocol {
                    host: host.to_string(),
                    message: format!("blob {} hashes to {digest}", d.digest),
                });
            }
            Ok(bytes.to_vec())
        }
        StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
            host: host.to_string(),
            repository: repository.to_string(),
            what: format!("blob {}", d.digest),
        }),
        s => Err(status_error(host, s, "GET blob")),
    }
}

/// The files of the bundle at `reference`, with the manifest digest they came from.
pub async fn fetch_bundle(
    client: &RegistryClient,
    reference: &Reference,
    creds: Option<&Credentials>,
) -> Result<(String, Vec<(String, Vec<u8>)>), RegistryError> {
    let host = reference
        .api_host()
        .ok_or_else(|| invalid("a Worker bundle reference needs a registry host".into()))?
        .to_string();
    let repo = &reference.repository;
    let (mut info, mut bytes) = client
        .get_manifest(&host, repo, reference.manifest_reference(), creds)
        .await?;
    let mut manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("manifest of {repo} is not JSON: {e}")))?;
    if !manifest.manifests.is_empty() {
        let pick = manifest
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .unwrap_or(&manifest.manifests[0]);
        (info, bytes) = client
            .get_manifest(&host, repo, &pick.digest, creds)
            .await?;
        manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("manifest of {repo} is not JSON: {e}")))?;
    }
    let mut files = Vec::new();
    for layer in &manifest.layers {
        let data = blob(client, &host, repo, creds, layer).await?;
        if let Some(title) = layer.annotations.get(TITLE) {
            let name = module_name(title)
                .ok_or_else(|| invalid(format!("layer title {title:?} is not a file name")))?;
            files.push((name, data));
        } else if layer.media_type.contains("tar") {
            files
                .extend(untar(&data).map_err(|e| invalid(format!("layer {}: {e}", layer.digest)))?);
        } else {
            return Err(invalid(format!(
                "layer {} ({}) has neither a {TITLE} annotation nor a tar media type",
                layer.digest, layer.media_type
            )));
        }
    }
    // Later layers override earlier files of the same name, as in an image.
    let mut by_name: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, data) in files {
        by_name.insert(name, data);
    }
    Ok((info.digest, by_name.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_stay_inside_the_bundle() {
        assert_eq!(
            module_name("./dist/index.js").as_deref(),
            Some("dist/index.js")
        );
        assert_eq!(module_name("../etc/passwd"), None);
        assert_eq!(module_name("/"), None);
    }

    #[test]
    fn reads_a_gzipped_tar() {
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"export class Shop {}";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "./index.js", &data[..])
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let files = untar(&gz.finish().unwrap()).unwrap();
        assert_eq!(files, vec![("index.js".to_string(), data.to_vec())]);
    }
}

//! `flaredock image copy`: copy an image into Cloudflare's registry.

use super::*;

pub(super) async fn image_copy(args: CopyArgs) -> i32 {
    let parse = |text: &str, what: &str| -> Result<Reference, String> {
        let r = Reference::parse(text).map_err(|e| e.to_string())?;
        if r.registry.is_none() {
            return Err(format!(
                "{what} {text:?} needs a registry host (e.g. registry.example.com/{text})"
            ));
        }
        Ok(r)
    };
    let layout = crate::oci::layout::parse_source(&args.source);
    let inputs = (|| -> Result<_, String> {
        let src = match &layout {
            // Not read as a reference: the layout's directory is the source.
            Some(_) => Reference::parse("oci/layout").map_err(|e| e.to_string())?,
            None => parse(&args.source, "source")?,
        };
        let dst = parse(&args.destination, "destination")?;
        let src_creds = args
            .src_creds
            .as_deref()
            .map(|c| parse_creds(c, "--src-creds"))
            .transpose()?;
        let dst_creds = args
            .dest_creds
            .as_deref()
            .map(|c| parse_creds(c, "--dest-creds"))
            .transpose()?;
        if !args.platform.contains('/') {
            return Err(format!("--platform {:?} must be OS/ARCH", args.platform));
        }
        Ok((src, dst, src_creds, dst_creds))
    })();
    let (src, dst, src_creds, dst_creds) = match inputs {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let client = match RegistryClient::new(args.insecure_registries) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let opts = CopyOptions {
        jobs: args.jobs.max(1),
        platform: args.platform,
        all: args.all,
        ..Default::default()
    };
    let copied = match &layout {
        Some(dir) => {
            crate::oci::layout::push_layout(&client, dir, &dst, dst_creds.as_ref(), &opts).await
        }
        None => {
            copy_image(
                &client,
                &src,
                src_creds.as_ref(),
                &dst,
                dst_creds.as_ref(),
                &opts,
            )
            .await
        }
    };
    match copied {
        Ok(report) => {
            eprintln!(
                "copied: {} blob(s) uploaded ({} bytes), {} mounted, {} already present ({} bytes)",
                report.blobs_uploaded,
                report.bytes_uploaded,
                report.blobs_mounted,
                report.blobs_skipped,
                report.bytes_skipped
            );
            println!("{}", dst.with_digest(&report.digest));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

//! Scripts and zones made through the official endpoints, as another tool (wrangler, the
//! dashboard) would make them: what the Worker tests adopt, leave alone or delete.

use flaredock::cloudflare::CloudflareClient;
use flaredock::cloudflare::types::{ScriptModule, ScriptUpload, UploadMetadata};

/// A script uploaded by hand (no flaredock tags), as wrangler would, answering `says`.
pub async fn upload_by_hand(client: &CloudflareClient, name: &str, says: &str) {
    let upload = ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            ..Default::default()
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content: format!("export default {{ fetch() {{ return new Response('{says}') }} }}")
                .into_bytes(),
        }],
    };
    client.upload_script(name, &upload).await.expect("upload");
}

/// The id of the emulator's zone `example.com`.
pub async fn zone_id(client: &CloudflareClient) -> String {
    client
        .zone_by_name("example.com")
        .await
        .expect("zones")
        .expect("the emulator's zone")
        .id
}

//! The image of an adoption: the tag of Cloudflare's registry it deploys, shown and
//! approved as the spec names it whether or not its digest was read this pass.

use crate::reconcile::model::*;
use crate::spec::OWNER_LABEL;

/// The tag of Cloudflare's registry an adoption deploys (`host/account/repo:tag`), as
/// the spec names it: the application is not flaredock's (no owner label) and the spec
/// names a tag there, whether this pass read its digest (registry credentials held,
/// minted for another object minutes before: the image is that digest) or left the
/// read to act (none held). An adoption shows and approves the image in this one form
/// in both cases, so that its hash does not depend on credentials held at plan time;
/// act deploys the digest the tag names then.
pub(super) fn adopted_tag(desired: &Desired, observed: &Observed) -> Option<String> {
    let app = observed.application.as_ref()?;
    let target = observed
        .target_configuration
        .as_ref()
        .unwrap_or(&app.configuration);
    if target.label(OWNER_LABEL).or(owner_of(app)).is_some() {
        return None;
    }
    match &observed.image {
        ImageState::Needs(ImageAction::Resolve { reference }) => Some(reference.clone()),
        ImageState::Ready(image) => {
            use crate::oci::Reference;
            let spec = Reference::parse(desired.image_reference.as_deref()?).ok()?;
            let tag = spec.tag.clone().filter(|_| spec.digest.is_none())?;
            let read = Reference::parse(image).ok()?;
            // The digest read for that tag (a short name is below the account).
            let named = read.repository == spec.repository
                || read
                    .repository
                    .strip_suffix(spec.repository.as_str())
                    .is_some_and(|account| account.ends_with('/'));
            (read.digest.is_some() && named).then(|| {
                Reference {
                    tag: Some(tag),
                    digest: None,
                    ..read
                }
                .to_string()
            })
        }
        _ => None,
    }
}

/// Is `image` the tag `tag` (same repository and tag, no digest; hosts may be written
/// differently)?
pub(super) fn names_tag(image: &str, tag: &str) -> bool {
    use crate::oci::Reference;
    matches!(
        (Reference::parse(image), Reference::parse(tag)),
        (Ok(a), Ok(b)) if a.digest.is_none() && a.repository == b.repository && a.tag.is_some() && a.tag == b.tag
    )
}

//! The manifest formats the client reads and writes: OCI image manifest and index, Docker
//! schema 2 manifest and manifest list (same JSON shapes, different media types), and the
//! platform choice an index requires.

pub use cache::manifest::media_types::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_MANIFEST,
};
pub use cache::manifest::{Index, Manifest};
pub use cache::Descriptor;

/// The `Accept` header value for manifest requests: every format this client understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a media type is a list of manifests (OCI index or Docker manifest list).
pub use cache::manifest::media_types::is_index;
/// Whether a media type is a single image manifest (OCI or Docker schema 2).
pub use cache::manifest::media_types::is_manifest;

/// The platform type shared with the image store.
pub use cache::Platform;

/// The entry of an index that best fits `wanted` (see [`Platform::rank`]), first listed among
/// equals.
pub fn select_manifest<'a>(
    wanted: &Platform,
    manifests: &'a [Descriptor],
) -> Option<&'a Descriptor> {
    wanted.select(manifests.iter().map(|d| (d.platform.as_ref(), d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(platform: &str, byte: u8) -> Descriptor {
        let mut d = Descriptor::of_bytes(OCI_MANIFEST, &[byte]);
        d.platform = Platform::parse(platform).ok();
        d
    }

    #[test]
    fn selects_platform_with_variant_rules() {
        let list = vec![
            listed("linux/arm/v6", 1),
            listed("linux/arm/v7", 2),
            listed("linux/arm64/v8", 3),
            listed("linux/amd64", 4),
            listed("windows/amd64", 5),
        ];
        let pick = |p: &str| {
            select_manifest(&Platform::parse(p).unwrap(), &list).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64"), Some(list[3].digest.clone()));
        assert_eq!(pick("linux/arm64"), Some(list[2].digest.clone()));
        assert_eq!(pick("linux/arm/v7"), Some(list[1].digest.clone()));
        assert_eq!(pick("linux/arm/v6"), Some(list[0].digest.clone()));
        assert_eq!(pick("linux/s390x"), None);
        let only_v6 = vec![listed("linux/arm/v6", 1)];
        assert!(select_manifest(&Platform::parse("linux/arm/v7").unwrap(), &only_v6).is_some());
        assert!(select_manifest(&Platform::parse("linux/arm/v5").unwrap(), &only_v6).is_none());
        let amd_v1 = vec![listed("linux/amd64/v1", 1)];
        assert!(select_manifest(&Platform::parse("linux/amd64").unwrap(), &amd_v1).is_some());
    }

    #[test]
    fn docker_and_oci_manifests_parse() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":2,"digest":"{}"}},"layers":[]}}"#,
            cache::Digest::of_bytes(b"{}")
        );
        let m: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(m.config.size, 2);
        assert!(is_manifest(m.media_type.as_deref().unwrap()));
    }
}

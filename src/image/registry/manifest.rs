//! Manifests: resolving a reference to the image manifest for this machine,
//! keeping the registry's raw bytes (the digest is over those bytes; a
//! re-serialised manifest would have another digest and another image id).
//!
//! An image index (OCI image-spec image-index.md; Docker's "manifest list")
//! is resolved to the entry for `linux` and this machine's architecture in
//! GOARCH spelling (`amd64` on x86_64). Only OCI image manifests with an OCI
//! image config are imported: composefs-oci 0.9.4 treats anything else
//! (Docker schema 2, artifacts) as a non-container artifact.

use anyhow::{Context, Result, bail};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::client::Registry;
use super::reference::RegistryRef;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as fetched.
pub enum Parsed {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// The image manifest to import.
pub struct Resolved {
    /// Raw bytes, exactly as served.
    pub bytes: Vec<u8>,
    /// `sha256:…` of `bytes`.
    pub digest: String,
    pub manifest: ImageManifest,
}

/// This machine's architecture as GOARCH names it (image-spec config.md:
/// "architecture … values listed in the Go Language document for GOARCH").
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Parse a manifest by its `mediaType` (which OCI requires for both kinds
/// since image-spec 1.1; older indexes without it are recognised by their
/// `manifests` array).
pub fn parse(bytes: &[u8], what: &str) -> Result<Parsed> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).with_context(|| format!("{what} is not valid JSON"))?;
    if probe.schema_version != Some(2) {
        bail!(
            "{what} has schemaVersion {:?}; only schema version 2 (OCI) manifests are supported",
            probe.schema_version
        );
    }
    let kind = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => OCI_INDEX,
        Some(OCI_MANIFEST) => OCI_MANIFEST,
        Some(DOCKER_MANIFEST) => bail!(
            "{what} is a Docker schema 2 image; cbootc imports OCI images only (push it in OCI format, e.g. podman push --format oci)"
        ),
        Some(other) => bail!("{what} has unsupported media type {other}"),
        None if probe.manifests.is_some() => OCI_INDEX,
        None => OCI_MANIFEST,
    };
    if kind == OCI_INDEX {
        let index: ImageIndex = serde_json::from_slice(bytes)
            .with_context(|| format!("{what} is not a valid OCI image index"))?;
        Ok(Parsed::Index(Box::new(index)))
    } else {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .with_context(|| format!("{what} is not a valid OCI image manifest"))?;
        Ok(Parsed::Image(Box::new(m)))
    }
}

/// The index entry for linux on this architecture.
pub fn platform_entry<'a>(index: &'a ImageIndex, what: &str) -> Result<&'a Descriptor> {
    let arch = go_arch();
    let found = index.manifests().iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
    });
    match found {
        Some(d) => Ok(d),
        None => {
            let have: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            bail!(
                "{what} has no image for linux/{arch} (it has: {})",
                if have.is_empty() {
                    "no platforms".to_string()
                } else {
                    have.join(", ")
                }
            )
        }
    }
}

/// Refuse what composefs-oci would not import as a container image.
pub fn check_image(m: &ImageManifest, what: &str) -> Result<()> {
    if *m.config().media_type() != MediaType::ImageConfig {
        bail!(
            "{what}: config media type is {}, not {}: not a container image",
            m.config().media_type(),
            MediaType::ImageConfig
        );
    }
    if m.layers().is_empty() {
        bail!("{what} has no layers");
    }
    for l in m.layers() {
        layer_media_type(l, what)?;
    }
    Ok(())
}

/// The media type `composefs_oci::layer::decompress_async` should use for
/// a layer descriptor.
pub fn layer_media_type(l: &Descriptor, what: &str) -> Result<MediaType> {
    let mt = l.media_type().clone();
    if composefs_oci::layer::is_tar_media_type(&mt) {
        Ok(mt)
    } else {
        bail!(
            "{what}: layer {} has unsupported media type {}",
            l.digest(),
            l.media_type()
        )
    }
}

/// Fetch `reference`'s manifest and, for an index, this platform's image
/// manifest (a second request, by digest, checked against the index entry).
pub async fn resolve(reg: &Registry, reference: &RegistryRef) -> Result<Resolved> {
    let what = format!("manifest of {reference}");
    let (bytes, digest) = reg.manifest(reference).await?;
    match parse(&bytes, &what)? {
        Parsed::Image(m) => {
            check_image(&m, &what)?;
            Ok(Resolved {
                bytes,
                digest,
                manifest: *m,
            })
        }
        Parsed::Index(index) => {
            let entry = platform_entry(&index, &format!("image index of {reference}"))?;
            let child_ref = reference.with_digest(entry.digest().as_ref());
            let child_what = format!("manifest of {child_ref}");
            tracing::debug!("{reference} is an image index; pulling {child_ref}");
            // `manifest()` checks the bytes against the pinned digest.
            let (bytes, digest) = reg.manifest(&child_ref).await?;
            match parse(&bytes, &child_what)? {
                Parsed::Image(m) => {
                    check_image(&m, &child_what)?;
                    Ok(Resolved {
                        bytes,
                        digest,
                        manifest: *m,
                    })
                }
                Parsed::Index(_) => bail!("{child_what} is another image index, not an image"),
            }
        }
    }
}

/// The digest `resolve` would return, from ONE manifest request: for an
/// index, the platform entry's digest is read from the index itself.
pub async fn current_digest(reg: &Registry, reference: &RegistryRef) -> Result<String> {
    let what = format!("manifest of {reference}");
    let (bytes, digest) = reg.manifest(reference).await?;
    match parse(&bytes, &what)? {
        Parsed::Image(m) => {
            check_image(&m, &what)?;
            Ok(digest)
        }
        Parsed::Index(index) => {
            let entry = platform_entry(&index, &format!("image index of {reference}"))?;
            Ok(entry.digest().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(config_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"{config_type}","digest":"{D1}","size":10}},
            "layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":20}}]}}"#
        )
    }

    #[test]
    fn image_manifest() {
        let m = manifest(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        let Parsed::Image(m) = parse(m.as_bytes(), "m").unwrap() else {
            panic!("not an image")
        };
        check_image(&m, "m").unwrap();
        assert_eq!(
            layer_media_type(&m.layers()[0], "m").unwrap(),
            MediaType::ImageLayerGzip
        );
    }

    #[test]
    fn refusals() {
        let m = manifest(
            "application/vnd.example.artifact",
            "application/vnd.oci.image.layer.v1.tar",
        );
        let Parsed::Image(m) = parse(m.as_bytes(), "m").unwrap() else {
            panic!()
        };
        let e = check_image(&m, "m").unwrap_err().to_string();
        assert!(e.contains("not a container image"), "{e}");

        let m = manifest(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.example.blob",
        );
        let Parsed::Image(m) = parse(m.as_bytes(), "m").unwrap() else {
            panic!()
        };
        let e = check_image(&m, "m").unwrap_err().to_string();
        assert!(
            e.contains("unsupported media type application/vnd.example.blob"),
            "{e}"
        );

        let docker = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}"}}"#);
        let e = parse(docker.as_bytes(), "m").err().unwrap().to_string();
        assert!(e.contains("Docker schema 2"), "{e}");
        let e = parse(br#"{"schemaVersion":1}"#, "m")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("schema version 2"), "{e}");
        assert!(parse(b"<html>", "m").is_err());
    }

    #[test]
    fn index_picks_this_platform() {
        let arch = go_arch();
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"s390x"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}
            ]}}"#
        );
        let Parsed::Index(i) = parse(idx.as_bytes(), "i").unwrap() else {
            panic!()
        };
        assert_eq!(platform_entry(&i, "i").unwrap().digest().to_string(), D2);

        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"s390x"}}}}
            ]}}"#
        );
        let Parsed::Index(i) = parse(idx.as_bytes(), "i").unwrap() else {
            panic!("an index without mediaType is recognised by its manifests")
        };
        let e = platform_entry(&i, "image index of x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("no image for linux/{arch} (it has: linux/s390x)")),
            "{e}"
        );
    }
}

//! Image references with an explicit transport, in the syntax of
//! containers-transports(5) as used by skopeo, podman and bootc.
//!
//! cbootc records the reference a system tracks in its config, so a reference
//! is kept as the user wrote it (normalised), and parsed here into its parts.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

/// The transports cbootc understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciDir { path: String, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive { path: String, tag: Option<String> },
    /// `containers-storage:NAME` (an image name or id in podman's storage).
    ContainersStorage { name: String },
    /// `docker://REGISTRY/NAME[:TAG|@DIGEST]`: a registry.
    Registry { reference: String },
}

/// The transports cbootc accepts, for error messages.
pub const TRANSPORTS: &str =
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], containers-storage:NAME, docker://REGISTRY/NAME[:TAG]";

impl ImageRef {
    /// Parse a reference that must name its transport.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            bail!("empty image reference (expected one of {TRANSPORTS})");
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Self::registry(rest, s);
        }
        let Some((transport, rest)) = s.split_once(':') else {
            bail!("image reference {s:?} has no transport (expected one of {TRANSPORTS})");
        };
        if rest.is_empty() {
            bail!("image reference {s:?} names no image after {transport}:");
        }
        match transport {
            "oci" => {
                let (path, tag) = split_layout_tag(rest);
                Ok(ImageRef::OciDir { path, tag })
            }
            "oci-archive" => {
                let (path, tag) = split_layout_tag(rest);
                Ok(ImageRef::OciArchive { path, tag })
            }
            "containers-storage" => {
                // A "[driver@root]" store prefix is not supported: cbootc
                // always reads the default store (/var/lib/containers/storage).
                if rest.starts_with('[') {
                    bail!("image reference {s:?}: a [store] specifier is not supported");
                }
                Ok(ImageRef::ContainersStorage {
                    name: rest.to_string(),
                })
            }
            "registry" | "docker" => Self::registry(rest.trim_start_matches("//"), s),
            other => {
                bail!("unknown image transport {other:?} in {s:?} (expected one of {TRANSPORTS})")
            }
        }
    }

    /// Parse a reference where a missing transport means a registry, the
    /// way `bootc switch` and `podman pull` read `quay.io/foo:tag`.
    pub fn parse_or_registry(s: &str) -> Result<Self> {
        let s = s.trim();
        match Self::parse(s) {
            Ok(r) => Ok(r),
            Err(e) if looks_like_registry_ref(s) => Self::registry(s, s).map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    fn registry(rest: &str, original: &str) -> Result<Self> {
        if rest.is_empty()
            || rest.contains(char::is_whitespace)
            || !rest.contains(|c: char| c.is_ascii_alphanumeric())
        {
            bail!("invalid registry image reference {original:?}");
        }
        Ok(ImageRef::Registry {
            reference: rest.to_string(),
        })
    }

    /// Whether the image can be read without the network.
    pub fn is_local(&self) -> bool {
        !matches!(self, ImageRef::Registry { .. })
    }

    /// The reference string in the form composefs-oci's `pull` accepts.
    pub fn to_pull_string(&self) -> String {
        self.to_string()
    }
}

/// `oci:` and `oci-archive:` put an optional tag after the last colon; a
/// colon inside the path (before a `/`) is part of the path.
fn split_layout_tag(rest: &str) -> (String, Option<String>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !tag.is_empty() && !path.is_empty() => {
            (path.to_string(), Some(tag.to_string()))
        }
        _ => (rest.to_string(), None),
    }
}

/// `quay.io/foo/bar:tag`, `localhost:5000/x`, `10.0.2.2:5000/x:v2`: a first
/// path component with a dot or a port, or `localhost`.
fn looks_like_registry_ref(s: &str) -> bool {
    let Some((first, _)) = s.split_once('/') else {
        return false;
    };
    first.contains('.') || first.contains(':') || first == "localhost"
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::OciDir { path, tag } | ImageRef::OciArchive { path, tag } => {
                let transport = if matches!(self, ImageRef::OciDir { .. }) {
                    "oci"
                } else {
                    "oci-archive"
                };
                match tag {
                    Some(t) => write!(f, "{transport}:{path}:{t}"),
                    None => write!(f, "{transport}:{path}"),
                }
            }
            ImageRef::ContainersStorage { name } => write!(f, "containers-storage:{name}"),
            ImageRef::Registry { reference } => write!(f, "docker://{reference}"),
        }
    }
}

impl FromStr for ImageRef {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_dir_with_and_without_tag() {
        assert_eq!(
            ImageRef::parse("oci:/srv/img:v1").unwrap(),
            ImageRef::OciDir {
                path: "/srv/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/srv/img").unwrap(),
            ImageRef::OciDir {
                path: "/srv/img".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("oci:relative/dir").unwrap().to_string(),
            "oci:relative/dir"
        );
    }

    #[test]
    fn archive_and_storage_and_registry() {
        assert_eq!(
            ImageRef::parse("oci-archive:/tmp/a.tar").unwrap(),
            ImageRef::OciArchive {
                path: "/tmp/a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("containers-storage:localhost/os:latest").unwrap(),
            ImageRef::ContainersStorage {
                name: "localhost/os:latest".into()
            }
        );
        let r = ImageRef::parse("docker://quay.io/a/b:1").unwrap();
        assert_eq!(
            r,
            ImageRef::Registry {
                reference: "quay.io/a/b:1".into()
            }
        );
        assert_eq!(r.to_string(), "docker://quay.io/a/b:1");
        assert!(!r.is_local());
        assert_eq!(
            ImageRef::parse("registry:quay.io/a/b").unwrap().to_string(),
            "docker://quay.io/a/b"
        );
    }

    #[test]
    fn round_trips() {
        for s in [
            "oci:/a/b:t",
            "oci-archive:/x.tar",
            "containers-storage:sha256:abc",
            "docker://localhost:5000/x@sha256:00",
        ] {
            assert_eq!(ImageRef::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn errors_are_clear() {
        let e = ImageRef::parse("quay.io/a/b").unwrap_err().to_string();
        assert!(e.contains("no transport"), "{e}");
        let e = ImageRef::parse("ftp:/x").unwrap_err().to_string();
        assert!(e.contains("unknown image transport \"ftp\""), "{e}");
        let e = ImageRef::parse("oci:").unwrap_err().to_string();
        assert!(e.contains("names no image"), "{e}");
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("docker://").is_err());
        assert!(ImageRef::parse("containers-storage:[overlay@/x]img").is_err());
    }

    #[test]
    fn bare_refs_mean_registry_only_when_asked() {
        assert_eq!(
            ImageRef::parse_or_registry("10.0.2.2:5000/os:v2")
                .unwrap()
                .to_string(),
            "docker://10.0.2.2:5000/os:v2"
        );
        assert_eq!(
            ImageRef::parse_or_registry("quay.io/a/b:1")
                .unwrap()
                .to_string(),
            "docker://quay.io/a/b:1"
        );
        assert!(ImageRef::parse_or_registry("justaname").is_err());
        assert_eq!(
            ImageRef::parse_or_registry("oci:/x").unwrap().to_string(),
            "oci:/x"
        );
    }
}

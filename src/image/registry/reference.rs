//! Registry image references (`REGISTRY/NAME[:TAG][@DIGEST]`), normalised the
//! way podman and skopeo do (containers/image `docker/reference`, itself
//! distribution's `reference.ParseNormalizedNamed`):
//!
//! - a first path component with a `.` or a `:` (a port), or `localhost`, is
//!   the registry; otherwise the registry is `docker.io`, so `fedora` means
//!   `docker.io/library/fedora` and `foo/bar` means `docker.io/foo/bar`;
//! - `index.docker.io` is spelled `docker.io`;
//! - no tag and no digest means `:latest`;
//! - the port stays part of the registry (`localhost:5000/x`).
//!
//! Parsing is oci-client's (`oci_spec::distribution::Reference`, a port of
//! that Go code); this wrapper adds cbootc's error text and the operations
//! registries.conf needs.

use std::fmt;

use anyhow::{Result, bail};

/// A parsed, normalised registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    inner: oci_client::Reference,
}

impl RegistryRef {
    /// Parse `REGISTRY/NAME[:TAG][@DIGEST]`; a leading `docker://` is accepted.
    pub fn parse(s: &str) -> Result<Self> {
        let trimmed = s.trim();
        let bare = trimmed.strip_prefix("docker://").unwrap_or(trimmed);
        if bare.is_empty() {
            bail!("empty registry image reference");
        }
        let inner: oci_client::Reference = bare
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid registry image reference {s:?}: {e}"))?;
        if let Some(d) = inner.digest()
            && !d.starts_with("sha256:")
        {
            // Composefs-oci names manifests by their sha256 digest
            // (composefs_oci::sha256_content_digest); a sha384/sha512
            // reference could never be looked up again.
            bail!("invalid registry image reference {s:?}: only sha256 digests are supported");
        }
        Ok(RegistryRef { inner })
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository path within the registry (`library/debian`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The `sha256:…` digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// `REGISTRY/REPOSITORY`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The reference oci-client requests are made with.
    pub(super) fn oci(&self) -> &oci_client::Reference {
        &self.inner
    }

    /// The same repository, pinned to `digest` (used for the per-platform
    /// manifest of an image index). The tag is kept for messages only: a
    /// digest takes precedence in the request URL.
    pub(super) fn with_digest(&self, digest: &str) -> Self {
        RegistryRef {
            inner: self.inner.clone_with_digest(digest.to_string()),
        }
    }

    /// Replace the leading `prefix` of this reference's text by `location`
    /// (containers-registries.conf(5): "the prefix is replaced by the
    /// location" when a `[[registry]]` entry names a different location).
    pub(super) fn rewrite_prefix(&self, prefix_len: usize, location: &str) -> Result<Self> {
        let text = self.to_string();
        let rewritten = format!("{location}{}", &text[prefix_len..]);
        Self::parse(&rewritten).map_err(|e| {
            anyhow::anyhow!(
                "registries.conf rewrites {text} to {rewritten}, which is not a valid reference: {e:#}"
            )
        })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        // A pinned digest is what is pulled; showing the tag too (as
        // `name:tag@digest`) is what podman prints and is still parseable.
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest() {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    #[test]
    fn port_stays_with_the_registry() {
        let r = p("localhost:5000/x");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "x");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "localhost:5000/x:latest");

        let r = p("127.0.0.1:5123/os/base:v2");
        assert_eq!(r.registry(), "127.0.0.1:5123");
        assert_eq!(r.repository(), "os/base");
        assert_eq!(r.tag(), Some("v2"));
    }

    #[test]
    fn bare_names_are_docker_hub_like_podman() {
        let r = p("debian");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/debian");
        assert_eq!(r.to_string(), "docker.io/library/debian:latest");
        assert_eq!(p("foo/bar:1").to_string(), "docker.io/foo/bar:1");
        assert_eq!(
            p("index.docker.io/library/debian:12").to_string(),
            "docker.io/library/debian:12"
        );
        assert_eq!(p("localhost/x").registry(), "localhost");
        assert_eq!(p("quay.io/fedora/fedora-bootc:42").registry(), "quay.io");
    }

    #[test]
    fn digests() {
        let r = p(&format!("quay.io/a/b@{D}"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("quay.io/a/b@{D}"));
        let r = p(&format!("docker://quay.io/a/b:1@{D}"));
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest(), Some(D));
        let e = RegistryRef::parse(&format!("quay.io/a/b@sha512:{}", "0".repeat(128)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only sha256"), "{e}");
        assert!(RegistryRef::parse("quay.io/a/b@sha256:abc").is_err());
    }

    #[test]
    fn errors() {
        let e = RegistryRef::parse("Quay.io/A/B").unwrap_err().to_string();
        assert!(e.contains("invalid registry image reference"), "{e}");
        assert!(RegistryRef::parse("").is_err());
        assert!(RegistryRef::parse("docker://").is_err());
        assert!(RegistryRef::parse("a b").is_err());
    }

    #[test]
    fn rewrite() {
        let r = p("example.com/foo/bar:1");
        let w = r
            .rewrite_prefix("example.com/foo".len(), "mirror.local:5000/x")
            .unwrap();
        assert_eq!(w.to_string(), "mirror.local:5000/x/bar:1");
    }
}

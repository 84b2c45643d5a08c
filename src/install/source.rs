//! Which image to install, and which reference the system will track.

use std::path::Path;

use anyhow::{Context, Result};

use crate::image::containerenv::ContainerEnv;
use crate::image::imgref::ImageRef;

/// The source to import and the reference to record for upgrades.
#[derive(Debug, Clone)]
pub struct Source {
    /// What is imported now.
    pub imgref: ImageRef,
    /// What `cbootc upgrade` will pull later.
    pub tracked: ImageRef,
}

/// Resolve `--source` and `--target-imgref`.
///
/// Without `--source`, the image comes from the host's containers-storage
/// (bind-mounted at `/var/lib/containers`) by the id podman wrote into
/// `/run/.containerenv`, and the system tracks the image's name in its
/// registry — as `bootc install` does, since a booted host has no
/// containers-storage to upgrade from.
pub fn resolve(source: Option<&str>, target: Option<&str>, containerenv: &Path) -> Result<Source> {
    let (imgref, default_tracked) = match source {
        Some(s) => {
            let r = ImageRef::parse(s).context("invalid --source")?;
            (r.clone(), r)
        }
        None => {
            let env = ContainerEnv::read(containerenv)?;
            let name = env
                .imageid
                .clone()
                .or(env.image.clone())
                .expect("read() checks");
            let imgref = ImageRef::ContainersStorage { name };
            let tracked = match &env.image {
                Some(image) => ImageRef::parse_or_registry(&format!("docker://{image}"))
                    .with_context(|| {
                        format!("image name {image:?} in {}", containerenv.display())
                    })?,
                None => imgref.clone(),
            };
            (imgref, tracked)
        }
    };
    let tracked = match target {
        Some(t) => ImageRef::parse_or_registry(t).context("invalid --target-imgref")?,
        None => default_tracked,
    };
    Ok(Source { imgref, tracked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_source_is_tracked_by_default() {
        let s = resolve(Some("oci:/img:v1"), None, Path::new("/nonexistent")).unwrap();
        assert_eq!(s.imgref.to_string(), "oci:/img:v1");
        assert_eq!(s.tracked.to_string(), "oci:/img:v1");
        let s = resolve(Some("oci:/img:v1"), Some("quay.io/a/b:1"), Path::new("/x")).unwrap();
        assert_eq!(s.tracked.to_string(), "docker://quay.io/a/b:1");
    }

    #[test]
    fn containerenv_source() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join(".containerenv");
        std::fs::write(&env, "image=\"localhost/os:latest\"\nimageid=\"abc123\"\n").unwrap();
        let s = resolve(None, None, &env).unwrap();
        assert_eq!(s.imgref.to_string(), "containers-storage:abc123");
        assert_eq!(s.tracked.to_string(), "docker://localhost/os:latest");
    }

    #[test]
    fn bad_refs() {
        let e = resolve(Some("nope"), None, Path::new("/x")).unwrap_err();
        assert!(format!("{e:#}").contains("invalid --source"), "{e:#}");
        let e = resolve(None, None, Path::new("/nonexistent/.containerenv")).unwrap_err();
        assert!(format!("{e:#}").contains("--source"), "{e:#}");
    }
}

//! `/run/.containerenv`: how cbootc, run inside `podman run`, finds which
//! image it is running from.
//!
//! podman writes this file into every container (see podman-run(1),
//! "/run/.containerenv"); with `--privileged` it holds `image="NAME"` and
//! `imageid="ID"` lines. Values are double-quoted with Go `%q`-style escapes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The path podman writes.
pub const CONTAINERENV_PATH: &str = "/run/.containerenv";

/// What `/run/.containerenv` says about the running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// `image=`: the image name the container was started from.
    pub image: Option<String>,
    /// `imageid=`: the image's id in containers-storage.
    pub imageid: Option<String>,
    /// `engine=`, e.g. `podman-4.3.1`.
    pub engine: Option<String>,
}

impl ContainerEnv {
    /// Parse the file's `key="value"` lines; unknown keys are ignored.
    pub fn parse(content: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in content.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                .unwrap_or_else(|| v.to_string());
            if !v.is_empty() {
                map.insert(k.trim().to_string(), v);
            }
        }
        ContainerEnv {
            image: map.remove("image"),
            imageid: map.remove("imageid"),
            engine: map.remove("engine"),
        }
    }

    /// Read and parse `path`; a clear error when it is missing (not in a
    /// container) or names no image (podman without `--privileged` leaves it
    /// empty).
    pub fn read(path: &Path) -> Result<Self> {
        let content = match std::fs::read_to_string(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no --source given and {} does not exist: run cbootc inside `podman run --privileged` of the image to install, or pass --source",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let env = Self::parse(&content);
        if env.image.is_none() && env.imageid.is_none() {
            bail!(
                "{} names no image (is the container --privileged?); pass --source",
                path.display()
            );
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN: &str = r#"engine="podman-4.3.1"
name="sharp_turing"
id="7a1b2c"
image="localhost/cbootc-debian:latest"
imageid="3f4e5d6c7b8a"
rootless=0
"#;

    #[test]
    fn parses_podman_file() {
        let env = ContainerEnv::parse(PODMAN);
        assert_eq!(env.image.as_deref(), Some("localhost/cbootc-debian:latest"));
        assert_eq!(env.imageid.as_deref(), Some("3f4e5d6c7b8a"));
        assert_eq!(env.engine.as_deref(), Some("podman-4.3.1"));
    }

    #[test]
    fn empty_values_and_escapes() {
        let env = ContainerEnv::parse("image=\"\"\nimageid=\"a\\\"b\"\n");
        assert_eq!(env.image, None);
        assert_eq!(env.imageid.as_deref(), Some("a\"b"));
    }

    #[test]
    fn read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ContainerEnv::read(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("pass --source"), "{missing}");
        let empty = dir.path().join("env");
        std::fs::write(&empty, "engine=\"podman\"\n").unwrap();
        let e = ContainerEnv::read(&empty).unwrap_err();
        assert!(e.to_string().contains("names no image"), "{e}");
        std::fs::write(&empty, PODMAN).unwrap();
        assert!(ContainerEnv::read(&empty).is_ok());
    }
}

//! `/var/lib/cbootc/config.toml`: what the system tracks.
//!
//! It lives in the shared `/var`, so every deployment (and a rollback) sees
//! the same tracked reference, like bootc's host spec.
//!
//! ```toml
//! [image]
//! ref = "docker://quay.io/example/os:latest"
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::atomic;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The tracked image.
    pub image: ImageConfig,
}

/// `[image]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// The reference `cbootc upgrade` pulls.
    #[serde(rename = "ref")]
    pub reference: String,
}

impl Config {
    /// Read and validate the config at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Write the config atomically, creating its directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = format!(
            "# Written by cbootc. `cbootc switch` changes the tracked image.\n{}",
            toml::to_string(self).context("serialising the config")?
        );
        atomic::write_file(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lib/cbootc/config.toml");
        let c = Config {
            image: ImageConfig {
                reference: "docker://quay.io/x/y:z".into(),
            },
        };
        c.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("[image]\nref = \"docker://quay.io/x/y:z\""),
            "{text}"
        );
        assert_eq!(Config::load(&p).unwrap(), c);
    }

    #[test]
    fn bad_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "[image]\nreff = 1\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("config.toml"), "{e}");
    }
}

//! `/var/lib/cbootc/config.toml`: what the system tracks.
//!
//! It lives in the shared `/var`, so every deployment (and a rollback) sees
//! the same tracked reference, like bootc's host spec.
//!
//! ```toml
//! [image]
//! ref = "docker://quay.io/example/os:latest"
//!
//! [prune]
//! keep = 3     # deployments kept after an upgrade (at least 2)
//! ```

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::util::atomic;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The tracked image.
    pub image: ImageConfig,
    /// Pruning policy.
    #[serde(default)]
    pub prune: PruneConfig,
}

/// `[prune]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// How many deployments to keep: the new one, the booted one and
    /// `keep - 2` older ones to roll back to.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_keep() -> usize {
    3
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            keep: default_keep(),
        }
    }
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
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if config.prune.keep < 2 {
            bail!(
                "{}: [prune] keep = {} is too small: the booted and the new deployment are always kept (minimum 2)",
                path.display(),
                config.prune.keep
            );
        }
        Ok(config)
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
            prune: PruneConfig::default(),
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
        std::fs::write(&p, "[image]\nref = \"oci:/x\"\n[prune]\nkeep = 1\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("minimum 2"), "{e}");
    }

    #[test]
    fn keep_defaults_to_three() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "[image]\nref = \"oci:/x\"\n").unwrap();
        assert_eq!(Config::load(&p).unwrap().prune.keep, 3);
    }
}

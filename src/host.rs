//! The booted host as cbootc sees it: where the root filesystem, the ESP and
//! the kernel command line are, which deployment is booted, and cbootc's
//! record and config.
//!
//! Every path is configurable so the integration tests can run the real
//! binary against a simulated host (an installed disk loop-mounted in a
//! directory, a fake `/proc/cmdline`): the `CBOOTC_SYSROOT`, `CBOOTC_BOOT`,
//! `CBOOTC_CMDLINE`, `CBOOTC_RUN`, `CBOOTC_ETC` and `CBOOTC_EFIVARS`
//! environment variables replace `/sysroot`, `/boot`, `/proc/cmdline`,
//! `/run`, `/etc` and `/sys/firmware/efi/efivars`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use composefs::fsverity::FsVerityHashValue;
use composefs_boot::cmdline::ComposefsCmdline;

use crate::deploy::config::Config;
use crate::deploy::record::Record;
use crate::deploy::state::StateDirs;
use crate::repo::ObjectId;

/// Where things are on the host.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// The root filesystem (`/sysroot` on a composefs-booted system).
    pub sysroot: PathBuf,
    /// The mounted ESP (`/boot`).
    pub boot: PathBuf,
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// Runtime state (`/run`): the lock file.
    pub run: PathBuf,
    /// The booted deployment's merged `/etc`.
    pub etc: PathBuf,
    /// efivarfs (`/sys/firmware/efi/efivars`).
    pub efivars: PathBuf,
}

impl HostPaths {
    /// The real paths, or the `CBOOTC_*` overrides.
    pub fn from_env() -> Self {
        let get = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        HostPaths {
            sysroot: get("CBOOTC_SYSROOT", "/sysroot"),
            boot: get("CBOOTC_BOOT", "/boot"),
            cmdline: get("CBOOTC_CMDLINE", "/proc/cmdline"),
            run: get("CBOOTC_RUN", "/run"),
            etc: get("CBOOTC_ETC", "/etc"),
            efivars: get("CBOOTC_EFIVARS", crate::boot::efivars::EFIVARFS),
        }
    }
}

/// The id of the composefs image named on a kernel command line, if any.
pub fn booted_id(cmdline: &str) -> Result<Option<String>> {
    let parsed = ComposefsCmdline::<ObjectId>::from_cmdline(cmdline)
        .context("parsing the composefs argument of the kernel command line")?;
    Ok(parsed.map(|c| c.digest().to_hex()))
}

/// A cbootc-managed host.
#[derive(Debug)]
pub struct Host {
    /// Its paths.
    pub paths: HostPaths,
    /// State directories on the root filesystem.
    pub state: StateDirs,
    /// cbootc's record of deployments.
    pub record: Record,
    /// The tracked-image config.
    pub config: Config,
    /// The booted deployment's id.
    pub booted: String,
}

/// Why a host cannot be managed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The kernel command line names no composefs image.
    #[error(
        "this system was not booted from a composefs deployment (no composefs argument in {0})"
    )]
    NotComposefs(PathBuf),
    /// The booted image is not one cbootc installed.
    #[error(
        "the booted composefs image {0} is not in cbootc's record ({1}); was this system installed by cbootc?"
    )]
    NotManaged(String, PathBuf),
}

impl Host {
    /// Open the host at `paths`: the booted id from the command line, the
    /// record and the config.
    pub fn open(paths: HostPaths) -> Result<Self> {
        let cmdline = std::fs::read_to_string(&paths.cmdline)
            .with_context(|| format!("reading {}", paths.cmdline.display()))?;
        let Some(booted) = booted_id(&cmdline)? else {
            return Err(HostError::NotComposefs(paths.cmdline.clone()).into());
        };
        let state = StateDirs::new(&paths.sysroot);
        let record_path = state.record();
        if !record_path.exists() {
            return Err(HostError::NotManaged(booted, record_path).into());
        }
        let record = Record::load(&record_path)?;
        if record.find(&booted).is_none() {
            return Err(HostError::NotManaged(booted, record_path).into());
        }
        let config = Config::load(&state.config())?;
        Ok(Host {
            paths,
            state,
            record,
            config,
            booted,
        })
    }

    /// The ESP directory.
    pub fn esp(&self) -> &Path {
        &self.paths.boot
    }

    /// The firmware's variables, if this is an EFI system with a writable
    /// efivarfs.
    pub fn efivars(&self) -> Option<crate::boot::efivars::EfiVars> {
        let v = crate::boot::efivars::EfiVars::at(&self.paths.efivars);
        v.available().then_some(v)
    }

    /// After cbootc changed the default: a `LoaderEntryDefault` set from
    /// systemd-boot's menu (or `bootctl set-default`) would override
    /// loader.conf, so it is removed. GRUB systems need nothing.
    pub fn sync_firmware_default(&self) -> Result<()> {
        if self.record.bootloader == crate::deploy::record::Bootloader::SystemdBoot
            && let Some(v) = self.efivars()
            && v.clear_default()?
        {
            tracing::info!("removed the firmware's LoaderEntryDefault so cbootc's order applies");
        }
        Ok(())
    }

    /// Check the ESP is mounted (its menu is where cbootc expects it)
    /// before anything writes to it.
    pub fn check_esp(&self) -> Result<()> {
        let cfg = self.paths.boot.join("grub/grub.cfg");
        // systemd-boot systems have loader.conf instead.
        if !cfg.exists() && !self.paths.boot.join("loader/loader.conf").exists() {
            bail!(
                "{} does not hold cbootc's boot files (is the ESP mounted? try `systemctl start boot.mount`)",
                self.paths.boot.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_id_from_cmdline() {
        let id = "ab".repeat(64);
        let c = format!(
            "BOOT_IMAGE=/x root=UUID=1 rw composefs.digest=?v1-sha512-12:{id} console=ttyS0"
        );
        assert_eq!(booted_id(&c).unwrap(), Some(id.clone()));
        let c = format!("root=UUID=1 composefs={id}");
        assert_eq!(booted_id(&c).unwrap(), Some(id));
        assert_eq!(booted_id("root=/dev/sda1 quiet").unwrap(), None);
    }
}

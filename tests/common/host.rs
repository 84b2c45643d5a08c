//! A simulated booted host: an installed disk's root partition loop-mounted
//! read-write, its ESP copied out to a directory with mtools (this machine
//! cannot mount vfat), and a fake /proc/cmdline — the `CBOOTC_*` paths the
//! real binary takes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Esp, LoopMount, Part, partitions};

pub struct SimHost {
    pub root: PathBuf,
    pub esp: PathBuf,
    pub cmdline: PathBuf,
    pub run: PathBuf,
    pub etc: PathBuf,
    // Unmounted before the directory goes.
    _root_mount: LoopMount,
    _dir: tempfile::TempDir,
}

impl SimHost {
    /// Mount `disk` (installed by cbootc) as a host booted into its
    /// default deployment.
    pub fn new(disk: &Path) -> SimHost {
        let parts = partitions(disk);
        let (esp, root): (&Part, &Part) = (&parts[0], &parts[1]);
        let dir = tempfile::Builder::new()
            .prefix("cbootc-host-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let p = |n: &str| {
            let d = dir.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let (root_dir, esp_dir, run, etc) = (p("sysroot"), p("boot"), p("run"), p("etc"));
        let root_mount = LoopMount::new(disk, root, &root_dir, false);
        Esp::new(disk, esp).get_all(&esp_dir);
        let host = SimHost {
            root: root_dir,
            esp: esp_dir,
            cmdline: dir.path().join("cmdline"),
            run,
            etc,
            _root_mount: root_mount,
            _dir: dir,
        };
        let first = host.default_entry_options();
        host.boot_with(&first);
        host
    }

    /// The `options` of the first BLS entry of the record's default.
    pub fn default_entry_options(&self) -> String {
        let record = self.record();
        let id = record["deployments"][0]["id"].as_str().unwrap().to_string();
        self.entry_options(&id)
    }

    pub fn entry_options(&self, id: &str) -> String {
        let entry =
            std::fs::read_to_string(self.esp.join(format!("loader/entries/cbootc-{id}.conf")))
                .unwrap();
        entry
            .lines()
            .find_map(|l| l.strip_prefix("options "))
            .unwrap()
            .to_string()
    }

    /// "Reboot" into the deployment whose kernel arguments are `options`.
    pub fn boot_with(&self, options: &str) {
        std::fs::write(&self.cmdline, format!("BOOT_IMAGE=/vmlinuz {options}\n")).unwrap();
    }

    /// Reboot into deployment `id`.
    pub fn boot(&self, id: &str) {
        let o = self.entry_options(id);
        self.boot_with(&o);
    }

    pub fn record(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.root.join("state/cbootc/deployments.json")).unwrap(),
        )
        .unwrap()
    }

    pub fn record_ids(&self) -> Vec<String> {
        self.record()["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn upper(&self, id: &str) -> PathBuf {
        self.root.join(format!("state/deploy/{id}/etc/upper"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root
            .join("state/os/default/var/lib/cbootc/config.toml")
    }

    /// Run cbootc against this host.
    pub fn cbootc(&self, args: &[&str]) -> Output {
        self.cbootc_env(args, &[])
    }

    /// Run cbootc against this host with extra environment variables.
    pub fn cbootc_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let out = Command::new(super::cbootc_bin())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CBOOTC_SYSROOT", &self.root)
            .env("CBOOTC_BOOT", &self.esp)
            .env("CBOOTC_CMDLINE", &self.cmdline)
            .env("CBOOTC_RUN", &self.run)
            .env("CBOOTC_ETC", &self.etc)
            .output()
            .unwrap();
        eprintln!(
            "$ cbootc {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn cbootc_ok(&self, args: &[&str]) -> String {
        let out = self.cbootc(args);
        assert!(out.status.success(), "cbootc {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.cbootc_ok(&["status", "--json"])).unwrap()
    }
}

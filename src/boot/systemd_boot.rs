//! systemd-boot: installing the boot loader from the image into the ESP,
//! `loader/loader.conf`, and one boot entry per UKI.
//!
//! # How entries are laid out, and why
//!
//! Every deployment's UKI is `/cbootc/<id>/uki.efi` on the ESP, next to
//! where GRUB disks keep `vmlinuz`, and is booted through a BLS Type #1
//! entry `loader/entries/cbootc-<id>.conf` with an `efi` line:
//!
//! ```text
//! title Debian GNU/Linux 13 (trixie) (0123456789ab)
//! version 13
//! sort-key cbootc-000
//! efi /cbootc/<id>/uki.efi
//! ```
//!
//! rather than as a Type #2 entry (a UKI dropped into `EFI/Linux/`), because
//! cbootc's deployment record, not systemd-boot, decides the order:
//!
//! - systemd-boot sorts (src/boot/boot.c `boot_entry_compare`, the same
//!   rules as the Boot Loader Specification's "Sorting"): entries with a
//!   sort key before those without, then by `sort-key` (strcmp), then
//!   machine-id, then `version` (newest first), then the entry id (file
//!   name, newest-looking first). A Type #2 entry takes its sort key and
//!   version from the UKI's `.osrel` (`IMAGE_ID`/`ID`,
//!   `IMAGE_VERSION`/`VERSION_ID`), which cbootc cannot change without
//!   rebuilding — and for a sealed, signed UKI cannot change at all. So all
//!   deployments of one OS would tie and be ordered by version, and a
//!   rollback to an older version could not put it first. A Type #1 entry
//!   carries its own `sort-key`, written as `cbootc-NNN` in record order.
//! - The entry id is the `.conf` file name and never changes as the order
//!   changes, so `LoaderEntryDefault`/`LoaderEntryOneShot` (see
//!   [`crate::boot::efivars`]) and `default` keep naming the same
//!   deployment. (Order prefixes in Type #2 file names would mean renaming
//!   UKIs on every upgrade, and stale ids in NVRAM.)
//! - UKIs stay out of `EFI/Linux/` so systemd-boot does not list each one a
//!   second time as a Type #2 entry.
//! - `efi` (start an EFI program) rather than `uki` (a UKI referenced from a
//!   Type #1 entry): `uki` is newer than Debian trixie's systemd-boot
//!   257.13 (its binary has no `uki` key; systemd's current boot.c parses
//!   it), while `efi` is understood by every systemd-boot.
//!
//! `loader.conf` names the first deployment as `default` (the id, glob
//! matched — ids are hex, so literal), so the choice does not depend on the
//! sort alone.
//!
//! The command line lives in the UKI's `.cmdline`. systemd-stub ignores a
//! command line passed by the boot loader when Secure Boot is on and the UKI
//! has `.cmdline` (systemd-stub(7)); with Secure Boot off a passed one
//! replaces it whole. So entries also carry `options` with the same command
//! line when the menu editor is enabled: editing then starts from the real
//! line instead of an empty one that would drop `composefs.digest=`.
//!
//! # Editor
//!
//! `editor no` on Secure Boot disks: the stub would ignore an edited command
//! line anyway, and systemd-boot's documentation asks to disable the editor
//! where untrusted people reach the console — the Secure Boot threat model.
//! `editor yes` otherwise: editing the command line is how a user reaches a
//! rescue target without another medium.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::boot::efivars::check_entry_id;
use crate::boot::grub_efi::check_efi_x86_64;
use crate::boot::os_release::OsRelease;
use crate::util::atomic;

/// systemd-boot inside the tool root (Debian `systemd-boot-efi`, Fedora
/// `systemd-boot-unsigned`, Ubuntu `systemd-boot-efi`).
pub const BOOTLOADER_IN_ROOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// Where `bootctl install` puts systemd-boot on the ESP.
pub const ESP_SYSTEMD_PATH: &str = "EFI/systemd/systemd-bootx64.efi";

/// The removable-media path (UEFI 2.10 §3.5.1.1), which firmware boots
/// without an NVRAM boot entry.
pub const ESP_REMOVABLE_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// `loader/loader.conf`, relative to the ESP.
pub const LOADER_CONF: &str = "loader/loader.conf";

/// `loader/entries`, relative to the ESP.
pub const ENTRIES_DIR: &str = "loader/entries";

/// The magic string every systemd-boot carries in its `.sdmagic` section
/// (boot.c `SD_MAGIC`), which systemd's own tools use to recognise it.
const SD_MAGIC_PREFIX: &[u8] = b"#### LoaderInfo: systemd-boot ";

/// Something that Authenticode-signs an EFI binary from `input` to `output`
/// (both paths in cbootc's view), e.g.
/// [`crate::boot::secureboot::Signer`].
pub trait EfiSigner {
    /// Sign `input` into `output`, leaving `input` untouched.
    fn sign(&self, input: &Path, output: &Path) -> Result<()>;
}

/// File name of a deployment's entry (its systemd-boot entry id).
pub fn entry_file_name(id: &str) -> String {
    format!("cbootc-{id}.conf")
}

/// Boots a new deployment's entry gets before systemd-boot passes over it:
/// one, like GRUB's trial (see [`crate::deploy::trial`]).
pub const TRIAL_TRIES: u32 = 1;

/// `loader.conf`'s `default` while a trial is pending: any cbootc entry, so
/// that systemd-boot boots the first one in sort order that is not bad.
pub const ANY_CBOOTC_ENTRY: &str = "cbootc-*";

/// File name of a deployment's entry during its trial: with a boot counter
/// of [`TRIAL_TRIES`] tries left (UAPI Boot Loader Specification, "Boot
/// counting": `NAME+LEFT[-DONE].conf`).
pub fn trial_entry_file_name(id: &str) -> String {
    format!("cbootc-{id}+{TRIAL_TRIES}.conf")
}

/// A cbootc entry file name read back from `loader/entries/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    /// The deployment id.
    pub id: String,
    /// `(tries left, tries done)` when the name carries a boot counter
    /// (systemd-boot renames `+1` to `+0-1` when it starts the entry).
    pub counter: Option<(u32, u32)>,
}

/// Parse `cbootc-<id>[+LEFT[-DONE]].conf`; `None` for other files.
pub fn parse_entry_file_name(name: &str) -> Option<EntryName> {
    let stem = name.strip_prefix("cbootc-")?.strip_suffix(".conf")?;
    let (id, counter) = match stem.rsplit_once('+') {
        None => (stem, None),
        Some((id, c)) => {
            let (left, done) = c.split_once('-').unwrap_or((c, "0"));
            let num = |t: &str| {
                (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| t.parse::<u32>().ok())
                    .flatten()
            };
            (id, Some((num(left)?, num(done)?)))
        }
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| EntryName {
        id: id.to_string(),
        counter,
    })
}

/// ESP-absolute path of a deployment's UKI.
pub fn uki_path(id: &str) -> String {
    format!("/cbootc/{id}/uki.efi")
}

/// The sort key of the deployment at `index` in the record (0 = first).
pub fn sort_key(index: usize) -> Result<String> {
    // Zero-padded so strcmp order is numeric order.
    ensure!(index < 1000, "too many deployments for sort keys ({index})");
    Ok(format!("cbootc-{index:03}"))
}

/// Install the image's systemd-boot into `esp` at both
/// [`ESP_SYSTEMD_PATH`] and [`ESP_REMOVABLE_PATH`], signed by `signer` if
/// given. `root` is the image's root directory as cbootc sees it (`/` for
/// the host). The binary is checked to be an x86-64 EFI application
/// carrying systemd-boot's `.sdmagic` before anything is written.
pub fn install(root: &Path, esp: &Path, signer: Option<&dyn EfiSigner>) -> Result<()> {
    let source = root.join(BOOTLOADER_IN_ROOT);
    let data = fs::read(&source).with_context(|| {
        format!(
            "reading systemd-boot from the image ({}; Debian/Ubuntu: systemd-boot-efi, \
             Fedora: systemd-boot-unsigned)",
            source.display()
        )
    })?;
    check_systemd_boot(&data).with_context(|| format!("checking {}", source.display()))?;

    let main = esp.join(ESP_SYSTEMD_PATH);
    let removable = esp.join(ESP_REMOVABLE_PATH);
    for p in [&main, &removable] {
        let dir = p.parent().context("ESP path has no parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match signer {
        Some(signer) => signer
            .sign(&source, &main)
            .context("signing systemd-boot")?,
        None => atomic::write_file(&main, &data)?,
    }
    let installed = fs::read(&main).with_context(|| format!("reading {}", main.display()))?;
    check_systemd_boot(&installed).with_context(|| format!("checking {}", main.display()))?;
    atomic::write_file(&removable, &installed)
}

/// Check that `data` is an x86-64 EFI application with systemd-boot's
/// `.sdmagic` section.
pub fn check_systemd_boot(data: &[u8]) -> Result<()> {
    check_efi_x86_64(data)?;
    match composefs_boot::uki::get_section(data, ".sdmagic") {
        Some(Ok(magic)) if magic.starts_with(SD_MAGIC_PREFIX) => Ok(()),
        Some(Ok(magic)) => bail!(
            "not systemd-boot: .sdmagic is {:?}",
            String::from_utf8_lossy(magic)
        ),
        _ => bail!("not systemd-boot: no .sdmagic section"),
    }
}

/// The systemd-boot version in a binary's `.sdmagic` (e.g. `257.13-1~deb13u1`).
pub fn version(data: &[u8]) -> Option<String> {
    let magic = composefs_boot::uki::get_section(data, ".sdmagic")?.ok()?;
    let rest = magic.strip_prefix(SD_MAGIC_PREFIX)?;
    let text = String::from_utf8_lossy(rest);
    Some(text.trim_end_matches(['\0', ' ', '#']).to_string())
}

/// `loader/loader.conf` settings cbootc writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConf {
    /// Entry id (file name) booted by default, or [`ANY_CBOOTC_ENTRY`].
    pub default: String,
    /// Seconds the menu is shown (0: hidden unless a key is pressed).
    pub timeout: u32,
    /// Whether the command line editor is enabled (see the module docs).
    pub editor: bool,
}

impl LoaderConf {
    /// Render `loader.conf` (loader.conf(5)).
    pub fn render(&self) -> Result<String> {
        if self.default != ANY_CBOOTC_ENTRY {
            check_entry_id(&self.default).context("loader.conf default")?;
        }
        Ok(format!(
            "# Generated by cbootc; regenerated on every upgrade and rollback.\n\
             default {}\n\
             timeout {}\n\
             editor {}\n",
            self.default,
            self.timeout,
            if self.editor { "yes" } else { "no" }
        ))
    }
}

/// One boot entry: a BLS Type #1 file whose `efi` line starts a UKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiEntry {
    /// Menu title.
    pub title: String,
    /// Version shown next to the title.
    pub version: Option<String>,
    /// Sort key ([`sort_key`]).
    pub sort_key: String,
    /// ESP-absolute path of the UKI ([`uki_path`]).
    pub efi: String,
    /// The UKI's own command line, repeated for the editor; `None` when the
    /// editor is off (see the module docs).
    pub options: Option<String>,
}

impl UkiEntry {
    /// Check that each field is one line the boot loader reads back
    /// unchanged: no line breaks or NUL, no leading/trailing blanks, a
    /// non-empty title, a one-word sort key, and an absolute `efi` path
    /// without whitespace.
    pub fn validate(&self) -> Result<()> {
        check_value("title", &self.title)?;
        ensure!(!self.title.is_empty(), "boot entry has an empty title");
        if let Some(v) = &self.version {
            check_value("version", v)?;
            ensure!(!v.is_empty(), "boot entry has an empty version");
        }
        check_value("sort-key", &self.sort_key)?;
        ensure!(
            !self.sort_key.is_empty() && !self.sort_key.contains(char::is_whitespace),
            "invalid sort-key {:?}: must be one word",
            self.sort_key
        );
        check_value("efi", &self.efi)?;
        ensure!(
            self.efi.starts_with('/') && !self.efi.contains(char::is_whitespace),
            "efi path {:?} must be absolute on the ESP and contain no whitespace",
            self.efi
        );
        if let Some(o) = &self.options {
            check_value("options", o)?;
        }
        Ok(())
    }

    /// Render the entry file (UAPI Boot Loader Specification, "Type #1
    /// Boot Loader Entry Files"; the `efi` key: "an EFI program to run").
    pub fn render(&self) -> Result<String> {
        self.validate()
            .context("refusing to write an invalid boot entry")?;
        let mut out = String::from("# Generated by cbootc\n");
        out.push_str(&format!("title {}\n", self.title));
        if let Some(v) = &self.version {
            out.push_str(&format!("version {v}\n"));
        }
        out.push_str(&format!("sort-key {}\n", self.sort_key));
        out.push_str(&format!("efi {}\n", self.efi));
        if let Some(o) = self.options.as_deref().filter(|o| !o.is_empty()) {
            out.push_str(&format!("options {o}\n"));
        }
        Ok(out)
    }
}

/// The entry of deployment `id` at `index` in the record, booting its UKI
/// at [`uki_path`]: titled like the GRUB menu (os-release title and the
/// short id, so two builds of one release can be told apart), versioned
/// from os-release (`IMAGE_VERSION`, else `VERSION_ID`, …), and repeating
/// `cmdline` (the UKI's `.cmdline`) as `options` only when the editor is on.
pub fn entry_for(
    id: &str,
    index: usize,
    os_release: &OsRelease,
    cmdline: &str,
    editor: bool,
) -> Result<UkiEntry> {
    let entry = UkiEntry {
        title: format!("{} ({})", os_release.title(), &id[..id.len().min(12)]),
        version: os_release.version(),
        sort_key: sort_key(index)?,
        efi: uki_path(id),
        options: editor.then(|| cmdline.to_string()),
    };
    entry.validate()?;
    Ok(entry)
}

fn check_value(key: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        bail!("{key} {value:?} contains {c:?}");
    }
    ensure!(
        value.trim() == value,
        "{key} {value:?} has leading or trailing whitespace"
    );
    Ok(())
}

/// Write `loader.conf` and the entries `(id, entry)` (the first is the
/// default) into `esp`, then remove `cbootc-*.conf` entries not in the list.
/// Each UKI must already be on the ESP; entries go before `loader.conf`, so
/// the `default` it names always exists.
pub fn write_entries(esp: &Path, entries: &[(String, UkiEntry)], conf: &LoaderConf) -> Result<()> {
    write_entries_with_trial(esp, entries, conf, None)
}

/// [`write_entries`], with the entry of deployment `trial` (if any) named
/// [`trial_entry_file_name`]: systemd-boot consumes its one try when it
/// starts it, and from then on sorts it after every other entry
/// (src/boot/boot.c `boot_entry_compare`: "Order entries that have no tries
/// left to the end of the list"), so with `default` [`ANY_CBOOTC_ENTRY`] a
/// trial that never confirms is passed over for the next deployment in the
/// record. Any other name the entry had (renamed by systemd-boot) goes.
pub fn write_entries_with_trial(
    esp: &Path,
    entries: &[(String, UkiEntry)],
    conf: &LoaderConf,
    trial: Option<&str>,
) -> Result<()> {
    ensure!(
        !entries.is_empty(),
        "refusing to write a boot menu without entries"
    );
    let dir = esp.join(ENTRIES_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut keep = Vec::new();
    for (id, entry) in entries {
        let uki = esp_path(esp, &entry.efi);
        ensure!(
            uki.is_file(),
            "{} is missing; write the UKI before its entry",
            uki.display()
        );
        let name = if trial == Some(id.as_str()) {
            trial_entry_file_name(id)
        } else {
            entry_file_name(id)
        };
        atomic::write_file(&dir.join(&name), entry.render()?.as_bytes())?;
        keep.push(name);
    }
    ensure!(
        keep.contains(&conf.default) || conf.default == ANY_CBOOTC_ENTRY,
        "loader.conf default {:?} is none of the entries written",
        conf.default
    );
    let loader = esp.join(LOADER_CONF);
    atomic::write_file(&loader, conf.render()?.as_bytes())?;
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("cbootc-") && name.ends_with(".conf") && !keep.contains(&name) {
            let p = dir.join(&name);
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    atomic::sync_dir(&dir)
}

/// `esp` joined with an ESP-absolute path like `/cbootc/<id>/uki.efi`.
pub fn esp_path(esp: &Path, path: &str) -> PathBuf {
    esp.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "aaaa";
    const ID_B: &str = "bbbb";

    fn entry(index: usize, id: &str, version: &str, options: Option<&str>) -> UkiEntry {
        UkiEntry {
            title: format!("Test OS ({id})"),
            version: Some(version.into()),
            sort_key: sort_key(index).unwrap(),
            efi: uki_path(id),
            options: options.map(str::to_string),
        }
    }

    #[test]
    fn entry_renders_exactly() {
        let e = entry(0, ID_A, "13", Some("root=UUID=x rw composefs.digest=abc"));
        assert_eq!(
            e.render().unwrap(),
            "# Generated by cbootc\n\
             title Test OS (aaaa)\n\
             version 13\n\
             sort-key cbootc-000\n\
             efi /cbootc/aaaa/uki.efi\n\
             options root=UUID=x rw composefs.digest=abc\n"
        );
        let e = UkiEntry {
            version: None,
            options: None,
            ..entry(7, ID_B, "1", None)
        };
        assert_eq!(
            e.render().unwrap(),
            "# Generated by cbootc\n\
             title Test OS (bbbb)\n\
             sort-key cbootc-007\n\
             efi /cbootc/bbbb/uki.efi\n"
        );
    }

    #[test]
    fn invalid_entries_are_refused() {
        let good = entry(0, ID_A, "1", None);
        let bad = [
            UkiEntry {
                title: "a\nlinux /evil".into(),
                ..good.clone()
            },
            UkiEntry {
                title: String::new(),
                ..good.clone()
            },
            UkiEntry {
                sort_key: "a b".into(),
                ..good.clone()
            },
            UkiEntry {
                efi: "relative.efi".into(),
                ..good.clone()
            },
            UkiEntry {
                efi: "/with space.efi".into(),
                ..good.clone()
            },
            UkiEntry {
                options: Some("x\0".into()),
                ..good.clone()
            },
            UkiEntry {
                version: Some(" 1".into()),
                ..good.clone()
            },
        ];
        for e in bad {
            assert!(e.render().is_err(), "{e:?} accepted");
        }
        assert!(sort_key(1000).is_err());
        assert_eq!(sort_key(999).unwrap(), "cbootc-999");
    }

    #[test]
    fn loader_conf_renders_exactly() {
        let conf = LoaderConf {
            default: entry_file_name(ID_A),
            timeout: 5,
            editor: false,
        };
        assert_eq!(
            conf.render().unwrap(),
            "# Generated by cbootc; regenerated on every upgrade and rollback.\n\
             default cbootc-aaaa.conf\n\
             timeout 5\n\
             editor no\n"
        );
        let conf = LoaderConf {
            editor: true,
            ..conf
        };
        assert!(conf.render().unwrap().contains("\neditor yes\n"));
        let conf = LoaderConf {
            default: "*".into(),
            ..conf
        };
        assert!(conf.render().is_err());
    }

    #[test]
    fn entry_for_a_deployment() {
        let os =
            OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID=\"13\"\n");
        let id = "0123456789abcdef0123";
        let e = entry_for(id, 2, &os, "root=UUID=x rw", true).unwrap();
        assert_eq!(
            e,
            UkiEntry {
                title: "Debian GNU/Linux 13 (trixie) (0123456789ab)".into(),
                version: Some("13".into()),
                sort_key: "cbootc-002".into(),
                efi: "/cbootc/0123456789abcdef0123/uki.efi".into(),
                options: Some("root=UUID=x rw".into()),
            }
        );
        let e = entry_for(id, 0, &os, "root=UUID=x rw", false).unwrap();
        assert_eq!(e.options, None);
        assert!(entry_for(id, 0, &os, "a\nb", true).is_err());
    }

    fn esp_with_ukis(ids: &[&str]) -> tempfile::TempDir {
        let esp = tempfile::tempdir().unwrap();
        for id in ids {
            let p = esp_path(esp.path(), &uki_path(id));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"MZ").unwrap();
        }
        esp
    }

    #[test]
    fn write_entries_writes_conf_and_prunes() {
        let esp = esp_with_ukis(&[ID_A, ID_B]);
        let stale = esp.path().join(ENTRIES_DIR).join("cbootc-old.conf");
        let foreign = esp.path().join(ENTRIES_DIR).join("other.conf");
        fs::create_dir_all(stale.parent().unwrap()).unwrap();
        fs::write(&stale, "x").unwrap();
        fs::write(&foreign, "x").unwrap();
        let entries = vec![
            (ID_B.to_string(), entry(0, ID_B, "2", None)),
            (ID_A.to_string(), entry(1, ID_A, "1", None)),
        ];
        let conf = LoaderConf {
            default: entry_file_name(ID_B),
            timeout: 3,
            editor: false,
        };
        write_entries(esp.path(), &entries, &conf).unwrap();
        let dir = esp.path().join(ENTRIES_DIR);
        assert!(!stale.exists());
        assert!(foreign.exists(), "entries cbootc does not own are kept");
        assert_eq!(
            fs::read_to_string(dir.join("cbootc-bbbb.conf")).unwrap(),
            entries[0].1.render().unwrap()
        );
        assert_eq!(
            fs::read_to_string(esp.path().join(LOADER_CONF)).unwrap(),
            conf.render().unwrap()
        );
    }

    #[test]
    fn write_entries_refuses_missing_uki_and_foreign_default() {
        let esp = esp_with_ukis(&[ID_A]);
        let conf = LoaderConf {
            default: entry_file_name(ID_A),
            timeout: 3,
            editor: false,
        };
        let err = write_entries(
            esp.path(),
            &[(ID_B.into(), entry(0, ID_B, "1", None))],
            &LoaderConf {
                default: entry_file_name(ID_B),
                ..conf.clone()
            },
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("bbbb/uki.efi is missing"),
            "{err:#}"
        );
        let err = write_entries(
            esp.path(),
            &[(ID_A.into(), entry(0, ID_A, "1", None))],
            &LoaderConf {
                default: "cbootc-zzzz.conf".into(),
                ..conf
            },
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("none of the entries"),
            "{err:#}"
        );
        assert!(!esp.path().join(LOADER_CONF).exists());
    }

    #[test]
    fn entry_names_with_and_without_counters() {
        let parse = |n: &str| parse_entry_file_name(n).map(|e| (e.id, e.counter));
        assert_eq!(parse("cbootc-aaaa.conf"), Some(("aaaa".into(), None)));
        assert_eq!(trial_entry_file_name(ID_A), "cbootc-aaaa+1.conf");
        assert_eq!(
            parse("cbootc-aaaa+1.conf"),
            Some(("aaaa".into(), Some((1, 0))))
        );
        assert_eq!(
            parse("cbootc-aaaa+0-1.conf"),
            Some(("aaaa".into(), Some((0, 1))))
        );
        for bad in [
            "other.conf",
            "cbootc-.conf",
            "cbootc-aaaa.txt",
            "cbootc-aaaa+.conf",
            "cbootc-aaaa+x.conf",
            "cbootc-aaaa+1-.conf",
            "cbootc-zz.conf",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trial_entry_is_counted_and_default_any() {
        let esp = esp_with_ukis(&[ID_A, ID_B]);
        let dir = esp.path().join(ENTRIES_DIR);
        fs::create_dir_all(&dir).unwrap();
        // What systemd-boot left of an earlier trial of A.
        fs::write(dir.join("cbootc-aaaa+0-1.conf"), "x").unwrap();
        let entries = vec![
            (ID_B.to_string(), entry(0, ID_B, "2", None)),
            (ID_A.to_string(), entry(1, ID_A, "1", None)),
        ];
        let conf = LoaderConf {
            default: ANY_CBOOTC_ENTRY.into(),
            timeout: 3,
            editor: false,
        };
        write_entries_with_trial(esp.path(), &entries, &conf, Some(ID_B)).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["cbootc-aaaa.conf", "cbootc-bbbb+1.conf"]);
        assert!(
            fs::read_to_string(esp.path().join(LOADER_CONF))
                .unwrap()
                .contains("\ndefault cbootc-*\n")
        );
        // Written again without a trial, the entry loses its counter.
        let err = write_entries(esp.path(), &entries, &conf);
        assert!(err.is_ok(), "{err:?}");
        assert!(dir.join("cbootc-bbbb.conf").exists());
        assert!(!dir.join("cbootc-bbbb+1.conf").exists());
    }

    struct CopySigner;
    impl EfiSigner for CopySigner {
        fn sign(&self, input: &Path, output: &Path) -> Result<()> {
            let mut data = fs::read(input)?;
            data.extend_from_slice(b"SIGNED");
            fs::write(output, data)?;
            Ok(())
        }
    }

    /// A fake tool root with the host's systemd-boot (Debian package
    /// systemd-boot-efi).
    fn root_with_host_sdboot() -> tempfile::TempDir {
        let host = Path::new("/").join(BOOTLOADER_IN_ROOT);
        assert!(
            host.is_file(),
            "{} missing: install systemd-boot-efi",
            host.display()
        );
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join(BOOTLOADER_IN_ROOT);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(host, dest).unwrap();
        root
    }

    #[test]
    fn install_copies_to_both_paths() {
        let root = root_with_host_sdboot();
        let esp = tempfile::tempdir().unwrap();
        install(root.path(), esp.path(), None).unwrap();
        let src = fs::read(root.path().join(BOOTLOADER_IN_ROOT)).unwrap();
        assert_eq!(fs::read(esp.path().join(ESP_SYSTEMD_PATH)).unwrap(), src);
        assert_eq!(fs::read(esp.path().join(ESP_REMOVABLE_PATH)).unwrap(), src);
        let v = version(&src).unwrap();
        assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v:?}");

        // Signed: both copies are the signer's output.
        let esp = tempfile::tempdir().unwrap();
        install(root.path(), esp.path(), Some(&CopySigner)).unwrap();
        let signed = fs::read(esp.path().join(ESP_REMOVABLE_PATH)).unwrap();
        assert!(signed.ends_with(b"SIGNED"));
        assert_eq!(fs::read(esp.path().join(ESP_SYSTEMD_PATH)).unwrap(), signed);
    }

    #[test]
    fn install_refuses_what_is_not_systemd_boot() {
        let root = tempfile::tempdir().unwrap();
        let esp = tempfile::tempdir().unwrap();
        let err = install(root.path(), esp.path(), None).unwrap_err();
        assert!(format!("{err:#}").contains("systemd-boot-efi"), "{err:#}");

        // A valid EFI binary that is not systemd-boot: the stub.
        let stub = Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
        let dest = root.path().join(BOOTLOADER_IN_ROOT);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(stub, &dest).unwrap();
        let err = install(root.path(), esp.path(), None).unwrap_err();
        assert!(format!("{err:#}").contains("not systemd-boot"), "{err:#}");
        assert!(!esp.path().join(ESP_REMOVABLE_PATH).exists());
    }
}

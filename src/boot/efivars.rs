//! EFI variables through efivarfs: systemd-boot's `LoaderEntryDefault` and
//! `LoaderEntryOneShot`, and the firmware's `SecureBoot` state.
//!
//! systemd-boot chooses the entry to boot in this order (src/boot/boot.c,
//! `config_select_default_entry`): `LoaderEntryOneShot` (deleted by the boot
//! loader as soon as it has read it), `LoaderEntryDefault`, then `default`
//! in `loader/loader.conf`, then the first entry in sort order. A one-shot
//! boot (`rollback --once`) is therefore one variable write, and a stale
//! `LoaderEntryDefault` set from the menu or by `bootctl set-default`
//! silently overrides `loader.conf`, which is why cbootc can read and remove
//! it too. Both variables name an entry by its *id*: for a Type #1 entry
//! that is the file name in `loader/entries/`, `.conf` included, lowercased
//! (boot.c `boot_entry_add_type1`); the value is matched as a glob
//! (`efi_fnmatch`).
//!
//! Format (systemd's Boot Loader Interface,
//! <https://systemd.io/BOOT_LOADER_INTERFACE/>): vendor GUID
//! `4a67b082-0a4c-41cf-b6c7-440b29bb8c4f`, value a NUL-terminated UTF-16LE
//! string, attributes NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
//! (UEFI 2.10 §8.2, `SetVariable()`).
//!
//! Access is through efivarfs (Documentation/filesystems/efivarfs.rst): the
//! file `NAME-GUID` holds the 4-byte little-endian attributes followed by the
//! data, a variable is written with **one** `write()` of attributes + data,
//! and deleted by unlinking its file. Many variable files are created
//! immutable (`FS_IMMUTABLE_FL`, to protect firmware from accidental
//! deletion), so the flag is cleared first and, like systemd's
//! `efi_set_variable()`, restored afterwards. No `bootctl`: the image's
//! systemd may be older or newer than the booted one, and the operation is
//! a few bytes.
//!
//! The efivarfs root is a parameter so tests (and a chroot) can use a plain
//! directory; on a plain directory the same code path runs, except that a
//! shorter value is truncated explicitly (efivarfs replaces the whole
//! variable on write).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use rustix::fs::IFlags;

/// Where the kernel mounts efivarfs.
pub const EFIVARFS: &str = "/sys/firmware/efi/efivars";

/// systemd's boot loader interface vendor GUID (`LoaderEntryDefault` &c.).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// `EFI_GLOBAL_VARIABLE` (UEFI 2.10 §3.3), owner of `SecureBoot`.
pub const EFI_GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// The default entry variable.
pub const LOADER_ENTRY_DEFAULT: &str = "LoaderEntryDefault";

/// The one-shot entry variable.
pub const LOADER_ENTRY_ONE_SHOT: &str = "LoaderEntryOneShot";

/// `EFI_VARIABLE_NON_VOLATILE` (UEFI 2.10 §8.2.1).
pub const ATTR_NON_VOLATILE: u32 = 0x1;
/// `EFI_VARIABLE_BOOTSERVICE_ACCESS`.
pub const ATTR_BOOTSERVICE_ACCESS: u32 = 0x2;
/// `EFI_VARIABLE_RUNTIME_ACCESS`.
pub const ATTR_RUNTIME_ACCESS: u32 = 0x4;
/// The attributes systemd-boot's variables are written with.
pub const ATTRS_NV_BS_RT: u32 = ATTR_NON_VOLATILE | ATTR_BOOTSERVICE_ACCESS | ATTR_RUNTIME_ACCESS;

/// Encode `s` as a NUL-terminated UTF-16LE string, the form of every string
/// variable in the boot loader interface. Interior NULs are refused: the
/// boot loader would stop reading there.
pub fn encode_utf16(s: &str) -> Result<Vec<u8>> {
    ensure!(!s.contains('\0'), "EFI string variable value contains NUL");
    Ok(s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect())
}

/// Decode a UTF-16LE string variable. The terminating NUL is optional (the
/// boot loader interface asks for it, but readers such as systemd's
/// `efi_get_variable_string()` accept values without one); anything after
/// the first NUL is ignored.
pub fn decode_utf16(data: &[u8]) -> Result<String> {
    ensure!(
        data.len() % 2 == 0,
        "UTF-16 variable has an odd length ({} bytes)",
        data.len()
    );
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).context("EFI variable is not valid UTF-16")
}

/// The content of an efivarfs file: attributes (u32 little-endian), then
/// the data.
pub fn encode_file(attrs: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&attrs.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Split efivarfs file content into attributes and data.
pub fn decode_file(content: &[u8]) -> Result<(u32, &[u8])> {
    ensure!(
        content.len() >= 4,
        "efivarfs file is {} bytes, shorter than its 4-byte attribute header",
        content.len()
    );
    let attrs = u32::from_le_bytes([content[0], content[1], content[2], content[3]]);
    Ok((attrs, &content[4..]))
}

/// Check that `id` can name a systemd-boot entry in `LoaderEntry*`.
///
/// systemd-boot lowercases entry ids and matches the variable as a glob
/// against them, so an id with upper case letters or glob characters
/// (`*?[]\`) would not select exactly that entry; whitespace and control
/// characters never occur in file names cbootc writes.
pub fn check_entry_id(id: &str) -> Result<()> {
    ensure!(!id.is_empty(), "empty boot entry id");
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "*?[]\\".contains(*c))
    {
        bail!("boot entry id {id:?} contains {c:?}, which systemd-boot would not match literally");
    }
    ensure!(
        !id.chars().any(char::is_uppercase),
        "boot entry id {id:?} has upper case letters; systemd-boot lowercases entry ids, so it \
         would never match"
    );
    Ok(())
}

/// An efivarfs mount (or a directory standing in for one).
#[derive(Debug, Clone)]
pub struct EfiVars {
    root: PathBuf,
}

impl EfiVars {
    /// The running system's efivarfs, [`EFIVARFS`].
    pub fn system() -> Self {
        Self::at(EFIVARFS)
    }

    /// efivarfs (or a stand-in directory) at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether the root exists: on a system not booted through UEFI (or
    /// without efivarfs mounted) it does not, and no variable can be set.
    pub fn available(&self) -> bool {
        self.root.is_dir()
    }

    /// The file of variable `name` of vendor `guid`.
    pub fn path(&self, name: &str, guid: &str) -> PathBuf {
        self.root.join(format!("{name}-{guid}"))
    }

    /// Read a variable: `None` if it does not exist.
    pub fn read(&self, name: &str, guid: &str) -> Result<Option<(u32, Vec<u8>)>> {
        let path = self.path(name, guid);
        let mut content = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f
                .read_to_end(&mut content)
                .with_context(|| format!("reading EFI variable {}", path.display()))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("opening EFI variable {}", path.display()));
            }
        };
        let (attrs, data) =
            decode_file(&content).with_context(|| format!("reading {}", path.display()))?;
        Ok(Some((attrs, data.to_vec())))
    }

    /// Write (create or replace) a variable with one `write()` of attributes
    /// and data, clearing the immutable flag first and restoring it after.
    pub fn write(&self, name: &str, guid: &str, attrs: u32, data: &[u8]) -> Result<()> {
        ensure!(self.available(), "no efivarfs at {}", self.root.display());
        let path = self.path(name, guid);
        let restore = clear_immutable(&path)?;
        let content = encode_file(attrs, data);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                // No O_TRUNC, as systemd's efi_set_variable(): efivarfs
                // replaces the variable on write and has no truncate.
                .truncate(false)
                .mode(0o644)
                .open(&path)
                .with_context(|| format!("opening EFI variable {} for writing", path.display()))?;
            // efivarfs takes a variable in a single write (a partial one is
            // an error, not a short write to be continued): no write_all.
            let n = f
                .write(&content)
                .with_context(|| format!("writing EFI variable {}", path.display()))?;
            ensure!(
                n == content.len(),
                "short write to EFI variable {}: {n} of {} bytes",
                path.display(),
                content.len()
            );
            // A plain directory keeps an old, longer value's tail; efivarfs
            // has already replaced the variable whole.
            let len = content.len() as u64;
            if f.metadata().map(|m| m.len() > len).unwrap_or(false) {
                f.set_len(len)
                    .with_context(|| format!("truncating {}", path.display()))?;
            }
            Ok(())
        })();
        if let Some(flags) = restore {
            set_flags(&path, flags)?;
        }
        result
    }

    /// Delete a variable. Returns whether it existed.
    pub fn remove(&self, name: &str, guid: &str) -> Result<bool> {
        let path = self.path(name, guid);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        clear_immutable(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("deleting EFI variable {}", path.display())),
        }
    }

    /// Read a string variable of systemd's vendor GUID.
    pub fn read_loader_string(&self, name: &str) -> Result<Option<String>> {
        match self.read(name, LOADER_GUID)? {
            None => Ok(None),
            Some((_, data)) => decode_utf16(&data)
                .map(Some)
                .with_context(|| format!("decoding EFI variable {name}")),
        }
    }

    /// Write a string variable of systemd's vendor GUID with
    /// [`ATTRS_NV_BS_RT`].
    pub fn write_loader_string(&self, name: &str, value: &str) -> Result<()> {
        let data = encode_utf16(value)?;
        self.write(name, LOADER_GUID, ATTRS_NV_BS_RT, &data)
            .with_context(|| format!("setting EFI variable {name} to {value:?}"))
    }

    /// Boot entry `id` (e.g. `cbootc-<id>.conf`) once, on the next boot.
    pub fn set_one_shot(&self, id: &str) -> Result<()> {
        check_entry_id(id)?;
        self.write_loader_string(LOADER_ENTRY_ONE_SHOT, id)
    }

    /// The pending one-shot entry, if any.
    pub fn one_shot(&self) -> Result<Option<String>> {
        self.read_loader_string(LOADER_ENTRY_ONE_SHOT)
    }

    /// Cancel a pending one-shot boot. Returns whether one was pending.
    pub fn clear_one_shot(&self) -> Result<bool> {
        self.remove(LOADER_ENTRY_ONE_SHOT, LOADER_GUID)
    }

    /// Make entry `id` the default, overriding `loader.conf`.
    pub fn set_default(&self, id: &str) -> Result<()> {
        check_entry_id(id)?;
        self.write_loader_string(LOADER_ENTRY_DEFAULT, id)
    }

    /// The default entry set in NVRAM, if any.
    pub fn default_entry(&self) -> Result<Option<String>> {
        self.read_loader_string(LOADER_ENTRY_DEFAULT)
    }

    /// Remove an NVRAM default so that `loader.conf`'s applies again.
    pub fn clear_default(&self) -> Result<bool> {
        self.remove(LOADER_ENTRY_DEFAULT, LOADER_GUID)
    }

    /// Whether the firmware enforces Secure Boot: the one data byte of
    /// `SecureBoot` (UEFI 2.10 §3.3, "1 = platform in Secure Boot mode").
    /// `None` if the variable does not exist (legacy BIOS boot, or no
    /// efivarfs).
    pub fn secure_boot(&self) -> Result<Option<bool>> {
        Ok(self
            .read("SecureBoot", EFI_GLOBAL_GUID)?
            .map(|(_, data)| data.last() == Some(&1)))
    }
}

/// Clear `FS_IMMUTABLE_FL` on `path` if it exists and has it; returns the
/// flags to restore afterwards (`None`: nothing to restore).
fn clear_immutable(path: &Path) -> Result<Option<IFlags>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let flags = match rustix::fs::ioctl_getflags(&f) {
        Ok(flags) => flags,
        // A filesystem without inode flags has no immutable flag either.
        Err(rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP) => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("reading inode flags of {}", path.display()));
        }
    };
    if !flags.contains(IFlags::IMMUTABLE) {
        return Ok(None);
    }
    rustix::fs::ioctl_setflags(&f, flags - IFlags::IMMUTABLE)
        .with_context(|| format!("clearing the immutable flag of {}", path.display()))?;
    Ok(Some(flags))
}

fn set_flags(path: &Path, flags: IFlags) -> Result<()> {
    let f = match File::open(path) {
        Ok(f) => f,
        // Deleted in the meantime (efivarfs removes a variable written
        // empty): nothing to protect.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    rustix::fs::ioctl_setflags(&f, flags)
        .with_context(|| format!("restoring inode flags of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "cbootc-ab.conf" as UTF-16LE + NUL, written out by hand.
    const ENTRY_UTF16: &[u8] = &[
        b'c', 0, b'b', 0, b'o', 0, b'o', 0, b't', 0, b'c', 0, b'-', 0, b'a', 0, b'b', 0, b'.', 0,
        b'c', 0, b'o', 0, b'n', 0, b'f', 0, 0, 0,
    ];

    #[test]
    fn utf16_encoding_matches_known_bytes() {
        assert_eq!(encode_utf16("cbootc-ab.conf").unwrap(), ENTRY_UTF16);
        assert_eq!(decode_utf16(ENTRY_UTF16).unwrap(), "cbootc-ab.conf");
        // Without the terminator, and with garbage after it.
        assert_eq!(
            decode_utf16(&ENTRY_UTF16[..ENTRY_UTF16.len() - 2]).unwrap(),
            "cbootc-ab.conf"
        );
        let mut trailing = ENTRY_UTF16.to_vec();
        trailing.extend_from_slice(&[b'x', 0]);
        assert_eq!(decode_utf16(&trailing).unwrap(), "cbootc-ab.conf");
        // Non-ASCII: U+00E9 and a surrogate pair (U+1F600).
        assert_eq!(
            encode_utf16("é😀").unwrap(),
            [0xe9, 0x00, 0x3d, 0xd8, 0x00, 0xde, 0, 0]
        );
        assert_eq!(
            decode_utf16(&[0xe9, 0x00, 0x3d, 0xd8, 0x00, 0xde, 0, 0]).unwrap(),
            "é😀"
        );
        assert_eq!(encode_utf16("").unwrap(), [0, 0]);
    }

    #[test]
    fn utf16_refuses_bad_input() {
        assert!(encode_utf16("a\0b").is_err());
        assert!(decode_utf16(&[b'a', 0, b'b']).is_err());
        // A lone high surrogate.
        assert!(decode_utf16(&[0x3d, 0xd8, 0, 0]).is_err());
    }

    #[test]
    fn efivarfs_file_layout() {
        let content = encode_file(ATTRS_NV_BS_RT, ENTRY_UTF16);
        assert_eq!(&content[..4], &[7, 0, 0, 0]);
        assert_eq!(&content[4..], ENTRY_UTF16);
        let (attrs, data) = decode_file(&content).unwrap();
        assert_eq!(attrs, 7);
        assert_eq!(data, ENTRY_UTF16);
        assert!(decode_file(&[7, 0, 0]).is_err());
    }

    #[test]
    fn entry_ids() {
        check_entry_id("cbootc-0123abcd.conf").unwrap();
        for bad in [
            "",
            "Cbootc.conf",
            "a*",
            "a?b",
            "a[b]",
            "a b",
            "a\nb",
            "a\\b",
        ] {
            assert!(check_entry_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn name_of(vars: &EfiVars, name: &str) -> PathBuf {
        vars.path(name, LOADER_GUID)
    }

    #[test]
    fn one_shot_round_trip_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::at(dir.path());
        assert_eq!(vars.one_shot().unwrap(), None);
        vars.set_one_shot("cbootc-abcdef.conf").unwrap();
        let file = name_of(&vars, LOADER_ENTRY_ONE_SHOT);
        assert_eq!(
            file.file_name().unwrap(),
            "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
        );
        let raw = fs::read(&file).unwrap();
        assert_eq!(
            raw,
            encode_file(7, &encode_utf16("cbootc-abcdef.conf").unwrap())
        );
        assert_eq!(
            vars.one_shot().unwrap().as_deref(),
            Some("cbootc-abcdef.conf")
        );
        // A shorter value replaces the longer one whole.
        vars.set_one_shot("cbootc-ab.conf").unwrap();
        assert_eq!(fs::read(&file).unwrap(), encode_file(7, ENTRY_UTF16));
        assert!(vars.clear_one_shot().unwrap());
        assert!(!file.exists());
        assert!(!vars.clear_one_shot().unwrap());
    }

    #[test]
    fn default_round_trip_and_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::at(dir.path());
        vars.set_default("cbootc-1.conf").unwrap();
        assert_eq!(
            vars.default_entry().unwrap().as_deref(),
            Some("cbootc-1.conf")
        );
        let err = vars.set_default("*").unwrap_err();
        assert!(format!("{err:#}").contains("would not match"), "{err:#}");
        assert_eq!(
            vars.default_entry().unwrap().as_deref(),
            Some("cbootc-1.conf")
        );
        assert!(vars.clear_default().unwrap());
        assert_eq!(vars.default_entry().unwrap(), None);
    }

    fn is_immutable(path: &Path) -> bool {
        rustix::fs::ioctl_getflags(File::open(path).unwrap())
            .unwrap()
            .contains(IFlags::IMMUTABLE)
    }

    /// Like efivarfs, mark a variable immutable: writing and deleting must
    /// still work (as root), and a write restores the flag.
    #[test]
    fn immutable_variables_are_written_and_deleted() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: setting FS_IMMUTABLE_FL needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::at(dir.path());
        vars.set_default("cbootc-a.conf").unwrap();
        let file = name_of(&vars, LOADER_ENTRY_DEFAULT);
        let f = File::open(&file).unwrap();
        let flags = rustix::fs::ioctl_getflags(&f).unwrap();
        rustix::fs::ioctl_setflags(&f, flags | IFlags::IMMUTABLE).unwrap();
        drop(f);
        // Sanity: the flag really blocks plain writes.
        assert!(OpenOptions::new().write(true).open(&file).is_err());

        vars.set_default("cbootc-b.conf").unwrap();
        assert_eq!(
            vars.default_entry().unwrap().as_deref(),
            Some("cbootc-b.conf")
        );
        assert!(is_immutable(&file), "immutable flag restored");

        assert!(vars.clear_default().unwrap());
        assert!(!file.exists());
    }

    #[test]
    fn secure_boot_state() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::at(dir.path());
        assert_eq!(vars.secure_boot().unwrap(), None);
        let path = vars.path("SecureBoot", EFI_GLOBAL_GUID);
        fs::write(&path, [6, 0, 0, 0, 1]).unwrap();
        assert_eq!(vars.secure_boot().unwrap(), Some(true));
        fs::write(&path, [6, 0, 0, 0, 0]).unwrap();
        assert_eq!(vars.secure_boot().unwrap(), Some(false));
    }

    #[test]
    fn missing_efivarfs_is_an_error_for_writes() {
        let vars = EfiVars::at("/nonexistent/cbootc-efivars");
        assert!(!vars.available());
        let err = vars.set_one_shot("cbootc-a.conf").unwrap_err();
        assert!(
            format!("{err:#}").contains("no efivarfs at /nonexistent"),
            "{err:#}"
        );
        assert_eq!(vars.one_shot().unwrap(), None);
    }
}

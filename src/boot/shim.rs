//! GRUB under Secure Boot: the distribution's signed shim → GRUB chain.
//!
//! cbootc's own GRUB (`grub-mkstandalone`, [`crate::boot::grub_efi`]) is
//! unsigned. For Secure Boot with the keys every PC already trusts, the disk
//! instead boots the distribution's chain: `shimx64.efi` (signed by the
//! Microsoft UEFI CA), which verifies the distribution-signed
//! `grubx64.efi` against the vendor certificate built into shim, which in
//! turn asks shim to verify the (distribution-signed) kernel. No key is
//! enrolled anywhere.
//!
//! # ESP layout
//!
//! At the removable-media path, since a disk image has no NVRAM entry:
//!
//! ```text
//! EFI/BOOT/BOOTX64.EFI   shim
//! EFI/BOOT/grubx64.efi   signed GRUB (shim loads grubx64.efi from its own directory)
//! EFI/BOOT/mmx64.efi     MokManager (shim starts it for MOK enrolment)
//! EFI/BOOT/grub.cfg      hands over to cbootc's /grub/grub.cfg
//! EFI/<vendor>/grub.cfg  the same, at the signed GRUB's built-in prefix
//! ```
//!
//! The fallback `fbx64.efi` is deliberately *not* copied: shim started from
//! `EFI/BOOT/` with `fbx64.efi` beside it runs the fallback, which creates
//! NVRAM boot entries from `EFI/*/BOOTX64.CSV` and resets — an extra reboot
//! and NVRAM writes a removable-path disk does not need.
//!
//! # Where the signed GRUB reads its config
//!
//! Debian's `grub-efi-amd64-signed` `grubx64.efi` (GRUB 2.12) has no embedded
//! config and a built-in prefix of `/EFI/debian` with no device (read from
//! the image: the `mods` section holds an `OBJ_TYPE_PREFIX` object, see
//! [`GrubImageInfo::read`]); the device becomes the one GRUB was loaded
//! from, the ESP. Its `normal` command first tries `$fw_path/grub.cfg`
//! (`fw_path` = the directory GRUB was loaded from, `(ESP)/EFI/BOOT`; a
//! Fedora patch Debian carries, visible as the `fw_path` string in the
//! binary) and then `$prefix/grub.cfg`. Booted through shim from the
//! removable path, `EFI/BOOT/grub.cfg` is therefore read (checked in QEMU
//! with hand-rewritten ESPs; DESIGN.md "UKI, systemd-boot and Secure Boot"). Debian 12's signed GRUB 2.06 differs: it embeds
//! `normal (memdisk)/grub.cfg`, a memdisk script that sources
//! `$prefix/x86_64-efi/grub.cfg`, else `$prefix/grub.cfg`, else
//! `$cmdpath/grub.cfg` — the prefix first. Writing the same file at both
//! places serves both orders, GRUBs without the `fw_path` patch, and a
//! chain started from `EFI/<vendor>/`. Fedora's (`/EFI/fedora`) and
//! Ubuntu's (`/EFI/ubuntu`) signed GRUBs follow the same scheme. Both files
//! hold [`grub_cfg::render_embedded`]: find the ESP by volume id and
//! `configfile` cbootc's `/grub/grub.cfg`, so the menu, one-shot entries and
//! grubenv handling are the same as on a non-Secure-Boot GRUB disk. Every
//! GRUB module that config and cbootc's grub.cfg use (`search`, `configfile`,
//! `loadenv`, `linux`, `serial`, `regexp`, …) is built into Debian's signed
//! image; under Secure Boot GRUB cannot load others.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::boot::grub_cfg;
use crate::boot::grub_efi::check_efi_x86_64;
use crate::boot::secureboot::signature_count;
use crate::util::atomic;

/// Where `contrib/image/finish-rootfs.sh` stages the signed binaries:
/// `usr/share/efi/EFI/<os-release ID>/`.
pub const STAGED_DIR: &str = "usr/share/efi/EFI";

/// Debian/Ubuntu package paths (shim-signed, grub-efi-amd64-signed).
const DEBIAN_SHIM: &str = "usr/lib/shim/shimx64.efi.signed";
const DEBIAN_MOK: [&str; 2] = ["usr/lib/shim/mmx64.efi.signed", "usr/lib/shim/mmx64.efi"];
const DEBIAN_GRUB: &str = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

/// ESP paths, relative to the ESP root.
pub const ESP_SHIM: &str = "EFI/BOOT/BOOTX64.EFI";
/// Signed GRUB next to shim.
pub const ESP_GRUB: &str = "EFI/BOOT/grubx64.efi";
/// MokManager next to shim.
pub const ESP_MOK: &str = "EFI/BOOT/mmx64.efi";
/// GRUB's `$fw_path/grub.cfg` when started from the removable path.
pub const ESP_FW_PATH_CFG: &str = "EFI/BOOT/grub.cfg";

/// The signed boot chain found in an image (paths in cbootc's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimChain {
    /// `shimx64.efi`.
    pub shim: PathBuf,
    /// The signed `grubx64.efi`.
    pub grub: PathBuf,
    /// `mmx64.efi`, if the image has it.
    pub mok_manager: Option<PathBuf>,
}

/// Find the signed chain in the image at `root`: first the staged
/// directory for `os_id` (os-release `ID`), then the only vendor directory
/// staged, then Debian/Ubuntu's package paths, then Fedora's
/// `boot/efi/EFI/<os_id>/`.
pub fn find(root: &Path, os_id: &str) -> Result<ShimChain> {
    let mut candidates: Vec<PathBuf> = vec![root.join(STAGED_DIR).join(os_id)];
    let staged = root.join(STAGED_DIR);
    if let Ok(rd) = fs::read_dir(&staged) {
        let dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("shimx64.efi").is_file())
            .collect();
        if dirs.len() == 1 {
            candidates.push(dirs[0].clone());
        }
    }
    for dir in &candidates {
        let (shim, grub) = (dir.join("shimx64.efi"), dir.join("grubx64.efi"));
        if shim.is_file() && grub.is_file() {
            let mok = dir.join("mmx64.efi");
            return Ok(ShimChain {
                shim,
                grub,
                mok_manager: mok.is_file().then_some(mok),
            });
        }
    }
    let (shim, grub) = (root.join(DEBIAN_SHIM), root.join(DEBIAN_GRUB));
    if shim.is_file() && grub.is_file() {
        return Ok(ShimChain {
            shim,
            grub,
            mok_manager: DEBIAN_MOK
                .iter()
                .map(|p| root.join(p))
                .find(|p| p.is_file()),
        });
    }
    let fedora = root.join("boot/efi/EFI").join(os_id);
    let (shim, grub) = (fedora.join("shimx64.efi"), fedora.join("grubx64.efi"));
    if shim.is_file() && grub.is_file() {
        let mok = fedora.join("mmx64.efi");
        return Ok(ShimChain {
            shim,
            grub,
            mok_manager: mok.is_file().then_some(mok),
        });
    }
    bail!(
        "the image has no signed shim and GRUB (looked in {}/{os_id}/, {}, {} and \
         boot/efi/EFI/{os_id}/ under {}); install shim-signed and grub-efi-amd64-signed \
         (Debian/Ubuntu) or shim-x64 and grub2-efi-x64 (Fedora) in the image",
        STAGED_DIR,
        DEBIAN_SHIM,
        DEBIAN_GRUB,
        root.display()
    )
}

/// What a GRUB EFI image carries in its `mods` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubImageInfo {
    /// The built-in prefix (`grub-mkimage -p`), e.g. `/EFI/debian`.
    pub prefix: Option<String>,
    /// An embedded early config (`grub-mkimage -c`), if any.
    pub config: Option<String>,
    /// Whether the image has a memdisk.
    pub memdisk: bool,
}

/// `grub_module_info64.magic` ("mimg"; grub include/grub/kernel.h).
const GRUB_MODULE_MAGIC: u32 = 0x676d_696d;
/// Object types in the module area (include/grub/kernel.h `enum`).
const OBJ_TYPE_MEMDISK: u32 = 1;
const OBJ_TYPE_CONFIG: u32 = 2;
const OBJ_TYPE_PREFIX: u32 = 3;

impl GrubImageInfo {
    /// Read the module area of a GRUB EFI image: the PE section `mods`
    /// starts with `grub_module_info64 { magic, padding, offset, size }`
    /// followed, from `offset`, by `grub_module_header { type, size }`
    /// objects (size includes the header) up to `size`.
    pub fn read(data: &[u8]) -> Result<Self> {
        check_efi_x86_64(data)?;
        let mods = composefs_boot::uki::get_section(data, "mods")
            .context("not a PE file")?
            .context("not a GRUB image: no mods section")?;
        let u32_at = |off: usize| -> Result<u32> {
            Ok(u32::from_le_bytes(
                mods.get(off..off + 4)
                    .context("GRUB module area truncated")?
                    .try_into()?,
            ))
        };
        let u64_at = |off: usize| -> Result<u64> {
            Ok(u64::from_le_bytes(
                mods.get(off..off + 8)
                    .context("GRUB module area truncated")?
                    .try_into()?,
            ))
        };
        ensure!(
            u32_at(0)? == GRUB_MODULE_MAGIC,
            "not a GRUB image: bad module area magic"
        );
        let offset = usize::try_from(u64_at(8)?)?;
        let size = usize::try_from(u64_at(16)?)?;
        ensure!(size <= mods.len(), "GRUB module area runs past its section");
        let mut info = GrubImageInfo::default();
        let mut pos = offset;
        while pos + 8 <= size {
            let (kind, len) = (u32_at(pos)?, u32_at(pos + 4)? as usize);
            ensure!(
                len >= 8 && pos + len <= size,
                "malformed GRUB module header at {pos:#x}"
            );
            let body = &mods[pos + 8..pos + len];
            let text = || {
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                String::from_utf8_lossy(&body[..end]).into_owned()
            };
            match kind {
                OBJ_TYPE_PREFIX => info.prefix = Some(text()),
                OBJ_TYPE_CONFIG => info.config = Some(text()),
                OBJ_TYPE_MEMDISK => info.memdisk = true,
                _ => {}
            }
            pos += len;
        }
        Ok(info)
    }
}

/// The ESP-relative directory of a GRUB prefix such as `/EFI/debian` or
/// `(hd0,gpt1)/EFI/debian` (`None` for an empty one).
pub fn prefix_dir(prefix: &str) -> Option<String> {
    let path = match prefix.strip_prefix('(') {
        Some(rest) => rest.split_once(')').map(|(_, p)| p)?,
        None => prefix,
    };
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

/// Copy the chain into `esp` (see the module docs for the layout) and
/// write the hand-over config for the ESP with FAT volume id `esp_uuid`.
/// Each binary must be an x86-64 EFI application with an Authenticode
/// signature (shim, GRUB and MokManager are useless unsigned under Secure
/// Boot). Returns the ESP-relative paths of the configs written.
pub fn install(chain: &ShimChain, esp: &Path, esp_uuid: &str) -> Result<Vec<String>> {
    grub_cfg::check_fs_uuid(esp_uuid)?;
    let read_signed = |p: &Path| -> Result<Vec<u8>> {
        let data = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        check_efi_x86_64(&data).with_context(|| format!("checking {}", p.display()))?;
        ensure!(
            signature_count(&data).with_context(|| format!("checking {}", p.display()))? > 0,
            "{} is not signed; Secure Boot would refuse it",
            p.display()
        );
        Ok(data)
    };
    let shim = read_signed(&chain.shim)?;
    let grub = read_signed(&chain.grub)?;
    let mok = chain.mok_manager.as_deref().map(read_signed).transpose()?;
    let info =
        GrubImageInfo::read(&grub).with_context(|| format!("reading {}", chain.grub.display()))?;

    let boot = esp.join("EFI/BOOT");
    fs::create_dir_all(&boot).with_context(|| format!("creating {}", boot.display()))?;
    let config = grub_cfg::render_embedded(esp_uuid);
    let mut configs = vec![ESP_FW_PATH_CFG.to_string()];
    if let Some(dir) = info.prefix.as_deref().and_then(prefix_dir) {
        let cfg = format!("{dir}/grub.cfg");
        if cfg != ESP_FW_PATH_CFG {
            configs.push(cfg);
        }
    }
    // Configs first, then GRUB, then shim last: until shim is replaced the
    // old boot path stays whole.
    for cfg in &configs {
        let p = esp.join(cfg);
        fs::create_dir_all(p.parent().context("config path has no parent")?)
            .with_context(|| format!("creating the directory of {}", p.display()))?;
        atomic::write_file(&p, config.as_bytes())?;
    }
    if let Some(mok) = &mok {
        atomic::write_file(&esp.join(ESP_MOK), mok)?;
    }
    atomic::write_file(&esp.join(ESP_GRUB), &grub)?;
    atomic::write_file(&esp.join(ESP_SHIM), &shim)?;
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::uki::tests::fake_pe;

    /// A GRUB-like image: a `mods` section with the given objects, and a
    /// fake certificate table so that it counts as signed.
    fn fake_grub(objects: &[(u32, &[u8])]) -> Vec<u8> {
        let mut area = Vec::new();
        for (kind, body) in objects {
            let len = (8 + body.len()).next_multiple_of(4);
            area.extend_from_slice(&kind.to_le_bytes());
            area.extend_from_slice(&(len as u32).to_le_bytes());
            area.extend_from_slice(body);
            area.resize(area.len() + len - 8 - body.len(), 0);
        }
        let mut mods = Vec::new();
        mods.extend_from_slice(&GRUB_MODULE_MAGIC.to_le_bytes());
        mods.extend_from_slice(&0u32.to_le_bytes());
        mods.extend_from_slice(&24u64.to_le_bytes());
        mods.extend_from_slice(&((24 + area.len()) as u64).to_le_bytes());
        mods.extend_from_slice(&area);
        signed(fake_pe(&[("mods", &mods)]))
    }

    /// Append a WIN_CERTIFICATE and point data directory 4 at it.
    fn signed(mut pe: Vec<u8>) -> Vec<u8> {
        let at = pe.len().next_multiple_of(8);
        pe.resize(at, 0);
        let body = b"0\x82fake pkcs7";
        let len = 8 + body.len();
        pe.extend_from_slice(&(len as u32).to_le_bytes());
        pe.extend_from_slice(&0x0200u16.to_le_bytes());
        pe.extend_from_slice(&0x0002u16.to_le_bytes());
        pe.extend_from_slice(body);
        pe.resize(at + len.next_multiple_of(8), 0);
        let dir = 0x80 + 24 + 112 + 4 * 8;
        let table_len = (pe.len() - at) as u32;
        pe[dir..dir + 4].copy_from_slice(&(at as u32).to_le_bytes());
        pe[dir + 4..dir + 8].copy_from_slice(&table_len.to_le_bytes());
        pe
    }

    #[test]
    fn reads_prefix_and_config() {
        let grub = fake_grub(&[(0, b"\x7fELF..."), (3, b"/EFI/debian\0\0\0")]);
        let info = GrubImageInfo::read(&grub).unwrap();
        assert_eq!(info.prefix.as_deref(), Some("/EFI/debian"));
        assert_eq!(info.config, None);
        assert!(!info.memdisk);

        let grub = fake_grub(&[
            (1, b"hsqs"),
            (2, b"configfile /x\n\0"),
            (3, b"(hd0,gpt1)/EFI/x\0"),
        ]);
        let info = GrubImageInfo::read(&grub).unwrap();
        assert_eq!(info.config.as_deref(), Some("configfile /x\n"));
        assert!(info.memdisk);
        assert_eq!(
            prefix_dir(info.prefix.as_deref().unwrap()).as_deref(),
            Some("EFI/x")
        );
    }

    #[test]
    fn prefix_dirs() {
        assert_eq!(prefix_dir("/EFI/debian").as_deref(), Some("EFI/debian"));
        assert_eq!(
            prefix_dir("($root)/EFI/fedora/").as_deref(),
            Some("EFI/fedora")
        );
        assert_eq!(prefix_dir(""), None);
        assert_eq!(prefix_dir("/"), None);
        assert_eq!(prefix_dir("(broken"), None);
    }

    #[test]
    fn non_grub_images_are_refused() {
        let err = GrubImageInfo::read(&fake_pe(&[(".text", b"x")])).unwrap_err();
        assert!(format!("{err:#}").contains("no mods section"), "{err:#}");
        let err = GrubImageInfo::read(&fake_pe(&[("mods", &[0u8; 24])])).unwrap_err();
        assert!(
            format!("{err:#}").contains("bad module area magic"),
            "{err:#}"
        );
    }

    fn staged_root(os_id: &str, with_mok: bool) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(STAGED_DIR).join(os_id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("shimx64.efi"),
            signed(fake_pe(&[(".text", b"shim")])),
        )
        .unwrap();
        fs::write(dir.join("grubx64.efi"), fake_grub(&[(3, b"/EFI/debian\0")])).unwrap();
        fs::write(dir.join("fbx64.efi"), signed(fake_pe(&[(".text", b"fb")]))).unwrap();
        if with_mok {
            fs::write(dir.join("mmx64.efi"), signed(fake_pe(&[(".text", b"mm")]))).unwrap();
        }
        root
    }

    #[test]
    fn finds_staged_chain_and_installs_it() {
        let root = staged_root("debian", true);
        let chain = find(root.path(), "debian").unwrap();
        assert!(chain.shim.ends_with("usr/share/efi/EFI/debian/shimx64.efi"));
        assert!(chain.mok_manager.is_some());
        // A derived image whose ID differs still finds the only staged vendor.
        assert_eq!(find(root.path(), "mydistro").unwrap(), chain);

        let esp = tempfile::tempdir().unwrap();
        let configs = install(&chain, esp.path(), "ABCD-1234").unwrap();
        assert_eq!(configs, ["EFI/BOOT/grub.cfg", "EFI/debian/grub.cfg"]);
        let e = esp.path();
        assert_eq!(
            fs::read(e.join(ESP_SHIM)).unwrap(),
            fs::read(&chain.shim).unwrap()
        );
        assert_eq!(
            fs::read(e.join(ESP_GRUB)).unwrap(),
            fs::read(&chain.grub).unwrap()
        );
        assert!(e.join(ESP_MOK).is_file());
        assert!(!e.join("EFI/BOOT/fbx64.efi").exists(), "no fallback");
        for cfg in &configs {
            let text = fs::read_to_string(e.join(cfg)).unwrap();
            assert_eq!(text, grub_cfg::render_embedded("ABCD-1234"));
            assert!(text.contains("configfile ($root)/grub/grub.cfg"), "{text}");
        }
    }

    #[test]
    fn debian_package_paths_are_found() {
        let root = tempfile::tempdir().unwrap();
        for (p, data) in [
            (DEBIAN_SHIM, signed(fake_pe(&[(".text", b"s")]))),
            (DEBIAN_GRUB, fake_grub(&[(3, b"/EFI/ubuntu\0")])),
        ] {
            let p = root.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        let chain = find(root.path(), "ubuntu").unwrap();
        assert!(chain.grub.ends_with(DEBIAN_GRUB));
        assert_eq!(chain.mok_manager, None);
        let esp = tempfile::tempdir().unwrap();
        let configs = install(&chain, esp.path(), "ABCD-1234").unwrap();
        assert_eq!(configs, ["EFI/BOOT/grub.cfg", "EFI/ubuntu/grub.cfg"]);
        assert!(!esp.path().join(ESP_MOK).exists());
    }

    #[test]
    fn missing_or_unsigned_chain_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = find(root.path(), "debian").unwrap_err();
        assert!(format!("{err:#}").contains("shim-signed"), "{err:#}");

        let root = staged_root("debian", false);
        let dir = root.path().join(STAGED_DIR).join("debian");
        fs::write(dir.join("grubx64.efi"), fake_pe(&[("mods", b"")])).unwrap();
        let chain = find(root.path(), "debian").unwrap();
        let esp = tempfile::tempdir().unwrap();
        let err = install(&chain, esp.path(), "ABCD-1234").unwrap_err();
        assert!(format!("{err:#}").contains("is not signed"), "{err:#}");
        assert!(!esp.path().join(ESP_SHIM).exists());
        assert!(install(&chain, esp.path(), "bad").is_err());
    }

    /// The real Debian signed GRUBs, where present: bookworm's 2.06 (host
    /// package grub-efi-amd64-signed) embeds `normal (memdisk)/grub.cfg`,
    /// whose memdisk script sources `$prefix/grub.cfg`, else
    /// `$cmdpath/grub.cfg`; trixie's 2.12 (CBOOTC_TEST_ROOTFS) embeds no
    /// config. Both have the prefix `/EFI/debian`.
    #[test]
    fn real_debian_grubs_have_the_expected_prefix() {
        let mut seen = 0;
        let rootfs = std::env::var("CBOOTC_TEST_ROOTFS").unwrap_or_default();
        for (p, config) in [
            (
                "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed".to_string(),
                Some("normal (memdisk)/grub.cfg\n"),
            ),
            (
                format!("{rootfs}/usr/share/efi/EFI/debian/grubx64.efi"),
                None,
            ),
        ] {
            if rootfs.is_empty() && config.is_none() || !Path::new(&p).is_file() {
                continue;
            }
            let data = fs::read(&p).unwrap();
            let info = GrubImageInfo::read(&data).unwrap();
            assert_eq!(info.prefix.as_deref(), Some("/EFI/debian"), "{p}");
            assert_eq!(info.config.as_deref(), config, "{p}");
            assert!(info.memdisk, "{p}");
            assert!(signature_count(&data).unwrap() >= 1);
            seen += 1;
        }
        if seen == 0 {
            eprintln!("skipping: no Debian signed GRUB here");
        }
    }
}

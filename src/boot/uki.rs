//! Unified kernel images: building one from an image's kernel, initramfs and
//! os-release, reading one back, and checking a sealed one.
//!
//! # Building: the image's `ukify`, not in-Rust PE assembly
//!
//! A UKI is systemd-stub (`linuxx64.efi.stub`) with sections appended
//! (UAPI "Unified Kernel Image" specification; systemd-stub(7)): `.osrel`,
//! `.cmdline`, `.uname`, `.linux`, `.initrd`, and `.sbat` merged from the
//! stub's and the kernel's. cbootc builds it with the image's own
//! `ukify build` (systemd-ukify) through [`Tools`] rather than assembling
//! the PE itself with a crate such as `object` or `goblin`, for robustness:
//!
//! - The layout rules are systemd's and change with the stub: section
//!   alignment and `SizeOfImage`, placing sections after the stub's so the
//!   stub's relocations stay valid, `.linux` ordering, merging `.sbat` so
//!   shim/firmware SBAT revocation applies to the UKI, PE profiles and
//!   `.ucode`/`.dtbauto` in newer stubs. `ukify` from the same systemd
//!   build as the stub always agrees with it; a Rust re-implementation
//!   would have to track every stub release (the objcopy recipes that
//!   predate ukify broke exactly this way when stubs grew sections).
//! - It is the tool bootc's sealed-image build and distributions'
//!   kernel-install use, so cbootc's UKIs are built the way the rest of the
//!   ecosystem builds them.
//! - The cost is Python + pefile in the image (`systemd-ukify` depends on
//!   them); a UKI-style image must ship `systemd-ukify` and
//!   `systemd-boot-efi` (the stub) — the UKI images of this project do.
//!
//! `ukify` runs with `--config=` an empty file so that a stray `ukify.conf`
//! in the image (`/etc/systemd/ukify.conf` &c.) cannot add signing or PCR
//! options, and without any signing option:
//! signing is [`crate::boot::secureboot`]'s job, so that sealed UKIs from the
//! image and built ones are signed the same way. Inputs go through files in
//! the tools' scratch space (`@file` forms), so no command line or
//! os-release text is ever interpreted by a shell or argument parser.
//!
//! The result is read back before it is installed: `.cmdline`, `.osrel`,
//! `.uname` and `.initrd` must equal the inputs byte for byte, `.linux` must
//! be the kernel, and `.sbat` must be there.
//!
//! # Sealed UKIs
//!
//! A sealed image ships its own signed UKI whose `.cmdline` names the
//! composefs image it may boot (bootc's "sealed images"). [`check_sealed`]
//! refuses a UKI whose digest is not the image's, printing both.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use composefs::fsverity::FsVerityHashValue;
use composefs_boot::cmdline::ComposefsCmdline;
use composefs_boot::uki;

use crate::boot::grub_efi::check_efi_x86_64;
use crate::boot::secureboot::signature_count;
use crate::repo::ObjectId;
use crate::util::atomic;
use crate::util::command::{Tools, run_command};

/// systemd-stub inside the tool root (Debian/Ubuntu `systemd-boot-efi`,
/// Fedora `systemd-boot-unsigned`).
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// What a UKI is built from. Paths are in cbootc's view.
#[derive(Debug, Clone)]
pub struct UkiInput<'a> {
    /// The kernel (`/usr/lib/modules/<kver>/vmlinuz`).
    pub kernel: &'a Path,
    /// The initramfs (`/usr/lib/modules/<kver>/initramfs.img`).
    pub initramfs: &'a Path,
    /// The complete kernel command line, composefs argument included.
    pub cmdline: &'a str,
    /// The image's os-release text (`.osrel`: menu title and version).
    pub os_release: &'a str,
    /// The kernel version (`.uname`), e.g. `6.12.48+deb13-cloud-amd64`.
    pub uname: &'a str,
}

impl UkiInput<'_> {
    fn validate(&self) -> Result<()> {
        ensure!(!self.cmdline.trim().is_empty(), "empty kernel command line");
        if let Some(c) = self.cmdline.chars().find(|c| c.is_control() && *c != '\t') {
            bail!("kernel command line contains {c:?}");
        }
        ensure!(
            !self.uname.is_empty()
                && !self
                    .uname
                    .contains(|c: char| c.is_whitespace() || c.is_control()),
            "invalid kernel version {:?}",
            self.uname
        );
        ensure!(!self.os_release.contains('\0'), "os-release contains NUL");
        Ok(())
    }
}

/// Build a UKI with `ukify` from `tools`, check it, and write it atomically
/// to `output` (cbootc's view). The UKI is unsigned.
pub fn build(tools: &dyn Tools, input: &UkiInput, output: &Path) -> Result<()> {
    input.validate()?;
    let kernel =
        fs::read(input.kernel).with_context(|| format!("reading {}", input.kernel.display()))?;
    let initramfs = fs::read(input.initramfs)
        .with_context(|| format!("reading {}", input.initramfs.display()))?;

    let (work, tool_work) = crate::util::command::work_dir(tools, "uki")?;
    let put = |file: &str, data: &[u8]| {
        let p = work.path().join(file);
        fs::write(&p, data).with_context(|| format!("writing {}", p.display()))
    };
    put("vmlinuz", &kernel)?;
    put("initrd", &initramfs)?;
    put("cmdline", input.cmdline.as_bytes())?;
    put("os-release", input.os_release.as_bytes())?;
    // An empty config: see the module docs.
    put("ukify.conf", b"")?;

    let arg = |key: &str, file: &str| {
        let mut a = std::ffi::OsString::from(format!("--{key}="));
        a.push(tool_work.join(file));
        a
    };
    let at_arg = |key: &str, file: &str| {
        let mut a = std::ffi::OsString::from(format!("--{key}=@"));
        a.push(tool_work.join(file));
        a
    };
    let mut cmd = tools
        .command("ukify")
        .context("ukify is needed to build UKIs (package systemd-ukify)")?;
    cmd.env("LC_ALL", "C.UTF-8")
        .arg("build")
        .arg(arg("config", "ukify.conf"))
        .arg(arg("linux", "vmlinuz"))
        .arg(arg("initrd", "initrd"))
        .arg(at_arg("cmdline", "cmdline"))
        .arg(at_arg("os-release", "os-release"))
        .arg(format!("--uname={}", input.uname))
        .arg(format!("--stub={STUB}"))
        .arg(arg("output", "uki.efi"));
    run_command(&mut cmd).context("building the UKI with ukify")?;

    let built = work.path().join("uki.efi");
    let data = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    check_built(&data, input, &kernel, &initramfs).context("ukify produced an unusable UKI")?;
    atomic::write_file(output, &data)
}

/// Check a freshly built UKI against what it was built from.
fn check_built(data: &[u8], input: &UkiInput, kernel: &[u8], initramfs: &[u8]) -> Result<()> {
    check_efi_x86_64(data)?;
    let info = UkiInfo::read(data)?;
    ensure!(
        info.cmdline == input.cmdline,
        ".cmdline is {:?}, expected {:?}",
        info.cmdline,
        input.cmdline
    );
    ensure!(
        info.os_release == input.os_release,
        ".osrel differs from the image's os-release"
    );
    ensure!(
        info.uname.as_deref() == Some(input.uname),
        ".uname is {:?}, expected {:?}",
        info.uname,
        input.uname
    );
    let section = |name: &'static str| -> Result<&[u8]> {
        uki::get_section(data, name)
            .context("not a PE file")?
            .with_context(|| format!("no {name} section"))
    };
    ensure!(section(".linux")? == kernel, ".linux is not the kernel");
    ensure!(
        section(".initrd")? == initramfs,
        ".initrd is not the initramfs"
    );
    ensure!(!section(".sbat")?.is_empty(), ".sbat is empty");
    ensure!(
        signature_count(data)? == 0,
        "the UKI is signed, but no signing was asked for (a ukify.conf?)"
    );
    Ok(())
}

/// What a UKI says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiInfo {
    /// `.cmdline`.
    pub cmdline: String,
    /// `.osrel`.
    pub os_release: String,
    /// `.uname`, if present (optional in the specification).
    pub uname: Option<String>,
}

impl UkiInfo {
    /// Read `.cmdline`, `.osrel` and `.uname` from a UKI; the first two are
    /// required.
    pub fn read(data: &[u8]) -> Result<Self> {
        let cmdline = uki::get_cmdline(data)
            .context("reading the UKI's .cmdline")?
            .to_string();
        let os_release = uki::get_text_section(data, ".osrel")
            .context("reading the UKI's .osrel")?
            .to_string();
        let uname = match uki::get_section(data, ".uname") {
            Some(Ok(bytes)) => Some(
                std::str::from_utf8(bytes)
                    .context("the UKI's .uname is not UTF-8")?
                    .to_string(),
            ),
            _ => None,
        };
        Ok(Self {
            cmdline,
            os_release,
            uname,
        })
    }
}

/// The composefs argument in a UKI's `.cmdline` (`composefs.digest=` for a
/// format-V1 image id, `composefs=` for V2).
pub fn sealed_digest(uki_bytes: &[u8]) -> Result<ComposefsCmdline<ObjectId>> {
    let cmdline = uki::get_cmdline(uki_bytes).context("reading the UKI's .cmdline")?;
    ComposefsCmdline::<ObjectId>::from_cmdline(cmdline)
        .with_context(|| format!("parsing the UKI's .cmdline {cmdline:?}"))?
        .with_context(|| {
            format!(
                "the UKI's .cmdline has no composefs argument (composefs= or \
                 composefs.digest=v1-sha512-12:…): {cmdline:?}"
            )
        })
}

/// Refuse a sealed UKI that is not for the image `expected_id_hex` (the
/// hex id of the image's boot EROFS). Returns its composefs argument.
///
/// Note the format: a `composefs=<hex>` (V2) argument names the image's
/// format-V2 EROFS, a `composefs.digest=v1-…` one its V1 EROFS; the two ids
/// of one image differ. Pass the id of the format the UKI uses (see
/// [`sealed_digest`]).
pub fn check_sealed(uki_bytes: &[u8], expected_id_hex: &str) -> Result<ComposefsCmdline<ObjectId>> {
    let expected = ObjectId::from_hex(expected_id_hex)
        .with_context(|| format!("invalid image id {expected_id_hex:?}"))?;
    let karg = sealed_digest(uki_bytes)?;
    if karg.digest() != &expected {
        let format = match karg {
            ComposefsCmdline::V1 { .. } => "composefs.digest= (format V1)",
            ComposefsCmdline::V2 { .. } => "composefs= (format V2)",
        };
        bail!(
            "the image's UKI is sealed for a different root file system: its .cmdline names \
             composefs image {} ({format}), but the image being installed is {}; rebuild the \
             UKI from this image (bootc container compute-composefs-digest / cfsctl oci \
             compute-id --bootable)",
            karg.digest().to_hex(),
            expected.to_hex()
        );
    }
    Ok(karg)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    /// A minimal PE32+ x86-64 EFI application with the given sections (no
    /// code; enough for the section and header readers).
    pub(crate) fn fake_pe(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let pe = 0x80usize;
        let opt_size = 240usize; // PE32+ with 16 data directories
        let headers = pe + 24 + opt_size + 40 * sections.len();
        let mut data_off = headers.next_multiple_of(0x200);
        let mut out = vec![0u8; data_off];
        out[0..2].copy_from_slice(b"MZ");
        out[0x3c..0x40].copy_from_slice(&(pe as u32).to_le_bytes());
        out[pe..pe + 4].copy_from_slice(b"PE\0\0");
        out[pe + 4..pe + 6].copy_from_slice(&0x8664u16.to_le_bytes());
        out[pe + 6..pe + 8].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        out[pe + 20..pe + 22].copy_from_slice(&(opt_size as u16).to_le_bytes());
        let opt = pe + 24;
        out[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        out[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes());
        out[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        for (i, (name, body)) in sections.iter().enumerate() {
            let sh = opt + opt_size + 40 * i;
            out[sh..sh + name.len()].copy_from_slice(name.as_bytes());
            out[sh + 8..sh + 12].copy_from_slice(&(body.len() as u32).to_le_bytes());
            out[sh + 12..sh + 16].copy_from_slice(&((0x1000 * (i + 1)) as u32).to_le_bytes());
            let raw = body.len().next_multiple_of(0x200);
            out[sh + 16..sh + 20].copy_from_slice(&(raw as u32).to_le_bytes());
            out[sh + 20..sh + 24].copy_from_slice(&(data_off as u32).to_le_bytes());
            out.extend_from_slice(body);
            out.resize(data_off + raw, 0);
            data_off += raw;
        }
        out
    }

    const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HEX_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const OSREL: &str = "NAME=\"Test OS\"\nVERSION_ID=1\n";

    fn uki_with_cmdline(cmdline: &str) -> Vec<u8> {
        fake_pe(&[
            (".osrel", OSREL.as_bytes()),
            (".cmdline", cmdline.as_bytes()),
        ])
    }

    #[test]
    fn sealed_v1_digest_matches() {
        let uki = uki_with_cmdline(&format!("rw composefs.digest=v1-sha512-12:{HEX_A} quiet"));
        let karg = check_sealed(&uki, HEX_A).unwrap();
        assert!(matches!(
            karg,
            ComposefsCmdline::V1 {
                insecure: false,
                ..
            }
        ));
        assert_eq!(karg.digest().to_hex(), HEX_A);
    }

    #[test]
    fn sealed_v2_and_insecure_forms_are_read() {
        let uki = uki_with_cmdline(&format!("composefs=?{HEX_B} rw"));
        let karg = check_sealed(&uki, HEX_B).unwrap();
        assert!(matches!(karg, ComposefsCmdline::V2 { insecure: true, .. }));
    }

    #[test]
    fn sealed_mismatch_names_both_digests() {
        let uki = uki_with_cmdline(&format!("composefs.digest=v1-sha512-12:{HEX_A}"));
        let err = check_sealed(&uki, HEX_B).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(HEX_A), "{msg}");
        assert!(msg.contains(HEX_B), "{msg}");
        assert!(msg.contains("format V1"), "{msg}");

        let uki = uki_with_cmdline(&format!("composefs={HEX_A}"));
        let msg = format!("{:#}", check_sealed(&uki, HEX_B).unwrap_err());
        assert!(msg.contains("format V2"), "{msg}");
    }

    #[test]
    fn sealed_without_composefs_or_cmdline_is_refused() {
        let uki = uki_with_cmdline("root=/dev/sda rw");
        let msg = format!("{:#}", check_sealed(&uki, HEX_A).unwrap_err());
        assert!(msg.contains("no composefs argument"), "{msg}");

        let uki = fake_pe(&[(".osrel", OSREL.as_bytes())]);
        let msg = format!("{:#}", check_sealed(&uki, HEX_A).unwrap_err());
        assert!(msg.contains(".cmdline"), "{msg}");

        // A SHA-256 digest in a SHA-512 repository's UKI.
        let uki = uki_with_cmdline(&format!("composefs={}", &HEX_A[..64]));
        assert!(check_sealed(&uki, HEX_A).is_err());
        assert!(check_sealed(&uki_with_cmdline("composefs=x"), "nothex").is_err());
    }

    #[test]
    fn info_reads_sections() {
        let uki = fake_pe(&[
            (".osrel", OSREL.as_bytes()),
            (".cmdline", b"a b"),
            (".uname", b"6.1.0"),
        ]);
        assert_eq!(
            UkiInfo::read(&uki).unwrap(),
            UkiInfo {
                cmdline: "a b".into(),
                os_release: OSREL.into(),
                uname: Some("6.1.0".into())
            }
        );
        let no_uname = fake_pe(&[(".osrel", OSREL.as_bytes()), (".cmdline", b"a")]);
        assert_eq!(UkiInfo::read(&no_uname).unwrap().uname, None);
    }

    /// Tools whose `ukify` is a shell script that records its arguments and
    /// copies a prepared file to `--output=`; the scratch directory is seen
    /// by the "tool" under another path, as in a chroot.
    struct FakeUkify {
        dir: tempfile::TempDir,
        scratch: PathBuf,
        alias: PathBuf,
    }

    impl FakeUkify {
        fn new(result: &[u8]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let scratch = dir.path().join("scratch");
            fs::create_dir(&scratch).unwrap();
            let alias = dir.path().join("alias");
            std::os::unix::fs::symlink(&scratch, &alias).unwrap();
            fs::write(dir.path().join("result.efi"), result).unwrap();
            let script = dir.path().join("ukify");
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$@\" > {args}\n\
                     for a; do case $a in --cmdline=@*) cp \"${{a#--cmdline=@}}\" {dir}/cmdline.seen;; \
                     --output=*) out=${{a#--output=}};; esac; done\n\
                     cp {dir}/result.efi \"$out\"\n",
                    args = dir.path().join("args").display(),
                    dir = dir.path().display()
                ),
            )
            .unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            Self {
                dir,
                scratch,
                alias,
            }
        }
    }

    impl Tools for FakeUkify {
        fn command(&self, program: &str) -> Result<Command> {
            ensure!(program == "ukify", "unexpected program {program}");
            Ok(Command::new(self.dir.path().join("ukify")))
        }
        fn scratch(&self) -> (&Path, &Path) {
            (&self.scratch, &self.alias)
        }
    }

    struct Inputs {
        dir: tempfile::TempDir,
        kernel: Vec<u8>,
        initrd: Vec<u8>,
    }

    impl Inputs {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let kernel = fake_pe(&[(".text", b"kernel code")]);
            let initrd = b"070701 initramfs".to_vec();
            fs::write(dir.path().join("vmlinuz"), &kernel).unwrap();
            fs::write(dir.path().join("initramfs.img"), &initrd).unwrap();
            Self {
                dir,
                kernel,
                initrd,
            }
        }
        fn input<'a>(&'a self, k: &'a Path, i: &'a Path, cmdline: &'a str) -> UkiInput<'a> {
            UkiInput {
                kernel: k,
                initramfs: i,
                cmdline,
                os_release: OSREL,
                uname: "6.12.0-test",
            }
        }
        fn paths(&self) -> (PathBuf, PathBuf) {
            (
                self.dir.path().join("vmlinuz"),
                self.dir.path().join("initramfs.img"),
            )
        }
        /// The UKI a correct ukify would produce.
        fn good_uki(&self, cmdline: &str) -> Vec<u8> {
            fake_pe(&[
                (".osrel", OSREL.as_bytes()),
                (".cmdline", cmdline.as_bytes()),
                (".uname", b"6.12.0-test"),
                (".sbat", b"sbat,1,SBAT Version,sbat,1,https://x\n"),
                (".linux", &self.kernel),
                (".initrd", &self.initrd),
            ])
        }
    }

    const CMDLINE: &str = "root=UUID=1 rw composefs.digest=v1-sha512-12:ab $notavar \"q\"";

    #[test]
    fn build_passes_inputs_as_files_in_the_tools_view() {
        let inputs = Inputs::new();
        let tools = FakeUkify::new(&inputs.good_uki(CMDLINE));
        let (k, i) = inputs.paths();
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("uki.efi");
        build(&tools, &inputs.input(&k, &i, CMDLINE), &output).unwrap();
        assert_eq!(fs::read(&output).unwrap(), inputs.good_uki(CMDLINE));

        let args = fs::read_to_string(tools.dir.path().join("args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(args[0], "build");
        assert!(
            args.iter()
                .any(|a| a.starts_with("--config=") && a.ends_with("/ukify.conf")),
            "{args:?}"
        );
        assert!(args.contains(&"--uname=6.12.0-test"), "{args:?}");
        assert!(
            args.contains(&"--stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
            "{args:?}"
        );
        let alias = tools.alias.to_str().unwrap();
        for key in [
            "--linux=",
            "--initrd=",
            "--cmdline=@",
            "--os-release=@",
            "--output=",
        ] {
            let a = args.iter().find(|a| a.starts_with(key)).unwrap();
            assert!(
                a[key.len()..].starts_with(alias),
                "{a} not in the tools' view"
            );
        }
        assert!(!args.iter().any(|a| a.contains("sign") || a.contains("pcr")));
        // The command line went through a file, byte for byte.
        assert_eq!(
            fs::read_to_string(tools.dir.path().join("cmdline.seen")).unwrap(),
            CMDLINE
        );
        // The work directory is gone.
        assert_eq!(fs::read_dir(&tools.scratch).unwrap().count(), 0);
    }

    #[test]
    fn build_refuses_a_uki_that_does_not_match_its_inputs() {
        let inputs = Inputs::new();
        let (k, i) = inputs.paths();
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("uki.efi");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (inputs.good_uki("other cmdline"), ".cmdline is"),
            (
                fake_pe(&[
                    (".osrel", OSREL.as_bytes()),
                    (".cmdline", CMDLINE.as_bytes()),
                    (".uname", b"6.12.0-test"),
                    (".sbat", b"x"),
                    (".linux", &inputs.kernel),
                ]),
                "no .initrd section",
            ),
            (
                fake_pe(&[
                    (".osrel", OSREL.as_bytes()),
                    (".cmdline", CMDLINE.as_bytes()),
                    (".uname", b"6.12.0-test"),
                    (".sbat", b"x"),
                    (".linux", b"other kernel"),
                    (".initrd", &inputs.initrd),
                ]),
                ".linux is not the kernel",
            ),
            (
                fake_pe(&[
                    (".osrel", OSREL.as_bytes()),
                    (".cmdline", CMDLINE.as_bytes()),
                    (".uname", b"6.12.0-test"),
                    (".linux", &inputs.kernel),
                    (".initrd", &inputs.initrd),
                ]),
                "no .sbat section",
            ),
            (b"garbage".to_vec(), "no MZ header"),
        ];
        for (result, want) in cases {
            let tools = FakeUkify::new(&result);
            let err = build(&tools, &inputs.input(&k, &i, CMDLINE), &output).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("ukify produced an unusable UKI"), "{msg}");
            assert!(msg.contains(want), "{want:?} not in {msg}");
            assert!(!output.exists());
        }
    }

    #[test]
    fn build_refuses_bad_inputs_before_running_ukify() {
        let inputs = Inputs::new();
        let (k, i) = inputs.paths();
        let tools = FakeUkify::new(b"");
        let out = Path::new("/nonexistent/out");
        for cmdline in ["", "a\nb", "a\0b"] {
            assert!(build(&tools, &inputs.input(&k, &i, cmdline), out).is_err());
        }
        let bad_uname = UkiInput {
            uname: "6.1 x",
            ..inputs.input(&k, &i, CMDLINE)
        };
        assert!(build(&tools, &bad_uname, out).is_err());
        assert!(!tools.dir.path().join("args").exists(), "ukify ran");
        let missing = Path::new("/nonexistent/vmlinuz");
        let err = build(&tools, &inputs.input(missing, &i, CMDLINE), out).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/vmlinuz"));
    }
}

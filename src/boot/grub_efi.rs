//! Building the GRUB EFI binary installed as `EFI/BOOT/BOOTX64.EFI`.
//!
//! cbootc does not run `grub-install`: it would write NVRAM boot entries,
//! look for `/boot/grub`, and differ between distributions. Instead it builds
//! one self-contained binary with `grub-mkstandalone` from the image's own
//! GRUB (so the boot loader matches the image), with the modules needed to
//! boot Linux from the ESP preloaded, and a tiny config in its memdisk that
//! finds the ESP by volume id and loads `grub/grub.cfg` from it
//! ([`grub_cfg::render_embedded`]). Installed at the removable-media path,
//! firmware boots it without any NVRAM entry.
//!
//! The binary is unsigned; Secure Boot needs a shim and a signed GRUB, which
//! this does not provide.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::boot::grub_cfg;
use crate::util::atomic;
use crate::util::command::{Tools, run_command};

/// Where GRUB's x86_64-efi modules live inside the tool root. Both Debian
/// (`grub-efi-amd64-bin`) and Fedora (`grub2-efi-x64-modules`) use it.
pub const MODULE_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// The tool's name on Debian/Ubuntu, then on Fedora/RHEL/SUSE.
pub const TOOL_NAMES: [&str; 2] = ["grub-mkstandalone", "grub2-mkstandalone"];

/// Modules preloaded into the binary: read GPT and FAT (and the usual root
/// filesystems, for rescue from the GRUB prompt), find the ESP by UUID, run
/// `grub.cfg` (menu, `test`, `load_env`/`save_env`, `echo`, `sleep`, regexp
/// wildcards), boot a possibly gzip-compressed Linux kernel, drive EFI video
/// and the serial console, and offer `cat`/`ls`/`reboot`/`halt` for
/// debugging. Dependencies (e.g. `boot`, `terminfo`, `efi_gop`) are pulled
/// in by grub-mkimage from `moddep.lst`. All exist in GRUB 2.06's
/// x86_64-efi directory.
pub const MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "xfs",
    "btrfs",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "linux",
    "echo",
    "test",
    "loadenv",
    "gzio",
    "all_video",
    "serial",
    "terminal",
    "regexp",
    "sleep",
    "reboot",
    "halt",
    "cat",
    "ls",
];

/// IMAGE_FILE_MACHINE_AMD64 (PE/COFF specification, "Machine Types").
const MACHINE_AMD64: u16 = 0x8664;
/// Optional header magic of PE32+ images.
const PE32_PLUS: u16 = 0x20b;
/// IMAGE_SUBSYSTEM_EFI_APPLICATION.
const SUBSYSTEM_EFI_APPLICATION: u16 = 10;

/// Build a standalone x86_64-efi GRUB whose memdisk holds
/// `/boot/grub/grub.cfg` = [`grub_cfg::render_embedded`]`(esp_uuid)`, and
/// write it atomically to `output` (a path in cbootc's view).
///
/// `grub-mkstandalone` (or `grub2-mkstandalone`) and the modules in
/// [`MODULE_DIR`] come from `tools`, which may run them chrooted into the
/// image; all files they read and write go through `tools.scratch()`. The
/// result is checked to be an x86-64 EFI application before it is written.
pub fn build_standalone(tools: &dyn Tools, esp_uuid: &str, output: &Path) -> Result<()> {
    grub_cfg::check_fs_uuid(esp_uuid)?;
    let tool = find_tool(tools)?;
    check_module_dir(tools)?;

    let (work, tool_work) = crate::util::command::work_dir(tools, "grub-efi")?;

    let config = work.path().join("embedded.cfg");
    std::fs::write(&config, grub_cfg::render_embedded(esp_uuid))
        .with_context(|| format!("writing {}", config.display()))?;
    let tool_config = tool_work.join("embedded.cfg");
    let tool_output = tool_work.join("BOOTX64.EFI");

    let mut cmd = tools.command(tool)?;
    cmd.env("LC_ALL", "C")
        .arg("--format=x86_64-efi")
        .arg(format!("--directory={MODULE_DIR}"))
        .arg("--output")
        .arg(&tool_output)
        .arg(format!("--modules={}", MODULES.join(" ")))
        // No translations, themes or fonts (an empty list means none): about
        // 4 MiB instead of 10. The memdisk still gets every module, although
        // all that grub.cfg needs is preloaded: GRUB's normal mode always
        // ships fs.lst and, when a device has no file system it knows (the
        // whole disk, or the ESP search failing), tries to load each module
        // listed there, printing one "file not found" error per module it
        // lacks. With `--install-modules=` that is ~30 errors burying the
        // real message (seen with GRUB 2.06 in QEMU/OVMF).
        .arg("--locales=")
        .arg("--themes=")
        .arg("--fonts=")
        .arg(graft("boot/grub/grub.cfg", &tool_config)?);
    run_command(&mut cmd).with_context(|| format!("building the GRUB EFI binary with {tool}"))?;

    let built = work.path().join("BOOTX64.EFI");
    let data = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    check_efi_x86_64(&data)
        .with_context(|| format!("{tool} produced an unusable {}", built.display()))?;
    atomic::write_file(output, &data)
}

/// Check that `data` is a PE32+ x86-64 EFI application: the `MZ` stub, the
/// `PE\0\0` signature at the offset stored at 0x3c, machine AMD64, a PE32+
/// optional header and the EFI application subsystem — what firmware checks
/// before running `BOOTX64.EFI`.
pub fn check_efi_x86_64(data: &[u8]) -> Result<()> {
    let u16_at = |off: usize| {
        data.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .context("file too short for a PE header")
    };
    ensure!(data.starts_with(b"MZ"), "not a PE file (no MZ header)");
    let pe = data
        .get(0x3c..0x40)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .context("file too short for a PE header")?;
    ensure!(
        data.get(pe..pe + 4) == Some(b"PE\0\0".as_slice()),
        "not a PE file (no PE signature at offset {pe:#x})"
    );
    let machine = u16_at(pe + 4)?;
    ensure!(
        machine == MACHINE_AMD64,
        "PE machine is {machine:#06x}, expected x86-64 ({MACHINE_AMD64:#06x})"
    );
    // The optional header follows the 4-byte signature and 20-byte COFF
    // header; Subsystem is at offset 68 in a PE32+ optional header.
    let optional = pe + 24;
    let magic = u16_at(optional)?;
    ensure!(
        magic == PE32_PLUS,
        "PE optional header magic is {magic:#x}, expected PE32+ ({PE32_PLUS:#x})"
    );
    let subsystem = u16_at(optional + 68)?;
    ensure!(
        subsystem == SUBSYSTEM_EFI_APPLICATION,
        "PE subsystem is {subsystem}, expected EFI application ({SUBSYSTEM_EFI_APPLICATION})"
    );
    Ok(())
}

/// Find which of [`TOOL_NAMES`] the tool root has, by running `--version`.
///
/// A program counts as missing when [`Tools::command`] refuses it or when it
/// cannot be started. This runs the probe directly rather than through
/// [`run`](crate::util::command::run) because a missing program must be told
/// apart from a failing one: it is either a spawn error (host) or exit status
/// 127 (the shell's and chroot(1)'s "command not found", when the tools run
/// through such a wrapper).
fn find_tool(tools: &dyn Tools) -> Result<&'static str> {
    let mut tried = Vec::new();
    for name in TOOL_NAMES {
        // A Tools implementation may itself refuse a program it lacks.
        let mut cmd = match tools.command(name) {
            Ok(cmd) => cmd,
            Err(e) => {
                tried.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        cmd.arg("--version");
        let shown = describe(&cmd);
        match cmd.stdin(std::process::Stdio::null()).output() {
            Err(e) if e.kind() == ErrorKind::NotFound => tried.push(format!("{shown}: not found")),
            Err(e) => return Err(e).with_context(|| format!("cannot run {shown}")),
            Ok(out) if out.status.code() == Some(127) => {
                tried.push(format!("{shown}: not found (exit status 127)"));
            }
            Ok(out) if out.status.success() => {
                tracing::debug!("using {}", String::from_utf8_lossy(&out.stdout).trim());
                return Ok(name);
            }
            Ok(out) => bail!(
                "{shown} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
    bail!(
        "the image provides neither grub-mkstandalone nor grub2-mkstandalone, needed to build \
         the GRUB EFI binary (Debian/Ubuntu: grub-common; Fedora: grub2-tools-extra); tried: {}",
        tried.join("; ")
    )
}

/// Fail clearly when the tool root lacks GRUB's x86_64-efi modules (they are
/// in a separate package from the tools), instead of letting
/// grub-mkstandalone complain about `modinfo.sh`. If `test` itself cannot be
/// run, the check is left to grub-mkstandalone.
fn check_module_dir(tools: &dyn Tools) -> Result<()> {
    let marker = format!("{MODULE_DIR}/modinfo.sh");
    let Ok(mut cmd) = tools.command("test") else {
        return Ok(());
    };
    cmd.args(["-f", &marker]);
    let shown = describe(&cmd);
    match cmd.stdin(std::process::Stdio::null()).output() {
        Ok(out) if out.status.code() == Some(1) => bail!(
            "the image has no GRUB x86_64-efi modules ({MODULE_DIR}/modinfo.sh is missing; \
             checked with {shown}); install grub-efi-amd64-bin (Debian/Ubuntu) or \
             grub2-efi-x64-modules (Fedora) in the image"
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot run {shown}")),
    }
}

/// A grub-mkstandalone graft point `TARGET=SOURCE`; the tool splits at the
/// first `=`, so only the target must be free of it.
fn graft(target: &str, source: &Path) -> Result<String> {
    let source = source
        .to_str()
        .with_context(|| format!("{} is not UTF-8", source.display()))?;
    Ok(format!("{target}={source}"))
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::util::command::{HostTools, run};

    const UUID: &str = "C0FF-EE42";

    fn built_with(tools: &dyn Tools) -> (tempfile::TempDir, PathBuf) {
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("BOOTX64.EFI");
        build_standalone(tools, UUID, &output).unwrap();
        (out_dir, output)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn builds_a_bootable_efi_binary_with_host_grub() {
        let tools = HostTools::new().unwrap();
        let (out_dir, output) = built_with(&tools);
        let data = std::fs::read(&output).unwrap();

        assert_eq!(&data[..2], b"MZ");
        let pe = u32::from_le_bytes(data[0x3c..0x40].try_into().unwrap()) as usize;
        assert_eq!(&data[pe..pe + 4], b"PE\0\0");
        assert_eq!(u16::from_le_bytes([data[pe + 4], data[pe + 5]]), 0x8664);
        check_efi_x86_64(&data).unwrap();
        // Independent opinion: file(1).
        let file = run("file", &[&output]).unwrap();
        assert!(
            file.contains("PE32+ executable (EFI application) x86-64"),
            "{file}"
        );
        // The memdisk (an uncompressed tar) carries the embedded config.
        assert!(contains(&data, grub_cfg::render_embedded(UUID).as_bytes()));
        assert!(contains(&data, UUID.as_bytes()));
        // Trimmed: no locales, themes or fonts (about 10 MiB with them).
        assert!(data.len() < 6 << 20, "{} bytes", data.len());
        // Nothing left behind next to the output or in the scratch dir.
        let names: Vec<_> = std::fs::read_dir(out_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("BOOTX64.EFI")]);
        assert_eq!(std::fs::read_dir(tools.scratch().0).unwrap().count(), 0);
    }

    #[test]
    fn every_module_exists_in_the_host_grub() {
        for module in MODULES {
            let path = Path::new(MODULE_DIR).join(format!("{module}.mod"));
            assert!(path.is_file(), "{} missing", path.display());
        }
    }

    /// Tools whose programs are renamed (`None` = missing), and whose scratch
    /// directory the programs see under a different path (a symlink), like a
    /// chroot would.
    struct FakeTools {
        programs: HashMap<&'static str, Option<Vec<&'static str>>>,
        scratch: tempfile::TempDir,
        alias: PathBuf,
        _alias_dir: tempfile::TempDir,
    }

    impl FakeTools {
        fn new(programs: &[(&'static str, Option<Vec<&'static str>>)]) -> Self {
            let scratch = tempfile::tempdir().unwrap();
            let alias_dir = tempfile::tempdir().unwrap();
            let alias = alias_dir.path().join("scratch-as-seen-by-tool");
            std::os::unix::fs::symlink(scratch.path(), &alias).unwrap();
            Self {
                programs: programs.iter().cloned().collect(),
                scratch,
                alias,
                _alias_dir: alias_dir,
            }
        }
    }

    impl Tools for FakeTools {
        fn command(&self, program: &str) -> Result<Command> {
            Ok(match self.programs.get(program) {
                Some(Some(argv)) if argv[0] == "<refuse>" => {
                    bail!("{program} is not in the image")
                }
                Some(Some(argv)) => {
                    let mut cmd = Command::new(argv[0]);
                    cmd.args(&argv[1..]);
                    cmd
                }
                Some(None) => Command::new(format!("/nonexistent/cbootc-test/{program}")),
                None => Command::new(program),
            })
        }
        fn scratch(&self) -> (&Path, &Path) {
            (self.scratch.path(), &self.alias)
        }
    }

    #[test]
    fn falls_back_to_grub2_name_and_uses_the_tools_view_of_scratch() {
        // grub-mkstandalone "not found" the way chroot reports it (127),
        // grub2-mkstandalone is the real tool.
        let tools = FakeTools::new(&[
            (
                "grub-mkstandalone",
                Some(vec!["sh", "-c", "exit 127", "sh"]),
            ),
            ("grub2-mkstandalone", Some(vec!["grub-mkstandalone"])),
        ]);
        let (_dir, output) = built_with(&tools);
        check_efi_x86_64(&std::fs::read(output).unwrap()).unwrap();
    }

    #[test]
    fn refused_program_falls_through_to_the_other_name() {
        let tools = FakeTools::new(&[
            ("grub-mkstandalone", Some(vec!["<refuse>"])),
            ("grub2-mkstandalone", Some(vec!["grub-mkstandalone"])),
            ("test", Some(vec!["<refuse>"])),
        ]);
        let (_dir, output) = built_with(&tools);
        check_efi_x86_64(&std::fs::read(output).unwrap()).unwrap();

        let tools = FakeTools::new(&[
            ("grub-mkstandalone", Some(vec!["<refuse>"])),
            ("grub2-mkstandalone", Some(vec!["<refuse>"])),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let err = build_standalone(&tools, UUID, &dir.path().join("x")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("grub2-mkstandalone: grub2-mkstandalone is not in the image"),
            "{msg}"
        );
    }

    #[test]
    fn missing_tool_is_a_clear_error() {
        let tools = FakeTools::new(&[("grub-mkstandalone", None), ("grub2-mkstandalone", None)]);
        let dir = tempfile::tempdir().unwrap();
        let err = build_standalone(&tools, UUID, &dir.path().join("x")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("neither grub-mkstandalone nor grub2-mkstandalone"),
            "{msg}"
        );
        assert!(
            msg.contains("/nonexistent/cbootc-test/grub2-mkstandalone --version: not found"),
            "{msg}"
        );
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn missing_modules_are_a_clear_error() {
        let tools = FakeTools::new(&[("test", Some(vec!["false"]))]);
        let dir = tempfile::tempdir().unwrap();
        let err = build_standalone(&tools, UUID, &dir.path().join("x")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("no GRUB x86_64-efi modules"), "{msg}");
        assert!(msg.contains("grub2-efi-x64-modules"), "{msg}");
    }

    #[test]
    fn failing_tool_reports_its_output() {
        let tools = FakeTools::new(&[(
            "grub-mkstandalone",
            Some(vec![
                "sh",
                "-c",
                "[ \"$1\" = --version ] || { echo kaboom >&2; exit 1; }",
                "sh",
            ]),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let err = build_standalone(&tools, UUID, &dir.path().join("x")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("building the GRUB EFI binary with grub-mkstandalone"),
            "{msg}"
        );
        assert!(msg.contains("kaboom"), "{msg}");
    }

    #[test]
    fn non_efi_output_is_refused() {
        // A "grub-mkstandalone" that writes a text file where the binary
        // should be: the output must not be installed.
        let tools = FakeTools::new(&[(
            "grub-mkstandalone",
            Some(vec![
                "sh",
                "-c",
                "[ \"$1\" = --version ] && exit 0; echo oops > \"$4\"",
                "sh",
            ]),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("BOOTX64.EFI");
        let err = build_standalone(&tools, UUID, &output).unwrap_err();
        assert!(format!("{err:#}").contains("no MZ header"), "{err:#}");
        assert!(!output.exists());
    }

    #[test]
    fn invalid_uuid_is_refused_before_running_anything() {
        let tools = FakeTools::new(&[("grub-mkstandalone", None), ("grub2-mkstandalone", None)]);
        let err = build_standalone(&tools, "not-a-uuid", Path::new("/nonexistent")).unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid ESP volume id"),
            "{err:#}"
        );
    }

    #[test]
    fn pe_check_rejects_wrong_machine_and_subsystem() {
        let tools = HostTools::new().unwrap();
        let (_dir, output) = built_with(&tools);
        let good = std::fs::read(output).unwrap();
        let pe = u32::from_le_bytes(good[0x3c..0x40].try_into().unwrap()) as usize;

        let mut arm64 = good.clone();
        arm64[pe + 4..pe + 6].copy_from_slice(&0xaa64u16.to_le_bytes());
        let err = check_efi_x86_64(&arm64).unwrap_err();
        assert!(format!("{err}").contains("0xaa64"), "{err}");

        let mut console_app = good.clone();
        console_app[pe + 24 + 68..pe + 24 + 70].copy_from_slice(&3u16.to_le_bytes());
        let err = check_efi_x86_64(&console_app).unwrap_err();
        assert!(format!("{err}").contains("subsystem is 3"), "{err}");

        assert!(check_efi_x86_64(b"MZ").is_err());
        assert!(check_efi_x86_64(&good[..pe + 10]).is_err());
    }
}

//! `cbootc install`.

use std::path::PathBuf;

use anyhow::Result;
use cbootc::disk::mkfs::FsKind;
use cbootc::install::{InstallOptions, VerityMode};
use cbootc::util::size::parse_size;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Partition DEVICE and install the image: GRUB and BLS entries, or
    /// systemd-boot and UKIs (--uki), optionally Secure Boot signed.
    ///
    /// Run it inside a privileged container of the image to install:
    /// `podman run --rm --privileged -v /var/lib/containers:/var/lib/containers
    /// -v .:/output IMAGE cbootc install to-disk /output/disk.raw --size 10G`
    ToDisk(ToDiskArgs),
}

#[derive(Debug, Args)]
pub struct ToDiskArgs {
    /// Block device or disk image file (created or grown to --size).
    device: PathBuf,

    /// Size of the disk image file, e.g. 10G or 4096M (binary units).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,

    /// Image to install: oci:DIR[:TAG], oci-archive:FILE[:TAG] or
    /// containers-storage:NAME. Default: this container's image, from the
    /// host's containers-storage.
    #[arg(long, value_name = "IMGREF")]
    source: Option<String>,

    /// Image reference the installed system tracks for upgrades
    /// (default: the source; in a container, docker://IMAGE-NAME).
    #[arg(long, value_name = "REF")]
    target_imgref: Option<String>,

    /// Root filesystem.
    #[arg(long, value_enum, default_value_t = Filesystem::Ext4)]
    filesystem: Filesystem,

    /// Erase existing partition tables and filesystems on DEVICE.
    #[arg(long)]
    wipe: bool,

    /// Extra kernel argument (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,

    /// fs-verity: auto = required where the filesystem and running kernel
    /// support it, optional otherwise; required = refuse where it cannot
    /// work; off = optional, filesystem made without verity.
    #[arg(long, value_enum, default_value_t = Verity::Auto)]
    verity: Verity,

    /// Size of the EFI system partition, which holds GRUB, the boot entries
    /// and every deployment's kernel and initramfs.
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    esp_size: u64,

    /// Boot with systemd-boot and one Unified Kernel Image per deployment
    /// (built with the image's ukify, or the sealed UKI the image ships)
    /// instead of GRUB.
    #[arg(long)]
    uki: bool,

    /// Secure Boot: with GRUB, the distribution's signed shim and GRUB from
    /// the image (boots with Microsoft's keys); with --uki, systemd-boot and
    /// the UKIs signed with --sb-key/--sb-cert or a new key pair, whose
    /// certificate is written to the ESP and next to a disk image file
    /// (DEVICE.sb.cer) for enrolment.
    #[arg(long)]
    secure_boot: bool,

    /// PEM private key (RSA ≥ 2048) to sign with (--uki --secure-boot).
    #[arg(long, value_name = "PEM", requires_all = ["sb_cert", "secure_boot", "uki"])]
    sb_key: Option<PathBuf>,

    /// PEM certificate of --sb-key.
    #[arg(long, value_name = "PEM", requires = "sb_key")]
    sb_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Filesystem {
    Ext4,
    Xfs,
    Btrfs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Verity {
    Auto,
    Required,
    Off,
}

pub fn run(cmd: InstallCommand) -> Result<()> {
    match cmd {
        InstallCommand::ToDisk(a) => to_disk(a),
    }
}

fn to_disk(a: ToDiskArgs) -> Result<()> {
    let opts = InstallOptions {
        device: a.device.clone(),
        size: a.size,
        source: a.source,
        target_imgref: a.target_imgref,
        filesystem: match a.filesystem {
            Filesystem::Ext4 => FsKind::Ext4,
            Filesystem::Xfs => FsKind::Xfs,
            Filesystem::Btrfs => FsKind::Btrfs,
        },
        wipe: a.wipe,
        kargs: a.kargs,
        verity: match a.verity {
            Verity::Auto => VerityMode::Auto,
            Verity::Required => VerityMode::Required,
            Verity::Off => VerityMode::Off,
        },
        esp_size: a.esp_size,
        uki: a.uki,
        secure_boot: a.secure_boot,
        sb_key: a.sb_key,
        sb_cert: a.sb_cert,
        containerenv: std::env::var_os("CBOOTC_CONTAINERENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cbootc::image::containerenv::CONTAINERENV_PATH.into()),
    };
    let done = cbootc::install::to_disk(&opts)?;
    tracing::info!(
        "installed {} ({}{}, composefs id {}, fs-verity {}), tracking {}",
        a.device.display(),
        done.bootloader,
        if done.secure_boot {
            ", Secure Boot"
        } else {
            ""
        },
        &done.image_id[..16],
        done.verity,
        done.tracked_ref
    );
    if !a.device.starts_with("/dev/") {
        tracing::info!(
            "boot it with: qemu-system-x86_64 -m 2048 -machine q35 -bios /usr/share/ovmf/OVMF.fd -drive file={},format=raw,if=virtio -nographic",
            a.device.display()
        );
    }
    Ok(())
}

//! The `install to-disk` flow.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::mount::MountFlags;
use uuid::Uuid;

use super::{InstallOptions, Installed, esp, plan, root_fs, source};
use crate::boot::menu;
use crate::boot::secureboot::KeyPair;
use crate::deploy::boot_files;
use crate::deploy::record::{Bootloader, Deployment, FORMAT, Record, Verity};
use crate::deploy::state::StateDirs;
use crate::disk::fat;
use crate::disk::gpt::{self, PartitionIds};
use crate::disk::layout::Layout;
use crate::disk::loopdev::LoopDevice;
use crate::disk::mkfs;
use crate::disk::mount::Mount;
use crate::disk::probe::{self, TargetKind};
use crate::image::import::{self, ImportedImage};
use crate::image::tools::ImageTools;
use crate::repo;
use crate::util::command::{HostTools, Tools};
use crate::util::size::format_size;

/// Filesystem label of the root partition.
pub const ROOT_LABEL: &str = "root";
/// Volume label of the ESP.
pub const ESP_LABEL: &str = "ESP";

/// Install per `opts`. Refusals happen before the target is opened for
/// writing; a failure after that point leaves an incomplete disk (and a disk
/// image file cbootc created is removed).
pub fn to_disk(opts: &InstallOptions) -> Result<Installed> {
    if !rustix::process::geteuid().is_root() {
        bail!("install to-disk must run as root (in a --privileged container)");
    }
    plan::check_kargs(&opts.kargs)?;
    let device = &opts.device;
    let shown = device.display().to_string();
    let target = probe::inspect(device)?;
    let disk_size = plan::disk_size(&target, &shown, opts.size)?;
    if target.kind != TargetKind::Missing {
        probe::ensure_not_in_use(device, &target)?;
        let sigs = probe::find_signatures(device)?;
        if !sigs.is_empty() && !opts.wipe {
            bail!(
                "{shown} holds {} data; pass --wipe to erase it",
                sigs.join(", ")
            );
        }
    }
    let src = source::resolve(
        opts.source.as_deref(),
        opts.target_imgref.as_deref(),
        &opts.containerenv,
    )?;
    let verity = plan::decide_verity(
        opts.verity,
        opts.filesystem,
        plan::kernel_has_verity(opts.filesystem),
    )?;

    // Staging: import and check the image, build the ESP, all before the
    // target is written.
    let staging = tempfile::Builder::new()
        .prefix("cbootc-install-")
        .tempdir_in(staging_parent())
        .context("creating a staging directory")?;
    tracing::info!("importing {} for checking", src.imgref);
    let staging_repo = repo::init(&staging.path().join("repo"), false)?;
    let image = import::import(&staging_repo, &src.imgref)?;
    let id = import::hex(&image.boot_id);
    tracing::info!(
        "image {} ({}), kernel {}, composefs id {}",
        src.imgref,
        image.os_release.title(),
        image.kver(),
        &id[..16]
    );

    let repo_bytes = dir_bytes(&staging.path().join("repo"))?;
    let fs_tree =
        composefs_oci::OciImage::open(&staging_repo, &image.manifest_digest.parse()?, None)?
            .read_filesystem(&staging_repo, false)?;
    let var_bytes = crate::image::extract::content_size(&fs_tree, "/var");
    drop(fs_tree);
    let min_root = plan::min_root_size(repo_bytes, var_bytes);
    let layout = Layout::plan(disk_size, opts.esp_size, min_root).with_context(|| {
        format!(
            "--size {} is too small for {}",
            format_size(disk_size),
            src.imgref
        )
    })?;

    let esp_volume_id: u32 = rand_u32();
    let esp_uuid = fat::volume_id_string(esp_volume_id);
    let esp_dir = staging.path().join("esp");
    std::fs::create_dir_all(&esp_dir)?;

    let image_tools = match ImageTools::mount(&staging_repo, &image.full_id) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("cannot run the image's own tools ({e:#}); using the host's");
            None
        }
    };
    let host_tools = HostTools::new()?;
    // The record is decided before anything is written: a UKI's command
    // line names the root filesystem's UUID, which mkfs is given later.
    let root_uuid = Uuid::new_v4();
    let record = Record {
        format: FORMAT,
        bootloader: if opts.uki {
            Bootloader::SystemdBoot
        } else {
            Bootloader::Grub
        },
        esp_uuid: esp_uuid.clone(),
        root_uuid: root_uuid.to_string(),
        verity,
        secure_boot: opts.secure_boot,
        kargs: opts.kargs.clone(),
        deployments: vec![Deployment::from_image(&image)],
    };
    let keys = if opts.secure_boot && opts.uki {
        let cn = format!("{} Secure Boot (cbootc)", image.os_release.title());
        let k = KeyPair::load_or_generate(opts.sb_key.as_deref(), opts.sb_cert.as_deref(), &cn)?;
        tracing::info!(
            "Secure Boot key: {} (sha256 {})",
            k.subject(),
            k.fingerprint()?
        );
        Some(k)
    } else {
        None
    };
    let image_root = image_tools
        .as_ref()
        .map(|t| t.root().to_path_buf())
        .unwrap_or_else(|| "/".into());
    let efi_tools = pick_tools(&image_tools, &host_tools, &["ukify", "sbsign"]);
    let grub_tools = pick_tools(
        &image_tools,
        &host_tools,
        &["grub-mkstandalone", "grub2-mkstandalone"],
    );
    esp::stage_bootloader(&esp::Bootloader {
        record: &record,
        image_root: &image_root,
        os_id: image.os_release.id().unwrap_or("linux"),
        grub_tools,
        efi_tools,
        keys: keys.as_ref(),
        esp: &esp_dir,
    })?;
    boot_files::install(
        &record,
        &id,
        &staging_repo,
        &esp_dir,
        &image,
        boot_files::Builders {
            tools: Some(efi_tools),
            keys: keys.as_ref(),
        },
    )?;
    menu::write_menu(&record, &esp_dir)?;
    if let Some(k) = &keys {
        esp::stage_certificate(&esp_dir, k)?;
    }
    plan::check_esp(opts.esp_size, esp::tree_size(&esp_dir)?)?;
    let mkfs_program = format!("mkfs.{}", opts.filesystem);
    let mkfs_tools = pick_tools(&image_tools, &host_tools, &[&mkfs_program]);

    // From here on the target is written.
    let created = target.kind == TargetKind::Missing;
    let result = write_disk(WriteCtx {
        opts,
        layout: &layout,
        image: &image,
        tracked: &src.tracked.to_string(),
        record: &record,
        keys: keys.as_ref(),
        esp_dir: &esp_dir,
        esp_volume_id,
        esp_uuid: &esp_uuid,
        mkfs_tools,
        is_file: target.kind != TargetKind::BlockDevice,
    });
    if let Some(t) = image_tools {
        if let Err(e) = t.close() {
            tracing::warn!("unmounting the image: {e:#}");
        }
    }
    if let Err(e) = result {
        if created {
            let _ = std::fs::remove_file(device);
        }
        return Err(e.context(format!(
            "installing to {shown} failed; the disk is incomplete"
        )));
    }
    Ok(Installed {
        image_id: id,
        tracked_ref: src.tracked.to_string(),
        verity,
        bootloader: record.bootloader,
        secure_boot: record.secure_boot,
    })
}

struct WriteCtx<'a> {
    opts: &'a InstallOptions,
    layout: &'a Layout,
    image: &'a ImportedImage,
    tracked: &'a str,
    record: &'a Record,
    keys: Option<&'a KeyPair>,
    esp_dir: &'a Path,
    esp_volume_id: u32,
    esp_uuid: &'a str,
    mkfs_tools: &'a dyn Tools,
    is_file: bool,
}

fn write_disk(cx: WriteCtx<'_>) -> Result<()> {
    let device = &cx.opts.device;
    if cx.is_file {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(device)
            .with_context(|| format!("opening {}", device.display()))?;
        f.set_len(cx.layout.disk_size).with_context(|| {
            format!(
                "sizing {} to {}",
                device.display(),
                format_size(cx.layout.disk_size)
            )
        })?;
    }
    if cx.opts.wipe {
        tracing::info!("wiping existing signatures");
        probe::wipe(device, cx.layout.disk_size)?;
    }
    let ids = PartitionIds {
        disk_guid: Uuid::new_v4(),
        esp_partuuid: Uuid::new_v4(),
        root_partuuid: Uuid::new_v4(),
    };
    tracing::info!(
        "partitioning: ESP {}, root {}",
        format_size(cx.layout.esp.size),
        format_size(cx.layout.root.size)
    );
    gpt::write_gpt(device, cx.layout, &ids)?;

    let root_loop = LoopDevice::attach(device, cx.layout.root.start, cx.layout.root.size, false)?;
    let root_uuid: Uuid = cx
        .record
        .root_uuid
        .parse()
        .context("the record's root UUID")?;
    let with_verity = plan::mkfs_with_verity(cx.opts.verity, cx.opts.filesystem);
    tracing::info!("creating the {} root filesystem", cx.opts.filesystem);
    mkfs::mkfs(
        cx.mkfs_tools,
        cx.opts.filesystem,
        root_loop.path(),
        ROOT_LABEL,
        &root_uuid,
        with_verity,
    )?;

    let mnt = tempfile::Builder::new().prefix("cbootc-root-").tempdir()?;
    let root_mount = Mount::new(
        root_loop.path(),
        mnt.path(),
        cx.opts.filesystem.as_str(),
        MountFlags::empty(),
        None,
    )?;
    let root = mnt.path();
    let verity = cx.record.verity == Verity::Required;
    if verity && !repo::verity_works_in(root)? {
        bail!("fs-verity cannot be enabled on the new root filesystem");
    }
    tracing::info!("importing {} into the new root", cx.image.imgref);
    let repo = root_fs::import_into(root, verity, cx.image)?;
    root_fs::create_state(root, &repo, cx.image, cx.tracked, cx.esp_uuid)?;
    drop(repo);
    if let Some(k) = cx.keys {
        // The private key lives only here, mode 0600; never on the ESP.
        let dirs = StateDirs::new(root);
        let dir = dirs.secureboot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
        let (key, cert, der) = dirs.secureboot_files();
        k.write(&key, &cert, &der)?;
    }
    root_fs::save_record(root, cx.record)?;
    root_mount.unmount()?;
    root_loop.detach()?;

    if let (Some(k), true) = (cx.keys, cx.is_file) {
        // Next to a disk image, for enrolment in the firmware's db.
        let mut name = device.as_os_str().to_owned();
        name.push(".sb.cer");
        crate::util::atomic::write_file(Path::new(&name), &k.cert_der()?)?;
        tracing::info!(
            "Secure Boot certificate for the firmware's db: {}",
            Path::new(&name).display()
        );
    }
    tracing::info!("writing the ESP");
    let esp_loop = LoopDevice::attach(device, cx.layout.esp.start, cx.layout.esp.size, false)?;
    fat::format_and_populate(esp_loop.path(), ESP_LABEL, cx.esp_volume_id, cx.esp_dir)?;
    esp_loop.detach()?;

    let f = OpenOptions::new().write(true).open(device)?;
    f.sync_all()
        .with_context(|| format!("syncing {}", device.display()))?;
    Ok(())
}

fn pick_tools<'a>(
    image: &'a Option<ImageTools>,
    host: &'a HostTools,
    programs: &[&str],
) -> &'a dyn Tools {
    if let Some(t) = image {
        if programs.iter().any(|p| t.has(p)) {
            return t;
        }
        tracing::warn!(
            "the image has no {}; using the host's",
            programs.join(" or ")
        );
    }
    host
}

/// Staging goes to /var/tmp (disk-backed, unlike a tmpfs /tmp), or
/// `$TMPDIR` when set.
fn staging_parent() -> std::path::PathBuf {
    std::env::var_os("TMPDIR")
        .map(Into::into)
        .unwrap_or_else(|| "/var/tmp".into())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let md = e.path().symlink_metadata()?;
        total += if md.is_dir() {
            dir_bytes(&e.path())?
        } else {
            md.blocks() * 512
        };
    }
    Ok(total)
}

fn rand_u32() -> u32 {
    let b = Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

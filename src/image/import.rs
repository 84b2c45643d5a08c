//! Importing an image into a composefs repository and reading back what a
//! deployment needs from it: the bootable image id, the kernel and
//! initramfs, os-release and the OCI metadata.
//!
//! Local transports (`oci:`, uncompressed `oci-archive:`,
//! `containers-storage:`) are read natively by composefs-oci, registries
//! (`docker://`) by `super::registry`; nothing here runs skopeo.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use composefs::fsverity::FsVerityHashValue;
use composefs::tree::{FileSystem, RegularFile};
use composefs_boot::bootloader::{BootEntry, PEType, get_boot_resources};
use composefs_oci::{LocalFetchOpt, OciImage, OciTransformOptions, PullOptions};

use super::imgref::ImageRef;
use super::registry::{self, RegistryConfig};
use crate::boot::os_release::OsRelease;
use crate::repo::{ObjectId, Repo};

/// An image in the repository, with what cbootc needs to deploy it.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The reference it was imported from.
    pub imgref: ImageRef,
    /// `sha256:…` of the OCI manifest.
    pub manifest_digest: String,
    /// The id of the boot-transformed EROFS image: what the kernel
    /// argument names and composefs-setup-root mounts.
    pub boot_id: ObjectId,
    /// The id of the untransformed EROFS image (the container's view,
    /// with `/boot`), used to run the image's own tools.
    pub full_id: ObjectId,
    /// OCI config `created`, if any.
    pub created: Option<String>,
    /// OCI config labels.
    pub labels: BTreeMap<String, String>,
    /// The image's `/usr/lib/os-release` (or `/etc/os-release`).
    pub os_release: OsRelease,
    /// The same, as text (a UKI's `.osrel` section).
    pub os_release_text: String,
    /// The newest `/usr/lib/modules/<kver>/{vmlinuz,initramfs.img}`.
    pub kernel: Option<Kernel>,
    /// A UKI the image ships (`/boot/EFI/Linux/*.efi` or
    /// `/usr/lib/modules/<kver>/*.efi`): a sealed image.
    pub sealed_uki: Option<SealedUki>,
}

/// A UKI shipped in the image.
#[derive(Debug, Clone)]
pub struct SealedUki {
    /// Its kernel version, if known from its location.
    pub kver: Option<String>,
    /// The file.
    pub file: RegularFile<ObjectId>,
}

impl ImportedImage {
    /// The kernel version booted.
    pub fn kver(&self) -> String {
        self.kernel
            .as_ref()
            .map(|k| k.kver.clone())
            .or_else(|| self.sealed_uki.as_ref().and_then(|u| u.kver.clone()))
            .unwrap_or_else(|| "unknown".into())
    }

    /// The kernel and initramfs, which GRUB needs.
    pub fn require_kernel(&self) -> Result<&Kernel> {
        self.kernel.as_ref().with_context(|| {
            format!(
                "{} has no /usr/lib/modules/<kver>/vmlinuz with an initramfs.img, only a UKI: install it with --uki",
                self.imgref
            )
        })
    }

    /// Bytes the boot files take (kernel + initramfs, or the UKI).
    pub fn boot_size(&self) -> u64 {
        let k = self.kernel.as_ref().map(Kernel::size).unwrap_or(0);
        let u = self
            .sealed_uki
            .as_ref()
            .map(|u| u.file.file_size())
            .unwrap_or(0);
        k.max(u)
    }
}

/// A kernel and initramfs found under `/usr/lib/modules/<kver>/`.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel version (directory name).
    pub kver: String,
    /// `vmlinuz`.
    pub vmlinuz: RegularFile<ObjectId>,
    /// `initramfs.img`.
    pub initramfs: RegularFile<ObjectId>,
}

impl Kernel {
    /// Bytes the kernel and initramfs take.
    pub fn size(&self) -> u64 {
        self.vmlinuz.file_size() + self.initramfs.file_size()
    }
}

/// Pull `imgref` into `repo`, generate its bootable EROFS image, and check
/// that it can boot (has `/usr` and a kernel with an initramfs).
pub fn import(repo: &Arc<Repo>, imgref: &ImageRef) -> Result<ImportedImage> {
    import_with(repo, imgref, &RegistryConfig::default())
}

/// [`import`] with explicit registry configuration (auth files,
/// registries.conf) for `docker://` references.
pub fn import_with(
    repo: &Arc<Repo>,
    imgref: &ImageRef,
    registry_cfg: &RegistryConfig,
) -> Result<ImportedImage> {
    if let ImageRef::Registry { reference } = imgref {
        let (digest, _stats) = registry::pull(repo, reference, registry_cfg).map_err(|e| {
            if missing_usr(&e) {
                anyhow::anyhow!("{imgref} is not bootable: it has no /usr directory")
            } else {
                e
            }
        })?;
        let digest: composefs_oci::OciDigest = digest
            .parse()
            .with_context(|| format!("manifest digest {digest:?} of {imgref}"))?;
        return open_imported(repo, imgref, &digest);
    }
    check_source_exists(imgref)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pull_ref = imgref.to_pull_string();
    let result = runtime
        .block_on(composefs_oci::pull(
            repo,
            &pull_ref,
            None,
            PullOptions {
                local_fetch: LocalFetchOpt::IfPossible,
                ..Default::default()
            },
        ))
        .map_err(|e| {
            // composefs-oci builds the image's root from its /usr metadata
            // and fails deep inside when there is none.
            if missing_usr(&e) {
                anyhow::anyhow!("{imgref} is not bootable: it has no /usr directory")
            } else {
                e.context(format!("importing {imgref}"))
            }
        })?;
    tracing::info!("imported {imgref}: {}", import_summary(&result.stats));
    open_imported(repo, imgref, &result.manifest_digest)
}

/// What an import stored, from the counts composefs-oci keeps. Its
/// `layers` stays 0 on the OCI-layout path (composefs-oci 0.9.4
/// `oci_layout.rs` merges only object counts), so objects are what is
/// reported; layers only when whole layers were skipped.
fn import_summary(s: &composefs_oci::ImportStats) -> String {
    let mut text = format!(
        "{} new objects ({}), {} already present",
        s.new_objects(),
        crate::util::size::format_size(s.new_bytes()),
        s.objects_already_present
    );
    if s.layers_already_present > 0 {
        text += &format!("; {} layers already present", s.layers_already_present);
    }
    text
}

/// Read back an image already in `repo` by manifest digest, generating its
/// boot image if needed.
pub fn open_imported(
    repo: &Arc<Repo>,
    imgref: &ImageRef,
    manifest_digest: &composefs_oci::OciDigest,
) -> Result<ImportedImage> {
    let img = OciImage::open(repo, manifest_digest, None)
        .with_context(|| format!("opening imported image {manifest_digest}"))?;
    if !img.is_container_image() {
        bail!("{imgref} is an OCI artifact, not a container image");
    }
    let fs = img
        .read_filesystem(repo, false)
        .with_context(|| format!("reading the filesystem of {imgref}"))?;
    check_bootable(&fs, imgref)?;
    let (kernel, sealed_uki) = find_kernel(&fs, repo, imgref)?;
    let os_release_text = read_os_release(&fs, repo)?;
    let os_release = OsRelease::parse(&os_release_text);

    let boot_id =
        composefs_oci::generate_boot_image(repo, manifest_digest, &OciTransformOptions::default())
            .with_context(|| format!("{imgref} is not bootable: generating its boot image"))?;
    // Re-open: generating the boot image rewrote the config's named refs.
    let img = OciImage::open(repo, manifest_digest, None)?;
    let full_id = img
        .erofs_image_ref(repo, false)
        .with_context(|| format!("finding the composefs image of {imgref}"))?
        .clone();
    let labels = img
        .labels()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(ImportedImage {
        imgref: imgref.clone(),
        manifest_digest: manifest_digest.to_string(),
        boot_id,
        full_id,
        created: img.created().map(str::to_string),
        labels,
        os_release,
        os_release_text,
        kernel,
        sealed_uki,
    })
}

fn missing_usr(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<composefs::generic_tree::ImageError>(),
            Some(composefs::generic_tree::ImageError::NotFound(name)) if name.as_ref() == OsStr::new("usr")
        )
    })
}

/// composefs-oci's errors for a missing local source are long chains; say
/// it in one line first.
fn check_source_exists(imgref: &ImageRef) -> Result<()> {
    match imgref {
        ImageRef::OciDir { path, .. } => {
            let layout = std::path::Path::new(path).join("oci-layout");
            if !layout.is_file() {
                bail!("{imgref}: {path} is not an OCI image layout directory (no oci-layout file)");
            }
        }
        ImageRef::OciArchive { path, .. } if !std::path::Path::new(path).is_file() => {
            bail!("{imgref}: {path} does not exist");
        }
        _ => {}
    }
    Ok(())
}

/// The checks that make an image installable, with errors that say what is
/// missing rather than which tree lookup failed.
fn check_bootable(fs: &FileSystem<ObjectId>, imgref: &ImageRef) -> Result<()> {
    for dir in ["usr", "boot", "sysroot"] {
        match fs.root.get_directory_opt(OsStr::new(dir)) {
            Ok(Some(_)) => {}
            _ => bail!(
                "{imgref} is not bootable: it has no /{dir} directory (a bootable image needs /usr, an empty /boot and /sysroot)"
            ),
        }
    }
    Ok(())
}

/// The newest `/usr/lib/modules/<kver>/` with both `vmlinuz` and
/// `initramfs.img`, and a UKI the image ships; at least one must exist.
fn find_kernel(
    fs: &FileSystem<ObjectId>,
    repo: &Repo,
    imgref: &ImageRef,
) -> Result<(Option<Kernel>, Option<SealedUki>)> {
    let entries =
        get_boot_resources(fs, repo).with_context(|| format!("looking for kernels in {imgref}"))?;
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut without_initramfs = Vec::new();
    let mut ukis = Vec::new();
    for entry in entries {
        match entry {
            BootEntry::UsrLibModulesVmLinuz(k) => match k.initramfs {
                Some(initramfs) => kernels.push(Kernel {
                    kver: k.kver.to_string(),
                    vmlinuz: k.vmlinuz,
                    initramfs,
                }),
                None => without_initramfs.push(k.kver.to_string()),
            },
            BootEntry::Type2(t) if matches!(t.pe_type, PEType::Uki) => ukis.push(SealedUki {
                kver: t.kver.map(|k| k.to_string_lossy().into_owned()),
                file: t.file,
            }),
            _ => {}
        }
    }
    if ukis.len() > 1 {
        bail!(
            "{imgref} ships {} UKIs; a sealed image must ship exactly one",
            ukis.len()
        );
    }
    let uki = ukis.pop();
    kernels.sort_by(|a, b| compare_versions(&a.kver, &b.kver));
    match kernels.pop() {
        Some(k) => {
            if !kernels.is_empty() {
                tracing::warn!(
                    "{imgref} has several kernels; booting the newest, {}",
                    k.kver
                );
            }
            Ok((Some(k), uki))
        }
        None if uki.is_some() => Ok((None, uki)),
        None if !without_initramfs.is_empty() => bail!(
            "{imgref} is not bootable: /usr/lib/modules/{}/ has a vmlinuz but no initramfs.img",
            without_initramfs[0]
        ),
        None => bail!(
            "{imgref} is not bootable: no /usr/lib/modules/<kver>/vmlinuz with an initramfs.img"
        ),
    }
}

/// os-release(5): `/etc/os-release` takes precedence, `/usr/lib/os-release`
/// is the fallback.
fn read_os_release(fs: &FileSystem<ObjectId>, repo: &Repo) -> Result<String> {
    for path in ["etc/os-release", "usr/lib/os-release"] {
        // `/etc/os-release` is usually a symlink to the other: not a
        // regular file, so the lookup fails and the fallback is read.
        let file = fs
            .as_dir()
            .split_ref(OsStr::new(path))
            .and_then(|(dir, name)| dir.get_file(name));
        if let Ok(file) = file {
            let data = composefs::fs::read_file(file, repo)
                .with_context(|| format!("reading {path} from the image"))?;
            return Ok(String::from_utf8_lossy(&data).into_owned());
        }
    }
    tracing::warn!("the image has no os-release; boot entries will be titled \"Linux\"");
    Ok(String::new())
}

/// Order kernel versions the way `sort -V` would, closely enough for
/// `6.12.38+deb13-cloud-amd64` vs `6.12.9-…`: numeric runs compare as
/// numbers.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<Result<u64, &str>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits > 0 {
                out.push(Ok(rest[..digits].parse().unwrap_or(u64::MAX)));
                rest = &rest[digits..];
            } else {
                let other = rest
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(rest.len());
                out.push(Err(&rest[..other]));
                rest = &rest[other..];
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Err(x), Err(y)) => x.cmp(y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
            (Err(_), Ok(_)) => std::cmp::Ordering::Less,
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The hex form of an object id.
pub fn hex(id: &ObjectId) -> String {
    id.to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn version_order() {
        assert_eq!(
            compare_versions("6.12.38+deb13-amd64", "6.12.9+deb13-amd64"),
            Greater
        );
        assert_eq!(compare_versions("6.1.0", "6.10.0"), Less);
        assert_eq!(compare_versions("5.14.0-1", "5.14.0-1"), Equal);
        assert_eq!(compare_versions("6.1", "6.1.1"), Less);
    }

    #[test]
    fn import_summary_counts_objects_and_skipped_layers() {
        let stats = composefs_oci::ImportStats {
            objects_copied: 3,
            objects_hardlinked: 2,
            objects_already_present: 7,
            bytes_copied: 3 << 20,
            bytes_hardlinked: 1 << 20,
            ..Default::default()
        };
        let text = import_summary(&stats);
        assert!(text.starts_with("5 new objects ("), "{text}");
        assert!(text.ends_with("), 7 already present"), "{text}");
        let skipped = composefs_oci::ImportStats {
            layers_already_present: 2,
            ..Default::default()
        };
        assert_eq!(
            import_summary(&skipped),
            format!(
                "0 new objects ({}), 0 already present; 2 layers already present",
                crate::util::size::format_size(0)
            )
        );
    }
}

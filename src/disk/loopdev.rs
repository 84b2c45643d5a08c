//! Loop devices: a block device view of a file, or of a byte range of a file
//! or disk, through which cbootc formats and mounts partitions.
//!
//! cbootc reaches partitions through loop devices with an offset and size
//! limit rather than through `/dev/sdX1`-style partition nodes, because
//! inside a privileged container udev does not run and nodes the kernel
//! creates after the container started never appear in its `/dev` snapshot
//! (see the module documentation of [`super`]).
//!
//! The device is set up atomically with `LOOP_CONFIGURE` (Linux ≥ 5.8, see
//! `loop(4)`), falling back to `LOOP_SET_FD` + `LOOP_SET_STATUS64` on older
//! kernels. `LO_FLAGS_AUTOCLEAR` makes the kernel free the device when its
//! last opener closes it, so a crashed cbootc leaks nothing: this struct
//! holds the loop device open for as long as it is attached, and mounts on
//! it hold their own reference.
//!
//! This is the only module allowed `unsafe`: the loop driver's interface is
//! ioctls with C structs, which `rustix::ioctl` can issue but not check.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rustix::io::Errno;
use rustix::ioctl::{self, Getter, IntegerSetter, Ioctl, IoctlOutput, NoArg, Opcode, Setter};

// Loop ioctl numbers, from include/uapi/linux/loop.h. They predate the
// _IOC encoding, hence plain numbers.
const LOOP_SET_FD: Opcode = 0x4C00;
const LOOP_CLR_FD: Opcode = 0x4C01;
const LOOP_SET_STATUS64: Opcode = 0x4C04;
const LOOP_GET_STATUS64: Opcode = 0x4C05;
const LOOP_SET_BLOCK_SIZE: Opcode = 0x4C09;
const LOOP_CONFIGURE: Opcode = 0x4C0A;
const LOOP_CTL_GET_FREE: Opcode = 0x4C82;
/// `BLKGETSIZE64 = _IOR(0x12, 114, size_t)` from include/uapi/linux/fs.h.
const BLKGETSIZE64: Opcode = ioctl::opcode::read::<usize>(0x12, 114);

// lo_flags bits (include/uapi/linux/loop.h).
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` from include/uapi/linux/loop.h.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from include/uapi/linux/loop.h.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

// The kernel copies these structs by size: a layout mismatch would make it
// read garbage, so pin the sizes of the C definitions (x86-64 and all other
// Linux ABIs agree, as every field is naturally aligned).
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// `LOOP_CTL_GET_FREE`: its result is the ioctl's return value, which none
/// of rustix's ready-made patterns return.
struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument (the pointer is ignored) and
// returns the free index as the ioctl's return value; it writes no memory.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }
    fn as_ptr(&mut self) -> *mut c_void {
        std::ptr::null_mut()
    }
    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::INVAL)
    }
}

/// An attached loop device. Detached by [`LoopDevice::detach`], or on drop.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    /// The open loop device; `None` once detached.
    dev: Option<File>,
    backing: PathBuf,
    /// `/sys/dev/block/MAJ:MIN/loop`, to check that detaching took effect.
    sysfs: PathBuf,
    /// Content of `loop/backing_file` right after attaching, to tell our
    /// binding from a later one of the same device by someone else.
    sysfs_backing: Option<String>,
}

/// How to find a device to configure (exposed to tests, which exercise each
/// path on whatever kernel runs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `LOOP_CONFIGURE`, falling back to the legacy ioctls.
    Auto,
    /// Force `LOOP_SET_FD` + `LOOP_SET_STATUS64`.
    Legacy,
}

/// What to attach.
struct Request<'a> {
    backing_path: &'a Path,
    backing: &'a File,
    offset: u64,
    size: u64,
    read_only: bool,
    block_size: u32,
    setup: Setup,
}

impl LoopDevice {
    /// Attach `backing` (a regular file or block device) at byte `offset`
    /// with size limit `size` (0 = to the end). The device has
    /// `LO_FLAGS_AUTOCLEAR` (the kernel frees it when the last user closes
    /// it, even if cbootc dies) and no direct I/O. `read_only` opens the
    /// backing file read-only and sets `LO_FLAGS_READ_ONLY`.
    ///
    /// `offset` and `size` must be multiples of 512 (the loop driver
    /// addresses 512-byte sectors) and lie within the backing file.
    pub fn attach(backing: &Path, offset: u64, size: u64, read_only: bool) -> Result<LoopDevice> {
        Self::attach_with(backing, offset, size, read_only, 0, Setup::Auto)
    }

    /// Like [`LoopDevice::attach`] with a logical block size for the loop
    /// device (512, 1024, 2048 or 4096; 0 = the default 512), to emulate a
    /// disk with 4 KiB sectors.
    pub fn attach_with_block_size(
        backing: &Path,
        offset: u64,
        size: u64,
        read_only: bool,
        block_size: u32,
    ) -> Result<LoopDevice> {
        Self::attach_with(backing, offset, size, read_only, block_size, Setup::Auto)
    }

    fn attach_with(
        backing: &Path,
        offset: u64,
        size: u64,
        read_only: bool,
        block_size: u32,
        setup: Setup,
    ) -> Result<LoopDevice> {
        let shown = backing.display();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(backing)
            .with_context(|| format!("opening {shown} to attach a loop device"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading metadata of {shown}"))?;
        ensure!(
            meta.is_file() || meta.file_type().is_block_device(),
            "{shown} is not a regular file or block device; cannot attach a loop device to it"
        );
        let backing_size = (&file)
            .seek(SeekFrom::End(0))
            .with_context(|| format!("reading the size of {shown}"))?;
        ensure!(
            offset % 512 == 0 && size % 512 == 0,
            "cannot attach a loop device to {shown} at offset {offset} with size {size}: both must be multiples of 512 bytes"
        );
        let available = backing_size.checked_sub(offset).filter(|&n| n > 0);
        let Some(available) = available else {
            bail!(
                "cannot attach a loop device to {shown} at offset {offset}: the file is only {backing_size} bytes"
            );
        };
        ensure!(
            size <= available,
            "cannot attach a loop device to {shown} for {size} bytes at offset {offset}: the file is only {backing_size} bytes"
        );
        // The loop driver exposes whole 512-byte sectors.
        let expected = if size == 0 { available } else { size } / 512 * 512;

        let req = Request {
            backing_path: backing,
            backing: &file,
            offset,
            size,
            read_only,
            block_size,
            setup,
        };
        let (path, dev) = find_and_configure(&req, Path::new("/dev"))?;
        let sysfs = sysfs_loop_dir(&dev);
        let sysfs_backing = std::fs::read_to_string(sysfs.join("backing_file")).ok();
        let lo = LoopDevice {
            path,
            dev: Some(dev),
            backing: backing.to_path_buf(),
            sysfs,
            sysfs_backing,
        };
        // The kernel sets the capacity while configuring, but some kernels
        // have reported a stale size right after setup (util-linux's
        // losetup re-checks the size after LOOP_SET_STATUS64 for this
        // reason). mkfs on a device of the wrong size makes a silently
        // wrong filesystem, so wait until the kernel reports the expected
        // size, and fail if it never does.
        lo.wait_for_size(expected)?;
        tracing::debug!(
            "attached {} to {shown} (offset {offset}, size {expected})",
            lo.path.display()
        );
        Ok(lo)
    }

    /// The loop device node, e.g. `/dev/loop7`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file or device this loop device reads from.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The size the kernel currently reports for the device (BLKGETSIZE64).
    pub fn size(&self) -> Result<u64> {
        let dev = self
            .dev
            .as_ref()
            .with_context(|| format!("{} is already detached", self.path.display()))?;
        blk_size(dev).with_context(|| format!("reading the size of {}", self.path.display()))
    }

    fn wait_for_size(&self, expected: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let size = self.size()?;
            if size == expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "loop device {} for {} reports {size} bytes instead of {expected} after 5 seconds",
                    self.path.display(),
                    self.backing.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Detach the device, reporting errors. Fails if the device is still in
    /// use by someone else (e.g. a filesystem on it is still mounted) after
    /// a short wait; the kernel then frees it when that user closes it,
    /// because of `LO_FLAGS_AUTOCLEAR`.
    pub fn detach(mut self) -> Result<()> {
        self.detach_inner(true)
    }

    /// Detach the device without waiting for its last user: for a device
    /// whose user goes away asynchronously — an EROFS whose superblock the
    /// kernel releases some time after the overlay over it is unmounted
    /// (composefs mounts it through a lazily detached mount before Linux
    /// 6.15). `LO_FLAGS_AUTOCLEAR` frees the device then.
    pub fn release(mut self) -> Result<()> {
        self.detach_inner(false)
    }

    fn detach_inner(&mut self, wait: bool) -> Result<()> {
        let Some(dev) = self.dev.take() else {
            return Ok(());
        };
        let shown = self.path.display();
        // SAFETY: LOOP_CLR_FD takes no argument and writes no memory.
        let cleared = unsafe { ioctl::ioctl(&dev, NoArg::<LOOP_CLR_FD>::new()) };
        match cleared {
            // ENXIO: already unbound (e.g. someone else cleared it).
            Ok(()) | Err(Errno::NXIO) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("detaching loop device {shown}"));
            }
        }
        // With other openers left the kernel only marks the device for
        // autoclear; with none, the release happens on this close.
        drop(dev);
        let deadline = Instant::now() + Duration::from_secs(2);
        while wait && self.still_bound() {
            if Instant::now() > deadline {
                bail!(
                    "loop device {shown} is still in use after detaching it (is a filesystem on it still mounted?); the kernel frees it once it is released"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::debug!("detached {shown}");
        Ok(())
    }

    /// Whether the device still has our backing file bound.
    fn still_bound(&self) -> bool {
        match std::fs::read_to_string(self.sysfs.join("backing_file")) {
            Ok(now) => self.sysfs_backing.as_ref() == Some(&now),
            Err(_) => false,
        }
    }

    /// Simulate cbootc dying: close the device without LOOP_CLR_FD.
    #[cfg(test)]
    fn close_without_detach(mut self) {
        self.dev.take();
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner(true) {
            tracing::warn!("{e:#}");
        }
    }
}

/// `/sys/dev/block/MAJ:MIN/loop` for the open loop device.
fn sysfs_loop_dir(dev: &File) -> PathBuf {
    let rdev = dev.metadata().map(|m| m.rdev()).unwrap_or(0);
    PathBuf::from(format!(
        "/sys/dev/block/{}:{}/loop",
        rustix::fs::major(rdev),
        rustix::fs::minor(rdev)
    ))
}

fn blk_size(dev: &File) -> rustix::io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes one u64 (size_t on 64-bit; the opcode
    // encodes size_of::<usize>()) into the Getter's buffer.
    unsafe { ioctl::ioctl(dev, Getter::<BLKGETSIZE64, u64>::new()) }
}

/// Find a free loop device and bind it. Returns the node path and the open
/// device. `dev_dir` is `/dev` (a parameter so that tests can simulate a
/// container's `/dev` snapshot).
fn find_and_configure(req: &Request, dev_dir: &Path) -> Result<(PathBuf, File)> {
    // First ask the kernel for a free device (LOOP_CTL_GET_FREE, which
    // creates one if none is free). Another process may bind it between our
    // question and our LOOP_CONFIGURE (EBUSY): ask again a few times.
    let mut missing_node = None;
    let control_path = dev_dir.join("loop-control");
    match OpenOptions::new()
        .read(true)
        .write(true)
        .open(&control_path)
    {
        Ok(control) => {
            for _ in 0..10 {
                // SAFETY: see `GetFree`.
                let index = unsafe { ioctl::ioctl(&control, GetFree) }.with_context(|| {
                    format!("asking {} for a free loop device", control_path.display())
                })?;
                let path = dev_dir.join(format!("loop{index}"));
                match try_configure(&path, req)? {
                    Attempt::Done(dev) => return Ok((path, dev)),
                    Attempt::Busy => continue,
                    Attempt::NoNode => {
                        missing_node = Some(path);
                        break;
                    }
                }
            }
        }
        Err(e) => tracing::debug!(
            "cannot open {} ({e}); scanning for loop devices",
            control_path.display()
        ),
    }
    // The free device has no node: we are in a container whose /dev is a
    // snapshot taken when it started. Use any existing node whose device is
    // unbound (EBUSY: bound, try the next).
    // A node that cannot be used for another reason (e.g. EACCES) should
    // not stop the scan, but its error should not be lost either.
    let mut last_error = None;
    for path in existing_loop_nodes(dev_dir)? {
        match try_configure(&path, req) {
            Ok(Attempt::Done(dev)) => return Ok((path, dev)),
            Ok(Attempt::Busy | Attempt::NoNode) => {}
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(e) = last_error {
        return Err(e.context(format!(
            "cannot attach a loop device to {}: no free loop device found",
            req.backing_path.display()
        )));
    }
    let why = match missing_node {
        Some(p) => format!(
            "the kernel's free loop device {} has no device node, and no existing {}/loop* node is free",
            p.display(),
            dev_dir.display()
        ),
        None => format!("no {}/loop* device is free", dev_dir.display()),
    };
    bail!(
        "cannot attach a loop device to {}: {why}; in a container, start it with the host's /dev (e.g. `podman run --privileged -v /dev:/dev`) or with more loop devices created beforehand (`losetup -f` on the host)",
        req.backing_path.display()
    )
}

enum Attempt {
    Done(File),
    Busy,
    NoNode,
}

/// Try to bind `path` to the backing file.
fn try_configure(path: &Path, req: &Request) -> Result<Attempt> {
    let shown = path.display();
    // The loop device must be opened for writing for a writable binding:
    // the kernel makes the device read-only if either the backing file or
    // the loop device was opened read-only (drivers/block/loop.c,
    // loop_configure).
    let dev = match OpenOptions::new()
        .read(true)
        .write(!req.read_only)
        .open(path)
    {
        Ok(dev) => dev,
        // ENOENT: no node. ENXIO: a stale node whose device was removed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Attempt::NoNode),
        Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
            return Ok(Attempt::NoNode);
        }
        Err(e) => return Err(e).with_context(|| format!("opening loop device {shown}")),
    };
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: req.offset,
        lo_sizelimit: req.size,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        // AUTOCLEAR so that a crash leaks nothing; no LO_FLAGS_DIRECT_IO:
        // direct I/O requires the offset and buffers to be aligned to the
        // backing device's sector size and buys nothing for a one-shot
        // install; no PARTSCAN: partitions are reached by offset.
        lo_flags: LO_FLAGS_AUTOCLEAR | if req.read_only { LO_FLAGS_READ_ONLY } else { 0 },
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    };
    // Informational (shown by `losetup`); truncated, NUL-terminated.
    let name = req.backing_path.as_os_str().as_encoded_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);

    let fd = u32::try_from(req.backing.as_raw_fd()).context("invalid file descriptor")?;
    let result = if req.setup == Setup::Legacy {
        Err(Errno::NOTTY)
    } else {
        let config = LoopConfig {
            fd,
            block_size: req.block_size,
            info,
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, whose layout
        // `LoopConfig` reproduces (size asserted above); the fd in it stays
        // open for the duration of the call.
        unsafe { ioctl::ioctl(&dev, Setter::<LOOP_CONFIGURE, LoopConfig>::new(config)) }
    };
    match result {
        Ok(()) => Ok(Attempt::Done(dev)),
        Err(Errno::BUSY) => Ok(Attempt::Busy),
        // Kernels before 5.8 do not know LOOP_CONFIGURE (EINVAL from the
        // loop driver's default case, ENOTTY elsewhere).
        Err(Errno::INVAL) | Err(Errno::NOTTY) => {
            Ok(if legacy_configure(path, &dev, fd, &info, req)? {
                Attempt::Done(dev)
            } else {
                Attempt::Busy
            })
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "configuring loop device {shown} for {}",
                req.backing_path.display()
            )
        }),
    }
}

/// The pre-5.8 two-step setup. Not atomic: if cbootc died between the two
/// ioctls the device would stay bound without AUTOCLEAR, so undo the first
/// step if the second fails. Returns false if the device is busy.
fn legacy_configure(
    path: &Path,
    dev: &File,
    fd: u32,
    info: &LoopInfo64,
    req: &Request,
) -> Result<bool> {
    let shown = path.display();
    // SAFETY: LOOP_SET_FD takes the backing file descriptor as an integer
    // argument; the fd is open for the duration of the call.
    match unsafe { ioctl::ioctl(dev, IntegerSetter::<LOOP_SET_FD>::new_usize(fd as usize)) } {
        Ok(()) => {}
        Err(Errno::BUSY) => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "binding loop device {shown} to {}",
                    req.backing_path.display()
                )
            });
        }
    }
    let configured = (|| -> rustix::io::Result<()> {
        if req.block_size != 0 {
            // SAFETY: LOOP_SET_BLOCK_SIZE takes the block size as an integer
            // argument.
            unsafe {
                ioctl::ioctl(
                    dev,
                    IntegerSetter::<LOOP_SET_BLOCK_SIZE>::new_usize(req.block_size as usize),
                )?
            };
        }
        // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64`, whose
        // layout `LoopInfo64` reproduces (size asserted above).
        unsafe { ioctl::ioctl(dev, Setter::<LOOP_SET_STATUS64, LoopInfo64>::new(*info)) }
    })();
    if let Err(e) = configured {
        // SAFETY: LOOP_CLR_FD takes no argument and writes no memory.
        let _ = unsafe { ioctl::ioctl(dev, NoArg::<LOOP_CLR_FD>::new()) };
        return Err(e).with_context(|| {
            format!(
                "setting offset and flags of loop device {shown} for {}",
                req.backing_path.display()
            )
        });
    }
    Ok(true)
}

/// What a bound loop device reads from, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBinding {
    /// The loop device, e.g. `/dev/loop3`.
    pub device: PathBuf,
    /// `st_dev` of the backing file.
    pub backing_dev: u64,
    /// `st_ino` of the backing file.
    pub backing_ino: u64,
    /// `st_rdev` of the backing file (the device number when the backing
    /// file is a block device, 0 otherwise).
    pub backing_rdev: u64,
}

/// The bindings of all loop devices that have a node in `/dev`
/// (`LOOP_GET_STATUS64`; unbound devices answer ENXIO and are skipped).
///
/// Unlike `/sys/block/loopN/loop/backing_file`, which shows a path relative
/// to the reader's root (so a loop device set up from another mount
/// namespace, e.g. another container, shows a path that means nothing
/// here), the device and inode numbers identify the backing file anywhere.
pub fn bindings() -> Result<Vec<LoopBinding>> {
    let mut out = Vec::new();
    for path in existing_loop_nodes(Path::new("/dev"))? {
        let Ok(dev) = File::open(&path) else {
            continue;
        };
        // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64`, whose
        // layout `LoopInfo64` reproduces (size asserted above).
        match unsafe { ioctl::ioctl(&dev, Getter::<LOOP_GET_STATUS64, LoopInfo64>::new()) } {
            // The kernel encodes the device numbers with huge_encode_dev()
            // (include/linux/kdev_t.h), which agrees with glibc's and
            // rustix's makedev() for every 12-bit major / 20-bit minor
            // kernel dev_t: compare them to st_dev/st_rdev as they are.
            Ok(info) => out.push(LoopBinding {
                device: path,
                backing_dev: info.lo_device,
                backing_ino: info.lo_inode,
                backing_rdev: info.lo_rdevice,
            }),
            Err(Errno::NXIO) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("querying loop device {}", path.display()));
            }
        }
    }
    Ok(out)
}

/// `/dev/loopN` nodes, in numeric order.
fn existing_loop_nodes(dev_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir(dev_dir)
        .with_context(|| format!("listing {}", dev_dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n: u32 = name.to_str()?.strip_prefix("loop")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    const MIB: u64 = 1 << 20;

    fn sysfs(lo: &LoopDevice, attr: &str) -> String {
        std::fs::read_to_string(lo.sysfs.join(attr))
            .unwrap()
            .trim()
            .to_string()
    }

    fn is_bound(sysfs_dir: &Path, backing: &str) -> bool {
        std::fs::read_to_string(sysfs_dir.join("backing_file")).is_ok_and(|b| b.trim() == backing)
    }

    /// A sparse temporary file of `size` bytes with a marker at `offset`.
    pub(crate) fn image_with_marker(
        size: u64,
        offset: u64,
        marker: &[u8],
    ) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(size).unwrap();
        f.as_file().write_all_at(marker, offset).unwrap();
        f
    }

    fn check_range_mapping(setup: Setup) {
        let img = image_with_marker(64 * MIB, 3 * MIB, b"partition-start");
        let lo = LoopDevice::attach_with(img.path(), 3 * MIB, 8 * MIB, false, 0, setup).unwrap();
        assert!(lo.path().to_str().unwrap().starts_with("/dev/loop"));
        assert_eq!(lo.size().unwrap(), 8 * MIB);
        assert_eq!(sysfs(&lo, "offset"), (3 * MIB).to_string());
        assert_eq!(sysfs(&lo, "sizelimit"), (8 * MIB).to_string());
        assert_eq!(sysfs(&lo, "autoclear"), "1");
        assert_eq!(sysfs(&lo, "dio"), "0");
        assert_eq!(sysfs(&lo, "partscan"), "0");
        assert_eq!(
            std::fs::read_to_string(lo.sysfs.parent().unwrap().join("ro"))
                .unwrap()
                .trim(),
            "0"
        );
        let backing = sysfs(&lo, "backing_file");
        assert_eq!(
            Path::new(&backing),
            img.path().canonicalize().unwrap().as_path()
        );

        // Reads start at the offset; writes land at offset + position.
        let mut dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lo.path())
            .unwrap();
        let mut buf = [0u8; 15];
        dev.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"partition-start");
        dev.write_all_at(b"via-loop", MIB).unwrap();
        dev.sync_all().unwrap();
        drop(dev);
        let mut buf = [0u8; 8];
        img.as_file().read_exact_at(&mut buf, 4 * MIB).unwrap();
        assert_eq!(&buf, b"via-loop");

        let sysfs_dir = lo.sysfs.clone();
        lo.detach().unwrap();
        assert!(!is_bound(&sysfs_dir, &backing));
    }

    #[test]
    fn attach_range_with_loop_configure() {
        check_range_mapping(Setup::Auto);
    }

    #[test]
    fn attach_range_with_legacy_ioctls() {
        check_range_mapping(Setup::Legacy);
    }

    #[test]
    fn whole_file_read_only() {
        let img = image_with_marker(16 * MIB, 0, b"hello");
        let lo = LoopDevice::attach(img.path(), 0, 0, true).unwrap();
        assert_eq!(lo.size().unwrap(), 16 * MIB);
        assert_eq!(sysfs(&lo, "sizelimit"), "0");
        assert_eq!(
            std::fs::read_to_string(lo.sysfs.parent().unwrap().join("ro"))
                .unwrap()
                .trim(),
            "1"
        );
        // The kernel refuses writes to a read-only loop device (older
        // kernels already at open with EROFS, newer ones at write time with
        // EPERM from blkdev_write_iter).
        let write = OpenOptions::new()
            .write(true)
            .open(lo.path())
            .and_then(|f| f.write_all_at(b"overwritten", 0));
        assert!(write.is_err());
        let mut buf = [0u8; 5];
        File::open(lo.path()).unwrap().read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn drop_detaches() {
        let img = image_with_marker(4 * MIB, 0, b"x");
        let lo = LoopDevice::attach(img.path(), 0, 0, false).unwrap();
        let dir = lo.sysfs.clone();
        let backing = sysfs(&lo, "backing_file");
        drop(lo);
        assert!(!is_bound(&dir, &backing));
    }

    #[test]
    fn autoclear_frees_device_when_process_would_die() {
        let img = image_with_marker(4 * MIB, 0, b"x");
        let lo = LoopDevice::attach(img.path(), 0, 0, false).unwrap();
        let dir = lo.sysfs.clone();
        let backing = sysfs(&lo, "backing_file");
        assert!(is_bound(&dir, &backing));
        lo.close_without_detach();
        // The last close releases the device (drivers/block/loop.c
        // lo_release → __loop_clr_fd), possibly a moment later.
        wait_unbound(&dir, &backing);
        assert!(!is_bound(&dir, &backing));
    }

    #[test]
    fn block_size_4096() {
        let img = image_with_marker(8 * MIB, 0, b"x");
        let lo = LoopDevice::attach_with_block_size(img.path(), 0, 0, false, 4096).unwrap();
        let dev = File::open(lo.path()).unwrap();
        assert_eq!(rustix::fs::ioctl_blksszget(&dev).unwrap(), 4096);
    }

    #[test]
    fn concurrent_attaches_get_distinct_devices() {
        let imgs: Vec<_> = (0..4).map(|_| image_with_marker(MIB, 0, b"x")).collect();
        let handles: Vec<_> = imgs
            .iter()
            .map(|img| {
                let p = img.path().to_path_buf();
                std::thread::spawn(move || LoopDevice::attach(&p, 0, 0, true).unwrap())
            })
            .collect();
        let los: Vec<LoopDevice> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut paths: Vec<_> = los.iter().map(|l| l.path().to_path_buf()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 4);
        for lo in los {
            lo.detach().unwrap();
        }
    }

    #[test]
    fn detach_fails_while_mounted_elsewhere() {
        // Another opener (here a second fd standing in for a mount) keeps the
        // device bound: detach must say so rather than claim success.
        let img = image_with_marker(4 * MIB, 0, b"x");
        let lo = LoopDevice::attach(img.path(), 0, 0, false).unwrap();
        let other = File::open(lo.path()).unwrap();
        let dir = lo.sysfs.clone();
        let backing = sysfs(&lo, "backing_file");
        let msg = format!("{:#}", lo.detach().unwrap_err());
        assert!(msg.contains("still in use after detaching"), "{msg}");
        assert!(is_bound(&dir, &backing));
        // AUTOCLEAR was armed by LOOP_CLR_FD: the last close frees it.
        drop(other);
        wait_unbound(&dir, &backing);
        assert!(!is_bound(&dir, &backing));
    }

    /// Wait up to 2 s for the kernel to free the device (autoclear).
    fn wait_unbound(dir: &Path, backing: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_bound(dir, backing) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn release_leaves_a_busy_device_to_autoclear() {
        let img = image_with_marker(4 * MIB, 0, b"x");
        let lo = LoopDevice::attach(img.path(), 0, 0, true).unwrap();
        let other = File::open(lo.path()).unwrap();
        let dir = lo.sysfs.clone();
        let backing = sysfs(&lo, "backing_file");
        lo.release().unwrap();
        assert!(is_bound(&dir, &backing), "freed while still open");
        drop(other);
        wait_unbound(&dir, &backing);
        assert!(!is_bound(&dir, &backing), "not freed after the last close");
    }

    #[test]
    fn invalid_ranges_are_refused() {
        let img = image_with_marker(4 * MIB, 0, b"x");
        let msg = format!(
            "{:#}",
            LoopDevice::attach(img.path(), 4 * MIB, 0, false).unwrap_err()
        );
        assert!(msg.contains("the file is only 4194304 bytes"), "{msg}");
        let msg = format!(
            "{:#}",
            LoopDevice::attach(img.path(), MIB, 4 * MIB, false).unwrap_err()
        );
        assert!(msg.contains("for 4194304 bytes at offset 1048576"), "{msg}");
        let msg = format!(
            "{:#}",
            LoopDevice::attach(img.path(), 100, 0, false).unwrap_err()
        );
        assert!(msg.contains("multiples of 512"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        let msg = format!(
            "{:#}",
            LoopDevice::attach(dir.path(), 0, 0, true).unwrap_err()
        );
        assert!(msg.contains("not a regular file or block device"), "{msg}");
        let msg = format!(
            "{:#}",
            LoopDevice::attach(Path::new("/nonexistent-cbootc.img"), 0, 0, true).unwrap_err()
        );
        assert!(msg.contains("/nonexistent-cbootc.img"), "{msg}");
    }

    #[test]
    fn bindings_identify_backing_file() {
        let img = image_with_marker(MIB, 0, b"x");
        let lo = LoopDevice::attach(img.path(), 0, 0, true).unwrap();
        let meta = std::fs::metadata(img.path()).unwrap();
        let all = bindings().unwrap();
        let ours: Vec<_> = all.iter().filter(|b| b.device == lo.path()).collect();
        assert_eq!(ours.len(), 1, "{all:?}");
        assert_eq!(ours[0].backing_dev, meta.dev());
        assert_eq!(ours[0].backing_ino, meta.ino());
        assert_eq!(ours[0].backing_rdev, 0);
        let path = lo.path().to_path_buf();
        lo.detach().unwrap();
        assert!(!bindings().unwrap().iter().any(|b| b.device == path
            && b.backing_ino == meta.ino()
            && b.backing_dev == meta.dev()));
    }

    #[test]
    fn loop_nodes_are_listed_numerically() {
        let nodes = existing_loop_nodes(Path::new("/dev")).unwrap();
        assert!(!nodes.is_empty());
        assert!(
            nodes
                .iter()
                .all(|p| p.to_str().unwrap().starts_with("/dev/loop"))
        );
        assert!(!nodes.contains(&PathBuf::from("/dev/loop-control")));
        let nums: Vec<u32> = nodes
            .iter()
            .map(|p| p.to_str().unwrap()["/dev/loop".len()..].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]));
    }

    /// A directory standing in for a container's /dev snapshot.
    fn fake_dev() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn mknod(path: &Path, kind: rustix::fs::FileType, rdev: u64) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            kind,
            rustix::fs::Mode::from_raw_mode(0o600),
            rdev,
        )
        .unwrap();
    }

    fn request<'a>(path: &'a Path, file: &'a File) -> Request<'a> {
        Request {
            backing_path: path,
            backing: file,
            offset: 0,
            size: 0,
            read_only: true,
            block_size: 0,
            setup: Setup::Auto,
        }
    }

    /// The device number of loop device `index`, from sysfs (its /dev node
    /// may not exist yet).
    fn loop_rdev(index: u32) -> u64 {
        let dev = std::fs::read_to_string(format!("/sys/block/loop{index}/dev")).unwrap();
        let (major, minor) = dev.trim().split_once(':').unwrap();
        rustix::fs::makedev(major.parse().unwrap(), minor.parse().unwrap())
    }

    #[test]
    fn container_without_free_node_scans_existing_nodes() {
        // A fake /dev with loop-control but without a node for the device
        // LOOP_CTL_GET_FREE hands out; an older node (here named loop900)
        // exists for another free device: it must be used instead.
        let img = image_with_marker(MIB, 0, b"x");
        let file = File::open(img.path()).unwrap();
        let control = File::open("/dev/loop-control").unwrap();
        let control_rdev = control.metadata().unwrap().rdev();
        // Other tests (and other processes) bind loop devices concurrently,
        // so a round can lose its device: retry a few rounds.
        for _ in 0..20 {
            // Find a free device that is not the first free one: hold the
            // first free one while asking again.
            let placeholder = image_with_marker(MIB, 0, b"p");
            let hold = LoopDevice::attach(placeholder.path(), 0, 0, true).unwrap();
            // SAFETY: see `GetFree`.
            let second = unsafe { ioctl::ioctl(&control, GetFree) }.unwrap();
            drop(hold);
            let dev = fake_dev();
            mknod(
                &dev.path().join("loop-control"),
                rustix::fs::FileType::CharacterDevice,
                control_rdev,
            );
            let node = dev.path().join("loop900");
            mknod(&node, rustix::fs::FileType::BlockDevice, loop_rdev(second));
            if let Ok((path, lo)) = find_and_configure(&request(img.path(), &file), dev.path()) {
                assert_eq!(path, node);
                assert_eq!(lo.metadata().unwrap().rdev(), loop_rdev(second));
                assert_eq!(blk_size(&lo).unwrap(), MIB);
                // SAFETY: LOOP_CLR_FD takes no argument and writes no memory.
                unsafe { ioctl::ioctl(&lo, NoArg::<LOOP_CLR_FD>::new()) }.unwrap();
                return;
            }
        }
        panic!("could not simulate a container /dev in 20 rounds");
    }

    #[test]
    fn container_without_any_free_node_explains_the_fix() {
        let img = image_with_marker(MIB, 0, b"x");
        let file = File::open(img.path()).unwrap();
        let control_rdev = std::fs::metadata("/dev/loop-control").unwrap().rdev();
        let dev = fake_dev();
        mknod(
            &dev.path().join("loop-control"),
            rustix::fs::FileType::CharacterDevice,
            control_rdev,
        );
        let msg = format!(
            "{:#}",
            find_and_configure(&request(img.path(), &file), dev.path()).unwrap_err()
        );
        assert!(msg.contains("has no device node"), "{msg}");
        assert!(msg.contains("-v /dev:/dev"), "{msg}");
        assert!(msg.contains(&img.path().display().to_string()), "{msg}");
    }
}

//! Creating the EFI System Partition: a FAT32 filesystem written from user
//! space with the `fatfs` crate, filled with a prepared directory tree.
//!
//! Written in user space because cbootc must work where the kernel has no
//! vfat driver (or where mounting is undesirable), and so that the ESP's
//! volume id is exactly the one the GRUB configuration searches for
//! (`search --fs-uuid XXXX-XXXX`).
//!
//! FAT32 always: the UEFI specification (2.10 §13.3.1.1) requires firmware
//! to support FAT32 for the system partition, while FAT12/16 are only
//! guaranteed for removable media. The FAT type is not a flag but follows
//! from the cluster count (Microsoft FAT specification, "fatgen103" §3.5:
//! FAT32 has at least 65525 clusters), so the cluster size is chosen to
//! give at least that many.
//!
//! The whole tree is checked before the device is formatted, so that
//! content FAT cannot hold (symlinks, names differing only in case, files of
//! 4 GiB or more) fails the install before anything is destroyed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

use crate::util::size::format_size;

/// Minimum cluster count of a FAT32 volume (fatgen103 §3.5).
const FAT32_MIN_CLUSTERS: u64 = 65525;

/// Format string for a FAT volume id as blkid and GRUB show it (the
/// "UUID" of a FAT filesystem): `ABCD-1234`, the high 16 bits first.
pub fn volume_id_string(volume_id: u32) -> String {
    format!("{:04X}-{:04X}", volume_id >> 16, volume_id & 0xFFFF)
}

/// Format `device` (a loop device or a regular file, all of it) as FAT32
/// with volume label `label` (at most 11 characters, uppercase; empty for
/// none) and volume id `volume_id`, copy the directory tree `tree` into it
/// (regular files and directories only), and sync.
pub fn format_and_populate(device: &Path, label: &str, volume_id: u32, tree: &Path) -> Result<()> {
    let shown = device.display();
    let label_bytes = label_field(label).with_context(|| format!("creating the ESP on {shown}"))?;
    let root = scan_tree(tree, device)?;

    let mut file = super::probe::open_for_writing(device)?;
    let size = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("reading the size of {shown}"))?;
    file.rewind()
        .with_context(|| format!("seeking in {shown}"))?;
    let cluster = cluster_size(size).with_context(|| format!("formatting {shown} as FAT32"))?;
    let mut options = FormatVolumeOptions::new()
        .fat_type(FatType::Fat32)
        .volume_id(volume_id);
    // fatfs writes the label both into the boot sector and as the root
    // directory's volume-id entry, which is where Windows, GRUB (`search
    // --label`) and libblkid read it. Without a label the boot sector says
    // "NO NAME" and there is no entry, as with mkfs.fat.
    if let Some(label) = label_bytes {
        options = options.volume_label(label);
    }
    if let Some(cluster) = cluster {
        options = options.bytes_per_cluster(cluster);
    }
    {
        let mut stream = BlockCache::new(&file).with_context(|| format!("reading {shown}"))?;
        fatfs::format_volume(&mut stream, options)
            .with_context(|| format!("formatting {shown} as FAT32"))?;
        stream
            .flush()
            .with_context(|| format!("writing to {shown}"))?;
    }

    let mut stream = BlockCache::new(&file).with_context(|| format!("reading {shown}"))?;
    {
        let fs = FileSystem::new(&mut stream, FsOptions::new())
            .with_context(|| format!("opening the new FAT filesystem on {shown}"))?;
        ensure!(
            fs.fat_type() == FatType::Fat32,
            "the filesystem created on {shown} is not FAT32"
        );
        copy_dir(&root, &fs.root_dir(), device)?;
        // Writes the FSInfo sector and clears the dirty flag; errors here
        // would be lost in Drop.
        fs.unmount()
            .with_context(|| format!("finishing the FAT filesystem on {shown}"))?;
    }
    stream
        .flush()
        .with_context(|| format!("writing to {shown}"))?;
    drop(stream);
    Fat32::read(&file)
        .and_then(|fat| fat.repair(&file))
        .with_context(|| format!("finishing the FAT filesystem on {shown}"))?;
    file.sync_all()
        .with_context(|| format!("syncing {shown}"))?;
    Ok(())
}

/// The 11-byte label field, space padded; `None` for an empty label.
fn label_field(label: &str) -> Result<Option<[u8; 11]>> {
    if label.is_empty() {
        return Ok(None);
    }
    ensure!(
        label.len() <= 11,
        "invalid FAT volume label {label:?}: at most 11 characters"
    );
    // Short-name characters (fatgen103 §6.1): no lowercase, and none of
    // " * + , . / : ; < = > ? [ \ ] |.
    for c in label.chars() {
        let ok = c.is_ascii_uppercase() || c.is_ascii_digit() || " !#$%&'()-@^_`{}~".contains(c);
        if !ok {
            bail!(
                "invalid FAT volume label {label:?}: {c:?} is not allowed (use uppercase letters, digits, spaces and !#$%&'()-@^_`{{}}~)"
            );
        }
    }
    let mut field = [b' '; 11];
    field[..label.len()].copy_from_slice(label.as_bytes());
    Ok(Some(field))
}

/// The cluster size for a FAT32 volume of `size` bytes: the largest of
/// 4096…512 bytes that still gives the minimum FAT32 cluster count (small
/// clusters make copies slow: every cluster costs a FAT update). `None`
/// above 8 GiB, where fatfs's own choice (≥ 4 KiB) applies.
fn cluster_size(size: u64) -> Result<Option<u32>> {
    if size > 8 << 30 {
        return Ok(None);
    }
    // Each cluster costs its bytes plus two 4-byte FAT entries (two FATs);
    // 32 reserved sectors precede the FATs. Keep a margin for rounding.
    let clusters = |cluster: u64| size.saturating_sub(32 * 512) / (cluster + 8);
    for cluster in [4096u32, 2048, 1024, 512] {
        if clusters(cluster.into()) >= FAT32_MIN_CLUSTERS + 64 {
            return Ok(Some(cluster));
        }
    }
    bail!(
        "{} is too small for FAT32: it needs at least {}",
        format_size(size),
        format_size(33 * 1024 * 1024)
    )
}

/// Where a FAT32 volume keeps its structures, from the boot sector's BIOS
/// Parameter Block (fatgen103 §3.1, §3.3).
#[derive(Debug)]
struct Fat32 {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    /// Byte offset of the first FAT.
    fat_start: u64,
    /// First sector of cluster 2.
    first_data_sector: u64,
    root_cluster: u32,
    /// Number of data clusters (numbered 2..cluster_count + 2).
    cluster_count: u32,
    /// Byte offset of the FSInfo sector.
    fs_info: u64,
}

/// Directory entry layout (fatgen103 §6): name[11], attributes at 11,
/// first cluster high word at 20, low word at 26.
const DIR_ENTRY: usize = 32;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LONG_NAME: u8 = 0x0F;
const DELETED: u8 = 0xE5;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

fn entry_cluster(e: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
        | u32::from(u16::from_le_bytes([e[26], e[27]]))
}

fn set_entry_cluster(e: &mut [u8], cluster: u32) {
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
}

fn is_sfn(e: &[u8], name: &[u8; 11]) -> bool {
    &e[..11] == name && e[11] & ATTR_DIRECTORY != 0 && e[11] != ATTR_LONG_NAME
}

impl Fat32 {
    fn read(file: &File) -> io::Result<Self> {
        let mut b = [0u8; 512];
        file.read_exact_at(&mut b, 0)?;
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
        let u32_at = |o: usize| u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]));
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(b[13]);
        let reserved = u16_at(14);
        let fats = u64::from(b[16]);
        let total_sectors = if u16_at(19) != 0 {
            u16_at(19)
        } else {
            u32_at(32)
        };
        let fat_size = u32_at(36);
        let first_data_sector = reserved + fats * fat_size;
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad FAT32 boot sector: {what}"),
            )
        };
        if bytes_per_sector == 0 || sectors_per_cluster == 0 || fat_size == 0 {
            return Err(bad("zero geometry"));
        }
        let cluster_count = total_sectors
            .checked_sub(first_data_sector)
            .ok_or_else(|| bad("FATs larger than the volume"))?
            / sectors_per_cluster;
        Ok(Fat32 {
            bytes_per_sector,
            sectors_per_cluster,
            fat_start: reserved * bytes_per_sector,
            first_data_sector,
            root_cluster: u32_at(44) as u32,
            cluster_count: u32::try_from(cluster_count).map_err(|_| bad("too many clusters"))?,
            fs_info: u16_at(48) * bytes_per_sector,
        })
    }

    fn cluster_bytes(&self) -> usize {
        (self.sectors_per_cluster * self.bytes_per_sector) as usize
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        (self.first_data_sector + u64::from(cluster - 2) * self.sectors_per_cluster)
            * self.bytes_per_sector
    }

    fn valid(&self, cluster: u32) -> bool {
        (2..self.cluster_count + 2).contains(&cluster)
    }

    /// The first FAT, as 28-bit entries.
    fn read_fat(&self, file: &File) -> io::Result<Vec<u32>> {
        let mut raw = vec![0u8; (self.cluster_count as usize + 2) * 4];
        file.read_exact_at(&mut raw, self.fat_start)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x0FFF_FFFF)
            .collect())
    }

    /// The clusters of the chain starting at `first`.
    fn chain(&self, fat: &[u32], first: u32) -> io::Result<Vec<u32>> {
        let mut chain = Vec::new();
        let mut c = first;
        while self.valid(c) {
            if chain.len() > self.cluster_count as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "cluster chain loops",
                ));
            }
            chain.push(c);
            c = fat[c as usize];
        }
        Ok(chain)
    }

    /// Repair what fatfs 0.3.6 gets wrong (fixed upstream after that
    /// release, rust-fatfs PRs #99 and #100), then fill in FSInfo:
    ///
    /// - It writes long-name entries for "." and "..", so a new directory
    ///   starts [LFN, ".", LFN, ".."], while FAT requires "." and ".." in
    ///   the first two slots (fatgen103 §6.7; `fsck.fat -a` "repairs" this
    ///   by renaming and deleting entries). Rewritten to [".", "..",
    ///   deleted, deleted], which moves no other entry.
    /// - The ".." of a directory in the root must have cluster 0 (§6.7), not
    ///   the FAT32 root's cluster.
    /// - FSInfo's free cluster count is left "unknown" (0xFFFFFFFF), which
    ///   fsck.fat reports; set it and the next-free hint (§5).
    fn repair(&self, file: &File) -> io::Result<()> {
        let fat = self.read_fat(file)?;
        self.repair_dir(file, &fat, self.root_cluster, true)?;
        let free = fat[2..].iter().filter(|&&e| e == 0).count() as u32;
        let next = fat[2..]
            .iter()
            .position(|&e| e == 0)
            .map_or(0xFFFF_FFFF, |i| i as u32 + 2);
        let mut info = [0u8; 8];
        info[..4].copy_from_slice(&free.to_le_bytes());
        info[4..].copy_from_slice(&next.to_le_bytes());
        // FSI_Free_Count at 488, FSI_Nxt_Free at 492 (fatgen103 §5).
        file.write_all_at(&info, self.fs_info + 488)
    }

    /// Fix the subdirectories listed in directory `cluster`, recursively.
    fn repair_dir(&self, file: &File, fat: &[u32], cluster: u32, is_root: bool) -> io::Result<()> {
        let mut data = Vec::new();
        for c in self.chain(fat, cluster)? {
            let mut buf = vec![0u8; self.cluster_bytes()];
            file.read_exact_at(&mut buf, self.cluster_offset(c))?;
            data.extend_from_slice(&buf);
        }
        for e in data.chunks_exact(DIR_ENTRY) {
            match e[0] {
                0 => break,
                DELETED => continue,
                _ => {}
            }
            let attr = e[11];
            if attr == ATTR_LONG_NAME || attr & ATTR_VOLUME_ID != 0 || attr & ATTR_DIRECTORY == 0 {
                continue;
            }
            if is_sfn(e, DOT) || is_sfn(e, DOTDOT) {
                continue;
            }
            let child = entry_cluster(e);
            let parent = if is_root { 0 } else { cluster };
            self.repair_dot_entries(file, child, parent)?;
            self.repair_dir(file, fat, child, false)?;
        }
        Ok(())
    }

    /// Make the first two slots of directory `cluster` "." and ".." (the
    /// latter pointing at `parent`).
    fn repair_dot_entries(&self, file: &File, cluster: u32, parent: u32) -> io::Result<()> {
        if !self.valid(cluster) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("directory at invalid cluster {cluster}"),
            ));
        }
        let offset = self.cluster_offset(cluster);
        let mut slots = [0u8; 4 * DIR_ENTRY];
        file.read_exact_at(&mut slots, offset)?;
        let slot = |i: usize| &slots[i * DIR_ENTRY..(i + 1) * DIR_ENTRY];
        let (mut dot, mut dotdot) = (slot(0).to_vec(), slot(1).to_vec());
        let mut tail = None;
        if slot(0)[11] == ATTR_LONG_NAME
            && is_sfn(slot(1), DOT)
            && slot(2)[11] == ATTR_LONG_NAME
            && is_sfn(slot(3), DOTDOT)
        {
            // The fatfs 0.3.6 layout.
            dot = slot(1).to_vec();
            dotdot = slot(3).to_vec();
            let mut deleted = [0u8; DIR_ENTRY];
            deleted[0] = DELETED;
            tail = Some([deleted, deleted].concat());
        } else if !(is_sfn(slot(0), DOT) && is_sfn(slot(1), DOTDOT)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected entries at the start of the directory at cluster {cluster}"),
            ));
        }
        if entry_cluster(&dot) != cluster {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the \".\" entry of the directory at cluster {cluster} points elsewhere"),
            ));
        }
        set_entry_cluster(&mut dotdot, parent);
        let mut fixed = [dot, dotdot].concat();
        if let Some(tail) = tail {
            fixed.extend_from_slice(&tail);
        }
        file.write_all_at(&fixed, offset)
    }
}

/// A file or directory to copy.
#[derive(Debug)]
struct Node {
    name: String,
    source: PathBuf,
    kind: NodeKind,
}

#[derive(Debug)]
enum NodeKind {
    File { size: u64 },
    Dir(Vec<Node>),
}

/// Read and check the whole tree before anything is written.
fn scan_tree(tree: &Path, device: &Path) -> Result<Vec<Node>> {
    let meta = std::fs::metadata(tree).with_context(|| format!("reading {}", tree.display()))?;
    ensure!(
        meta.is_dir(),
        "cannot copy {} to the ESP: not a directory",
        tree.display()
    );
    scan_dir(tree, device)
}

fn scan_dir(dir: &Path, device: &Path) -> Result<Vec<Node>> {
    let refuse = |path: &Path, why: &str| -> anyhow::Error {
        anyhow::anyhow!(
            "cannot copy {} to the FAT filesystem on {}: {why}",
            path.display(),
            device.display()
        )
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    let mut nodes = Vec::with_capacity(entries.len());
    let mut folded: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| refuse(&path, "its name is not valid UTF-8"))?;
        check_long_name(&name).map_err(|why| refuse(&path, why))?;
        // FAT compares names case-insensitively: a second name differing
        // only in case would silently replace the first.
        let key = name.to_uppercase();
        if let Some((_, other)) = folded.iter().find(|(k, _)| *k == key) {
            return Err(refuse(
                &path,
                &format!(
                    "FAT names are case-insensitive and {} has the same name",
                    other.display()
                ),
            ));
        }
        folded.push((key, path.clone()));
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir(scan_dir(&path, device)?)
        } else if ft.is_file() {
            if meta.len() > u64::from(u32::MAX) {
                return Err(refuse(
                    &path,
                    &format!(
                        "it is {}, and FAT32 files must be smaller than 4 GiB",
                        format_size(meta.len())
                    ),
                ));
            }
            NodeKind::File { size: meta.len() }
        } else if ft.is_symlink() {
            return Err(refuse(&path, "it is a symlink, which FAT cannot store"));
        } else {
            return Err(refuse(
                &path,
                "it is not a regular file or directory, which is all FAT can store",
            ));
        };
        nodes.push(Node {
            name,
            source: path,
            kind,
        });
    }
    Ok(nodes)
}

/// The rules fatfs applies to long names (VFAT: up to 255 characters, no
/// `" * / : < > ? \ |` or control characters), checked up front so that the
/// error names the file.
fn check_long_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.len() > 255 {
        return Err("its name is longer than the 255 characters FAT allows");
    }
    let ok = name.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || ('\u{80}'..='\u{FFFF}').contains(&c)
            || "$%'-_@~`!(){}. +,;=[]^#&".contains(c)
    });
    if !ok {
        return Err(
            "its name has characters FAT cannot store (\" * / : < > ? \\ | or control characters, or characters outside the Basic Multilingual Plane)",
        );
    }
    Ok(())
}

fn copy_dir<IO: fatfs::ReadWriteSeek>(
    nodes: &[Node],
    dst: &fatfs::Dir<'_, IO>,
    device: &Path,
) -> Result<()> {
    for node in nodes {
        let what = || {
            format!(
                "copying {} to the FAT filesystem on {}",
                node.source.display(),
                device.display()
            )
        };
        match &node.kind {
            NodeKind::Dir(children) => {
                let sub = dst.create_dir(&node.name).with_context(what)?;
                copy_dir(children, &sub, device)?;
            }
            NodeKind::File { size } => {
                let mut src = File::open(&node.source).with_context(what)?;
                let mut out = dst.create_file(&node.name).with_context(what)?;
                out.truncate().with_context(what)?;
                let copied = copy(&mut src, &mut out).with_context(what)?;
                out.flush().with_context(what)?;
                ensure!(
                    copied == *size,
                    "{}: the file changed size while being copied ({size} then {copied} bytes)",
                    what()
                );
            }
        }
    }
    Ok(())
}

/// `io::copy` with a large buffer: fatfs splits writes at cluster
/// boundaries anyway, the buffer only saves read calls.
fn copy(src: &mut File, dst: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A write-back cache of 4 KiB blocks in front of the device.
///
/// fatfs reads and writes FAT entries 4 bytes at a time, in both FAT copies,
/// between the data writes of each cluster; unbuffered that is a system call
/// per entry, and a single read/write window would be refilled twice per
/// cluster. (The fatfs documentation recommends `fscommon::BufStream`; this
/// is the same idea, shaped for this access pattern, without a dependency.)
/// The FAT blocks stay cached and dirty until the end; whole-block writes of
/// uncached blocks (file data with 4 KiB clusters) go straight to the
/// device.
struct BlockCache<'a> {
    inner: &'a File,
    /// Size of the device; nothing is read or written past it.
    len: u64,
    pos: u64,
    blocks: HashMap<u64, CachedBlock>,
}

struct CachedBlock {
    data: Box<[u8; BLOCK]>,
    dirty: bool,
}

const BLOCK: usize = 4096;
/// Flush and drop the cache beyond this many blocks (4 MiB).
const MAX_BLOCKS: usize = 1024;

impl<'a> BlockCache<'a> {
    fn new(inner: &'a File) -> io::Result<Self> {
        let len = (&*inner).seek(SeekFrom::End(0))?;
        Ok(Self {
            inner,
            len,
            pos: 0,
            blocks: HashMap::new(),
        })
    }

    /// Bytes of block `index` that lie on the device.
    fn block_len(&self, index: u64) -> usize {
        (self.len - index * BLOCK as u64).min(BLOCK as u64) as usize
    }

    fn load(&mut self, index: u64) -> io::Result<&mut CachedBlock> {
        if !self.blocks.contains_key(&index) {
            if self.blocks.len() >= MAX_BLOCKS {
                self.flush_blocks()?;
                self.blocks.clear();
            }
            let mut data = Box::new([0u8; BLOCK]);
            let n = self.block_len(index);
            self.inner
                .read_exact_at(&mut data[..n], index * BLOCK as u64)?;
            self.blocks
                .insert(index, CachedBlock { data, dirty: false });
        }
        Ok(self.blocks.get_mut(&index).expect("just inserted"))
    }

    /// Write the dirty blocks in device order.
    fn flush_blocks(&mut self) -> io::Result<()> {
        let mut dirty: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.dirty)
            .map(|(i, _)| *i)
            .collect();
        dirty.sort_unstable();
        for index in dirty {
            let n = self.block_len(index);
            let block = self.blocks.get_mut(&index).expect("listed above");
            self.inner
                .write_all_at(&block.data[..n], index * BLOCK as u64)?;
            block.dirty = false;
        }
        Ok(())
    }
}

impl Read for BlockCache<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let index = self.pos / BLOCK as u64;
        let offset = (self.pos % BLOCK as u64) as usize;
        let n = out.len().min(self.block_len(index) - offset);
        let block = self.load(index)?;
        out[..n].copy_from_slice(&block.data[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for BlockCache<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the device",
            ));
        }
        let index = self.pos / BLOCK as u64;
        let offset = (self.pos % BLOCK as u64) as usize;
        let n = data.len().min(self.block_len(index) - offset);
        if offset == 0 && n == BLOCK && !self.blocks.contains_key(&index) {
            self.inner.write_all_at(&data[..n], self.pos)?;
        } else {
            let block = self.load(index)?;
            block.data[offset..offset + n].copy_from_slice(&data[..n]);
            block.dirty = true;
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_blocks()
    }
}

impl Seek for BlockCache<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "seek before the start");
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(invalid)?,
            SeekFrom::End(d) => self.len.checked_add_signed(d).ok_or_else(invalid)?,
        };
        Ok(self.pos)
    }
}

impl Drop for BlockCache<'_> {
    fn drop(&mut self) {
        // Callers flush explicitly to see errors; this is the safety net.
        let _ = self.flush_blocks();
    }
}

#[cfg(test)]
mod tests;

//! A small bootable test image, written as an OCI image layout.
//!
//! The kernel and initramfs are a few bytes of filler: install tests check
//! what cbootc writes, not that it boots (the end-to-end suite boots real
//! images).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One entry of the image's single layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    File {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

pub fn dir(path: &str, mode: u32) -> Entry {
    Entry::Dir {
        path: path.into(),
        mode,
        uid: 0,
        gid: 0,
    }
}

pub fn file(path: &str, data: &[u8]) -> Entry {
    Entry::File {
        path: path.into(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        data: data.to_vec(),
    }
}

pub const KVER: &str = "6.12.0-cbootctest";

pub const OS_RELEASE: &str = "NAME=\"Cbootc Test OS\"\nID=cbootctest\nVERSION_ID=\"42.1\"\nPRETTY_NAME=\"Cbootc Test OS 42.1 (Testing)\"\n";

/// The entries of a bootable image. `extra` is appended.
pub fn bootable_entries(extra: &[Entry]) -> Vec<Entry> {
    let mut v = vec![
        dir("usr", 0o755),
        dir("usr/bin", 0o755),
        dir("usr/lib", 0o755),
        file("usr/lib/os-release", OS_RELEASE.as_bytes()),
        dir("usr/lib/modules", 0o755),
        dir(&format!("usr/lib/modules/{KVER}"), 0o755),
        file(
            &format!("usr/lib/modules/{KVER}/vmlinuz"),
            &filler(b"KERNEL", 300_000),
        ),
        file(
            &format!("usr/lib/modules/{KVER}/initramfs.img"),
            &filler(b"INITRD", 500_000),
        ),
        dir("etc", 0o755),
        Entry::Symlink {
            path: "etc/os-release".into(),
            target: "../usr/lib/os-release".into(),
        },
        file("etc/hostname", b"cbootc-test\n"),
        dir("boot", 0o755),
        dir("sysroot", 0o755),
        dir("tmp", 0o1777),
        dir("dev", 0o755),
        dir("proc", 0o555),
        dir("sys", 0o555),
        dir("var", 0o755),
        dir("var/tmp", 0o1777),
        dir("var/lib", 0o755),
        dir("var/lib/testapp", 0o750),
        Entry::File {
            path: "var/lib/testapp/state".into(),
            mode: 0o640,
            uid: 123,
            gid: 456,
            data: b"state from the image\n".to_vec(),
        },
        Entry::Symlink {
            path: "var/lib/testapp/link".into(),
            target: "state".into(),
        },
    ];
    v.extend_from_slice(extra);
    v
}

/// Deterministic, incompressible-enough filler of `len` bytes.
pub fn filler(tag: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u32 = 0x9e3779b9;
    out.extend_from_slice(tag);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
    out
}

/// An uncompressed tar of `entries`, in order (mtime fixed, so the same
/// entries give the same bytes).
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir {
                path,
                mode,
                uid,
                gid,
            } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
            }
            Entry::File {
                path,
                mode,
                uid,
                gid,
                data,
            } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// `sha256:` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Store `data` as a blob of the layout `dir`; returns its `sha256:` digest.
pub fn put_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        data,
    )
    .unwrap();
    d
}

/// Add `entry` to the layout's index.json under `tag`, replacing what had
/// that tag and keeping the other tags (several versions of an image can
/// live in one layout, like `skopeo copy` into the same oci: directory
/// makes).
pub fn tag_in_index(dir: &Path, tag: &str, mut entry: serde_json::Value) {
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}),
    };
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(entry);
    fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Store image manifest `manifest` in the layout `dir` and tag it `tag`
/// (with `platform` in the index entry, if given). Returns the manifest's
/// bytes and digest.
pub fn put_manifest(
    dir: &Path,
    tag: &str,
    manifest: &serde_json::Value,
    platform: Option<serde_json::Value>,
) -> (Vec<u8>, String) {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let digest = put_blob(dir, &bytes);
    let mut entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": bytes.len()
    });
    if let Some(p) = platform {
        entry["platform"] = p;
    }
    tag_in_index(dir, tag, entry);
    (bytes, digest)
}

/// Write an OCI layout at `dir` with one uncompressed layer holding
/// `entries`, tagged `tag`. Returns the `oci:` reference.
pub fn write_layout(dir: &Path, tag: &str, entries: &[Entry]) -> String {
    let layer = layer_tar(entries);
    let layer_digest = put_blob(dir, &layer);
    let config = serde_json::json!({
        "created": "2026-11-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"containers.bootc": "1"}, "Cmd": ["/sbin/init"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.clone()]},
        "history": [{"created": "2026-11-01T00:00:00Z", "created_by": "cbootc test"}]
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(dir, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
    });
    put_manifest(dir, tag, &manifest, None);
    format!("oci:{}:{tag}", dir.display())
}

/// A bootable test image in `parent/name`.
pub fn bootable_image(parent: &Path, name: &str) -> (PathBuf, String) {
    let dir = parent.join(name);
    let r = write_layout(&dir, "latest", &bootable_entries(&[]));
    (dir, r)
}

/// Version `version` of the bootable test image, tagged `tag` in the
/// layout at `dir`: `/usr/lib/test-version` holds the version, and
/// `/etc/image.conf` changes with it.
pub fn versioned_image(dir: &Path, tag: &str, version: &str, extra: &[Entry]) -> String {
    let mut entries = bootable_entries(&[
        file("usr/lib/test-version", format!("{version}\n").as_bytes()),
        file(
            "etc/image.conf",
            format!("from image {version}\n").as_bytes(),
        ),
        file("etc/motd", b"welcome\n"),
    ]);
    entries.extend_from_slice(extra);
    write_layout(dir, tag, &entries)
}

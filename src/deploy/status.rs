//! What `cbootc status` reports: the booted, staged and rollback
//! deployments, classified from the record's boot order.
//!
//! The JSON follows bootc's `BootcHost` shape (`apiVersion`, `kind`,
//! `spec.image`, `status.booted/staged/rollback`, camelCase) so tooling
//! written for `bootc status --json` can read it; cbootc-specific fields sit
//! under each entry's `composefs` object.
//!
//! Classification, with the record in boot order `[d0, d1, …]`:
//! - `d0` is the booted deployment: nothing staged, rollback = `d1`;
//! - `d0` was deployed after the booted one: `d0` is staged (an upgrade
//!   waiting for a reboot), rollback = the first other deployment;
//! - `d0` was deployed before the booted one: a rollback is queued
//!   (`rollbackQueued`), rollback = `d0`.

use serde::Serialize;

use super::record::{Bootloader, Deployment, Record};
use crate::image::imgref::ImageRef;

/// The booted/staged/rollback view of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The booted deployment.
    pub booted: &'a Deployment,
    /// A newer deployment that boots next.
    pub staged: Option<&'a Deployment>,
    /// The deployment a rollback goes to (or, if queued, boots next).
    pub rollback: Option<&'a Deployment>,
    /// Whether the next boot is the rollback deployment.
    pub rollback_queued: bool,
}

/// Classify `record` for the booted id (which must be in it).
pub fn classify<'a>(record: &'a Record, booted: &str) -> Option<Classified<'a>> {
    let booted = record.find(booted)?;
    let first = record.deployments.first()?;
    let others = || record.deployments.iter().filter(|d| d.id != booted.id);
    Some(if first.id == booted.id {
        Classified {
            booted,
            staged: None,
            rollback: others().next(),
            rollback_queued: false,
        }
    } else if first.deployed_after(booted) {
        Classified {
            booted,
            staged: Some(first),
            rollback: others().find(|d| d.id != first.id),
            rollback_queued: false,
        }
    } else {
        Classified {
            booted,
            staged: None,
            rollback: Some(first),
            rollback_queued: true,
        }
    })
}

/// `bootc status --json`-shaped host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootcHost {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: HostSpec,
    status: HostStatus,
}

#[derive(Debug, Serialize)]
struct Metadata {
    name: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HostSpec {
    image: Option<ImageReference>,
    boot_order: &'static str,
}

/// bootc's `ImageReference`: the name and its transport, separately.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    image: String,
    transport: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HostStatus {
    staged: Option<BootEntry>,
    booted: Option<BootEntry>,
    rollback: Option<BootEntry>,
    rollback_queued: bool,
    #[serde(rename = "type")]
    ty: Option<&'static str>,
    last_upgrade: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BootEntry {
    image: ImageStatus,
    incompatible: bool,
    pinned: bool,
    store: &'static str,
    composefs: ComposefsStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageStatus {
    image: Option<ImageReference>,
    version: Option<String>,
    timestamp: Option<String>,
    image_digest: String,
    architecture: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ComposefsStatus {
    verity: String,
    verity_policy: String,
    boot_type: &'static str,
    bootloader: String,
    kernel: String,
    title: String,
    deployed_at: String,
    boot_failed: bool,
}

/// Split a stored reference into bootc's name + transport form.
pub fn image_reference(s: &str) -> Option<ImageReference> {
    let r = ImageRef::parse(s).ok()?;
    let (image, transport) = match &r {
        ImageRef::Registry { reference } => (reference.clone(), "registry"),
        ImageRef::OciDir { .. } => (r.to_string().trim_start_matches("oci:").to_string(), "oci"),
        ImageRef::OciArchive { .. } => (
            r.to_string().trim_start_matches("oci-archive:").to_string(),
            "oci-archive",
        ),
        ImageRef::ContainersStorage { name } => (name.clone(), "containers-storage"),
    };
    Some(ImageReference { image, transport })
}

fn entry(record: &Record, d: &Deployment) -> BootEntry {
    BootEntry {
        image: ImageStatus {
            image: image_reference(&d.imgref),
            version: d.version.clone(),
            timestamp: d.created.clone(),
            image_digest: d.manifest_digest.clone(),
            architecture: "amd64",
        },
        incompatible: false,
        pinned: false,
        store: "composefs",
        composefs: ComposefsStatus {
            verity: d.id.clone(),
            verity_policy: record.verity.to_string(),
            boot_type: match record.bootloader {
                Bootloader::Grub => "bls",
                Bootloader::SystemdBoot => "uki",
            },
            bootloader: record.bootloader.to_string(),
            kernel: d.kver.clone(),
            title: d.title.clone(),
            deployed_at: d.deployed_at.clone(),
            boot_failed: d.boot_failed,
        },
    }
}

/// The host document. `tracked` is the config's reference; `record` and
/// `booted` are `None` on a system cbootc does not manage.
pub fn host(tracked: Option<&str>, record: Option<&Record>, booted: Option<&str>) -> BootcHost {
    let c = match (record, booted) {
        (Some(r), Some(b)) => classify(r, b),
        _ => None,
    };
    let e = |d: Option<&Deployment>| d.zip(record).map(|(d, r)| entry(r, d));
    BootcHost {
        api_version: "org.containers.bootc/v1",
        kind: "BootcHost",
        metadata: Metadata { name: "host" },
        spec: HostSpec {
            image: tracked.and_then(image_reference),
            boot_order: if c.as_ref().is_some_and(|c| c.rollback_queued) {
                "rollback"
            } else {
                "default"
            },
        },
        status: HostStatus {
            staged: e(c.as_ref().and_then(|c| c.staged)),
            booted: e(c.as_ref().map(|c| c.booted)),
            rollback: e(c.as_ref().and_then(|c| c.rollback)),
            rollback_queued: c.as_ref().is_some_and(|c| c.rollback_queued),
            ty: c.as_ref().map(|_| "bootcHost"),
            last_upgrade: record
                .and_then(|r| r.deployments.iter().map(|d| d.deployed_at.clone()).max()),
        },
    }
}

/// Human-readable status.
pub fn text(tracked: &str, record: &Record, booted: &str) -> String {
    let Some(c) = classify(record, booted) else {
        return format!("Tracking: {tracked}\nThe booted deployment is not in cbootc's record.\n");
    };
    let mut out = format!("Tracking: {tracked}\n");
    let mut block = |label: &str, d: &Deployment| {
        let short = &d.id[..d.id.len().min(16)];
        out.push_str(&format!(
            "{label:<10}{}{}{}\n          image     {}\n          digest    {}\n          composefs {short}… (fs-verity {})\n          kernel    {}\n          created   {}  deployed {}\n",
            d.title,
            d.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default(),
            if d.boot_failed { " — FAILED TO BOOT, rolled back automatically" } else { "" },
            d.imgref,
            d.manifest_digest,
            record.verity,
            d.kver,
            d.created.as_deref().unwrap_or("unknown"),
            d.deployed_at,
        ));
    };
    block("Booted:", c.booted);
    if let Some(s) = c.staged {
        block("Staged:", s);
    }
    if let Some(r) = c.rollback {
        block(
            if c.rollback_queued {
                "Rollback (queued for next boot):"
            } else {
                "Rollback:"
            },
            r,
        );
    }
    let style = match record.bootloader {
        Bootloader::Grub => "BLS Type 1 entries",
        Bootloader::SystemdBoot => "UKIs",
    };
    let sb = if record.secure_boot {
        ", Secure Boot signed"
    } else {
        ""
    };
    out.push_str(&format!(
        "Boot: {} with {style}{sb}; {} deployment(s)\n",
        record.bootloader,
        record.deployments.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::record::{FORMAT, Verity};

    fn dep(id: &str, at: &str) -> Deployment {
        Deployment {
            id: id.repeat(64),
            imgref: "docker://quay.io/os/img:latest".into(),
            manifest_digest: format!("sha256:{id}"),
            created: Some("2026-11-01T00:00:00Z".into()),
            deployed_at: at.into(),
            title: "Test OS".into(),
            version: Some("1".into()),
            kver: "6.12".into(),
            boot_failed: false,
        }
    }

    fn record(deps: Vec<Deployment>) -> Record {
        Record {
            format: FORMAT,
            bootloader: Bootloader::Grub,
            esp_uuid: "ABCD-1234".into(),
            root_uuid: "u".into(),
            verity: Verity::Optional,
            secure_boot: false,
            kargs: vec![],
            deployments: deps,
        }
    }

    #[test]
    fn classification() {
        let (a, b, c) = (
            dep("aa", "2026-01-03T00:00:00Z"),
            dep("bb", "2026-01-02T00:00:00Z"),
            dep("cc", "2026-01-01T00:00:00Z"),
        );
        // Booted first: nothing staged.
        let r = record(vec![b.clone(), c.clone()]);
        let k = classify(&r, &b.id).unwrap();
        assert_eq!(
            (k.staged, k.rollback.map(|d| &d.id), k.rollback_queued),
            (None, Some(&c.id), false)
        );
        // After an upgrade: a staged, b booted, c rollback.
        let r = record(vec![a.clone(), b.clone(), c.clone()]);
        let k = classify(&r, &b.id).unwrap();
        assert_eq!(k.staged.map(|d| &d.id), Some(&a.id));
        assert_eq!(k.rollback.map(|d| &d.id), Some(&c.id));
        // After a rollback: c first, older than booted b.
        let r = record(vec![c.clone(), b.clone()]);
        let k = classify(&r, &b.id).unwrap();
        assert!(k.rollback_queued);
        assert_eq!(k.rollback.map(|d| &d.id), Some(&c.id));
        assert!(classify(&r, "nope").is_none());
    }

    #[test]
    fn json_shape() {
        let (a, b) = (
            dep("aa", "2026-01-03T00:00:00Z"),
            dep("bb", "2026-01-02T00:00:00Z"),
        );
        let r = record(vec![a.clone(), b.clone()]);
        let v = serde_json::to_value(host(
            Some("docker://quay.io/os/img:latest"),
            Some(&r),
            Some(&b.id),
        ))
        .unwrap();
        assert_eq!(v["apiVersion"], "org.containers.bootc/v1");
        assert_eq!(v["kind"], "BootcHost");
        assert_eq!(v["spec"]["image"]["image"], "quay.io/os/img:latest");
        assert_eq!(v["spec"]["image"]["transport"], "registry");
        assert_eq!(v["status"]["booted"]["composefs"]["verity"], b.id.as_str());
        assert_eq!(v["status"]["staged"]["image"]["imageDigest"], "sha256:aa");
        assert_eq!(
            v["status"]["staged"]["composefs"]["verityPolicy"],
            "optional"
        );
        assert!(v["status"]["rollback"].is_null());
        assert_eq!(v["status"]["rollbackQueued"], false);
        assert_eq!(v["status"]["lastUpgrade"], "2026-01-03T00:00:00Z");
        // Not managed by cbootc.
        let v = serde_json::to_value(host(None, None, None)).unwrap();
        assert!(v["status"]["booted"].is_null());
        assert!(v["spec"]["image"].is_null());
    }

    #[test]
    fn text_lists_each_role() {
        let (a, b) = (
            dep("aa", "2026-01-03T00:00:00Z"),
            dep("bb", "2026-01-02T00:00:00Z"),
        );
        let r = record(vec![a, b.clone()]);
        let t = text("docker://x/y:z", &r, &b.id);
        assert!(t.starts_with("Tracking: docker://x/y:z\n"), "{t}");
        assert!(t.contains("Booted:   Test OS (version 1)"), "{t}");
        assert!(t.contains("Staged:"), "{t}");
        assert!(!t.contains("Rollback"), "{t}");
    }

    #[test]
    fn references() {
        assert_eq!(
            image_reference("oci:/srv/x:v1").unwrap(),
            ImageReference {
                image: "/srv/x:v1".into(),
                transport: "oci"
            }
        );
        assert_eq!(
            image_reference("containers-storage:abc").unwrap().transport,
            "containers-storage"
        );
        assert!(image_reference("garbage").is_none());
    }
}

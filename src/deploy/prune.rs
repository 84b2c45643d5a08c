//! Pruning: keeping a bounded number of deployments and deleting what
//! belongs to none.
//!
//! Order matters for crash safety: the record is shortened first and the
//! menu regenerated (so no boot entry names what is about to go), then BLS
//! entries, kernels, deployment state and repository tags are removed, and
//! finally the repository is garbage-collected. Anything on disk that no
//! record entry names — including leftovers of an interrupted upgrade — is
//! removed the same way.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::boot_files;
use crate::host::Host;
use crate::repo::Repo;

/// What [`prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Deployments dropped from the record.
    pub deployments: Vec<String>,
    /// Repository objects deleted by garbage collection.
    pub objects: u64,
    /// Bytes those objects held.
    pub bytes: u64,
}

/// Keep the first `keep` deployments of the record (always including the
/// booted one) and delete everything else. Takes the repository by value:
/// garbage collection needs the only open handle (composefs upgrades its
/// lock to exclusive).
pub fn prune(host: &mut Host, repo: Arc<Repo>, keep: usize) -> Result<PruneReport> {
    let keep = keep.max(2);
    let mut report = PruneReport::default();
    let mut kept = Vec::new();
    for dep in host.record.deployments.drain(..) {
        if kept.len() < keep || dep.id == host.booted {
            kept.push(dep);
        } else {
            report.deployments.push(dep.id);
        }
    }
    // The booted deployment may have been kept beyond `keep`: drop the
    // oldest non-booted one instead.
    while kept.len() > keep {
        let pos = kept
            .iter()
            .rposition(|d| d.id != host.booted)
            .expect("keep >= 2");
        report.deployments.push(kept.remove(pos).id);
    }
    host.record.deployments = kept;
    if !report.deployments.is_empty() {
        host.record.save(&host.state.record())?;
    }
    // Not a plain write_menu: the upgrade just made the first deployment a
    // trial, which on systemd-boot is the name of its entry.
    super::trial::rewrite_menu(host)?;

    let live: Vec<&str> = host
        .record
        .deployments
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    for id in boot_files::present(host.esp())? {
        if !live.contains(&id.as_str()) {
            let dir = boot_files::kernel_dir(host.esp(), &id);
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let deploy_dir = host.state.deployments_dir();
    if deploy_dir.exists() {
        for e in std::fs::read_dir(&deploy_dir)
            .with_context(|| format!("reading {}", deploy_dir.display()))?
        {
            let name = e?.file_name().to_string_lossy().into_owned();
            if !live.contains(&name.as_str()) {
                let p = deploy_dir.join(&name);
                std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    for (tag, _) in composefs_oci::list_refs(&repo)? {
        let Some(id) = tag.strip_prefix(&crate::repo::deployment_tag("")) else {
            continue;
        };
        if !live.contains(&id) {
            composefs_oci::untag_image(&repo, &tag).with_context(|| format!("untagging {tag}"))?;
        }
    }
    let repo = Arc::try_unwrap(repo).map_err(|_| {
        anyhow::anyhow!("internal error: the repository is still in use during pruning")
    })?;
    let gc = repo.gc(&[]).context("garbage-collecting the repository")?;
    report.objects = gc.objects_removed;
    report.bytes = gc.objects_bytes;
    Ok(report)
}

//! `cbootc upgrade` and `cbootc switch`: pull an image and stage it.

use anyhow::{Context, Result, bail};
use cbootc::deploy::lock::Lock;
use cbootc::deploy::prune;
use cbootc::deploy::stage::{self, Known, Staged};
use cbootc::host::{Host, HostPaths};
use cbootc::image::imgref::ImageRef;
use cbootc::image::import;
use cbootc::repo;
use cbootc::util::size::format_size;
use clap::Args;

/// Free space the root filesystem must have before a pull starts.
const MIN_ROOT_FREE: u64 = 256 << 20;

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Only check whether the tracked image has changed (exit 0: an update
    /// is available, 1: none); downloads no layers.
    #[arg(long, conflicts_with = "reboot")]
    check: bool,
    /// Reboot into the new deployment when one was staged.
    #[arg(long)]
    reboot: bool,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The image to track from now on: docker://REGISTRY/NAME[:TAG],
    /// REGISTRY/NAME[:TAG] (registry), oci:DIR[:TAG], oci-archive:FILE,
    /// containers-storage:NAME.
    imgref: String,
    /// Reboot into the new deployment when one was staged.
    #[arg(long)]
    reboot: bool,
}

pub fn upgrade(a: UpgradeArgs) -> Result<()> {
    let paths = HostPaths::from_env();
    let _lock = Lock::acquire(&paths.run)?;
    let mut host = Host::open(paths)?;
    let imgref = ImageRef::parse_or_registry(&host.config.image.reference)
        .with_context(|| format!("the tracked image in {}", host.state.config().display()))?;
    if a.check {
        return check(&host, &imgref);
    }
    let staged = pull_and_stage(&mut host, &imgref, Known::Leave)?;
    finish(host, staged, a.reboot)
}

pub fn switch(a: SwitchArgs) -> Result<()> {
    let paths = HostPaths::from_env();
    let _lock = Lock::acquire(&paths.run)?;
    let mut host = Host::open(paths)?;
    let imgref = ImageRef::parse_or_registry(&a.imgref).context("invalid image reference")?;
    // The config changes only once the image was pulled and staged.
    let staged = pull_and_stage(&mut host, &imgref, Known::Restage)?;
    host.config.image.reference = imgref.to_string();
    host.config.save(&host.state.config())?;
    tracing::info!("now tracking {imgref}");
    finish(host, staged, a.reboot)
}

fn check(host: &Host, imgref: &ImageRef) -> Result<()> {
    let booted = host
        .record
        .find(&host.booted)
        .expect("checked by Host::open");
    let newest = host.record.deployments.first().unwrap_or(booted);
    match imgref {
        ImageRef::Registry { reference } => {
            let current = Some(newest.manifest_digest.as_str());
            match cbootc::image::registry::check_for_update(
                reference,
                current,
                &Default::default(),
            )? {
                Some(digest) => {
                    println!("Update available: {imgref} is now {digest}");
                    Ok(())
                }
                None => {
                    println!("No update: {imgref} is still {}", newest.manifest_digest);
                    std::process::exit(1);
                }
            }
        }
        _ => bail!("--check needs a registry reference; {imgref} is local"),
    }
}

fn pull_and_stage(host: &mut Host, imgref: &ImageRef, known: Known) -> Result<Staged> {
    let free = stage::free_bytes(&host.paths.sysroot)?;
    if free < MIN_ROOT_FREE {
        bail!(
            "{} has {} free; an upgrade needs at least {}: free space there (e.g. lower [prune] keep in {})",
            host.paths.sysroot.display(),
            format_size(free),
            format_size(MIN_ROOT_FREE),
            host.state.config().display()
        );
    }
    let repo = repo::open(&host.state.repo())?;
    tracing::info!("pulling {imgref}");
    let image = import::import(&repo, imgref)?;
    if host.record.verity == cbootc::deploy::record::Verity::Optional {
        let n = repo::enable_verity_everywhere(&host.state.repo())?;
        if n > 0 {
            tracing::info!("enabled fs-verity on {n} repository objects that lacked it");
        }
    }
    let result = stage::stage(host, &repo, &image, known)?;
    match &result {
        Staged::AlreadyBooted => println!("No update: {imgref} is the booted deployment."),
        Staged::AlreadyStaged => {
            println!("No update: {imgref} is already staged; reboot to use it.")
        }
        Staged::AlreadyDeployed => println!(
            "No update: {imgref} is an older deployment still on this system (rolled back from); `cbootc rollback` boots it again."
        ),
        Staged::PreviouslyFailed => println!(
            "Not staging {imgref}: this image failed to boot here and was rolled back automatically; waiting for a newer image."
        ),
        Staged::New { id, etc } => {
            println!(
                "Staged {} ({}) for the next boot; /etc: {} change(s) and {} deletion(s) carried over. Reboot to use it.",
                &id[..12],
                image.os_release.title(),
                etc.entries,
                etc.deletions
            );
            let keep = host.config.prune.keep;
            let report = prune::prune(host, repo, keep)?;
            if !report.deployments.is_empty() {
                tracing::info!(
                    "pruned {} old deployment(s), {} objects ({})",
                    report.deployments.len(),
                    report.objects,
                    format_size(report.bytes)
                );
            }
        }
    }
    Ok(result)
}

fn finish(_host: Host, staged: Staged, reboot: bool) -> Result<()> {
    if reboot && matches!(staged, Staged::New { .. }) {
        tracing::info!("rebooting");
        cbootc::util::command::run("systemctl", &["reboot"])?;
    }
    Ok(())
}

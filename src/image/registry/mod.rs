//! Pulling `docker://REGISTRY/NAME[:TAG|@DIGEST]` natively (oci-client, no
//! skopeo) into the composefs repository, and checking a registry for a
//! newer image with a single manifest request.
//!
//! Why not composefs-oci's `pull`: for registries it runs
//! `skopeo experimental-image-proxy`, which a booted image-based host may
//! not have. Here every byte is checked by cbootc itself before it counts:
//! manifest digest (against a pinned `@sha256:`), config and layer blob
//! digests as they stream, and each layer's diff_id over the decompressed
//! tar (composefs-oci's `import_layer` does not check it). Nothing is
//! recorded until the whole image verified.
//!
//! - [`reference`]: reference parsing and normalisation (podman's rules);
//! - [`auth`]: credentials from auth.json files (containers-auth.json(5));
//! - [`config`]: registries.conf (containers-registries.conf(5));
//! - `client`: transport (TLS by default), requests, one-line errors;
//! - `manifest`: index → platform manifest, raw bytes kept;
//! - `verify`: digest-checking readers;
//! - `pull`: the concurrent, streaming layer import;
//! - `progress`: bars on a terminal, log lines otherwise.

pub mod auth;
mod client;
pub mod config;
mod manifest;
mod progress;
mod pull;
pub mod reference;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use composefs_oci::OciTransformOptions;

use crate::repo::Repo;
use crate::util::size::format_size;
use reference::RegistryRef;

/// Where registry configuration is read from. `Default` is the real
/// system's: see [`auth::default_auth_files`] and
/// `$CONTAINERS_REGISTRIES_CONF` or `/etc/containers/registries.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Auth files, searched in order (the first with an entry for the
    /// registry wins).
    pub auth_files: Vec<PathBuf>,
    /// registries.conf; its drop-in directory is this path plus `.d`, and
    /// `certs.d/` next to it holds extra CA certificates per registry
    /// (`certs.d/<host[:port]>/*.crt`, containers-certs.d(5)).
    pub registries_conf: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let registries_conf = std::env::var_os("CONTAINERS_REGISTRIES_CONF")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/containers/registries.conf"));
        RegistryConfig {
            auth_files: auth::default_auth_files(),
            registries_conf,
        }
    }
}

/// What a pull transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Layers downloaded.
    pub layers_fetched: usize,
    /// Layers not downloaded: already in the repository (or repeated in
    /// the image). `layers_fetched + layers_skipped` is the layer count.
    pub layers_skipped: usize,
    /// Blob bytes downloaded (config and layers, as sent, i.e. compressed).
    pub bytes_fetched: u64,
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Pull `reference` (without `docker://`) into `repo`, with its bootable
/// EROFS image generated; returns the image manifest digest (`sha256:…`,
/// the platform manifest's for an image index) and what was transferred.
pub fn pull(
    repo: &Arc<Repo>,
    reference: &str,
    cfg: &RegistryConfig,
) -> Result<(String, PullStats)> {
    let reference = RegistryRef::parse(reference)?;
    let started = Instant::now();
    let progress = progress::Progress::new();
    let fetched = runtime()?.block_on(pull::fetch(repo, &reference, cfg, &progress))?;

    // Everything verified: record the image. The boot variant is generated
    // the way composefs-oci's own pull does for `bootable`
    // (`OciTransformOptions::default()`); open_imported finds it there.
    composefs_oci::layer_sync::finalize_oci_image(
        repo,
        &fetched.manifest_bytes,
        &fetched.config_bytes,
        &fetched.layer_refs,
        None,
        Some(&OciTransformOptions::default()),
    )
    .with_context(|| format!("storing {reference} in the repository"))?;

    let s = fetched.stats;
    progress.info(&format!(
        "pulled {reference} ({}): {} fetched, {} already present, {} transferred in {:.1}s",
        progress::short(&fetched.manifest_digest),
        plural(s.layers_fetched, "layer"),
        s.layers_skipped,
        format_size(s.bytes_fetched),
        started.elapsed().as_secs_f64()
    ));
    Ok((fetched.manifest_digest, s))
}

/// Whether `reference` now names another image than `current_digest`
/// (the manifest digest [`pull`] returned for the deployed image). Makes
/// exactly one manifest request and downloads no blobs. `Some(digest)` is
/// the new image manifest digest (also when `current_digest` is `None`).
pub fn check_for_update(
    reference: &str,
    current_digest: Option<&str>,
    cfg: &RegistryConfig,
) -> Result<Option<String>> {
    let reference = RegistryRef::parse(reference)?;
    let latest = runtime()?.block_on(async {
        let reg = client::Registry::connect(&reference, cfg).await?;
        let target = reg.reference.clone();
        manifest::current_digest(&reg, &target).await
    })?;
    Ok((current_digest != Some(latest.as_str())).then_some(latest))
}

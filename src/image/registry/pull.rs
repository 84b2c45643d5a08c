//! Fetching an image's blobs into the repository, verified as they stream.
//!
//! Per layer: blob body → [`BlobReader`] (sha256 of the compressed bytes,
//! declared size) → `composefs_oci::layer::decompress_async` →
//! [`DiffIdReader`] (sha256 of the tar, the config's diff_id) →
//! `composefs_oci::import_layer`, which splits the tar into repository
//! objects and registers the layer only after reading to the end — which
//! the verifiers allow only when both digests matched. A layer whose
//! `oci-layer-<diff_id>` stream is already in the repository is not
//! fetched at all: an upgrade transfers only the layers that changed.
//!
//! Up to [`CONCURRENT_LAYERS`] layers are fetched at once, largest first,
//! each streamed (peak memory is a few buffers per layer, not a layer).
//! The caller records the image (`finalize_oci_image`) only after every
//! layer is in; a failure leaves at most unreferenced objects, which the
//! repository's gc removes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use composefs_oci::OciDigest;
use oci_spec::image::{ImageConfiguration, MediaType};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::client::Registry;
use super::manifest::{self, go_arch};
use super::progress::{LayerProgress, Progress};
use super::reference::RegistryRef;
use super::verify::{BlobReader, DiffIdReader};
use super::{PullStats, RegistryConfig};
use crate::repo::{ObjectId, Repo};

/// Layers fetched at the same time.
pub const CONCURRENT_LAYERS: usize = 3;

/// An image config larger than this is refused before it is fetched: it
/// is read into memory, and real ones are a few KiB.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Everything `finalize_oci_image` needs, all verified.
pub struct Fetched {
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    pub config_bytes: Vec<u8>,
    /// `(diff_id, layer stream id)` in config order.
    pub layer_refs: Vec<(OciDigest, ObjectId)>,
    pub stats: PullStats,
}

/// One layer to fetch.
struct LayerJob {
    digest: String,
    size: u64,
    media_type: MediaType,
    diff_id: OciDigest,
    what: String,
}

/// Resolve, verify and import everything `reference` needs into `repo`.
pub async fn fetch(
    repo: &Arc<Repo>,
    reference: &RegistryRef,
    cfg: &RegistryConfig,
    progress: &Progress,
) -> Result<Fetched> {
    let reg = Arc::new(Registry::connect(reference, cfg).await?);
    let target = reg.reference.clone();
    let resolved = manifest::resolve(&reg, &target).await?;
    let m = &resolved.manifest;
    let mut stats = PullStats::default();

    // The config: small, read whole, verified before it is parsed.
    let config_desc = m.config();
    let what = format!("config {} of {reference}", config_desc.digest());
    if config_desc.size() > MAX_CONFIG_SIZE {
        bail!(
            "{what}: {} bytes is too large for an image config",
            config_desc.size()
        );
    }
    let stream = reg.blob(config_desc.digest().as_ref(), &what).await?;
    let mut blob = BlobReader::new(
        stream,
        what.clone(),
        config_desc.digest().as_ref(),
        config_desc.size(),
        Box::new(|_| {}),
    );
    let mut config_bytes = Vec::with_capacity(config_desc.size() as usize);
    if let Err(e) = blob.read_to_end(&mut config_bytes).await {
        return Err(match blob.error() {
            Some(v) => anyhow!(v.clone()),
            None => anyhow!("{what}: {e}"),
        });
    }
    stats.bytes_fetched += blob.bytes();
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("{what} is not a valid OCI image config"))?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if os != "linux" || arch != go_arch() {
        bail!(
            "{reference} is an image for {os}/{arch}; this machine is linux/{}",
            go_arch()
        );
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != m.layers().len() {
        bail!(
            "{what} lists {} diff_ids for the manifest's {} layers",
            diff_ids.len(),
            m.layers().len()
        );
    }

    let diff_ids: Vec<OciDigest> = m
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(desc, d)| {
            let what = format!("layer {} of {reference}", desc.digest());
            if !d.starts_with("sha256:") {
                bail!("{what}: unsupported diff_id {d:?} (only sha256 is supported)");
            }
            d.parse()
                .with_context(|| format!("{what}: invalid diff_id {d:?}"))
        })
        .collect::<Result<_>>()?;

    // Plan: which layers are already in the repository.
    let mut refs: Vec<Option<ObjectId>> = vec![None; diff_ids.len()];
    let mut jobs: Vec<LayerJob> = Vec::new();
    let mut scheduled: HashSet<OciDigest> = HashSet::new();
    for (i, (desc, diff_id)) in m.layers().iter().zip(&diff_ids).enumerate() {
        let what = format!("layer {} of {reference}", desc.digest());
        let diff_id = diff_id.clone();
        let content_id = composefs_oci::layer_content_id(&diff_id);
        if let Some(id) = repo
            .has_stream(&content_id)
            .with_context(|| format!("looking up {content_id} in the repository"))?
        {
            refs[i] = Some(id);
            stats.layers_skipped += 1;
            continue;
        }
        if !scheduled.insert(diff_id.clone()) {
            // The same layer twice in one image: fetched once.
            stats.layers_skipped += 1;
            continue;
        }
        jobs.push(LayerJob {
            digest: desc.digest().to_string(),
            size: desc.size(),
            media_type: manifest::layer_media_type(desc, &what)?,
            diff_id,
            what,
        });
    }
    if stats.layers_skipped > 0 {
        progress.info(&format!(
            "{reference}: {} of {} layers already present",
            stats.layers_skipped,
            m.layers().len()
        ));
    }

    // Fetch: largest first, at most CONCURRENT_LAYERS at once.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    let mut jobs = jobs.into_iter();
    let mut tasks: JoinSet<Result<(OciDigest, ObjectId, u64)>> = JoinSet::new();
    let mut imported: HashMap<OciDigest, ObjectId> = HashMap::new();
    loop {
        while tasks.len() < CONCURRENT_LAYERS {
            let Some(job) = jobs.next() else { break };
            let lp = Arc::new(progress.layer(&job.digest, job.size));
            tasks.spawn(fetch_layer(Arc::clone(&reg), Arc::clone(repo), job, lp));
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        // The first failure aborts the others (JoinSet drop); what they
        // wrote so far is unreferenced and left to gc.
        let (diff_id, id, bytes) = joined.context("layer download task failed")??;
        if bytes > 0 {
            stats.layers_fetched += 1;
            stats.bytes_fetched += bytes;
        } else {
            stats.layers_skipped += 1;
        }
        imported.insert(diff_id, id);
    }

    let mut layer_refs = Vec::with_capacity(refs.len());
    for (slot, diff_id) in refs.into_iter().zip(diff_ids) {
        let id = match slot {
            Some(id) => id,
            None => imported
                .get(&diff_id)
                .cloned()
                .with_context(|| format!("layer {diff_id} of {reference} was not imported"))?,
        };
        layer_refs.push((diff_id, id));
    }

    Ok(Fetched {
        manifest_bytes: resolved.bytes,
        manifest_digest: resolved.digest,
        config_bytes,
        layer_refs,
        stats,
    })
}

/// Fetch, verify and import one layer. Returns its diff_id, stream id and
/// the bytes transferred (0 if another process imported it meanwhile).
async fn fetch_layer(
    reg: Arc<Registry>,
    repo: Arc<Repo>,
    job: LayerJob,
    lp: Arc<LayerProgress>,
) -> Result<(OciDigest, ObjectId, u64)> {
    let result = import_one(&reg, &repo, &job, &lp).await;
    lp.finish(result.is_ok());
    result
}

async fn import_one(
    reg: &Registry,
    repo: &Arc<Repo>,
    job: &LayerJob,
    lp: &Arc<LayerProgress>,
) -> Result<(OciDigest, ObjectId, u64)> {
    let what = &job.what;
    let stream = reg.blob(&job.digest, what).await?;
    let counter = Arc::clone(lp);
    let mut blob = BlobReader::new(
        stream,
        what.clone(),
        &job.digest,
        job.size,
        Box::new(move |n| counter.inc(n)),
    );
    let (result, tar_error, tar_verified) = {
        let decompressed = composefs_oci::layer::decompress_async(&mut blob, &job.media_type)
            .with_context(|| format!("{what}: setting up decompression"))?;
        let mut tar = DiffIdReader::new(decompressed, what.clone(), job.diff_id.as_ref());
        let r = composefs_oci::import_layer(repo, &job.diff_id, None, &mut tar).await;
        (r, tar.error().cloned(), tar.verified())
    };
    match result {
        Ok((id, _)) if tar_verified && blob.verified() => {
            Ok((job.diff_id.clone(), id, blob.bytes()))
        }
        Ok((id, _)) if blob.bytes() == 0 => {
            // import_layer found the layer registered before it read
            // anything: another process imported it since the plan.
            tracing::debug!("{what}: imported concurrently by another process");
            Ok((job.diff_id.clone(), id, 0))
        }
        Ok(_) => {
            // Unreachable with composefs-oci 0.9.4: its tar splitter reads
            // to EOF before registering, and EOF comes only after both
            // checks passed. Refuse rather than trust an unchecked layer.
            bail!("{what}: imported before its digests were verified (internal error)")
        }
        Err(e) => {
            if let Some(v) = blob.error() {
                return Err(anyhow!(v.clone()));
            }
            if let Some(v) = tar_error {
                return Err(anyhow!(v));
            }
            // A decompressor or the tar parser may fail on corrupt data
            // before the blob's end; read the rest (bounded by the declared
            // size) to tell a corrupt download from a corrupt image. Not
            // for OS errors (disk full…), which the rest would not explain.
            let os_error = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.raw_os_error().is_some())
            });
            if !os_error {
                let _ = tokio::io::copy(&mut blob, &mut tokio::io::sink()).await;
                if let Some(v) = blob.error() {
                    return Err(anyhow!(v.clone()));
                }
            }
            Err(e.context(format!("importing {what}")))
        }
    }
}

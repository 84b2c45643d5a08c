//! `docker://` pulls against a real registry (the distribution registry,
//! Debian's `docker-registry`) on a loopback port, started per test and
//! killed on drop. Images are built by the tests (multi-layer, gzip) and
//! pushed with skopeo, digests preserved; results are checked against an
//! independent `oci:` import of the same layout.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cbootc::image::imgref::ImageRef;
use cbootc::image::import::{self, hex};
use cbootc::image::registry::{self, PullStats};
use cbootc::repo::Repo;
use common::registry::*;
use common::{independent_boot_id, scratch};

fn new_repo(dir: &Path, name: &str) -> Arc<Repo> {
    cbootc::repo::init(&dir.join(name), false).unwrap()
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    let e = format!("{:#}", r.expect_err("expected an error"));
    eprintln!("error (expected): {e}");
    e
}

fn opts(label: &str) -> ImageOpts {
    ImageOpts {
        label: label.into(),
        ..Default::default()
    }
}

/// Nothing names the image: no tag, no manifest stream, no EROFS image.
fn assert_nothing_recorded(repo: &Repo, repo_dir: &Path, manifest_digest: &str) {
    assert!(
        composefs_oci::list_refs(repo).unwrap().is_empty(),
        "no OCI ref may be recorded"
    );
    let id = composefs_oci::oci_image::manifest_identifier(&manifest_digest.parse().unwrap());
    assert_eq!(repo.has_stream(&id).unwrap(), None, "manifest not stored");
    let images: Vec<_> = std::fs::read_dir(repo_dir.join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name() != "refs")
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(images.is_empty(), "no EROFS image generated: {images:?}");
}

fn has_layer(repo: &Repo, diff_id: &str) -> bool {
    repo.has_stream(&composefs_oci::layer_content_id(&diff_id.parse().unwrap()))
        .unwrap()
        .is_some()
}

#[test]
fn pull_gives_the_same_image_as_an_oci_import() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let layers = [
        base_layer(),
        data_layer("a", 1, 300_000),
        data_layer("b", 2, 100_000),
    ];
    let img = write_image(&layout, "v1", &layers, &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let oci_ref = format!("oci:{}:v1", layout.display());

    // Through cbootc's import API, as `cbootc switch docker://…` would.
    let repo = new_repo(work.path(), "repo");
    let imgref = ImageRef::parse(&format!("docker://{}/os:v1", reg.addr())).unwrap();
    let pulled = import::import_with(&repo, &imgref, &cfg.registry_config()).unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_eq!(hex(&pulled.boot_id), independent_boot_id(&oci_ref));
    assert_eq!(pulled.kver(), common::oci::KVER);
    assert_eq!(
        pulled.labels.get("cbootc.test").map(String::as_str),
        Some("v1")
    );

    let repo2 = new_repo(work.path(), "repo2");
    let local = import::import(&repo2, &ImageRef::parse(&oci_ref).unwrap()).unwrap();
    assert_eq!(pulled.boot_id, local.boot_id);
    assert_eq!(pulled.full_id, local.full_id);
    assert_eq!(pulled.manifest_digest, local.manifest_digest);

    // Transfer accounting, then a second pull of the same image.
    let repo3 = new_repo(work.path(), "repo3");
    let reference = format!("{}/os:v1", reg.addr());
    let (digest, stats) = registry::pull(&repo3, &reference, &cfg.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);
    let layer_bytes: u64 = layers.iter().map(|l| l.gz.len() as u64).sum();
    assert_eq!(
        stats,
        PullStats {
            layers_fetched: 3,
            layers_skipped: 0,
            bytes_fetched: layer_bytes + img.config.len() as u64,
        }
    );
    let (_, again) = registry::pull(&repo3, &reference, &cfg.registry_config()).unwrap();
    assert_eq!(
        again,
        PullStats {
            layers_fetched: 0,
            layers_skipped: 3,
            bytes_fetched: img.config.len() as u64,
        }
    );
}

#[test]
fn tls_is_the_default() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    write_image(&layout, "v1", &[base_layer()], &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    // registries.conf lists another registry as insecure, not this one.
    let cfg = TestConfig::new(&["127.0.0.1:1"]);
    let repo = new_repo(work.path(), "repo");
    let started = Instant::now();
    let e = err_text(registry::pull(
        &repo,
        &format!("{}/os:v1", reg.addr()),
        &cfg.registry_config(),
    ));
    assert!(started.elapsed() < Duration::from_secs(20), "must not hang");
    assert!(e.contains("TLS connection to registry"), "{e}");
    assert!(e.contains(&reg.addr()), "{e}");
    assert!(e.contains("insecure = true"), "says how to allow http: {e}");
    assert!(!e.contains('\n'), "one line: {e}");

    let e = err_text(registry::check_for_update(
        &format!("{}/os:v1", reg.addr()),
        None,
        &cfg.registry_config(),
    ));
    assert!(e.contains("TLS connection to registry"), "{e}");
}

#[test]
fn tls_registry_with_a_private_certificate() {
    let work = scratch();
    let (cert, key) = self_signed_cert(work.path());
    let reg = RegistryServer::start_tls(&cert, &key);
    let layout = work.path().join("layout");
    let img = write_image(&layout, "v1", &[base_layer()], &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let reference = format!("{}/os:v1", reg.addr());

    // Verified TLS by default: an unknown CA is refused.
    let repo = new_repo(work.path(), "repo");
    let e = err_text(registry::pull(
        &repo,
        &reference,
        &TestConfig::new(&[]).registry_config(),
    ));
    assert!(e.contains("TLS connection to registry"), "{e}");
    assert!(e.contains("certificate verify failed"), "{e}");
    assert!(e.contains(&format!("certs.d/{}/ca.crt", reg.addr())), "{e}");

    // Trusted through certs.d/<host:port>/ca.crt: verified TLS works.
    let trusted = TestConfig::new(&[]).with_ca(&reg.addr(), &cert);
    let (digest, _) = registry::pull(&repo, &reference, &trusted.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);

    // insecure = true: https without verification (not plain http).
    let repo2 = new_repo(work.path(), "repo2");
    let insecure = TestConfig::new(&[&reg.addr()]);
    let (digest, _) = registry::pull(&repo2, &reference, &insecure.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);
}

#[test]
fn htpasswd_registry_needs_the_auth_file() {
    let work = scratch();
    let (user, pass) = ("alice", "s3cret-pw");
    let reg = RegistryServer::start(Some((user, pass)));
    let layout = work.path().join("layout");
    let img = write_image(
        &layout,
        "v1",
        &[base_layer(), data_layer("a", 3, 50_000)],
        &opts("v1"),
    );
    reg.push(&layout, "v1", "private/os:v1", Some((user, pass)), false);
    let reference = format!("{}/private/os:v1", reg.addr());
    let repo = new_repo(work.path(), "repo");

    let anon = TestConfig::new(&[&reg.addr()]);
    let e = err_text(registry::pull(&repo, &reference, &anon.registry_config()));
    assert!(e.contains("401 unauthorized"), "{e}");
    assert!(e.contains("requires authentication"), "{e}");
    assert!(e.contains("auth.json"), "names the files searched: {e}");

    let wrong = TestConfig::new(&[&reg.addr()]).with_auth(&reg.addr(), user, "wrong");
    let e = err_text(registry::pull(&repo, &reference, &wrong.registry_config()));
    assert!(e.contains("refused the credentials"), "{e}");
    assert!(e.contains("401 unauthorized"), "{e}");

    let good = TestConfig::new(&[&reg.addr()]).with_auth(&reg.addr(), user, pass);
    let (digest, stats) = registry::pull(&repo, &reference, &good.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);
    assert_eq!(stats.layers_fetched, 2);
    assert_eq!(
        registry::check_for_update(&reference, Some(&digest), &good.registry_config()).unwrap(),
        None
    );
    let e = err_text(registry::check_for_update(
        &reference,
        Some(&digest),
        &anon.registry_config(),
    ));
    assert!(e.contains("401 unauthorized"), "{e}");
}

#[test]
fn corrupted_layer_is_refused_and_nothing_recorded() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let layers = [
        base_layer(),
        data_layer("a", 4, 300_000),
        data_layer("b", 5, 20_000),
    ];
    let img = write_image(&layout, "v1", &layers, &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let reference = format!("{}/os:v1", reg.addr());

    // Flip one byte in the middle of layer a's blob, same size.
    let victim = &layers[1];
    let path = reg.blob_path(&victim.digest);
    let original = std::fs::read(&path).unwrap();
    assert_eq!(original, victim.gz);
    let mut bad = original.clone();
    bad[original.len() / 2] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();

    let repo_dir = work.path().join("repo");
    let repo = new_repo(work.path(), "repo");
    let e = err_text(registry::pull(&repo, &reference, &cfg.registry_config()));
    assert!(
        e.starts_with(&format!(
            "layer {} of {reference}: digest mismatch (got sha256:",
            victim.digest
        )),
        "{e}"
    );
    assert!(!has_layer(&repo, &victim.diff_id), "bad layer not stored");
    assert_nothing_recorded(&repo, &repo_dir, &img.manifest_digest);

    // Nothing was poisoned: with the blob repaired the pull succeeds.
    std::fs::write(&path, &original).unwrap();
    let (digest, _) = registry::pull(&repo, &reference, &cfg.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);
    assert!(has_layer(&repo, &victim.diff_id));
}

#[test]
fn wrong_diff_id_is_refused() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let layers = [base_layer(), data_layer("a", 6, 40_000)];
    // The blobs are what the manifest says, but the config claims another
    // uncompressed content for layer a.
    let claimed = sha256(b"not the content of layer a");
    let img = write_image(
        &layout,
        "v1",
        &layers,
        &ImageOpts {
            label: "liar".into(),
            diff_ids: Some(vec![layers[0].diff_id.clone(), claimed.clone()]),
            ..Default::default()
        },
    );
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let reference = format!("{}/os:v1", reg.addr());
    let repo_dir = work.path().join("repo");
    let repo = new_repo(work.path(), "repo");
    let e = err_text(registry::pull(&repo, &reference, &cfg.registry_config()));
    assert!(
        e.starts_with(&format!(
            "layer {} of {reference}: diff_id mismatch: its uncompressed content is {}, the image config says {claimed}",
            layers[1].digest, layers[1].diff_id
        )),
        "{e}"
    );
    assert!(
        !has_layer(&repo, &claimed),
        "nothing stored under the false diff_id"
    );
    assert_nothing_recorded(&repo, &repo_dir, &img.manifest_digest);
}

#[test]
fn upgrade_fetches_only_the_new_layer() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let (l1, l2, l3) = (
        base_layer(),
        data_layer("a", 7, 400_000),
        data_layer("b", 8, 100_000),
    );
    write_image(&layout, "a", &[l1.clone(), l2.clone()], &opts("a"));
    let b = write_image(
        &layout,
        "b",
        &[l1.clone(), l2.clone(), l3.clone()],
        &opts("b"),
    );
    reg.push(&layout, "a", "os:a", None, false);
    reg.push(&layout, "b", "os:b", None, false);
    let proxy = CountingProxy::start(&reg.addr());
    let cfg = TestConfig::new(&[&proxy.addr()]);
    let repo = new_repo(work.path(), "repo");

    registry::pull(
        &repo,
        &format!("{}/os:a", proxy.addr()),
        &cfg.registry_config(),
    )
    .unwrap();
    let first = proxy.take();
    assert!(first.bytes_to_client as usize > l1.gz.len() + l2.gz.len());

    let (digest, stats) = registry::pull(
        &repo,
        &format!("{}/os:b", proxy.addr()),
        &cfg.registry_config(),
    )
    .unwrap();
    let second = proxy.take();
    assert_eq!(digest, b.manifest_digest);
    assert_eq!(
        stats,
        PullStats {
            layers_fetched: 1,
            layers_skipped: 2,
            bytes_fetched: (l3.gz.len() + b.config.len()) as u64,
        }
    );
    assert_eq!(second.count(&format!("/blobs/{}", l1.digest)), 0);
    assert_eq!(second.count(&format!("/blobs/{}", l2.digest)), 0);
    assert_eq!(second.count(&format!("/blobs/{}", l3.digest)), 1);
    assert_eq!(
        second.count("/blobs/"),
        2,
        "config and L3: {:?}",
        second.requests
    );
    let (shared, new) = ((l1.gz.len() + l2.gz.len()) as u64, l3.gz.len() as u64);
    eprintln!(
        "second pull: {} bytes on the wire for L3 of {new} bytes (L1+L2 = {shared} bytes not sent), {} requests",
        second.bytes_to_client,
        second.requests.len()
    );
    assert!(second.bytes_to_client >= new, "{second:?}");
    assert!(
        second.bytes_to_client < new + 32 * 1024,
        "about L3's size, not L1+L2: {} bytes",
        second.bytes_to_client
    );

    let imgref = ImageRef::parse(&format!("docker://{}/os:b", proxy.addr())).unwrap();
    let imported = import::open_imported(&repo, &imgref, &digest.parse().unwrap()).unwrap();
    assert_eq!(
        hex(&imported.boot_id),
        independent_boot_id(&format!("oci:{}:b", layout.display()))
    );
}

#[test]
fn check_for_update_makes_one_manifest_request() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let (l1, l2) = (base_layer(), data_layer("a", 9, 50_000));
    let a = write_image(&layout, "a", std::slice::from_ref(&l1), &opts("a"));
    let b = write_image(&layout, "b", &[l1, l2], &opts("b"));
    reg.push(&layout, "a", "os:stable", None, false);
    let proxy = CountingProxy::start(&reg.addr());
    let cfg = TestConfig::new(&[&proxy.addr()]);
    let reference = format!("{}/os:stable", proxy.addr());
    let repo = new_repo(work.path(), "repo");
    let (current, _) = registry::pull(&repo, &reference, &cfg.registry_config()).unwrap();
    assert_eq!(current, a.manifest_digest);
    proxy.take();

    let check = |cur: Option<&str>| {
        let r = registry::check_for_update(&reference, cur, &cfg.registry_config()).unwrap();
        let seen = proxy.take();
        assert_eq!(
            seen.count("/manifests/"),
            1,
            "one manifest request: {:?}",
            seen.requests
        );
        assert_eq!(seen.count("/blobs/"), 0, "no blobs: {:?}", seen.requests);
        r
    };
    assert_eq!(check(Some(&current)), None);
    reg.push(&layout, "b", "os:stable", None, false);
    assert_eq!(check(Some(&current)), Some(b.manifest_digest.clone()));
    assert_eq!(check(None), Some(b.manifest_digest.clone()));
    assert_eq!(check(Some(&b.manifest_digest)), None);
}

#[test]
fn image_index_resolves_to_this_platform() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let x86 = write_image(
        &layout,
        "x86",
        &[base_layer(), data_layer("a", 10, 20_000)],
        &opts("x86"),
    );
    let arm = write_image(
        &layout,
        "arm",
        &[data_layer("arm", 11, 1000)],
        &ImageOpts {
            arch: Some("arm64".into()),
            label: "arm".into(),
            ..Default::default()
        },
    );
    let index_digest = write_index(&layout, "multi", &[(&arm, "arm64"), (&x86, "amd64")]);
    reg.push(&layout, "multi", "os:multi", None, true);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let repo = new_repo(work.path(), "repo");

    for reference in [
        format!("{}/os:multi", reg.addr()),
        format!("{}/os@{index_digest}", reg.addr()),
    ] {
        let imgref = ImageRef::parse(&format!("docker://{reference}")).unwrap();
        let imported = import::import_with(&repo, &imgref, &cfg.registry_config()).unwrap();
        assert_eq!(imported.manifest_digest, x86.manifest_digest, "{reference}");
        assert_eq!(
            hex(&imported.boot_id),
            independent_boot_id(&format!("oci:{}:x86", layout.display()))
        );
        assert_eq!(
            registry::check_for_update(
                &reference,
                Some(&x86.manifest_digest),
                &cfg.registry_config()
            )
            .unwrap(),
            None,
            "the index's entry for this platform is the current image"
        );
    }
}

#[test]
fn pinned_digest_must_match() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let img = write_image(&layout, "v1", &[base_layer()], &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let pinned = format!("{}/os@{}", reg.addr(), img.manifest_digest);
    let repo = new_repo(work.path(), "repo");
    let (digest, _) = registry::pull(&repo, &pinned, &cfg.registry_config()).unwrap();
    assert_eq!(digest, img.manifest_digest);

    // The registry serves other bytes for that digest.
    let path = reg.blob_path(&img.manifest_digest);
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replace("cbootc-test-v1", "cbootc-test-v9");
    assert_ne!(forged, text);
    std::fs::write(&path, forged).unwrap();
    let repo2_dir = work.path().join("repo2");
    let repo2 = new_repo(work.path(), "repo2");
    let e = err_text(registry::pull(&repo2, &pinned, &cfg.registry_config()));
    assert!(e.contains(&format!("manifest of {pinned}")), "{e}");
    assert!(e.contains("digest mismatch"), "{e}");
    assert_nothing_recorded(&repo2, &repo2_dir, &img.manifest_digest);
}

#[test]
fn bad_references_fail_clearly() {
    let work = scratch();
    let repo = new_repo(work.path(), "repo");

    // Nothing listening: connection refused, naming the registry, over
    // http (insecure) and https alike.
    let port = free_port();
    let nowhere = format!("127.0.0.1:{port}");
    for insecure in [vec![nowhere.as_str()], vec![]] {
        let cfg = TestConfig::new(&insecure);
        let e = err_text(registry::pull(
            &repo,
            &format!("{nowhere}/os:v1"),
            &cfg.registry_config(),
        ));
        assert!(
            e.contains(&format!("cannot connect to registry {nowhere}")),
            "{e}"
        );
        assert!(e.contains("connection refused"), "{e}");
    }

    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    write_image(&layout, "v1", &[base_layer()], &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);

    let e = err_text(registry::pull(
        &repo,
        &format!("{}/os:nope", reg.addr()),
        &cfg.registry_config(),
    ));
    assert!(e.contains("manifest unknown"), "{e}");
    assert!(e.contains(&format!("{}/os:nope", reg.addr())), "{e}");

    let e = err_text(registry::check_for_update(
        &format!("{}/os:nope", reg.addr()),
        None,
        &cfg.registry_config(),
    ));
    assert!(e.contains("manifest unknown"), "{e}");

    let e = err_text(registry::pull(
        &repo,
        &format!("{}/nosuch/repo:v1", reg.addr()),
        &cfg.registry_config(),
    ));
    assert!(
        e.contains("manifest unknown") || e.contains("name unknown"),
        "{e}"
    );

    let e = err_text(registry::pull(
        &repo,
        "Not A/Reference",
        &cfg.registry_config(),
    ));
    assert!(e.contains("invalid registry image reference"), "{e}");

    // A registries.conf that does not parse is an error, not ignored.
    std::fs::write(cfg.dir.path().join("registries.conf"), "[[registry]\n").unwrap();
    let e = err_text(registry::pull(
        &repo,
        &format!("{}/os:v1", reg.addr()),
        &cfg.registry_config(),
    ));
    assert!(e.contains("registries.conf"), "{e}");
}

#[test]
fn image_without_usr_is_refused_clearly() {
    let work = scratch();
    let reg = RegistryServer::start(None);
    let layout = work.path().join("layout");
    let etc_only = layer(&[
        common::oci::dir("etc", 0o755),
        common::oci::file("etc/hostname", b"x\n"),
    ]);
    write_image(&layout, "v1", &[etc_only], &opts("v1"));
    reg.push(&layout, "v1", "os:v1", None, false);
    let cfg = TestConfig::new(&[&reg.addr()]);
    let repo = new_repo(work.path(), "repo");
    let imgref = ImageRef::parse(&format!("docker://{}/os:v1", reg.addr())).unwrap();
    let e = err_text(import::import_with(&repo, &imgref, &cfg.registry_config()));
    assert_eq!(
        e,
        format!("{imgref} is not bootable: it has no /usr directory")
    );
}

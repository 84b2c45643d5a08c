//! Registry test helpers: multi-layer gzip OCI images written as layouts, a
//! real registry (the CNCF distribution registry, Debian's
//! `docker-registry`) on a free loopback port, pushing with skopeo, and a
//! byte- and request-counting TCP proxy in front of the registry.
//!
//! Needs `docker-registry`, `skopeo`, `openssl` and, for the htpasswd
//! test, `apache2-utils` (`htpasswd`). Every process started here is killed by a
//! guard's `Drop`, also when the test panics.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::oci::sha256;
use super::oci::{Entry, layer_tar, put_blob, put_manifest, tag_in_index};

// ---------------------------------------------------------------- images

/// One gzip-compressed layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    /// The blob as stored in the registry.
    pub gz: Vec<u8>,
    /// `sha256:` of `tar`.
    pub diff_id: String,
    /// `sha256:` of `gz`.
    pub digest: String,
}

/// An image written to a layout.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<Layer>,
}

/// Deterministic incompressible bytes; different seeds give different data.
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A gzip layer holding `entries`.
pub fn layer(entries: &[Entry]) -> Layer {
    let tar = layer_tar(entries);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).unwrap();
    let gz = enc.finish().unwrap();
    Layer {
        diff_id: sha256(&tar),
        digest: sha256(&gz),
        tar,
        gz,
    }
}

/// A layer adding `dir/file` with `len` bytes of noise `seed`.
pub fn data_layer(dir: &str, seed: u32, len: usize) -> Layer {
    layer(&[
        super::oci::dir("usr/share", 0o755),
        super::oci::dir(&format!("usr/share/{dir}"), 0o755),
        super::oci::file(&format!("usr/share/{dir}/data.bin"), &noise(seed, len)),
    ])
}

/// The bootable base layer (kernel, initramfs, os-release, /var…).
pub fn base_layer() -> Layer {
    layer(&super::oci::bootable_entries(&[]))
}

/// Options for [`write_image`].
#[derive(Clone, Debug, Default)]
pub struct ImageOpts {
    /// GOARCH of the config (default `amd64`).
    pub arch: Option<String>,
    /// Replace the config's diff_ids (to build a lying image).
    pub diff_ids: Option<Vec<String>>,
    /// Written into the config and a manifest annotation, so otherwise
    /// equal images differ.
    pub label: String,
}

/// Write an image with `layers` into the OCI layout `dir`, tagged `tag`
/// (other tags in the layout are kept).
pub fn write_image(dir: &Path, tag: &str, layers: &[Layer], opts: &ImageOpts) -> Image {
    for l in layers {
        put_blob(dir, &l.gz);
    }
    let arch = opts.arch.clone().unwrap_or_else(|| "amd64".into());
    let diff_ids = opts
        .diff_ids
        .clone()
        .unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect());
    let config = serde_json::json!({
        "created": "2026-11-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": {"containers.bootc": "1", "cbootc.test": opts.label}, "Cmd": ["/sbin/init"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "cbootc test"})).collect::<Vec<_>>()
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(dir, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": l.digest, "size": l.gz.len()})).collect::<Vec<_>>(),
        "annotations": {"org.opencontainers.image.title": format!("cbootc-test-{}", opts.label)}
    });
    let (manifest, manifest_digest) = put_manifest(
        dir,
        tag,
        &manifest,
        Some(serde_json::json!({"architecture": arch, "os": "linux"})),
    );
    Image {
        manifest,
        manifest_digest,
        config,
        config_digest,
        layers: layers.to_vec(),
    }
}

/// Write an image index over `children` (already in the layout), tagged
/// `tag`; returns its digest.
pub fn write_index(dir: &Path, tag: &str, children: &[(&Image, &str)]) -> String {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children.iter().map(|(img, arch)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest, "size": img.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}})).collect::<Vec<_>>()
    });
    let index = serde_json::to_vec(&index).unwrap();
    let digest = put_blob(dir, &index);
    tag_in_index(
        dir,
        tag,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": index.len()
        }),
    );
    digest
}

// -------------------------------------------------------------- registry

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry`, killed on drop.
pub struct RegistryServer {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl RegistryServer {
    /// Start a registry with filesystem storage in a temp dir; with
    /// `htpasswd_user`, access needs those bcrypt-checked credentials.
    pub fn start(htpasswd_user: Option<(&str, &str)>) -> Self {
        Self::start_with(htpasswd_user, None)
    }

    /// Start a registry serving https with `cert`/`key` (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(None, Some((cert, key)))
    }

    fn start_with(htpasswd_user: Option<(&str, &str)>, tls: Option<(&Path, &Path)>) -> Self {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "these tests need the docker-registry package (apt-get install docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("cbootc-registry-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd_user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let path = dir.path().join("htpasswd");
            fs::write(&path, &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: cbootc-test\n    path: {}\n",
                path.display()
            );
        }
        let tls = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut server = RegistryServer { child, dir, port };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
                );
            }
            if let Ok(mut s) = TcpStream::connect(self.addr()) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut first = String::new();
                let _ = BufReader::new(&mut s).read_line(&mut first);
                if first.starts_with("HTTP/1.") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the filesystem driver keeps a blob's bytes.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Push `oci:layout:tag` as `name:dest_tag` with skopeo, digests
    /// preserved (`all` copies every image of an index).
    pub fn push(
        &self,
        layout: &Path,
        tag: &str,
        dest: &str,
        creds: Option<(&str, &str)>,
        all: bool,
    ) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if all {
            cmd.arg("--all");
        }
        if let Some((u, p)) = creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr()));
        let out = cmd.output().expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {tag} -> {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `127.0.0.1` (openssl CLI): `(cert, key)`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

// ----------------------------------------------------------------- proxy

/// What went through a [`CountingProxy`].
#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    /// Bytes sent from the registry to the client.
    pub bytes_to_client: u64,
    /// Request lines (`GET /v2/x/manifests/tag`), in order seen.
    pub requests: Vec<String>,
}

impl ProxyStats {
    pub fn count(&self, path_part: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.contains(path_part))
            .count()
    }
}

/// A loopback TCP proxy counting bytes and HTTP request lines.
pub struct CountingProxy {
    pub port: u16,
    stats: Arc<Mutex<ProxyStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingProxy {
    pub fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let (st, sp) = (Arc::clone(&stats), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let st1 = Arc::clone(&st);
                std::thread::spawn(move || pump_requests(client, server, st1));
                let st2 = Arc::clone(&st);
                std::thread::spawn(move || pump_responses(s2, c2, st2));
            }
        });
        CountingProxy {
            port,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The counts so far, resetting them.
    pub fn take(&self) -> ProxyStats {
        std::mem::take(&mut *self.stats.lock().unwrap())
    }
}

fn pump_requests(mut from: TcpStream, mut to: TcpStream, stats: Arc<Mutex<ProxyStats>>) {
    let mut buf = [0u8; 16384];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let l = String::from_utf8_lossy(&line).trim_end().to_string();
                let method = l.split(' ').next().unwrap_or_default();
                if ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method)
                    && l.ends_with("HTTP/1.1")
                {
                    stats.lock().unwrap().requests.push(l);
                }
                line.clear();
            } else if line.len() < 8192 {
                line.push(b);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_responses(mut from: TcpStream, mut to: TcpStream, stats: Arc<Mutex<ProxyStats>>) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        stats.lock().unwrap().bytes_to_client += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- config

/// A registries.conf and auth.json in a temp dir.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
}

impl TestConfig {
    /// `insecure` registries get `[[registry]] location = … insecure = true`.
    pub fn new(insecure: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = String::from("unqualified-search-registries = []\n");
        for r in insecure {
            conf.push_str(&format!(
                "\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"
            ));
        }
        fs::write(dir.path().join("registries.conf"), conf).unwrap();
        TestConfig { dir }
    }

    /// Write auth.json with `user:pass` for `registry`.
    pub fn with_auth(self, registry: &str, user: &str, pass: &str) -> Self {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        fs::write(
            self.dir.path().join("auth.json"),
            serde_json::to_vec(&serde_json::json!({"auths": {registry: {"auth": auth}}})).unwrap(),
        )
        .unwrap();
        self
    }

    /// Trust `cert` for `registry` (`certs.d/<registry>/ca.crt`).
    pub fn with_ca(self, registry: &str, cert: &Path) -> Self {
        let d = self.dir.path().join("certs.d").join(registry);
        fs::create_dir_all(&d).unwrap();
        fs::copy(cert, d.join("ca.crt")).unwrap();
        self
    }

    pub fn registry_config(&self) -> cbootc::image::registry::RegistryConfig {
        cbootc::image::registry::RegistryConfig {
            auth_files: vec![self.dir.path().join("auth.json")],
            registries_conf: self.dir.path().join("registries.conf"),
        }
    }
}

//! The connection to one registry: transport (TLS, or plain http for
//! registries marked insecure), credentials, and oci-client's errors turned
//! into one-line messages that name the registry and say what to do.
//!
//! TLS with certificate verification is the default. A registry marked
//! `insecure` in registries.conf is tried over https without certificate
//! verification first and, if no TLS connection can be made, over plain
//! http — what containers/image does for insecure registries
//! (containers-registries.conf(5), `insecure`). A private CA is trusted
//! through `certs.d/<host[:port]>/*.crt` next to registries.conf
//! (containers-certs.d(5)).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::RegistryConfig;
use super::auth::{Credentials, find_credentials};
use super::config::RegistriesConf;
use super::reference::RegistryRef;
use super::verify::{VerifyError, check_bytes, sha256_digest};

/// Give up connecting after this long (a dead host must not hang an upgrade).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Give up when a response stalls this long between two reads.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Manifest media types cbootc asks for (OCI distribution spec, "Pulling
/// manifests": the client lists what it accepts). Docker's types are
/// accepted so that a Docker-format image gets a clear refusal rather than
/// a 404 from registries that cannot convert.
pub const MANIFEST_ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A registry to pull from, ready for requests.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// The reference to request (after registries.conf rewriting).
    pub reference: RegistryRef,
    /// `http` or `https`.
    pub scheme: &'static str,
    creds: Option<Credentials>,
    auth_files: Vec<PathBuf>,
    registries_conf: PathBuf,
}

fn client(
    protocol: ClientProtocol,
    accept_invalid_certificates: bool,
    extra_root_certificates: &[Certificate],
) -> Result<Client> {
    let config = ClientConfig {
        protocol,
        accept_invalid_certificates,
        extra_root_certificates: extra_root_certificates.to_vec(),
        // Image indexes are resolved by cbootc itself, on the raw bytes.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("cbootc/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    Client::try_from(config).map_err(|e| anyhow!("setting up the registry client: {e}"))
}

impl Registry {
    /// Apply registries.conf and the auth files to `reference` and pick the
    /// transport. Only an insecure registry costs a request here (the TLS
    /// probe); otherwise nothing is sent yet.
    pub async fn connect(reference: &RegistryRef, cfg: &RegistryConfig) -> Result<Self> {
        let conf = RegistriesConf::load(&cfg.registries_conf)?;
        let resolved = conf.resolve(reference)?;
        let reference = resolved.reference;
        let creds = find_credentials(&cfg.auth_files, &reference)?;
        let auth = match &creds {
            Some(c) => {
                tracing::debug!(
                    "using credentials for {} from {} ({})",
                    reference.registry(),
                    c.file.display(),
                    c.key
                );
                RegistryAuth::Basic(c.username.clone(), c.password.clone())
            }
            None => RegistryAuth::Anonymous,
        };
        let cas = ca_certificates(cfg, reference.registry())?;
        let mut reg = Registry {
            client: client(ClientProtocol::Https, false, &cas)?,
            auth,
            reference,
            scheme: "https",
            creds,
            auth_files: cfg.auth_files.clone(),
            registries_conf: cfg.registries_conf.clone(),
        };
        if resolved.insecure {
            let tls = client(ClientProtocol::Https, true, &cas)?;
            // The version check (`GET /v2/`, distribution spec "Determining
            // support") is what oci-client's auth() sends first.
            match tls
                .auth(reg.reference.oci(), &reg.auth, RegistryOperation::Pull)
                .await
            {
                Err(OciDistributionError::RequestError(e))
                    if e.is_connect() && !chain_has_refused(&e) =>
                {
                    tracing::debug!(
                        "{} (insecure): no TLS ({}), using plain http",
                        reg.reference.registry(),
                        error_chain(&e)
                    );
                    reg.client = client(ClientProtocol::Http, false, &[])?;
                    reg.scheme = "http";
                }
                Err(OciDistributionError::RequestError(e)) if chain_has_refused(&e) => {
                    return Err(reg.request_error(&e));
                }
                _ => reg.client = tls,
            }
        }
        Ok(reg)
    }

    /// The registry host[:port] requests go to.
    pub fn host(&self) -> &str {
        self.reference.registry()
    }

    /// GET a manifest; returns its raw bytes and their sha256 digest,
    /// checked against the digest `reference` pins, if any.
    pub async fn manifest(&self, reference: &RegistryRef) -> Result<(Vec<u8>, String)> {
        let what = format!("manifest of {reference}");
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference.oci(), &self.auth, MANIFEST_ACCEPT)
            .await
            .map_err(|e| self.describe(e, &what))?;
        if let Some(expected) = reference.digest() {
            check_bytes(&what, &bytes, expected)?;
        }
        let digest = sha256_digest(&bytes);
        Ok((bytes, digest))
    }

    /// Start streaming a blob of the repository.
    pub async fn blob(&self, digest: &str, what: &str) -> Result<oci_client::client::SizedStream> {
        self.client
            .pull_blob_stream(self.reference.oci(), digest)
            .await
            .map_err(|e| self.describe(e, what))
    }

    /// One line for an oci-client error while fetching `what`.
    pub fn describe(&self, e: OciDistributionError, what: &str) -> anyhow::Error {
        let host = self.host();
        match e {
            OciDistributionError::RequestError(re) => {
                if re.is_status() {
                    match re.status().map(|s| s.as_u16()) {
                        Some(401) => return self.unauthorized(what),
                        Some(404) => {
                            return anyhow!(
                                "{what}: not found on registry {host} (HTTP 404 Not Found)"
                            );
                        }
                        Some(code) => {
                            return anyhow!("{what}: registry {host} answered HTTP {code}");
                        }
                        None => {}
                    }
                }
                self.request_error(&re)
            }
            OciDistributionError::UnauthorizedError { .. } => self.unauthorized(what),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let messages: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        if e.message.is_empty() {
                            format!("{:?}", e.code)
                        } else {
                            e.message.clone()
                        }
                    })
                    .collect();
                let messages = messages.join("; ");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    return self.unauthorized(what);
                }
                if codes.contains(&&OciErrorCode::ManifestUnknown) {
                    return anyhow!(
                        "{what}: manifest unknown: {} has no such tag or digest on registry {host}",
                        self.reference.repository()
                    );
                }
                if codes.contains(&&OciErrorCode::NameUnknown) {
                    return anyhow!(
                        "{what}: repository {} not found on registry {host} (name unknown)",
                        self.reference.repository()
                    );
                }
                if codes.contains(&&OciErrorCode::BlobUnknown) {
                    return anyhow!("{what}: blob unknown to registry {host}");
                }
                anyhow!("{what}: registry {host} refused the request: {messages}")
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 => self.unauthorized(what),
                404 => anyhow!("{what}: not found on registry {host} (HTTP 404 Not Found)"),
                _ => {
                    let message = message.lines().next().unwrap_or_default().trim();
                    anyhow!("{what}: registry {host} answered HTTP {code}: {message}")
                }
            },
            OciDistributionError::DigestError(DigestError::VerificationError {
                actual, ..
            }) => {
                anyhow!(VerifyError::Digest {
                    what: what.to_string(),
                    got: actual
                })
            }
            OciDistributionError::DigestError(d) => anyhow!("{what}: {d}"),
            OciDistributionError::AuthenticationFailure(m) => {
                let m = m.lines().next().unwrap_or_default().trim();
                anyhow!("{what}: authentication with registry {host} failed: {m}")
            }
            OciDistributionError::IoError(io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<VerifyError>()) {
                    Some(v) => anyhow!(v.clone()),
                    None => anyhow!("{what}: {io}"),
                }
            }
            other => anyhow!("{what}: registry {host}: {other}"),
        }
    }

    fn unauthorized(&self, what: &str) -> anyhow::Error {
        let host = self.host();
        match &self.creds {
            Some(c) => anyhow!(
                "{what}: registry {host} refused the credentials for {:?} from {} (401 unauthorized)",
                c.key,
                c.file.display()
            ),
            None => {
                let files: Vec<String> = self
                    .auth_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                anyhow!(
                    "{what}: registry {host} requires authentication (401 unauthorized) and there are no credentials for it in {}",
                    files.join(", ")
                )
            }
        }
    }

    /// A failed HTTP exchange (no response): connection refused, TLS,
    /// DNS, timeout.
    fn request_error(&self, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
        let host = self.host();
        let scheme = self.scheme;
        let chain = error_chain(e);
        let lower = chain.to_ascii_lowercase();
        if chain_has_refused(e) {
            return anyhow!("cannot connect to registry {host}: connection refused");
        }
        if lower.contains("timed out") || lower.contains("timeout") {
            return anyhow!("registry {host} ({scheme}): timed out ({chain})");
        }
        if scheme == "https"
            && [
                "ssl",
                "tls",
                "certificate",
                "handshake",
                "wrong version number",
            ]
            .iter()
            .any(|k| lower.contains(k))
        {
            let conf = self.registries_conf.display();
            if lower.contains("certificate") {
                let certs_d = self
                    .registries_conf
                    .parent()
                    .unwrap_or(std::path::Path::new("/etc/containers"))
                    .join("certs.d")
                    .join(host);
                return anyhow!(
                    "TLS connection to registry {host} failed ({}); to trust its CA put the certificate in {}/ca.crt, or mark the registry insecure in {conf}",
                    tls_reason(&chain),
                    certs_d.display()
                );
            }
            return anyhow!(
                "TLS connection to registry {host} failed ({}); https is required unless {conf} marks it insecure ([[registry]] location = \"{host}\" insecure = true)",
                tls_reason(&chain)
            );
        }
        if lower.contains("dns error") || lower.contains("failed to lookup address") {
            return anyhow!("cannot resolve the host of registry {host}: {chain}");
        }
        anyhow!("request to registry {host} ({scheme}) failed: {chain}")
    }
}

/// Extra CA certificates for `host` (`host[:port]`): the `*.crt` files of
/// `certs.d/<host>/` next to registries.conf, i.e.
/// `/etc/containers/certs.d/<host>/` (containers-certs.d(5)). Client
/// certificates (`*.cert`/`*.key`) are not supported.
fn ca_certificates(cfg: &RegistryConfig, host: &str) -> Result<Vec<Certificate>> {
    let Some(parent) = cfg.registries_conf.parent() else {
        return Ok(Vec::new());
    };
    let dir = parent.join("certs.d").join(host);
    let entries = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            tracing::debug!("trusting {} for {host}", p.display());
            Ok(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
        })
        .collect()
}

/// `a: b: c` from an error and its sources, without repeats (reqwest and
/// hyper repeat their inner errors' text).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    // The request URL in reqwest's outer message adds nothing but length.
    if parts.len() > 1 && parts[0].starts_with("error sending request") {
        parts.remove(0);
    }
    parts.join(": ")
}

/// The reason in an OpenSSL error string
/// (`error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file.c:350: (detail)`),
/// with a hint for the common case of a plain-http server.
fn tls_reason(chain: &str) -> String {
    let Some(start) = chain.find("error:") else {
        return chain.to_string();
    };
    let fields: Vec<&str> = chain[start..].splitn(6, ':').collect();
    let Some(reason) = fields.get(4) else {
        return chain.to_string();
    };
    let detail = chain
        .rfind(" (")
        .filter(|&i| i > start)
        .map(|i| chain[i..].trim_end().to_string())
        .unwrap_or_default();
    if *reason == "wrong version number" {
        format!("the server does not speak TLS, OpenSSL: {reason}{detail}")
    } else {
        format!("OpenSSL: {reason}{detail}")
    }
}

fn chain_has_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_reasons() {
        assert_eq!(
            tls_reason(
                "client error (Connect): error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl/record/ssl3_record.c:350:"
            ),
            "the server does not speak TLS, OpenSSL: wrong version number"
        );
        assert_eq!(
            tls_reason(
                "client error (Connect): error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate)"
            ),
            "OpenSSL: certificate verify failed (self-signed certificate)"
        );
        assert_eq!(tls_reason("handshake eof"), "handshake eof");
    }
}

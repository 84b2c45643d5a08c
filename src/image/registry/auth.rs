//! Registry credentials from podman/skopeo/docker auth files
//! (containers-auth.json(5)):
//!
//! ```json
//! {"auths": {"quay.io": {"auth": "base64(user:password)"},
//!            "registry.example/team": {"auth": "…"}}}
//! ```
//!
//! Files are searched in order ([`default_auth_files`]); missing ones are
//! skipped, and the first file holding an entry for the registry wins, as in
//! containers/image. Within a file the most specific key wins:
//! `host/ns/repo`, then `host/ns`, then `host` (containers-auth.json(5),
//! "the most specific match is used"). Docker's legacy keys with a scheme
//! (`https://index.docker.io/v1/`) match by host only, and Docker Hub's
//! aliases (`index.docker.io`, `registry-1.docker.io`) mean `docker.io`.
//!
//! Credential helpers (`credHelpers`, `credsStore`) are not run: cbootc
//! runs on hosts without them; such an entry is reported and skipped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;

use super::reference::RegistryRef;

/// Credentials found for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The file they came from, for messages.
    pub file: PathBuf,
    /// The key that matched (`host[:port][/namespace…]`).
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("file", &self.file)
            .field("key", &self.key)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The auth files podman and skopeo read as root, in order:
/// `$REGISTRY_AUTH_FILE`, `/run/containers/<uid>/auth.json`,
/// `/etc/containers/auth.json`, then Docker's `~/.docker/config.json`
/// (`$DOCKER_CONFIG/config.json` if set).
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        files.push(PathBuf::from(p));
    }
    let uid = rustix::process::geteuid().as_raw();
    files.push(PathBuf::from(format!("/run/containers/{uid}/auth.json")));
    files.push(PathBuf::from("/etc/containers/auth.json"));
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        files.push(PathBuf::from(d).join("config.json"));
    } else {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/root".into());
        files.push(PathBuf::from(home).join(".docker/config.json"));
    }
    files
}

/// Find credentials for `reference` in `files` (see the module docs).
pub fn find_credentials(files: &[PathBuf], reference: &RegistryRef) -> Result<Option<Credentials>> {
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("reading auth file {}", file.display()));
            }
        };
        if let Some(c) = lookup(&text, file, reference)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Look `reference` up in one auth file's text.
pub fn lookup(text: &str, file: &Path, reference: &RegistryRef) -> Result<Option<Credentials>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let parsed: AuthFile = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("invalid auth file {}: {e}", file.display()))?;
    let registry = normalize_registry(reference.registry());
    let mut best: Option<(usize, &str, &AuthEntry)> = None;
    for (key, entry) in &parsed.auths {
        let Some(norm) = normalize_key(key) else {
            continue;
        };
        let score = match_len(&norm, &registry, reference.repository());
        if let Some(n) = score
            && best.is_none_or(|(m, _, _)| n > m)
        {
            best = Some((n, key, entry));
        }
    }
    let Some((_, key, entry)) = best else {
        if parsed.cred_helpers.contains_key(&registry)
            || parsed.cred_helpers.contains_key(reference.registry())
            || parsed.creds_store.is_some()
        {
            tracing::warn!(
                "{}: credential helpers are not supported by cbootc; add an \"auths\" entry for {registry}",
                file.display()
            );
        }
        return Ok(None);
    };
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        if entry.identitytoken.is_some() {
            tracing::warn!(
                "{}: the entry for {key} has only an identity token, which cbootc does not support",
                file.display()
            );
        }
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .with_context(|| {
            format!(
                "auth file {}: entry {key:?}: \"auth\" is not base64 of user:password",
                file.display()
            )
        })?;
    let Some((username, password)) = decoded.split_once(':') else {
        bail!(
            "auth file {}: entry {key:?}: \"auth\" does not decode to user:password",
            file.display()
        );
    };
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
        file: file.to_path_buf(),
        key: key.to_string(),
    }))
}

/// Docker Hub has several host names for one registry.
fn normalize_registry(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// A key as `host[:port][/path]`; a legacy key with a scheme is its host
/// only (containers/image `normalizeAuthFileKey`).
fn normalize_key(key: &str) -> Option<String> {
    let key = key.trim();
    let (scheme, rest) = match key.split_once("://") {
        Some((_, rest)) => (true, rest),
        None => (false, key),
    };
    let rest = if scheme {
        rest.split('/').next().unwrap_or_default()
    } else {
        rest.trim_end_matches('/')
    };
    if rest.is_empty() {
        return None;
    }
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host = normalize_registry(host);
    Some(match path {
        Some(p) => format!("{host}/{p}"),
        None => host,
    })
}

/// How specific a match `key` is for `registry/repository` (the number of
/// path components it covers), or `None`.
fn match_len(key: &str, registry: &str, repository: &str) -> Option<usize> {
    let (host, path) = match key.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (key, None),
    };
    if host != registry {
        return None;
    }
    match path {
        None => Some(1),
        Some(p) => {
            let ok = repository == p
                || repository
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'));
            ok.then(|| 1 + p.split('/').count())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn r(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    fn find(text: &str, reference: &str) -> Option<(String, String, String)> {
        lookup(text, Path::new("/t/auth.json"), &r(reference))
            .unwrap()
            .map(|c| (c.username, c.password, c.key))
    }

    #[test]
    fn host_and_port_match() {
        let text = format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}}}}}"#,
            b64("alice:s3cr:et"),
            b64("bob:pw")
        );
        assert_eq!(
            find(&text, "127.0.0.1:5000/os:v1"),
            Some(("alice".into(), "s3cr:et".into(), "127.0.0.1:5000".into()))
        );
        assert_eq!(find(&text, "127.0.0.1:5001/os:v1"), None);
        assert_eq!(find(&text, "127.0.0.1/os:v1"), None);
        assert_eq!(find(&text, "quay.io/a/b").map(|c| c.0), Some("bob".into()));
        assert_eq!(find(&text, "quay.iox/a/b"), None);
    }

    #[test]
    fn most_specific_namespace_wins() {
        let text = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/team": {{"auth": "{}"}},
                "quay.io/team/os": {{"auth": "{}"}}
            }}}}"#,
            b64("host:1"),
            b64("ns:2"),
            b64("repo:3")
        );
        assert_eq!(find(&text, "quay.io/team/os:1").unwrap().0, "repo");
        assert_eq!(find(&text, "quay.io/team/other").unwrap().0, "ns");
        assert_eq!(find(&text, "quay.io/teamx/os").unwrap().0, "host");
        assert_eq!(find(&text, "quay.io/x").unwrap().0, "host");
    }

    #[test]
    fn docker_legacy_keys() {
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("d:p")
        );
        assert_eq!(find(&text, "debian").unwrap().0, "d");
        assert_eq!(find(&text, "docker.io/foo/bar").unwrap().0, "d");
        assert_eq!(find(&text, "quay.io/foo/bar"), None);
    }

    #[test]
    fn unusable_entries() {
        assert_eq!(find("", "quay.io/a"), None);
        assert_eq!(find(r#"{"auths": {}}"#, "quay.io/a"), None);
        assert_eq!(
            find(
                r#"{"credHelpers": {"quay.io": "secretservice"}}"#,
                "quay.io/a"
            ),
            None
        );
        assert_eq!(
            find(
                r#"{"auths": {"quay.io": {"identitytoken": "x"}}}"#,
                "quay.io/a"
            ),
            None
        );
        let e = lookup("{not json", Path::new("/t/a.json"), &r("quay.io/a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid auth file /t/a.json"), "{e}");
        let e = lookup(
            r#"{"auths": {"quay.io": {"auth": "!!!"}}}"#,
            Path::new("/t/a.json"),
            &r("quay.io/a"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not base64"), "{e}");
        let e = lookup(
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                b64("nocolon")
            ),
            Path::new("/t/a.json"),
            &r("quay.io/a"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn files_in_order_first_with_an_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        let c = dir.path().join("c.json");
        std::fs::write(
            &a,
            format!(
                r#"{{"auths": {{"other.io": {{"auth": "{}"}}}}}}"#,
                b64("x:y")
            ),
        )
        .unwrap();
        std::fs::write(
            &b,
            format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                b64("fromb:1")
            ),
        )
        .unwrap();
        std::fs::write(
            &c,
            format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                b64("fromc:1")
            ),
        )
        .unwrap();
        let missing = dir.path().join("missing.json");
        let got = find_credentials(&[missing, a, b.clone(), c], &r("quay.io/x"))
            .unwrap()
            .unwrap();
        assert_eq!(got.username, "fromb");
        assert_eq!(got.file, b);
        assert!(
            !format!("{got:?}").contains("\"1\""),
            "password is redacted"
        );
    }

    #[test]
    fn default_files_start_with_the_env_override() {
        // Only reads the environment; REGISTRY_AUTH_FILE is not set in tests
        // that rely on the default, so just check the fixed entries.
        let files = default_auth_files();
        assert!(files.contains(&PathBuf::from("/etc/containers/auth.json")));
        assert!(files.iter().any(|f| f.ends_with("config.json")));
    }
}

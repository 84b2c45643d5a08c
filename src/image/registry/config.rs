//! `registries.conf`: which registries are reached over plain http or with
//! unverified TLS (`insecure`), which are `blocked`, and where a name prefix
//! is redirected (`location`), per containers-registries.conf(5).
//!
//! Read: the main file, then drop-ins `<main>.d/*.conf` in lexical order
//! (containers-registries.conf.d(5)); a later `[[registry]]` with the same
//! prefix replaces an earlier one. Both the V2 format
//! (`[[registry]] location = "…" insecure = true`) and the deprecated V1
//! lists (`[registries.insecure] registries = […]`) are understood.
//! Mirrors and short-name aliases are not used: cbootc pulls fully
//! qualified references from their primary location (a mirror entry is
//! mentioned at debug level and otherwise ignored).
//!
//! A missing file means "no entries": every registry is reached over
//! verified TLS. A file that exists but does not parse is an error, like
//! podman: silently ignoring it could pull from the wrong place.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::reference::RegistryRef;

/// One `[[registry]]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// What references the entry applies to; defaults to `location`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where the matching references are pulled from.
    #[serde(default)]
    pub location: Option<String>,
    /// Plain http or unverified TLS is allowed.
    #[serde(default)]
    pub insecure: bool,
    /// Pulls are refused.
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    mirror: Vec<toml::Value>,
}

impl RegistryEntry {
    fn effective_prefix(&self) -> Option<&str> {
        self.prefix
            .as_deref()
            .or(self.location.as_deref())
            .filter(|p| !p.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
struct V1Lists {
    #[serde(default)]
    registries: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct V1 {
    #[serde(default)]
    insecure: V1Lists,
    #[serde(default)]
    block: V1Lists,
}

/// The file format; unknown keys (`unqualified-search-registries`,
/// `[aliases]`, `short-name-mode`, …) are ignored.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    registry: Vec<RegistryEntry>,
    #[serde(default)]
    registries: Option<V1>,
}

/// The merged configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistriesConf {
    entries: Vec<RegistryEntry>,
}

/// What registries.conf says about one reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The reference to pull (rewritten if the entry has another location).
    pub reference: RegistryRef,
    /// Plain http / unverified TLS allowed for it.
    pub insecure: bool,
}

impl RegistriesConf {
    /// Read `path` and its drop-in directory `path.d/`. Missing is empty.
    pub fn load(path: &Path) -> Result<Self> {
        let mut conf = RegistriesConf::default();
        if let Some(text) = read_optional(path)? {
            conf.merge(Self::parse_file(&text).with_context(|| format!("{}", path.display()))?);
        }
        let mut dropin_dir = path.as_os_str().to_owned();
        dropin_dir.push(".d");
        let dropin_dir = PathBuf::from(dropin_dir);
        let mut dropins: Vec<PathBuf> = match std::fs::read_dir(&dropin_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", dropin_dir.display()));
            }
        };
        dropins.sort();
        for p in dropins {
            if let Some(text) = read_optional(&p)? {
                conf.merge(Self::parse_file(&text).with_context(|| format!("{}", p.display()))?);
            }
        }
        Ok(conf)
    }

    /// Parse one file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut conf = RegistriesConf::default();
        conf.merge(Self::parse_file(text)?);
        Ok(conf)
    }

    fn parse_file(text: &str) -> Result<Vec<RegistryEntry>> {
        let file: File = toml::from_str(text).map_err(|e| {
            // toml's Display is a multi-line snippet; say it in one line.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => anyhow::anyhow!("invalid registries.conf: line {l}: {}", e.message()),
                None => anyhow::anyhow!("invalid registries.conf: {}", e.message()),
            }
        })?;
        let mut entries = file.registry;
        for e in &entries {
            if e.effective_prefix().is_none() {
                bail!("invalid registries.conf: a [[registry]] has neither prefix nor location");
            }
            if let Some(p) = &e.prefix
                && p.starts_with("*.")
                && e.location.as_deref().is_some_and(|l| !l.is_empty())
            {
                bail!(
                    "invalid registries.conf: wildcard prefix {p:?} cannot have a location (containers-registries.conf(5))"
                );
            }
            if !e.mirror.is_empty() {
                tracing::debug!(
                    "registries.conf: mirrors of {} are not used by cbootc",
                    e.effective_prefix().unwrap_or_default()
                );
            }
        }
        if let Some(v1) = file.registries {
            if !entries.is_empty() {
                // containers-registries.conf(5): "mixing V1 and V2 … is an error".
                bail!(
                    "invalid registries.conf: mixes the V1 [registries.*] tables with V2 [[registry]] tables"
                );
            }
            let mut add = |loc: &str, insecure: bool, blocked: bool| match entries
                .iter_mut()
                .find(|e| e.location.as_deref() == Some(loc))
            {
                Some(e) => {
                    e.insecure |= insecure;
                    e.blocked |= blocked;
                }
                None => entries.push(RegistryEntry {
                    location: Some(loc.to_string()),
                    insecure,
                    blocked,
                    ..Default::default()
                }),
            };
            for r in &v1.insecure.registries {
                add(r, true, false);
            }
            for r in &v1.block.registries {
                add(r, false, true);
            }
        }
        Ok(entries)
    }

    fn merge(&mut self, entries: Vec<RegistryEntry>) {
        for e in entries {
            let prefix = e.effective_prefix().map(str::to_string);
            self.entries
                .retain(|old| old.effective_prefix().map(str::to_string) != prefix);
            self.entries.push(e);
        }
    }

    /// Apply the entry whose prefix matches `reference` best (the longest
    /// match, containers-registries.conf(5)): refuse it if blocked, rewrite
    /// it to the entry's location, and say whether it is insecure.
    pub fn resolve(&self, reference: &RegistryRef) -> Result<Resolved> {
        let text = reference.to_string();
        let best = self
            .entries
            .iter()
            .filter_map(|e| {
                let prefix = e.effective_prefix()?;
                prefix_match_len(&text, prefix).map(|n| (n, e))
            })
            .max_by_key(|(n, _)| *n);
        let Some((len, entry)) = best else {
            return Ok(Resolved {
                reference: reference.clone(),
                insecure: false,
            });
        };
        if entry.blocked {
            bail!(
                "pulling {reference} is blocked by registries.conf (registry {:?})",
                entry.effective_prefix().unwrap_or_default()
            );
        }
        let rewritten = match entry.location.as_deref() {
            Some(loc)
                if !loc.is_empty()
                    && entry.prefix.as_deref().is_some_and(|p| p != loc)
                    && !entry
                        .prefix
                        .as_deref()
                        .unwrap_or_default()
                        .starts_with("*.") =>
            {
                let r = reference.rewrite_prefix(len, loc)?;
                tracing::debug!("registries.conf: {reference} is pulled from {r}");
                r
            }
            _ => reference.clone(),
        };
        Ok(Resolved {
            reference: rewritten,
            insecure: entry.insecure,
        })
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// How many leading characters of `reference` `prefix` matches, if it does.
///
/// As containers/image `refMatchingPrefix`: the prefix must be followed by
/// the end, `/`, `@` or (after the host) `:`; `*.example.com` matches any
/// subdomain host. Unlike containers/image, `example.com` does not match
/// `example.com:5000/x` — the port names a different registry.
pub fn prefix_match_len(reference: &str, prefix: &str) -> Option<usize> {
    if let Some(suffix) = prefix.strip_prefix('*') {
        let host = reference.split('/').next().unwrap_or_default();
        return (host.ends_with(suffix) && host.len() > suffix.len()).then_some(host.len());
    }
    let rest = reference.strip_prefix(prefix)?;
    match rest.chars().next() {
        None | Some('/') | Some('@') => Some(prefix.len()),
        Some(':') if prefix.contains('/') => Some(prefix.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    #[test]
    fn v2_insecure_entry() {
        let c = RegistriesConf::parse(
            r#"
unqualified-search-registries = ["quay.io"]
short-name-mode = "enforcing"

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "quay.io/blocked"
location = "quay.io/blocked"
blocked = true

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#,
        )
        .unwrap();
        let res = c.resolve(&r("127.0.0.1:5000/os:v1")).unwrap();
        assert!(res.insecure);
        assert_eq!(res.reference, r("127.0.0.1:5000/os:v1"));
        // Another port is another registry: TLS.
        assert!(!c.resolve(&r("127.0.0.1:5001/os:v1")).unwrap().insecure);
        assert!(!c.resolve(&r("quay.io/x/y")).unwrap().insecure);
        let e = c
            .resolve(&r("quay.io/blocked/img:1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocked by registries.conf"), "{e}");
        assert!(c.resolve(&r("quay.io/blockedother/img")).is_ok());
    }

    #[test]
    fn longest_prefix_wins_and_location_rewrites() {
        let c = RegistriesConf::parse(
            r#"
[[registry]]
location = "example.com"
insecure = false

[[registry]]
prefix = "example.com/team"
location = "mirror.local:5000/team-mirror"
insecure = true
"#,
        )
        .unwrap();
        let res = c.resolve(&r("example.com/team/os:2")).unwrap();
        assert!(res.insecure);
        assert_eq!(
            res.reference.to_string(),
            "mirror.local:5000/team-mirror/os:2"
        );
        let res = c.resolve(&r("example.com/other/os:2")).unwrap();
        assert!(!res.insecure);
        assert_eq!(res.reference.to_string(), "example.com/other/os:2");
    }

    #[test]
    fn wildcard_and_v1() {
        let c = RegistriesConf::parse(
            r#"
[[registry]]
prefix = "*.internal"
insecure = true
"#,
        )
        .unwrap();
        assert!(c.resolve(&r("reg.internal/a")).unwrap().insecure);
        assert!(c.resolve(&r("a.reg.internal:5000/a")).is_ok());
        assert!(!c.resolve(&r("internal.com/a")).unwrap().insecure);

        let c = RegistriesConf::parse(
            r#"
[registries.search]
registries = ["docker.io"]
[registries.insecure]
registries = ["localhost:5000"]
[registries.block]
registries = ["evil.example"]
"#,
        )
        .unwrap();
        assert!(c.resolve(&r("localhost:5000/x")).unwrap().insecure);
        assert!(c.resolve(&r("evil.example/x")).is_err());
        assert!(!c.resolve(&r("docker.io/x/y")).unwrap().insecure);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = RegistriesConf::parse("[[registry]]\ninsecure = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither prefix nor location"), "{e}");
        let e = format!("{:#}", RegistriesConf::parse("[[registry]\n").unwrap_err());
        assert!(e.contains("invalid registries.conf"), "{e}");
        let e = RegistriesConf::parse(
            "[[registry]]\nlocation=\"a.b\"\n[registries.insecure]\nregistries=[\"x\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mixes"), "{e}");
    }

    #[test]
    fn load_reads_dropins_in_order_and_tolerates_missing() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        assert_eq!(
            RegistriesConf::load(&main).unwrap(),
            RegistriesConf::default()
        );
        std::fs::write(
            &main,
            "[[registry]]\nlocation = \"a.example\"\ninsecure = true\n",
        )
        .unwrap();
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("50-b.conf"),
            "[[registry]]\nlocation = \"a.example\"\ninsecure = false\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            "[[registry]]\nlocation = \"b.example\"\ninsecure = true\n",
        )
        .unwrap();
        std::fs::write(d.join("README"), "not toml [").unwrap();
        let c = RegistriesConf::load(&main).unwrap();
        assert!(!c.resolve(&r("a.example/x")).unwrap().insecure);
        assert!(c.resolve(&r("b.example/x")).unwrap().insecure);

        std::fs::write(&main, "this is = = not toml").unwrap();
        let e = format!("{:#}", RegistriesConf::load(&main).unwrap_err());
        assert!(e.contains("registries.conf"), "{e}");
    }

    #[test]
    fn prefix_matching() {
        assert_eq!(prefix_match_len("a.io/x/y:1", "a.io"), Some(4));
        assert_eq!(prefix_match_len("a.io/x/y:1", "a.io/x"), Some(6));
        assert_eq!(prefix_match_len("a.io/x/y:1", "a.io/x/y"), Some(8));
        assert_eq!(prefix_match_len("a.io/xy/z", "a.io/x"), None);
        assert_eq!(prefix_match_len("a.io:5000/x", "a.io"), None);
        assert_eq!(prefix_match_len("a.iox/x", "a.io"), None);
    }
}

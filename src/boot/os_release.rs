//! Reading an image's `os-release` file.
//!
//! The boot menu title and the BLS `version` of a deployment come from the
//! image's `/usr/lib/os-release` (or `/etc/os-release`), so that what the user
//! picks in the menu matches what the image says it is.
//!
//! The format is described in os-release(5): newline-separated `KEY=VALUE`
//! assignments that are "compatible with shell script", with single or double
//! quotes, backslash escapes for `"`, `\`, `$` and `` ` `` inside double quotes,
//! and `#` comment lines. Variable expansion is explicitly not supported, so
//! `$` is never special. Like composefs-boot's `os_release` module we parse the
//! subset ourselves rather than pulling in a shell lexer; unlike it, we follow
//! POSIX quoting strictly inside double quotes (a backslash before any other
//! character is kept) and drop lines we cannot parse instead of half-parsing
//! them.

use std::collections::HashMap;

/// The parsed assignments of an os-release file.
#[derive(Debug, Clone, Default)]
pub struct OsRelease {
    vars: HashMap<String, String>,
}

impl OsRelease {
    /// Parse os-release content.
    ///
    /// Never fails: a line that is not a valid assignment (bad key,
    /// unterminated quote) is skipped, as os-release(5) asks readers to be
    /// lenient. When a key is assigned twice the later value wins, as it would
    /// when the file is sourced by a shell.
    pub fn parse(content: &str) -> Self {
        let vars = content.lines().filter_map(parse_line).collect();
        Self { vars }
    }

    /// The unquoted value of `key`, if the file assigns it (possibly to "").
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Human title for a boot menu: `PRETTY_NAME`, else `NAME VERSION`, else
    /// `NAME`, else `Linux` (the default os-release(5) gives for both
    /// `PRETTY_NAME` and `NAME`).
    ///
    /// Empty values count as unset.
    pub fn title(&self) -> String {
        if let Some(pretty) = self.non_empty("PRETTY_NAME") {
            return pretty.to_string();
        }
        match (self.non_empty("NAME"), self.non_empty("VERSION")) {
            (Some(name), Some(version)) => format!("{name} {version}"),
            (Some(name), None) => name.to_string(),
            (None, _) => "Linux".to_string(),
        }
    }

    /// Version string for the BLS `version` key: `IMAGE_VERSION`, else
    /// `VERSION_ID`, else `VERSION`, else `None`.
    ///
    /// `IMAGE_VERSION` comes first because cbootc deploys images: two builds
    /// of the same OS release differ only there. Empty values count as unset.
    pub fn version(&self) -> Option<String> {
        ["IMAGE_VERSION", "VERSION_ID", "VERSION"]
            .into_iter()
            .find_map(|key| self.non_empty(key))
            .map(str::to_string)
    }

    /// The `ID` of the operating system, e.g. `fedora` or `debian`.
    pub fn id(&self) -> Option<&str> {
        self.get("ID")
    }

    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Parse one line into `(key, value)`; `None` for blank lines, comments and
/// lines that are not valid assignments.
fn parse_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, raw) = line.split_once('=')?;
    // Shell allows no space before `=`; systemd's env-file parser tolerates
    // it, and so do we.
    let key = key.trim_end();
    if !is_valid_key(key) {
        return None;
    }
    Some((key.to_string(), unquote(raw)?))
}

/// os-release(5): "Variable names must be in the character set A–Z, a–z,
/// 0–9, _" — and, being shell variables, cannot start with a digit.
fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Remove shell quoting from a value (POSIX XCU 2.2, without expansion).
///
/// Quoted and unquoted parts may be concatenated (`"a"'b'c`). Unquoted
/// whitespace at either end is dropped; inside the value it is kept, which is
/// more forgiving than a shell (that would run the rest as a command) and
/// matches systemd's env-file parser. Returns `None` for an unterminated quote
/// or a trailing backslash (a line continuation, which os-release does not
/// use).
fn unquote(raw: &str) -> Option<String> {
    let mut out = String::new();
    // Unquoted whitespace seen since the last character we kept; written out
    // only if more value follows.
    let mut pending_space = String::new();
    let mut started = false;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if started {
                pending_space.push(c);
            }
            continue;
        }
        out.push_str(&pending_space);
        pending_space.clear();
        started = true;
        match c {
            '\'' => loop {
                // Single quotes: everything literal up to the next `'`.
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    // Inside double quotes a backslash escapes only these
                    // four characters (os-release(5), POSIX XCU 2.2.3).
                    '\\' => match chars.next()? {
                        e @ ('"' | '\\' | '$' | '`') => out.push(e),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                    other => out.push(other),
                }
            },
            // Outside quotes a backslash makes the next character literal.
            '\\' => out.push(chars.next()?),
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(line: &str) -> Option<String> {
        unquote(line)
    }

    #[test]
    fn unquoting() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            ("\"double\"", "double"),
            ("'single'", "single"),
            ("\"\"''\"\"", ""),
            ("\"a\"'b'c", "abc"),
            // Only \" \\ \$ \` are escapes inside double quotes.
            (r#""say \"hi\"""#, r#"say "hi""#),
            (r#""back\\slash""#, r"back\slash"),
            (r#""\$HOME \`x\`""#, "$HOME `x`"),
            (r#""keep \n and \a""#, r"keep \n and \a"),
            // `$` is never expanded.
            (r#""$5""#, "$5"),
            // Nothing is special inside single quotes.
            (r#"'a\"b\\'"#, r#"a\"b\\"#),
            (r#"'it"s'"#, r#"it"s"#),
            // Unquoted backslash escapes anything.
            (r"a\ b\#", "a b#"),
            ("  spaced  ", "spaced"),
            ("two words", "two words"),
            ("\" padded \"", " padded "),
            ("#notacomment", "#notacomment"),
            (
                "\"Fedora Linux 41 (Forty One)\"",
                "Fedora Linux 41 (Forty One)",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(value(raw).as_deref(), Some(*want), "unquoting {raw:?}");
        }
    }

    /// A POSIX shell is the reference os-release(5) points to: for values
    /// that are valid shell (no unquoted inner spaces, no unescaped `$`),
    /// sourcing the file must give the same string we do.
    #[test]
    fn agrees_with_posix_sh() {
        let raws = [
            "plain",
            "\"double quoted\"",
            "'single quoted'",
            "\"a\"'b'c",
            r#""say \"hi\"""#,
            r#""back\\slash""#,
            r#""\$HOME \`x\`""#,
            r#""keep \n and \a""#,
            r#"'a\"b\\'"#,
            r"a\ b\#",
            r#""it's""#,
            r#"'say "hi"'"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        for raw in raws {
            let file = dir.path().join("os-release");
            std::fs::write(&file, format!("K={raw}\n")).unwrap();
            let script = format!(". '{}'; printf %s \"$K\"", file.display());
            let from_sh = crate::util::command::run("sh", &["-c", &script]).unwrap();
            let ours = OsRelease::parse(&std::fs::read_to_string(&file).unwrap());
            assert_eq!(ours.get("K"), Some(from_sh.as_str()), "value {raw}");
        }
    }

    #[test]
    fn unterminated_is_rejected() {
        for raw in [
            "\"open",
            "'open",
            r#""escaped end\""#,
            r"trailing\",
            "'a'\"b",
        ] {
            assert_eq!(value(raw), None, "{raw:?} should be rejected");
        }
    }

    #[test]
    fn parses_a_real_file() {
        let os = OsRelease::parse(
            r#"# Fedora's os-release, trimmed
NAME="Fedora Linux"
VERSION="41 (Container Image)"
ID=fedora
VERSION_ID=41
PRETTY_NAME="Fedora Linux 41 (Container Image)"
ANSI_COLOR="0;38;2;60;110;180"
  # indented comment
HOME_URL="https://fedoraproject.org/"

BROKEN="unterminated
1BAD=x
BAD-KEY=y
SUPPORT_END=2025-12-15
"#,
        );
        assert_eq!(os.get("NAME"), Some("Fedora Linux"));
        assert_eq!(os.get("VERSION"), Some("41 (Container Image)"));
        assert_eq!(os.id(), Some("fedora"));
        assert_eq!(os.get("ANSI_COLOR"), Some("0;38;2;60;110;180"));
        assert_eq!(os.get("HOME_URL"), Some("https://fedoraproject.org/"));
        assert_eq!(os.get("SUPPORT_END"), Some("2025-12-15"));
        assert_eq!(os.get("BROKEN"), None);
        assert_eq!(os.get("1BAD"), None);
        assert_eq!(os.get("BAD-KEY"), None);
        assert_eq!(os.get("BAD"), None);
        assert_eq!(os.title(), "Fedora Linux 41 (Container Image)");
        assert_eq!(os.version().as_deref(), Some("41"));
    }

    #[test]
    fn later_assignment_wins_and_crlf_is_tolerated() {
        let os = OsRelease::parse("ID=first\r\nID=second\r\nNAME = \"Spaced\"\r\n");
        assert_eq!(os.id(), Some("second"));
        assert_eq!(os.get("NAME"), Some("Spaced"));
    }

    #[test]
    fn title_fallbacks() {
        let cases = [
            ("PRETTY_NAME='Pretty OS'\nNAME=Name\nVERSION=1", "Pretty OS"),
            (
                "PRETTY_NAME=\nNAME=Name\nVERSION=\"1 (One)\"",
                "Name 1 (One)",
            ),
            ("NAME=Name\nVERSION_ID=1", "Name"),
            ("VERSION=1\nID=debian", "Linux"),
            ("", "Linux"),
        ];
        for (content, want) in cases {
            assert_eq!(OsRelease::parse(content).title(), want, "{content:?}");
        }
    }

    #[test]
    fn version_fallbacks() {
        let cases = [
            (
                "IMAGE_VERSION=41.20250101.0\nVERSION_ID=41\nVERSION=41",
                Some("41.20250101.0"),
            ),
            ("IMAGE_VERSION=\"\"\nVERSION_ID=41\nVERSION=x", Some("41")),
            ("VERSION=\"12 (bookworm)\"", Some("12 (bookworm)")),
            ("NAME=x", None),
        ];
        for (content, want) in cases {
            assert_eq!(
                OsRelease::parse(content).version().as_deref(),
                want,
                "{content:?}"
            );
        }
    }

    #[test]
    fn empty_value_is_present_for_get() {
        let os = OsRelease::parse("VARIANT=\"\"\n");
        assert_eq!(os.get("VARIANT"), Some(""));
        assert_eq!(os.get("ID"), None);
        assert_eq!(os.id(), None);
    }
}

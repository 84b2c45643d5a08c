//! Human size strings such as `10G` or `4096M`.
//!
//! Suffixes are binary multiples, like `truncate(1)`, `qemu-img` and bootc's
//! `--size`: `K`/`KiB` = 1024, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`. A bare number is
//! bytes.

use anyhow::{Result, bail};

/// Parse a size string into bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        bail!("invalid size {s:?}: expected a number with an optional K, M, G or T suffix");
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => bail!("invalid size {s:?}: unknown suffix {suffix:?} (use K, M, G or T)"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?}: number too large"))?;
    let Some(bytes) = n.checked_mul(1u64 << shift) else {
        bail!("invalid size {s:?}: too large");
    };
    if bytes == 0 {
        bail!("invalid size {s:?}: must be greater than zero");
    }
    Ok(bytes)
}

/// Format bytes for messages, in the largest binary unit that keeps one
/// decimal, e.g. `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("4096M").unwrap(), 4096 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_size("12345").unwrap(), 12345);
        assert_eq!(parse_size(" 3G ").unwrap(), 3 << 30);
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "G",
            "10X",
            "1.5G",
            "-1G",
            "0",
            "0G",
            "99999999999999999999",
            "20000000T",
        ] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(10 << 20), "10.0 MiB");
    }
}

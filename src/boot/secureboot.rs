//! Secure Boot keys and Authenticode signing of EFI binaries.
//!
//! # Keys
//!
//! A UKI + systemd-boot disk is verified by the firmware itself, against its
//! signature database `db` (UEFI 2.10, chapter "Secure Boot and Driver
//! Signing": "UEFI Image Validation", "Firmware/OS Key Exchange"), so cbootc
//! signs with a key whose certificate the owner enrolls in `db` once.
//! Either the user brings one (`--sb-key`/`--sb-cert`, PEM) or cbootc
//! generates one in-process with OpenSSL (the `openssl` crate, already
//! linked through composefs, and the library `sbsign` itself uses):
//!
//! - RSA-2048, SHA-256. Not larger: the specification's signature types are
//!   built around RSA-2048 (`EFI_CERT_RSA2048_GUID`, RSA-2048/SHA-256
//!   authenticated variables), support for larger keys in X.509 `db`
//!   entries is up to each implementation, and every certificate in the
//!   Microsoft-enrolled OVMF variables (Microsoft UEFI CA 2011, Windows
//!   Production PCA 2011, KEK CA 2011) is RSA-2048 — the one size all
//!   firmware is known to verify.
//! - Self-signed, `CN=<name>` naming what it signs for (host or image), a
//!   random 159-bit serial, valid from a day ago (clock skew) for 20 years:
//!   firmware has no trusted clock and does not check validity (edk2
//!   `Pkcs7Verify` disables time checks), but `sbverify` and other tools do.
//! - `basicConstraints=CA:FALSE`, `keyUsage=digitalSignature`,
//!   `extendedKeyUsage=codeSigning`: a leaf code-signing certificate, which
//!   is what `db` trusts directly.
//! - The private key is written with mode 0600 (atomically), the
//!   certificate as PEM and as DER (`.cer`, what firmware setup menus and
//!   `virt-fw-vars --add-db` enroll).
//!
//! # Signing
//!
//! Authenticode (PE/COFF specification "Attribute Certificate Table";
//! Microsoft "Windows Authenticode Portable Executable Signature Format")
//! is a PKCS#7 SignedData over an `SpcIndirectDataContent` holding the PE
//! image hash with the checksum, certificate-table entry and certificate
//! table itself excluded, appended as a `WIN_CERTIFICATE`. No kept Rust
//! crate writes it (the `authenticode` crate computes the digest but does
//! not sign; RustCrypto's `cms` would need the SpcIndirectDataContent and PE
//! rewriting hand-made), and a subtly wrong signature only shows up as a
//! machine that refuses to boot. So signing runs the image's `sbsign`
//! (sbsigntool, which Debian, Ubuntu and Fedora ship and their own signing
//! infrastructure mirrors) through [`Tools`], and every result is checked
//! twice before it is returned: `sbverify --cert` against the signing
//! certificate, and an in-process parse that the PE carries exactly one
//! `WIN_CERT_TYPE_PKCS_SIGNED_DATA` certificate.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};

use crate::boot::grub_efi::check_efi_x86_64;
use crate::boot::systemd_boot::EfiSigner;
use crate::util::atomic;
use crate::util::command::{Tools, run_command};

/// RSA modulus size of generated keys.
pub const KEY_BITS: u32 = 2048;

/// Validity of generated certificates.
pub const VALIDITY_DAYS: u32 = 20 * 365;

/// `WIN_CERT_REVISION_2_0` (PE/COFF spec, "The Attribute Certificate Table").
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// A signing key and its certificate.
#[derive(Clone)]
pub struct KeyPair {
    key: PKey<Private>,
    cert: X509,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("KeyPair")
            .field("subject", &self.subject())
            .field("sha256", &self.fingerprint().unwrap_or_default())
            .finish()
    }
}

impl KeyPair {
    /// Generate an RSA-2048 key and a self-signed code-signing certificate
    /// with subject `CN=<common_name>` (see the module docs).
    pub fn generate(common_name: &str) -> Result<Self> {
        ensure!(
            !common_name.is_empty() && common_name.len() <= 64,
            "certificate common name must be 1 to 64 characters (RFC 5280 ub-common-name), \
             not {common_name:?}"
        );
        let key = PKey::from_rsa(Rsa::generate(KEY_BITS).context("generating an RSA key")?)
            .context("wrapping the RSA key")?;
        let cert = self_signed(&key, common_name).context("creating the certificate")?;
        Ok(Self { key, cert })
    }

    /// Load a PEM private key (PKCS#1 or PKCS#8, unencrypted) and a PEM (or
    /// DER) certificate, and check that they belong together and that the
    /// key is RSA of at least 2048 bits (firmware verifies RSA only).
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self> {
        let key_pem =
            fs::read(key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = PKey::private_key_from_pem(&key_pem).with_context(|| {
            format!(
                "{} is not an unencrypted PEM private key (an encrypted key needs its \
                 passphrase removed: openssl pkey -in KEY -out KEY.plain)",
                key_path.display()
            )
        })?;
        let cert_data =
            fs::read(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let cert = X509::from_pem(&cert_data)
            .or_else(|_| X509::from_der(&cert_data))
            .with_context(|| format!("{} is not a PEM or DER certificate", cert_path.display()))?;
        let pair = Self { key, cert };
        pair.check()
            .with_context(|| format!("{} and {}", key_path.display(), cert_path.display()))?;
        Ok(pair)
    }

    /// Load `--sb-key`/`--sb-cert` if both are given, generate a pair named
    /// `common_name` if neither is; one without the other is an error.
    pub fn load_or_generate(
        key: Option<&Path>,
        cert: Option<&Path>,
        common_name: &str,
    ) -> Result<Self> {
        match (key, cert) {
            (Some(k), Some(c)) => Self::load(k, c),
            (None, None) => Self::generate(common_name),
            (Some(_), None) => bail!("--sb-key needs --sb-cert (the certificate of that key)"),
            (None, Some(_)) => bail!("--sb-cert needs --sb-key (the key it certifies)"),
        }
    }

    fn check(&self) -> Result<()> {
        let rsa = self
            .key
            .rsa()
            .context("the key is not an RSA key (UEFI firmware verifies RSA signatures only)")?;
        ensure!(
            rsa.size() * 8 >= KEY_BITS,
            "the RSA key has {} bits; at least {KEY_BITS} are needed",
            rsa.size() * 8
        );
        let public = self
            .cert
            .public_key()
            .context("reading the certificate's public key")?;
        ensure!(
            public.public_eq(&self.key),
            "the certificate ({}) is not for this key",
            self.subject()
        );
        Ok(())
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> Result<Vec<u8>> {
        self.key
            .private_key_to_pem_pkcs8()
            .context("encoding the private key")
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> Result<Vec<u8>> {
        self.cert.to_pem().context("encoding the certificate")
    }

    /// The certificate, DER (what firmware enrolls).
    pub fn cert_der(&self) -> Result<Vec<u8>> {
        self.cert.to_der().context("encoding the certificate")
    }

    /// The certificate's subject, e.g. `CN=cbootc myhost`.
    pub fn subject(&self) -> String {
        self.cert
            .subject_name()
            .entries()
            .map(|e| {
                let key = e.object().nid().short_name().unwrap_or("?");
                let value = e.data().to_string().unwrap_or_default();
                format!("{key}={value}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// SHA-256 fingerprint of the certificate (hex, colon-separated, as
    /// firmware menus and `openssl x509 -fingerprint -sha256` show it).
    pub fn fingerprint(&self) -> Result<String> {
        let d = self
            .cert
            .digest(MessageDigest::sha256())
            .context("hashing the certificate")?;
        Ok(d.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"))
    }

    /// Write the key (mode 0600), and the certificate as PEM and DER
    /// (mode 0644), each atomically.
    pub fn write(&self, key_path: &Path, cert_pem_path: &Path, cert_der_path: &Path) -> Result<()> {
        atomic::write_file_mode(key_path, &self.key_pem()?, 0o600)?;
        atomic::write_file(cert_pem_path, &self.cert_pem()?)?;
        atomic::write_file(cert_der_path, &self.cert_der()?)
    }
}

fn self_signed(key: &PKey<Private>, common_name: &str) -> Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();

    let mut serial = BigNum::new()?;
    // 159 bits: positive and at most 20 octets (RFC 5280 §4.1.2.2).
    serial.rand(159, MsbOption::MAYBE_ZERO, false)?;
    let serial = Asn1Integer::from_bn(&serial)?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs() as i64;
    let mut b = X509::builder()?;
    b.set_version(2)?; // X.509 v3
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    let not_before = Asn1Time::from_unix(now - 86_400)?;
    let not_after = Asn1Time::days_from_now(VALIDITY_DAYS)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().code_signing().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Number of Authenticode (`WIN_CERT_TYPE_PKCS_SIGNED_DATA`) certificates
/// in a PE image's attribute certificate table (0 = unsigned).
///
/// The table is located by data directory entry 4 (`IMAGE_DIRECTORY_ENTRY_SECURITY`),
/// whose address, unlike every other directory's, is a file offset; entries
/// are `WIN_CERTIFICATE { dwLength, wRevision, wCertificateType, bCertificate }`,
/// each padded to 8 bytes (PE/COFF spec, "The Attribute Certificate Table").
pub fn signature_count(data: &[u8]) -> Result<usize> {
    check_efi_x86_64(data)?;
    let u16_at = |off: usize| -> Result<u16> {
        Ok(u16::from_le_bytes(
            data.get(off..off + 2)
                .context("PE file truncated")?
                .try_into()?,
        ))
    };
    let u32_at = |off: usize| -> Result<u32> {
        Ok(u32::from_le_bytes(
            data.get(off..off + 4)
                .context("PE file truncated")?
                .try_into()?,
        ))
    };
    let pe = u32_at(0x3c)? as usize;
    let optional = pe + 24;
    // PE32+: NumberOfRvaAndSizes at 108, data directories from 112.
    let n_dirs = u32_at(optional + 108)?;
    if n_dirs <= 4 {
        return Ok(0);
    }
    let (table, size) = (
        u32_at(optional + 112 + 4 * 8)? as usize,
        u32_at(optional + 112 + 4 * 8 + 4)? as usize,
    );
    if table == 0 || size == 0 {
        return Ok(0);
    }
    let end = table
        .checked_add(size)
        .filter(|&e| e <= data.len())
        .context("certificate table runs past the end of the file")?;
    let (mut pos, mut count) = (table, 0);
    while pos + 8 <= end {
        let len = u32_at(pos)? as usize;
        ensure!(
            len >= 8 && pos + len <= end,
            "malformed WIN_CERTIFICATE at {pos:#x}"
        );
        let (rev, kind) = (u16_at(pos + 4)?, u16_at(pos + 6)?);
        ensure!(
            rev == WIN_CERT_REVISION_2_0 && kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA,
            "unexpected WIN_CERTIFICATE revision {rev:#x} type {kind:#x} at {pos:#x}"
        );
        count += 1;
        pos += len.next_multiple_of(8);
    }
    Ok(count)
}

/// Signs EFI binaries with `keys` using `sbsign` from `tools`, and checks
/// each result with `sbverify` from the same tools.
pub struct Signer<'a> {
    tools: &'a dyn Tools,
    keys: &'a KeyPair,
}

impl<'a> Signer<'a> {
    /// A signer running the programs of `tools`.
    pub fn new(tools: &'a dyn Tools, keys: &'a KeyPair) -> Self {
        Self { tools, keys }
    }
}

impl EfiSigner for Signer<'_> {
    fn sign(&self, input: &Path, output: &Path) -> Result<()> {
        sign(self.tools, self.keys, input, output)
    }
}

/// Sign the EFI binary `input` into `output` with `sbsign` from `tools`,
/// verify the result (`sbverify --cert`, one Authenticode signature, still
/// an x86-64 EFI application), and write it atomically. `input` and
/// `output` are paths in cbootc's view; the key only ever exists in a
/// private (0700) directory of the tools' scratch space, removed on return.
pub fn sign(tools: &dyn Tools, keys: &KeyPair, input: &Path, output: &Path) -> Result<()> {
    let data = fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    check_efi_x86_64(&data).with_context(|| format!("{} cannot be signed", input.display()))?;
    let before = signature_count(&data)?;
    ensure!(
        before == 0,
        "{} is already signed ({before} signature(s)); refusing to add another",
        input.display()
    );

    let (work, tool_work) = crate::util::command::work_dir(tools, "sign")?;
    atomic::write_file_mode(&work.path().join("key.pem"), &keys.key_pem()?, 0o600)?;
    fs::write(work.path().join("cert.pem"), keys.cert_pem()?).context("writing the certificate")?;
    fs::write(work.path().join("in.efi"), &data).context("copying the input")?;

    let mut cmd = tools
        .command("sbsign")
        .context("sbsign is needed to sign EFI binaries (package sbsigntool)")?;
    cmd.arg("--key")
        .arg(tool_work.join("key.pem"))
        .arg("--cert")
        .arg(tool_work.join("cert.pem"))
        .arg("--output")
        .arg(tool_work.join("out.efi"))
        .arg(tool_work.join("in.efi"));
    run_command(&mut cmd).with_context(|| format!("signing {}", input.display()))?;
    // The key is not needed any more.
    fs::remove_file(work.path().join("key.pem")).context("removing the key copy")?;

    sbverify(
        tools,
        &tool_work.join("cert.pem"),
        &tool_work.join("out.efi"),
    )
    .with_context(|| format!("checking the signature sbsign made on {}", input.display()))?;
    let signed = fs::read(work.path().join("out.efi")).context("reading sbsign's output")?;
    check_efi_x86_64(&signed).context("sbsign's output")?;
    let count = signature_count(&signed).context("sbsign's output")?;
    ensure!(
        count == 1,
        "sbsign's output for {} has {count} signatures, expected 1",
        input.display()
    );
    atomic::write_file(output, &signed)
}

/// Check that `file` (cbootc's view) carries a valid Authenticode signature
/// by `cert_pem`'s key, with `sbverify` from `tools`.
pub fn verify(tools: &dyn Tools, cert_pem: &[u8], file: &Path) -> Result<()> {
    let (work, tool_work) = crate::util::command::work_dir(tools, "verify")?;
    fs::write(work.path().join("cert.pem"), cert_pem).context("writing the certificate")?;
    fs::copy(file, work.path().join("file.efi"))
        .with_context(|| format!("copying {}", file.display()))?;
    sbverify(
        tools,
        &tool_work.join("cert.pem"),
        &tool_work.join("file.efi"),
    )
    .with_context(|| format!("verifying the signature of {}", file.display()))
}

fn sbverify(tools: &dyn Tools, tool_cert: &Path, tool_file: &Path) -> Result<()> {
    let mut cmd = tools
        .command("sbverify")
        .context("sbverify is needed to check signatures (package sbsigntool)")?;
    cmd.arg("--cert").arg(tool_cert).arg(tool_file);
    let out = run_command(&mut cmd)?;
    // sbverify prints "Signature verification OK" on success (and exits 0).
    ensure!(
        out.contains("Signature verification OK"),
        "sbverify did not report a verified signature: {}",
        out.trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::command::{HostTools, run};
    use std::os::unix::fs::PermissionsExt;

    fn have_sbsigntool() {
        assert!(
            crate::util::command::exists("sbsign") && crate::util::command::exists("sbverify"),
            "these tests need sbsign and sbverify on the host (Debian package sbsigntool)"
        );
    }

    /// An unsigned EFI binary to sign: the host's systemd-boot
    /// (Debian package systemd-boot-efi).
    fn unsigned_efi() -> Vec<u8> {
        let p = Path::new("/usr/lib/systemd/boot/efi/systemd-bootx64.efi");
        let data = fs::read(p)
            .unwrap_or_else(|e| panic!("{}: {e} (install systemd-boot-efi)", p.display()));
        assert_eq!(signature_count(&data).unwrap(), 0);
        data
    }

    #[test]
    fn generated_certificate_is_what_firmware_needs() {
        let kp = KeyPair::generate("cbootc test host").unwrap();
        assert_eq!(kp.subject(), "CN=cbootc test host");
        let dir = tempfile::tempdir().unwrap();
        let (k, c, d) = (
            dir.path().join("sb.key"),
            dir.path().join("sb.crt"),
            dir.path().join("sb.cer"),
        );
        kp.write(&k, &c, &d).unwrap();
        assert_eq!(
            fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&c).unwrap().permissions().mode() & 0o777,
            0o644
        );

        // Independent opinion: the openssl command line.
        let text = run(
            "openssl",
            &["x509", "-in", c.to_str().unwrap(), "-noout", "-text"],
        )
        .unwrap();
        assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
        assert!(
            text.contains("Signature Algorithm: sha256WithRSAEncryption"),
            "{text}"
        );
        assert!(text.contains("Subject: CN = cbootc test host"), "{text}");
        assert!(text.contains("Issuer: CN = cbootc test host"), "{text}");
        assert!(text.contains("Code Signing"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        // DER is the same certificate.
        let der_text = run(
            "openssl",
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                d.to_str().unwrap(),
                "-noout",
                "-text",
            ],
        )
        .unwrap();
        assert_eq!(der_text, text);
        // The key matches the certificate.
        let key_mod = run(
            "openssl",
            &["rsa", "-in", k.to_str().unwrap(), "-noout", "-modulus"],
        )
        .unwrap();
        let cert_mod = run(
            "openssl",
            &["x509", "-in", c.to_str().unwrap(), "-noout", "-modulus"],
        )
        .unwrap();
        assert_eq!(key_mod, cert_mod);
        // Valid for (about) 20 years.
        let end = run(
            "openssl",
            &[
                "x509",
                "-in",
                c.to_str().unwrap(),
                "-noout",
                "-checkend",
                &(19 * 365 * 86_400).to_string(),
            ],
        );
        assert!(end.is_ok(), "certificate expires within 19 years");

        // Loads back, fingerprint stable.
        let back = KeyPair::load(&k, &c).unwrap();
        assert_eq!(back.fingerprint().unwrap(), kp.fingerprint().unwrap());
        let back_der = KeyPair::load(&k, &d).unwrap();
        assert_eq!(back_der.cert_der().unwrap(), kp.cert_der().unwrap());
        assert_eq!(kp.fingerprint().unwrap().len(), 32 * 3 - 1);
    }

    #[test]
    fn two_generated_pairs_differ() {
        let a = KeyPair::generate("x").unwrap();
        let b = KeyPair::generate("x").unwrap();
        assert_ne!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn mismatched_or_weak_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyPair::generate("a").unwrap();
        let b = KeyPair::generate("b").unwrap();
        let ka = dir.path().join("a.key");
        let cb = dir.path().join("b.crt");
        fs::write(&ka, a.key_pem().unwrap()).unwrap();
        fs::write(&cb, b.cert_pem().unwrap()).unwrap();
        let err = KeyPair::load(&ka, &cb).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not for this key"),
            "{err:#}"
        );

        // RSA-1024 (made with the openssl tool).
        let weak = dir.path().join("weak.key");
        let weak_crt = dir.path().join("weak.crt");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:1024",
                "-nodes",
                "-subj",
                "/CN=weak",
                "-days",
                "1",
                "-keyout",
                weak.to_str().unwrap(),
                "-out",
                weak_crt.to_str().unwrap(),
            ],
        )
        .unwrap();
        let err = KeyPair::load(&weak, &weak_crt).unwrap_err();
        assert!(format!("{err:#}").contains("1024 bits"), "{err:#}");

        // EC keys cannot be verified by firmware.
        let ec = dir.path().join("ec.key");
        let ec_crt = dir.path().join("ec.crt");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=ec",
                "-days",
                "1",
                "-keyout",
                ec.to_str().unwrap(),
                "-out",
                ec_crt.to_str().unwrap(),
            ],
        )
        .unwrap();
        let err = KeyPair::load(&ec, &ec_crt).unwrap_err();
        assert!(format!("{err:#}").contains("not an RSA key"), "{err:#}");

        // Garbage.
        let err = KeyPair::load(&cb, &cb).unwrap_err();
        assert!(
            format!("{err:#}").contains("not an unencrypted PEM private key"),
            "{err:#}"
        );
    }

    #[test]
    fn load_or_generate_needs_both_or_neither() {
        let p = Path::new("/x");
        assert!(
            format!(
                "{:#}",
                KeyPair::load_or_generate(Some(p), None, "n").unwrap_err()
            )
            .contains("--sb-key needs --sb-cert")
        );
        assert!(
            format!(
                "{:#}",
                KeyPair::load_or_generate(None, Some(p), "n").unwrap_err()
            )
            .contains("--sb-cert needs --sb-key")
        );
        assert_eq!(
            KeyPair::load_or_generate(None, None, "gen")
                .unwrap()
                .subject(),
            "CN=gen"
        );
        assert!(KeyPair::generate("").is_err());
    }

    #[test]
    fn sign_and_verify_with_host_sbsigntool() {
        have_sbsigntool();
        let tools = HostTools::new().unwrap();
        let kp = KeyPair::generate("cbootc signing test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.efi");
        let output = dir.path().join("out.efi");
        let original = unsigned_efi();
        fs::write(&input, &original).unwrap();
        sign(&tools, &kp, &input, &output).unwrap();

        assert_eq!(fs::read(&input).unwrap(), original, "input untouched");
        let signed = fs::read(&output).unwrap();
        assert_eq!(signature_count(&signed).unwrap(), 1);
        verify(&tools, &kp.cert_pem().unwrap(), &output).unwrap();
        // Nothing (in particular no key) left in the scratch directory.
        assert_eq!(fs::read_dir(tools.scratch().0).unwrap().count(), 0);

        // Independent opinion: sbverify run directly, with the DER cert
        // converted by openssl.
        let pem = dir.path().join("c.pem");
        fs::write(&pem, kp.cert_pem().unwrap()).unwrap();
        let out = run(
            "sbverify",
            &["--cert", pem.to_str().unwrap(), output.to_str().unwrap()],
        )
        .unwrap();
        assert!(out.contains("Signature verification OK"), "{out}");

        // Another key's certificate does not verify it.
        let other = KeyPair::generate("other").unwrap();
        let err = verify(&tools, &other.cert_pem().unwrap(), &output).unwrap_err();
        assert!(format!("{err:#}").contains("sbverify"), "{err:#}");
        // An unsigned file does not verify.
        let err = verify(&tools, &kp.cert_pem().unwrap(), &input).unwrap_err();
        assert!(format!("{err:#}").contains("sbverify"), "{err:#}");

        // Signing twice is refused instead of stacking signatures.
        let err = sign(&tools, &kp, &output, &dir.path().join("again.efi")).unwrap_err();
        assert!(format!("{err:#}").contains("already signed"), "{err:#}");

        // Tampering after signing breaks verification.
        let mut tampered = signed.clone();
        let mid = tampered.len() / 3;
        tampered[mid] ^= 0xff;
        let t = dir.path().join("tampered.efi");
        fs::write(&t, &tampered).unwrap();
        assert!(verify(&tools, &kp.cert_pem().unwrap(), &t).is_err());
    }

    #[test]
    fn signer_refuses_non_efi_input() {
        let tools = HostTools::new().unwrap();
        let kp = KeyPair::generate("x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.efi");
        fs::write(&input, b"not a PE file").unwrap();
        let out = dir.path().join("out.efi");
        let err = Signer::new(&tools, &kp).sign(&input, &out).unwrap_err();
        assert!(format!("{err:#}").contains("no MZ header"), "{err:#}");
        assert!(!out.exists());
    }

    #[test]
    fn signature_table_parsing() {
        let data = unsigned_efi();
        assert_eq!(signature_count(&data).unwrap(), 0);
        assert!(signature_count(b"MZ").is_err());
    }
}

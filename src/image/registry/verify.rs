//! Verifying streams: nothing fetched from a registry counts until its
//! digest is checked.
//!
//! - [`BlobReader`] turns a blob's HTTP body into an `AsyncRead`, hashing
//!   the bytes as they arrive and refusing more than the size the manifest
//!   declares. Its end of stream is reported only after the sha256 matched
//!   the descriptor's digest (OCI image-spec, descriptor.md: "the content
//!   MUST be verified against the digest").
//! - [`DiffIdReader`] hashes a layer's *decompressed* tar as it flows into
//!   `composefs_oci::import_layer`, which does not check it, and fails at
//!   end of stream if it is not the config's `rootfs.diff_ids` entry
//!   (image-spec config.md).
//!
//! Both fail *before* reporting end of stream, so a consumer that only
//! commits after reading to the end (composefs' tar splitter registers a
//! layer stream only after EOF) never commits unverified content. Each
//! remembers the failure, so the caller can report it even when a
//! decompressor turned it into its own error first.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use composefs::digest::{Digest as _, Sha256};
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// Why verified content was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes do not hash to the descriptor's digest.
    #[error("{what}: digest mismatch (got {got})")]
    Digest { what: String, got: String },
    /// More or fewer bytes than the descriptor's size.
    #[error("{what}: size mismatch: the manifest says {expected} bytes, the registry sent {got}")]
    Size {
        what: String,
        expected: u64,
        got: String,
    },
    /// The decompressed layer does not hash to its diff_id.
    #[error(
        "{what}: diff_id mismatch: its uncompressed content is {got}, the image config says {expected}"
    )]
    DiffId {
        what: String,
        expected: String,
        got: String,
    },
}

impl VerifyError {
    fn io(&self) -> std::io::Error {
        std::io::Error::other(self.clone())
    }
}

/// `sha256:<hex>` of a finished hasher.
fn digest_string(h: Sha256) -> String {
    let bytes = h.finalize();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in bytes.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    digest_string(h)
}

/// Check a whole in-memory blob (a manifest) against its expected digest.
pub fn check_bytes(what: &str, data: &[u8], expected: &str) -> Result<(), VerifyError> {
    let got = sha256_digest(data);
    if got == expected {
        Ok(())
    } else {
        Err(VerifyError::Digest {
            what: what.to_string(),
            got,
        })
    }
}

/// State shared by the two readers.
struct Hashing {
    what: String,
    expected: String,
    hasher: Option<Sha256>,
    bytes: u64,
    verified: bool,
    error: Option<VerifyError>,
}

impl Hashing {
    fn new(what: String, expected: String) -> Self {
        Hashing {
            what,
            expected,
            hasher: Some(Sha256::new()),
            bytes: 0,
            verified: false,
            error: None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        self.bytes += data.len() as u64;
    }

    /// Finish the hash; `Some(got)` on a mismatch.
    fn finish(&mut self) -> Option<String> {
        let got = digest_string(self.hasher.take()?);
        if got == self.expected {
            self.verified = true;
            None
        } else {
            Some(got)
        }
    }

    fn fail(&mut self, e: VerifyError) -> std::io::Error {
        let io = e.io();
        self.error = Some(e);
        io
    }
}

/// Something that counts transferred bytes (progress display).
pub type OnBytes = Box<dyn FnMut(u64) + Send>;

/// A blob body as a verified `AsyncRead` (see the module docs).
pub struct BlobReader<S> {
    stream: S,
    chunk: Bytes,
    size: u64,
    state: Hashing,
    on_bytes: OnBytes,
    done: bool,
}

impl<S> BlobReader<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    /// `what` names the blob in errors ("layer sha256:… of REF");
    /// `digest` and `size` come from its descriptor.
    pub fn new(stream: S, what: String, digest: &str, size: u64, on_bytes: OnBytes) -> Self {
        BlobReader {
            stream,
            chunk: Bytes::new(),
            size,
            state: Hashing::new(what, digest.to_string()),
            on_bytes,
            done: false,
        }
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.state.bytes
    }

    /// Whether the whole blob was received and matched its digest.
    pub fn verified(&self) -> bool {
        self.state.verified
    }

    /// The verification failure, if one was seen.
    pub fn error(&self) -> Option<&VerifyError> {
        self.state.error.as_ref()
    }

    /// At the end of the body: check size and digest.
    fn finish(&mut self) -> std::io::Result<()> {
        if self.state.bytes != self.size {
            let e = VerifyError::Size {
                what: self.state.what.clone(),
                expected: self.size,
                got: self.state.bytes.to_string(),
            };
            return Err(self.state.fail(e));
        }
        match self.state.finish() {
            None => Ok(()),
            Some(got) => {
                let e = VerifyError::Digest {
                    what: self.state.what.clone(),
                    got,
                };
                Err(self.state.fail(e))
            }
        }
    }

    /// Pull the next chunk from the body into `self.chunk`. `Ok(false)` is
    /// a verified end of stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        if self.done {
            return Poll::Ready(Ok(false));
        }
        if let Some(e) = &self.state.error {
            return Poll::Ready(Err(e.io()));
        }
        match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(chunk)) => {
                if self.state.bytes + chunk.len() as u64 > self.size {
                    // Never read past the declared size: a registry cannot
                    // make cbootc store (or wait for) an endless blob.
                    let e = VerifyError::Size {
                        what: self.state.what.clone(),
                        expected: self.size,
                        got: format!("more than {}", self.size),
                    };
                    return Poll::Ready(Err(self.state.fail(e)));
                }
                self.state.update(&chunk);
                (self.on_bytes)(chunk.len() as u64);
                self.chunk = chunk;
                Poll::Ready(Ok(true))
            }
            Some(Err(e)) => {
                // oci-client's own verifying stream fails at the end of a
                // blob whose digest is wrong; say it in cbootc's words.
                if self.state.bytes == self.size
                    && let Some(got) = self.state.finish()
                {
                    let v = VerifyError::Digest {
                        what: self.state.what.clone(),
                        got,
                    };
                    return Poll::Ready(Err(self.state.fail(v)));
                }
                Poll::Ready(Err(e))
            }
            None => {
                self.finish()?;
                self.done = true;
                Poll::Ready(Ok(false))
            }
        }
    }
}

impl<S> AsyncRead for BlobReader<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            if !ready!(this.poll_chunk(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// A decompressed layer, hashed against its diff_id (see the module docs).
pub struct DiffIdReader<R> {
    inner: R,
    state: Hashing,
}

impl<R: AsyncRead + Unpin> DiffIdReader<R> {
    pub fn new(inner: R, what: String, diff_id: &str) -> Self {
        DiffIdReader {
            inner,
            state: Hashing::new(what, diff_id.to_string()),
        }
    }

    /// Whether the whole stream was read and matched the diff_id.
    pub fn verified(&self) -> bool {
        self.state.verified
    }

    /// The verification failure, if one was seen.
    pub fn error(&self) -> Option<&VerifyError> {
        self.state.error.as_ref()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DiffIdReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = &this.state.error {
            return Poll::Ready(Err(e.io()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            // End of stream: only now may the consumer see EOF, and only
            // if the content is what the config says.
            if this.state.hasher.is_some()
                && let Some(got) = this.state.finish()
            {
                let e = VerifyError::DiffId {
                    what: this.state.what.clone(),
                    expected: this.state.expected.clone(),
                    got,
                };
                return Poll::Ready(Err(this.state.fail(e)));
            }
        } else {
            this.state.update(new);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunks(data: &[u8], n: usize) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin {
        let v: Vec<std::io::Result<Bytes>> = data
            .chunks(n)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(v)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_digest(b"hello"),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(check_bytes("m", b"hello", &sha256_digest(b"hello")).is_ok());
        let e = check_bytes("manifest of x", b"hellO", &sha256_digest(b"hello")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("manifest of x: digest mismatch (got sha256:")
        );
    }

    #[test]
    fn blob_ok_and_counts() {
        let data = vec![7u8; 100_000];
        let d = sha256_digest(&data);
        let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c2 = counted.clone();
        let mut r = BlobReader::new(
            chunks(&data, 4096),
            "layer x".into(),
            &d,
            data.len() as u64,
            Box::new(move |n| {
                c2.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }),
        );
        let mut out = Vec::new();
        rt().block_on(r.read_to_end(&mut out)).unwrap();
        assert_eq!(out, data);
        assert!(r.verified());
        assert_eq!(r.bytes(), 100_000);
        assert_eq!(counted.load(std::sync::atomic::Ordering::Relaxed), 100_000);
    }

    #[test]
    fn blob_tampered_fails_before_eof() {
        let data = vec![7u8; 10_000];
        let d = sha256_digest(&data);
        let mut bad = data.clone();
        bad[5000] ^= 1;
        let mut r = BlobReader::new(
            chunks(&bad, 1000),
            "layer sha256:aa of r".into(),
            &d,
            10_000,
            Box::new(|_| {}),
        );
        let mut out = Vec::new();
        let e = rt().block_on(r.read_to_end(&mut out)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("layer sha256:aa of r: digest mismatch (got sha256:"),
            "{msg}"
        );
        assert!(!r.verified());
        assert!(matches!(r.error(), Some(VerifyError::Digest { .. })));
    }

    #[test]
    fn blob_size_limits() {
        let data = vec![1u8; 1000];
        let d = sha256_digest(&data);
        let mut r = BlobReader::new(chunks(&data, 300), "b".into(), &d, 999, Box::new(|_| {}));
        let e = rt().block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        assert!(e.to_string().contains("more than 999"), "{e}");
        let mut r = BlobReader::new(chunks(&data, 300), "b".into(), &d, 1001, Box::new(|_| {}));
        let e = rt().block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        assert!(e.to_string().contains("says 1001 bytes"), "{e}");
    }

    #[test]
    fn inner_error_after_all_bytes_becomes_a_digest_error() {
        let data = vec![3u8; 10];
        let mut items: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from(data.clone()))];
        items.push(Err(std::io::Error::other("their digest error")));
        let mut r = BlobReader::new(
            futures_util::stream::iter(items),
            "layer l".into(),
            &sha256_digest(b"something else"),
            10,
            Box::new(|_| {}),
        );
        let e = rt().block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        assert!(e.to_string().contains("layer l: digest mismatch"), "{e}");
    }

    #[test]
    fn diff_id() {
        let data = vec![9u8; 50_000];
        let good = sha256_digest(&data);
        let mut r = DiffIdReader::new(&data[..], "layer l".into(), &good);
        let mut out = Vec::new();
        rt().block_on(r.read_to_end(&mut out)).unwrap();
        assert!(r.verified());
        assert_eq!(out.len(), 50_000);

        let mut r = DiffIdReader::new(&data[..], "layer l".into(), &sha256_digest(b"x"));
        let e = rt().block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        assert!(e.to_string().contains("layer l: diff_id mismatch"), "{e}");
        assert!(!r.verified());
        assert!(matches!(r.error(), Some(VerifyError::DiffId { .. })));
    }
}

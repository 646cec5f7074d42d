//! A PUT body checked against its declared SHA-256 as it streams, so that a refused body
//! never replaces the object.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use s3s::dto::StreamingBlob;
use s3s::S3Result;
use sha2::Digest as _;

/// s3s-fs stores the bytes before it compares a declared SHA-256, so a refused PUT would
/// still replace the object: with a declared SHA-256 (base64), the body is checked as it
/// streams instead, and fails before the store keeps anything. The check tells whether it did.
pub(super) fn check_body(body: &mut Option<StreamingBlob>, declared: Option<&str>) -> DigestCheck {
    let mismatch = Arc::new(AtomicBool::new(false));
    let expected =
        declared.and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    if let Some(expected) = expected {
        *body = body.take().map(|inner| {
            StreamingBlob::new(CheckedBody {
                inner,
                hasher: sha2::Sha256::new(),
                expected,
                mismatch: Arc::clone(&mismatch),
                ended: false,
            })
        });
    }
    DigestCheck(mismatch)
}

/// Whether a body given to [`check_body`] failed its check.
pub(super) struct DigestCheck(Arc<AtomicBool>);

impl DigestCheck {
    /// BadDigest, as S3 answers, if the body failed its check; else the store's own answer.
    pub(super) fn answer<T>(&self, answer: S3Result<T>) -> S3Result<T> {
        if self.0.load(Ordering::SeqCst) {
            return Err(s3s::s3_error!(BadDigest, "checksum_sha256 mismatch"));
        }
        answer
    }
}

/// A PUT body that hashes what passes and, at its end, fails if the SHA-256 is not the one
/// declared, so that the store drops its temporary file instead of keeping the bytes.
struct CheckedBody {
    inner: StreamingBlob,
    hasher: sha2::Sha256,
    expected: Vec<u8>,
    mismatch: Arc<AtomicBool>,
    ended: bool,
}

impl futures::Stream for CheckedBody {
    type Item = Result<bytes::Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_next(cx));
        std::task::Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.hasher.update(&chunk);
                Some(Ok(chunk))
            }
            Some(Err(e)) => Some(Err(e)),
            None if self.ended => None,
            None => {
                self.ended = true;
                let digest = self.hasher.finalize_reset();
                if digest.as_slice() == self.expected.as_slice() {
                    None
                } else {
                    self.mismatch.store(true, Ordering::SeqCst);
                    Some(Err("the body's SHA-256 is not the declared one".into()))
                }
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        futures::Stream::size_hint(&self.inner)
    }
}

impl s3s::stream::ByteStream for CheckedBody {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        self.inner.remaining_length()
    }
}

//! SHA-256 of a stored object, streamed with bounded memory; a large one is hashed on a
//! thread of its own while its next ranges arrive.

use futures::StreamExt as _;
use sha2::{Digest, Sha256};

use super::error::error_chain;
use super::read::READ_IDLE_TIMEOUT;
use super::{BlobError, BlobStore, OpenObject};

/// The result of streaming an object through SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedObject {
    pub sha256_hex: String,
    pub bytes: u64,
}

impl BlobStore {
    /// Streams the object through SHA-256 with bounded memory, reporting bytes hashed so far.
    pub async fn sha256(
        &self,
        key: &str,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<HashedObject, BlobError> {
        self.open(key).await?.sha256(progress).await
    }
}

impl OpenObject {
    /// Reads the body through SHA-256 with bounded memory, reporting bytes hashed so far.
    /// A large object's first range comes from this GET's body; the rest arrive as ranged
    /// GETs of the same version, several at once, and are hashed in order.
    pub async fn sha256(
        self,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<HashedObject, BlobError> {
        let OpenObject {
            head,
            key,
            mut body,
            store,
            ranges,
        } = self;
        let ranged = head.size >= ranges.from && ranges.range > 0;
        let first = if ranged { ranges.range } else { head.size };
        let mut hasher = Hasher::new(head.size);
        let mut bytes: u64 = 0;
        while bytes < first {
            let next = tokio::time::timeout(READ_IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| {
                    BlobError::Transient(format!(
                        "no data for {}s while reading {key} after {bytes} bytes",
                        READ_IDLE_TIMEOUT.as_secs()
                    ))
                })?;
            let Some(chunk) = next else { break };
            let mut chunk = chunk.map_err(|e| {
                BlobError::Transient(format!(
                    "reading {key} failed after {bytes} bytes: {}",
                    error_chain(&e)
                ))
            })?;
            // Only the first range is taken from this body; the ranged GETs bring the rest.
            let room = usize::try_from(first - bytes).unwrap_or(usize::MAX);
            if chunk.len() > room {
                chunk.truncate(room);
            }
            bytes += chunk.len() as u64;
            hasher.update(chunk).await?;
            progress(bytes);
        }
        // Dropping the body ends that response early.
        drop(body);
        if ranged && bytes == first {
            let mut arriving = futures::stream::iter(ranges.rest(head.size))
                .map(|(start, end)| store.range(&key, &head.etag, start, end))
                .buffered(ranges.in_flight.max(1));
            while let Some(chunks) = arriving.next().await {
                let chunks = chunks?;
                bytes += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                hasher.update_all(chunks).await?;
                progress(bytes);
            }
        }
        if bytes != head.size {
            return Err(BlobError::Transient(format!(
                "body of {key} ended at {bytes} of {} bytes",
                head.size
            )));
        }
        Ok(HashedObject {
            sha256_hex: hasher.finish().await?,
            bytes,
        })
    }
}

/// Objects from this size are hashed on a thread of their own while the next bytes arrive.
const HASH_ON_A_THREAD_FROM: u64 = 8 << 20;
/// Batches received and not hashed yet, at most: with the ranges in flight, what bounds a
/// large object's memory. A batch is a range, or about [`BATCH_BYTES`] of a streamed body.
const BATCHES_AHEAD: usize = 1;
/// Chunks of a streamed body go to the hashing thread in batches of about this many bytes:
/// one hand-over per chunk (tens of KiB) would cost a wake-up of the thread each.
const BATCH_BYTES: usize = 1 << 20;

/// SHA-256 of a body arriving in chunks: inline for small objects; for large ones on a
/// blocking thread fed batches of chunks through a bounded channel, so receiving and
/// hashing overlap.
enum Hasher {
    Inline(Sha256),
    Thread {
        batches: tokio::sync::mpsc::Sender<Vec<bytes::Bytes>>,
        pending: Vec<bytes::Bytes>,
        pending_bytes: usize,
        digest: tokio::task::JoinHandle<String>,
    },
}

impl Hasher {
    fn new(size: u64) -> Hasher {
        if size < HASH_ON_A_THREAD_FROM {
            return Hasher::Inline(Sha256::new());
        }
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(BATCHES_AHEAD);
        let digest = tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    sha.update(&chunk);
                }
            }
            hex::encode(sha.finalize())
        });
        Hasher::Thread {
            batches,
            pending: Vec::new(),
            pending_bytes: 0,
            digest,
        }
    }

    /// One chunk of a streamed body.
    async fn update(&mut self, chunk: bytes::Bytes) -> Result<(), BlobError> {
        match self {
            Hasher::Inline(sha) => {
                sha.update(&chunk);
                Ok(())
            }
            Hasher::Thread {
                pending,
                pending_bytes,
                ..
            } => {
                *pending_bytes += chunk.len();
                pending.push(chunk);
                if *pending_bytes >= BATCH_BYTES {
                    self.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// The chunks of a whole range, handed over at once.
    async fn update_all(&mut self, chunks: Vec<bytes::Bytes>) -> Result<(), BlobError> {
        self.flush().await?;
        match self {
            Hasher::Inline(sha) => {
                for chunk in &chunks {
                    sha.update(chunk);
                }
                Ok(())
            }
            Hasher::Thread { batches, .. } => batches
                .send(chunks)
                .await
                .map_err(|_| BlobError::Transient("the hashing thread stopped".into())),
        }
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        if let Hasher::Thread {
            batches,
            pending,
            pending_bytes,
            ..
        } = self
        {
            if !pending.is_empty() {
                *pending_bytes = 0;
                batches
                    .send(std::mem::take(pending))
                    .await
                    .map_err(|_| BlobError::Transient("the hashing thread stopped".into()))?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<String, BlobError> {
        self.flush().await?;
        match self {
            Hasher::Inline(sha) => Ok(hex::encode(sha.finalize())),
            Hasher::Thread {
                batches, digest, ..
            } => {
                drop(batches);
                digest
                    .await
                    .map_err(|e| BlobError::Transient(format!("the hashing thread failed: {e}")))
            }
        }
    }
}

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use crate::blob::embedded::test_support::{hash, patterned, sha256_hex, Harness};
    use crate::blob::{BlobError, RangedRead};

    #[tokio::test]
    async fn a_large_object_is_hashed_from_ranges_read_side_by_side() {
        // Not a multiple of the range, so the last range is short; the larger is hashed on
        // a thread of its own (ranges handed over whole), the smaller inline.
        for size in [3 * 1024 * 1024 + 12_345, 9 * 1024 * 1024 + 777] {
            hashed_from_ranges(size).await;
        }
    }

    async fn hashed_from_ranges(size: usize) {
        let h = Harness::new().await;
        let body = patterned(size);
        h.upload("big/ranged", "application/octet-stream", body.clone())
            .await;
        let ranges = RangedRead {
            from: 1024 * 1024,
            range: 256 * 1024,
            in_flight: 3,
        };
        for ranges in [
            ranges,
            RangedRead {
                in_flight: 1,
                ..ranges
            },
        ] {
            let opened = h.store.open("big/ranged").await.unwrap();
            let mut seen = Vec::new();
            let hashed = opened
                .with_ranges(ranges)
                .sha256(&mut |n| seen.push(n))
                .await
                .unwrap();
            assert_eq!(hashed.sha256_hex, sha256_hex(&body));
            assert_eq!(hashed.bytes, body.len() as u64);
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
            assert!(
                seen.contains(&(256 * 1024 * 2)),
                "progress per range: {seen:?}"
            );
            assert_eq!(seen.last().copied(), Some(body.len() as u64));
        }
    }

    #[tokio::test]
    async fn an_object_replaced_while_its_ranges_are_read_fails_transiently() {
        let h = Harness::new().await;
        let body = patterned(2 * 1024 * 1024);
        h.upload("big/moving", "application/octet-stream", body.clone())
            .await;
        let opened = h
            .store
            .open("big/moving")
            .await
            .unwrap()
            .with_ranges(RangedRead {
                from: 1024 * 1024,
                range: 512 * 1024,
                in_flight: 2,
            });
        // Another version lands after the GET answered: its ranges no longer match the ETag.
        let mut other = body.clone();
        other[0] ^= 1;
        h.upload("big/moving", "application/octet-stream", other)
            .await;
        match opened.sha256(&mut |_| {}).await {
            Err(BlobError::Transient(_)) => {}
            Err(other) => panic!("expected a transient failure, got {other:?}"),
            Ok(_) => panic!("a mix of two versions must not hash"),
        }
    }

    #[tokio::test]
    async fn multi_mib_object_hashes_correctly() {
        let h = Harness::new().await;
        let body = patterned(8 * 1024 * 1024);
        h.upload("big/8mib", "application/octet-stream", body.clone())
            .await;

        let (hashed, seen) = hash(&h, "big/8mib").await;
        let hashed = hashed.unwrap();
        assert_eq!(hashed.sha256_hex, sha256_hex(&body));
        assert_eq!(hashed.bytes, body.len() as u64);
        assert!(seen.len() > 1, "progress should be reported per chunk");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen.last().copied(), Some(body.len() as u64));
    }
}

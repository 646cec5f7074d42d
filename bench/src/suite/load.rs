//! The load the phases put on the service: uploads staged by the thousand, and confirmed
//! from many clients at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use serde_json::json;

use crate::Client;

impl Client {
    /// Creates `count` uploads (100 per request) and PUTs distinct random content of `size`
    /// bytes to each; returns their ids in order. `verified` uploads declare their SHA-256
    /// with `enforce_file_hash`, and are PUT with the headers that signs.
    pub(crate) async fn stage(
        &self,
        bucket: &str,
        count: usize,
        size: usize,
        verified: bool,
    ) -> anyhow::Result<Vec<String>> {
        let mut base = vec![0u8; size];
        rand::rngs::StdRng::from_entropy().fill_bytes(&mut base);
        // Distinct content, so that no upload is a duplicate of another.
        let body_of = |i: usize| {
            let mut body = base.clone();
            let stamp = (i as u64).to_le_bytes();
            body[..stamp.len().min(size)].copy_from_slice(&stamp[..stamp.len().min(size)]);
            body
        };
        let body_of = &body_of;
        let created: Vec<Vec<serde_json::Value>> = futures::stream::iter((0..count).step_by(100))
            .map(|first| {
                let n = (count - first).min(100);
                let items = (first..first + n)
                    .map(|i| {
                        let mut item = json!({"filename": format!("f{i}.bin"),
                                "content_type": crate::OCTETS});
                        if verified {
                            item["file_hash"] = json!(hex::encode(
                                <sha2::Sha256 as sha2::Digest>::digest(body_of(i))
                            ));
                            item["enforce_file_hash"] = json!(true);
                        }
                        item
                    })
                    .collect();
                self.create_batch_items(bucket, items)
            })
            .buffered(4)
            .try_collect()
            .await?;
        let created: Vec<serde_json::Value> = created.into_iter().flatten().collect();
        futures::stream::iter(created.iter().enumerate())
            .map(|(i, upload)| async move {
                let url = upload["presigned_url"].as_str().context("presigned_url")?;
                let mut put = self.http.put(url).body(Bytes::from(body_of(i)));
                for (name, value) in upload["upload_headers"].as_object().into_iter().flatten() {
                    put = put.header(name, value.as_str().unwrap_or_default());
                }
                put.send().await?.error_for_status()?;
                anyhow::Ok(())
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        created
            .iter()
            .map(|u| Ok(u["upload_id"].as_str().context("upload_id")?.to_owned()))
            .collect()
    }

    /// Confirms each upload, `clients` at once; each answer must have `status`. Returns the
    /// time each confirm request took.
    pub(crate) async fn confirm_all(
        &self,
        bucket: &str,
        ids: &[String],
        clients: usize,
        run_async: bool,
        status: &str,
    ) -> anyhow::Result<Vec<Duration>> {
        let next = AtomicUsize::new(0);
        let runners = (0..clients).map(|_| async {
            let mut timings = Vec::new();
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                let started = Instant::now();
                let answer = self.confirm(bucket, id, run_async).await?;
                timings.push(started.elapsed());
                if answer["status"] != status {
                    bail!("confirm of {id} answered {answer}, not {status}");
                }
            }
            anyhow::Ok(timings)
        });
        let per_client = futures::future::try_join_all(runners).await?;
        Ok(per_client.into_iter().flatten().collect())
    }
}

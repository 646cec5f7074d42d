//! The confirm pipeline of spec §3.3, as a worker runs it: start, verify, hash, finish.
//! It answers in the domain's terms ([`Failure`]); the API alone turns those into HTTP.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backoff::ExponentialBackoff;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;

use super::grouping::{GroupError, Grouper};
use super::lease::LeaseSlot;
use super::turns::FairTurns;
use crate::blob::{BlobError, BlobStore};
use crate::domain::{
    check_quota, unquote_etag, ConfirmOptions, ContentHash, Failure, QuotaExceeded, UploadKeys,
    UploadStatus,
};
use crate::queue::{ConfirmJob, Lane};
use crate::service::config::HashPolicy;
use crate::store::completion::{self, Completion, Finish, Grouped, TaskOutputs, Verified};
use crate::store::start::{self, JobRef, Start, Started};
use crate::store::{endings, tasks, BatchDestination, NamespaceRow, UploadRow};

/// A step that failed: for good, or worth another try.
#[derive(Debug)]
pub(super) enum StepError {
    Permanent(Failure),
    Transient(String),
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> Self {
        StepError::Transient(format!("database: {e}"))
    }
}

impl From<BlobError> for StepError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => StepError::Permanent(Failure::mismatch(
                "object_not_found",
                "the object was not found in storage: upload it to the presigned URL first",
                Value::from("object exists"),
                Value::Null,
            )),
            BlobError::Rejected(msg) => StepError::Permanent(Failure::StorageRejected(msg)),
            // Changed under the confirmation: a new attempt verifies it again.
            BlobError::Changed(msg) => StepError::Transient(format!("storage: {msg}")),
            BlobError::Transient(msg) => StepError::Transient(format!("storage: {msg}")),
        }
    }
}

impl From<GroupError> for StepError {
    fn from(e: GroupError) -> Self {
        StepError::Transient(e.to_string())
    }
}

/// A job that could not finish now; the message goes back to the broker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retryable(pub String);

/// What became of a job the worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// It reached a terminal state (now or before): settle the message.
    Done,
    /// The message names no task of this service: it belongs in the dead-letter queue.
    UnknownTask,
}

/// Finishes a worker process's plain confirmations in groups (see [`completion::complete`]).
pub type Committer = Grouper<Completion, Finish>;

/// Starts a worker process's jobs in groups (see [`start::start`]).
pub type Starter = Grouper<JobRef, Start>;

/// The grouped database steps of one worker process.
pub fn grouped_steps(
    pool: &PgPool,
    outputs: TaskOutputs,
    batches: &BatchDestination,
) -> (Starter, Committer) {
    let for_starts = pool.clone();
    let starter = Grouper::spawn("start", move |jobs: Vec<JobRef>| {
        let pool = for_starts.clone();
        async move { start::start(&pool, &jobs).await.map(Some) }
    });
    let for_completions = pool.clone();
    let batches = batches.clone();
    let committer = Grouper::spawn("complete", move |completions: Vec<Completion>| {
        let pool = for_completions.clone();
        let batches = batches.clone();
        async move {
            Ok(
                match completion::complete(&pool, &completions, &outputs, &batches).await? {
                    Grouped::Done(finishes) => Some(finishes),
                    Grouped::OneByOne => None,
                },
            )
        }
    });
    (starter, committer)
}

/// One run of a started job: what it confirms, and where.
#[derive(Clone, Copy)]
struct Run<'a> {
    job: &'a ConfirmJob,
    lane: Lane,
    upload: &'a UploadRow,
    namespace: &'a NamespaceRow,
    options: &'a ConfirmOptions,
    lease: &'a Mutex<LeaseSlot>,
}

/// Everything a worker needs to run confirmations.
#[derive(Clone)]
pub struct Pipeline {
    pub pool: PgPool,
    pub blob: BlobStore,
    pub hash_policy: HashPolicy,
    pub async_threshold_bytes: i64,
    pub retry_budget: Duration,
    pub batches: BatchDestination,
    /// How the ends of confirmations are written into their tasks' outputs.
    pub outputs: TaskOutputs,
    /// Objects from this size are held by a renewed lease in the database while hashed.
    pub lease_from_bytes: i64,
    pub lease: Duration,
    /// The bulk lane's grouped steps.
    pub starter: Starter,
    pub committer: Committer,
    /// The interactive lane's own grouped steps: a sync confirm never waits for a bulk
    /// group to commit before its own starts.
    pub interactive_steps: (Starter, Committer),
    /// Turns at the object store for bulk jobs: only so many bulk jobs read, copy or hash
    /// at once; the rest wait here, served round-robin over their namespaces. Interactive
    /// jobs take no turn, so their requests to the store queue behind these few rather
    /// than behind every bulk job the worker holds.
    pub bulk_store_turns: Arc<FairTurns>,
}

impl Pipeline {
    /// Runs one job to a terminal state, or says it must be retried later.
    /// A job whose task is already terminal (a redelivery, a cancel) changes nothing.
    /// `leased` is told when the job moves from the broker's hands to a database lease.
    pub async fn run(
        &self,
        job: &ConfirmJob,
        lane: Lane,
        leased: Option<oneshot::Sender<()>>,
    ) -> Result<Ran, Retryable> {
        // While a client waits on this one, bulk jobs hold back their store work.
        let _yielding = (lane == Lane::Interactive).then(|| self.bulk_store_turns.interactive());
        let started = match self.start(job, lane).await? {
            Start::Started(started) => started,
            Start::Terminal => {
                tracing::debug!("task already terminal; nothing to do");
                return Ok(Ran::Done);
            }
            Start::Unknown => return Ok(Ran::UnknownTask),
        };
        let lease = Mutex::new(LeaseSlot::new(leased));
        let options: ConfirmOptions = serde_json::from_value(
            started
                .inputs
                .get("options")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .unwrap_or_default();
        let outcome = match check_started(job, *started) {
            Err(failure) => Err(StepError::Permanent(failure)),
            Ok((upload, namespace)) => {
                let run = Run {
                    job,
                    lane,
                    upload: &upload,
                    namespace: &namespace,
                    options: &options,
                    lease: &lease,
                };
                self.attempt_with_retries(&run).await
            }
        };
        // Whatever happened, this run renews nothing any more.
        lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release();
        self.record(job, outcome).await
    }

    /// Starts the job's task (in the lane's group), reading what its run needs.
    async fn start(&self, job: &ConfirmJob, lane: Lane) -> Result<Start, Retryable> {
        let request = JobRef {
            task_id: job.task_id.clone(),
            upload_id: job.upload_id.clone(),
        };
        let grouped = self
            .steps(lane)
            .0
            .run(request.clone())
            .await
            .map_err(|e| Retryable(e.to_string()))?;
        Ok(match grouped {
            Some(started) => started,
            None => start::start(&self.pool, &[request])
                .await
                .map_err(|e| Retryable(format!("database: {e}")))?
                .pop()
                .unwrap_or(Start::Unknown),
        })
    }

    /// Attempts the run until it succeeds, fails for good, or the retry budget is spent.
    async fn attempt_with_retries(&self, run: &Run<'_>) -> Result<Option<&'static str>, StepError> {
        let policy = ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: Some(self.retry_budget),
            ..ExponentialBackoff::default()
        };
        backoff::future::retry_notify(
            policy,
            || async {
                self.attempt(run).await.map_err(|e| match e {
                    StepError::Permanent(err) => {
                        backoff::Error::permanent(StepError::Permanent(err))
                    }
                    transient => backoff::Error::transient(transient),
                })
            },
            |err, wait: Duration| {
                metrics::counter!(crate::service::metrics::RETRIES).increment(1);
                tracing::warn!(error = ?err, ?wait, "confirmation step failed; retrying")
            },
        )
        .await
    }

    /// Records how the run ended: counted when completed, the task failed for good, or
    /// interrupted and handed back to the broker.
    async fn record(
        &self,
        job: &ConfirmJob,
        outcome: Result<Option<&'static str>, StepError>,
    ) -> Result<Ran, Retryable> {
        match outcome {
            Ok(Some(reason)) => {
                crate::service::metrics::confirmations("completed", reason, 1);
                tracing::info!(reason, "confirmation completed");
                Ok(Ran::Done)
            }
            Ok(None) => Ok(Ran::Done),
            Err(StepError::Permanent(failure)) => {
                let text = failure.to_string();
                let outputs = (self.outputs.failed)(&job.upload_id, &failure);
                let end = endings::TaskEnd {
                    task_id: &job.task_id,
                    status: crate::domain::TaskStatus::Failed,
                    error: Some(&text),
                    outputs: &outputs,
                };
                let ended = endings::fail(&self.pool, &job.upload_id, end)
                    .await
                    .map_err(|e| Retryable(format!("database: {e}")))?;
                if ended {
                    crate::service::metrics::confirmations("failed", failure.reason(), 1);
                }
                tracing::info!(error = %text, "confirmation failed");
                Ok(Ran::Done)
            }
            Err(StepError::Transient(msg)) => {
                if let Err(e) = tasks::interrupt(&self.pool, &job.task_id, &msg).await {
                    tracing::warn!(error = %e, "could not mark the task interrupted");
                }
                Err(Retryable(msg))
            }
        }
    }

    /// The grouped steps a lane's jobs take.
    fn steps(&self, lane: Lane) -> (&Starter, &Committer) {
        match lane {
            Lane::Interactive => (&self.interactive_steps.0, &self.interactive_steps.1),
            Lane::Bulk => (&self.starter, &self.committer),
        }
    }

    /// One attempt at steps 1–9; answers why it completed, or `None` when someone else
    /// ended it meanwhile.
    async fn attempt(&self, run: &Run<'_>) -> Result<Option<&'static str>, StepError> {
        let (verified, keys) = self.verify_and_hash(run).await?;
        // Step 5: quota, checked here and enforced again atomically when usage grows.
        check_quota(&run.namespace.limits(), verified.size)
            .map_err(|q| StepError::Permanent(q.into()))?;
        self.finish(run, verified, &keys).await
    }

    /// Steps 1–4: the object verified, kept, and hashed.
    async fn verify_and_hash(&self, run: &Run<'_>) -> Result<(Verified, UploadKeys), StepError> {
        let Run {
            job,
            lane,
            upload,
            namespace,
            options,
            lease,
        } = *run;
        // Steps 1–3: the object exists, with the ETag and size the client gave; then the
        // verified version is copied where no presigned URL can overwrite it, and what is
        // hashed and recorded is that copy. An upload in parts is assembled at the confirmed
        // key instead, and a hash-verified one stays where it is: nothing to copy.
        let store_turn = match lane {
            Lane::Bulk => Some(self.bulk_store_turns.take(&namespace.id).await),
            Lane::Interactive => None,
        };
        let keys = UploadKeys::of(&upload.s3_key);
        let (head, object_key) = match &upload.multipart_upload_id {
            Some(multipart_id) => (
                self.assemble(upload, multipart_id, &keys, options).await?,
                keys.confirmed.clone(),
            ),
            None => self.verify_and_keep(&keys, upload, options).await?,
        };
        // A full-object SHA-256 that S3 checked when the bytes were PUT holds for the copy,
        // made of the same version (same ETag): then no bytes are read.
        let checked_sha256 = match self.hash_policy {
            HashPolicy::Sha256 => head
                .sha256_hex
                .as_deref()
                .and_then(|h| ContentHash::parse(h).ok()),
            HashPolicy::Etag => None,
        };
        let (copied, body) = match (self.hash_policy, &checked_sha256) {
            (HashPolicy::Etag, _) | (HashPolicy::Sha256, Some(_)) => (head.clone(), None),
            (HashPolicy::Sha256, None) => {
                let object = self.blob.open(&object_key).await?;
                if object.head.size != head.size {
                    return Err(StepError::Transient(format!(
                        "the copy of {} has {} bytes, not the {} verified",
                        keys.staging, object.head.size, head.size
                    )));
                }
                (object.head.clone(), Some(object))
            }
        };
        let size = i64::try_from(head.size).unwrap_or(i64::MAX);
        if size >= self.lease_from_bytes {
            self.take_lease(&job.task_id, lease).await?;
        }
        if size >= self.async_threshold_bytes {
            // A sync caller waiting on this task moves to the async answer.
            self.report_progress(&job.task_id, 0, head.size).await?;
        }

        // Step 4: the content hash.
        let content_hash = match checked_sha256 {
            Some(hash) => hash,
            None => self.content_hash(&job.task_id, &copied, body).await?,
        };
        if size >= self.async_threshold_bytes {
            self.report_progress(&job.task_id, head.size, head.size)
                .await?;
        }
        if let Some(declared) = &upload.file_hash {
            if self.hash_policy == HashPolicy::Sha256 && declared != content_hash.as_str() {
                return Err(StepError::Permanent(Failure::mismatch(
                    "hash_mismatch",
                    "the object's SHA-256 differs from the declared file_hash",
                    Value::from(declared.as_str()),
                    Value::from(content_hash.as_str()),
                )));
            }
        }

        drop(store_turn);
        let verified = Verified {
            content_hash: content_hash.as_str().to_owned(),
            size,
            etag: unquote_etag(&head.etag).to_owned(),
            s3_key: object_key,
        };
        Ok((verified, keys))
    }

    /// Steps 6–9, in one transaction: alone, or in the lane's group.
    async fn finish(
        &self,
        run: &Run<'_>,
        verified: Verified,
        keys: &UploadKeys,
    ) -> Result<Option<&'static str>, StepError> {
        let Run {
            job,
            lane,
            upload,
            namespace,
            options,
            ..
        } = *run;
        let size = verified.size;
        let completion = Completion {
            task_id: job.task_id.clone(),
            upload_id: upload.id.clone(),
            verified,
            submit_batch: options.auto_submit_batch,
        };
        // A batch submission or a quota is decided per confirmation; the rest go in groups.
        let grouped = if options.auto_submit_batch || namespace.storage_quota_bytes.is_some() {
            None
        } else {
            self.steps(lane).1.run(completion.clone()).await?
        };
        let finished = match grouped {
            Some(finished) => finished,
            None => {
                completion::complete_one(&self.pool, &completion, &self.outputs, &self.batches)
                    .await?
            }
        };
        if matches!(finished, Finish::Completed(_))
            && completion.verified.s3_key != keys.staging
            && upload.multipart_upload_id.is_none()
        {
            // The URL's object is no longer needed; a left-over one wastes space, nothing more.
            if let Err(err) = self.blob.delete(&keys.staging).await {
                tracing::warn!(key = %keys.staging, error = %err, "could not delete a confirmed upload's staging object");
            }
        }
        match finished {
            // Why it completed, as the confirmations series counts it.
            Finish::Completed(upload) => Ok(Some(if upload.is_duplicate {
                "duplicate"
            } else if upload.object_id.is_some() {
                "object_created"
            } else {
                "confirmed"
            })),
            // Ended meanwhile by someone else (a cancel, a redelivery), who counted it.
            Finish::Stale => Ok(None),
            Finish::QuotaExceeded { current, limit } => Err(StepError::Permanent(
                QuotaExceeded::storage(size, current, limit).into(),
            )),
        }
    }
}

/// The upload a started job confirms, and its namespace; an error when the job no longer
/// applies to them, which no retry changes.
fn check_started(job: &ConfirmJob, started: Started) -> Result<(UploadRow, NamespaceRow), Failure> {
    let upload = started.upload.ok_or(Failure::Gone("upload"))?;
    if upload.status != UploadStatus::Processing || upload.task_id.as_deref() != Some(&job.task_id)
    {
        return Err(Failure::Refused(
            "the upload no longer awaits this confirmation".into(),
        ));
    }
    let namespace = started.namespace.ok_or(Failure::Gone("namespace"))?;
    Ok((upload, namespace))
}

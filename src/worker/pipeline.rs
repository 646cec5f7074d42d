//! The confirm pipeline of spec §3.3, as a worker runs it, and the results it records.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backoff::ExponentialBackoff;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::api::error::ApiError;
use crate::api::uploads::check_quota;
use crate::blob::{BlobError, BlobStore, ObjectHead, OpenObject, StoredPart};
use crate::service::config::HashPolicy;
use crate::domain::{
    etags_match, number_runs, unquote_etag, ContentHash, PartsCheck, TaskStatus, UploadKeys,
    UploadStatus,
};
use crate::worker::grouping::{GroupError, Grouper};
use crate::queue::{ConfirmJob, Lane};
use crate::store::confirm::{
    self as finish, BatchDestination, Completion, Finish, Grouped, Verified,
};
use crate::store::{tasks, NamespaceRow, UploadRow};
use crate::worker::turns::FairTurns;

/// The answer to a completed confirmation (`ConfirmUploadResponse`), also the task's outputs.
pub fn confirm_result(u: &UploadRow) -> Value {
    json!({
        "upload_id": u.id,
        "status": u.status,
        "etag": u.etag,
        "file_size_bytes": u.file_size_bytes,
        "file_hash": u.file_hash,
        "verified_at": u.verified_at,
        "completed_at": u.completed_at,
        "object_id": u.object_id,
        // With a submitted batch, the task to follow is the batch's.
        "task_id": u.batch_task_id.as_ref().or(u.task_id.as_ref()),
        "batch_id": u.batch_id,
        "is_duplicate": u.is_duplicate,
        "duplicate_of_upload_id": u.duplicate_of_upload_id,
        "message": u.message,
    })
}

/// A failed task's outputs: the error as the sync path answers it.
pub fn failure_outputs(upload_id: &str, err: &ApiError) -> Value {
    json!({ "upload_id": upload_id, "status_code": err.status().as_u16(), "error": err.body() })
}

/// The error a failed confirmation answers with, from its task's outputs.
pub fn stored_failure(outputs: Option<&Value>) -> ApiError {
    let status = outputs
        .and_then(|o| o.get("status_code"))
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(400);
    match outputs.and_then(|o| o.get("error")) {
        Some(body) => ApiError::from_stored(status, body),
        None => ApiError::bad_request("the confirmation failed"),
    }
}

/// A failure's reason as the confirmations series labels it: the verification's own reason,
/// else the kind of error.
fn failure_reason(err: &ApiError) -> String {
    if let Some(reason) = err.body()["details"]["reason"].as_str() {
        return reason.to_owned();
    }
    match err {
        ApiError::QuotaExceeded { .. } => "quota_exceeded",
        ApiError::NotFound(_) => "not_found",
        _ => "rejected",
    }
    .to_owned()
}

/// Why a confirmation cannot succeed, whatever is retried.
fn verification_failure(reason: &str, message: String, expected: Value, actual: Value) -> ApiError {
    ApiError::BadRequest {
        message,
        details: json!({ "reason": reason, "expected": expected, "actual": actual }),
    }
}

/// What the client asked for in the confirm body, kept in the task's inputs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ConfirmOptions {
    pub etag: Option<String>,
    pub file_size_bytes: Option<i64>,
    #[serde(default)]
    pub auto_submit_batch: bool,
}

/// A step that failed: for good, or worth another try.
#[derive(Debug)]
enum StepError {
    Permanent(ApiError),
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
            BlobError::NotFound => StepError::Permanent(verification_failure(
                "object_not_found",
                "the object was not found in storage: upload it to the presigned URL first".into(),
                json!("object exists"),
                json!(null),
            )),
            BlobError::Rejected(msg) => StepError::Permanent(ApiError::BadRequest {
                message: format!("the object store refused the request: {msg}"),
                details: json!({ "reason": "storage_rejected" }),
            }),
            // Changed under the confirmation: a new attempt verifies it again.
            BlobError::Changed(msg) => StepError::Transient(format!("storage: {msg}")),
            BlobError::Transient(msg) => StepError::Transient(format!("storage: {msg}")),
        }
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

/// Finishes a worker process's plain confirmations in groups (see [`finish::complete_many`]).
pub type Committer = Grouper<Completion, Finish>;

/// Starts a worker process's jobs in groups (see [`finish::start_many`]).
pub type Starter = Grouper<(String, String), finish::Start>;

/// The grouped database steps of one worker process.
pub fn grouped_steps(pool: &PgPool) -> (Starter, Committer) {
    let for_starts = pool.clone();
    let starter = Grouper::spawn("start", move |jobs: Vec<(String, String)>| {
        let pool = for_starts.clone();
        async move { finish::start_many(&pool, &jobs).await.map(Some) }
    });
    let for_completions = pool.clone();
    let committer = Grouper::spawn("complete", move |completions: Vec<Completion>| {
        let pool = for_completions.clone();
        async move {
            Ok(
                match finish::complete_many(&pool, &completions, confirm_result).await? {
                    Grouped::Done(finishes) => Some(finishes),
                    Grouped::OneByOne => None,
                },
            )
        }
    });
    (starter, committer)
}

impl From<GroupError> for StepError {
    fn from(e: GroupError) -> Self {
        StepError::Transient(e.to_string())
    }
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

/// Renews a task's lease until dropped.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The lease of one run: taken at most once, then renewed until the run ends.
#[derive(Default)]
struct LeaseSlot {
    /// Told once the lease is recorded, so the message can be settled.
    notify: Option<oneshot::Sender<()>>,
    keeper: Option<LeaseKeeper>,
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
        let request = (job.task_id.clone(), job.upload_id.clone());
        let grouped = self
            .steps(lane)
            .0
            .run(request)
            .await
            .map_err(|e| Retryable(e.to_string()))?;
        let started = match grouped {
            Some(started) => started,
            None => finish::start(&self.pool, &job.task_id, &job.upload_id)
                .await
                .map_err(|e| Retryable(format!("database: {e}")))?,
        };
        let started = match started {
            finish::Start::Started(started) => started,
            finish::Start::Terminal => {
                tracing::debug!("task already terminal; nothing to do");
                return Ok(Ran::Done);
            }
            finish::Start::Unknown => return Ok(Ran::UnknownTask),
        };
        let lease = Mutex::new(LeaseSlot {
            notify: leased,
            keeper: None,
        });
        let options: ConfirmOptions = serde_json::from_value(
            started
                .inputs
                .get("options")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .unwrap_or_default();
        let outcome = match check_started(job, *started) {
            Err(err) => Err(StepError::Permanent(err)),
            Ok((upload, namespace)) => {
                let policy = ExponentialBackoff {
                    initial_interval: Duration::from_millis(100),
                    max_interval: Duration::from_secs(5),
                    max_elapsed_time: Some(self.retry_budget),
                    ..ExponentialBackoff::default()
                };
                backoff::future::retry_notify(
                    policy,
                    || async {
                        self.attempt(job, lane, &upload, &namespace, &options, &lease)
                            .await
                            .map_err(|e| match e {
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
        };

        // Whatever happened, this run renews nothing any more.
        drop(
            lease
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keeper
                .take(),
        );
        match outcome {
            Ok(Some(reason)) => {
                crate::service::metrics::confirmations("completed", reason, 1);
                tracing::info!(reason, "confirmation completed");
                Ok(Ran::Done)
            }
            Ok(None) => Ok(Ran::Done),
            Err(StepError::Permanent(err)) => {
                let text = err.to_string();
                let ended = finish::fail(
                    &self.pool,
                    &job.task_id,
                    &job.upload_id,
                    &text,
                    &failure_outputs(&job.upload_id, &err),
                )
                .await
                .map_err(|e| Retryable(format!("database: {e}")))?;
                if ended {
                    crate::service::metrics::confirmations("failed", failure_reason(&err), 1);
                }
                tracing::info!(error = %text, "confirmation failed");
                Ok(Ran::Done)
            }
            Err(StepError::Transient(msg)) => {
                self.mark_interrupted(&job.task_id, &msg).await;
                Err(Retryable(msg))
            }
        }
    }

    async fn mark_interrupted(&self, task_id: &str, error: &str) {
        let result = sqlx::query(
            "UPDATE tasks SET status = $2, error = $3, updated_at = now()
             WHERE id = $1 AND status = 'IN_PROGRESS'",
        )
        .bind(task_id)
        .bind(TaskStatus::Interrupted.as_str())
        .bind(error)
        .execute(&self.pool)
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not mark the task interrupted");
        }
    }

    /// Takes the lease of a long job once, and keeps renewing it while the run lasts.
    async fn take_lease(&self, task_id: &str, slot: &Mutex<LeaseSlot>) -> Result<(), StepError> {
        if slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keeper
            .is_some()
        {
            return Ok(());
        }
        if !tasks::hold_lease(&self.pool, task_id, self.lease).await? {
            return Err(StepError::Transient("the task stopped running".into()));
        }
        let pool = self.pool.clone();
        let id = task_id.to_owned();
        let lease = self.lease;
        let keeper = LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match tasks::hold_lease(&pool, &id, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "could not renew the lease; will retry"),
                }
            }
        }));
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.keeper = Some(keeper);
        if let Some(notify) = slot.notify.take() {
            let _ = notify.send(());
        }
        Ok(())
    }

    /// The grouped steps a lane's jobs take.
    fn steps(&self, lane: Lane) -> (&Starter, &Committer) {
        match lane {
            Lane::Interactive => (&self.interactive_steps.0, &self.interactive_steps.1),
            Lane::Bulk => (&self.starter, &self.committer),
        }
    }

    async fn attempt(
        &self,
        job: &ConfirmJob,
        lane: Lane,
        upload: &UploadRow,
        namespace: &NamespaceRow,
        options: &ConfirmOptions,
        lease: &Mutex<LeaseSlot>,
    ) -> Result<Option<&'static str>, StepError> {
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
                return Err(StepError::Permanent(verification_failure(
                    "hash_mismatch",
                    "the object's SHA-256 differs from the declared file_hash".into(),
                    json!(declared),
                    json!(content_hash.as_str()),
                )));
            }
        }

        drop(store_turn);

        // Step 5: quota, checked here and enforced again atomically when usage grows.
        check_quota(namespace, size).map_err(StepError::Permanent)?;

        // Steps 6–9, in one transaction.
        let verified = Verified {
            content_hash: content_hash.as_str().to_owned(),
            size,
            etag: unquote_etag(&head.etag).to_owned(),
            s3_key: object_key.clone(),
        };
        // A batch submission or a quota is decided per confirmation; the rest go in groups.
        let grouped = if options.auto_submit_batch || namespace.storage_quota_bytes.is_some() {
            None
        } else {
            let completion = Completion {
                task_id: job.task_id.clone(),
                upload_id: upload.id.clone(),
                verified: verified.clone(),
            };
            self.steps(lane).1.run(completion).await?
        };
        let finished = match grouped {
            Some(finished) => finished,
            None => {
                finish::complete(
                    &self.pool,
                    &job.task_id,
                    &upload.id,
                    &verified,
                    options.auto_submit_batch,
                    &self.batches,
                    confirm_result,
                )
                .await?
            }
        };
        if matches!(finished, Finish::Completed(_))
            && object_key != keys.staging
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
            Finish::QuotaExceeded { current, limit } => {
                Err(StepError::Permanent(ApiError::QuotaExceeded {
                    message: format!(
                        "storing {size} more bytes would exceed the storage quota ({current} of {limit} bytes used)"
                    ),
                    resource: "storage_bytes".into(),
                    current,
                    limit,
                }))
            }
        }
    }

    /// Checks the staging object against what the client gave, and copies exactly that
    /// version to the confirmed key; answers the verified object's head and key. A run that
    /// finds the staging object gone carries on from a confirmed copy that an earlier run
    /// made (only a verified version is ever copied there).
    ///
    /// A hash-verified upload whose object has the declared SHA-256, checked by the store,
    /// is not copied: its URL signs that digest, so whatever is PUT through it again is the
    /// same bytes, and the object can stay where it is. Confirm then costs a HEAD, whatever
    /// the size; a store that does not answer the checksum gets the copy.
    async fn verify_and_keep(
        &self,
        keys: &UploadKeys,
        upload: &UploadRow,
        options: &ConfirmOptions,
    ) -> Result<(ObjectHead, String), StepError> {
        let head = match self.blob.head(&keys.staging).await {
            Ok(head) => head,
            Err(BlobError::NotFound) => {
                let head = self.blob.head(&keys.confirmed).await?;
                check_head(&head, options)?;
                tracing::info!(key = %keys.confirmed, "staging object gone; confirming the copy made before");
                return Ok((head, keys.confirmed.clone()));
            }
            Err(err) => return Err(err.into()),
        };
        check_head(&head, options)?;
        let sealed = upload.enforce_file_hash
            && upload.file_hash.is_some()
            && head.sha256_hex.as_deref() == upload.file_hash.as_deref();
        if sealed {
            return Ok((head, keys.staging.clone()));
        }
        self.blob
            .copy_if_match(&keys.staging, &keys.confirmed, &head.etag)
            .await?;
        Ok((head, keys.confirmed.clone()))
    }

    /// Completes an upload in parts: every part of the plan must be in the store, of the
    /// size the plan gives it; then the store assembles them at the confirmed key, and that
    /// object is checked against what the client gave. A run that finds the multipart
    /// upload gone carries on from the object an earlier run assembled.
    async fn assemble(
        &self,
        upload: &UploadRow,
        multipart_id: &str,
        keys: &UploadKeys,
        options: &ConfirmOptions,
    ) -> Result<ObjectHead, StepError> {
        let Some(plan) = upload.part_plan() else {
            return Err(StepError::Permanent(ApiError::bad_request(
                "the upload's part plan is incomplete",
            )));
        };
        match self.blob.list_parts(&keys.confirmed, multipart_id).await {
            Ok(stored) => {
                let sizes: Vec<(i32, i64)> = stored.iter().map(|p| (p.number, p.size)).collect();
                match plan.check(&sizes) {
                    PartsCheck::Complete => {}
                    PartsCheck::Missing(missing) => {
                        return Err(StepError::Permanent(verification_failure(
                            "parts_missing",
                            format!(
                                "{} of {} parts are not uploaded: {}; upload them, then confirm again",
                                missing.len(),
                                plan.part_count,
                                number_runs(&missing)
                            ),
                            json!({ "part_count": plan.part_count }),
                            json!({ "missing_parts": missing }),
                        )))
                    }
                    PartsCheck::WrongSize(wrong) => {
                        let numbers: Vec<i32> = wrong.iter().map(|w| w.0).collect();
                        return Err(StepError::Permanent(verification_failure(
                            "part_size_mismatch",
                            format!(
                                "parts {} do not have the size the plan gives them; upload them again, then confirm again",
                                number_runs(&numbers)
                            ),
                            json!(wrong.iter().map(|w| json!({ "part_number": w.0, "size_bytes": w.1 })).collect::<Vec<_>>()),
                            json!(wrong.iter().map(|w| json!({ "part_number": w.0, "size_bytes": w.2 })).collect::<Vec<_>>()),
                        )));
                    }
                }
                let parts: Vec<StoredPart> =
                    stored.into_iter().filter(|p| plan.has(p.number)).collect();
                match self
                    .blob
                    .complete_multipart(&keys.confirmed, multipart_id, &parts)
                    .await
                {
                    // Completed meanwhile by another run of this confirmation.
                    Ok(()) | Err(BlobError::NotFound) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Err(BlobError::NotFound) => {
                tracing::info!(key = %keys.confirmed, "multipart upload gone; confirming the object assembled before");
            }
            Err(err) => return Err(err.into()),
        }
        let head = self.blob.head(&keys.confirmed).await?;
        check_head(&head, options)?;
        Ok(head)
    }

    async fn content_hash(
        &self,
        task_id: &str,
        head: &ObjectHead,
        body: Option<OpenObject>,
    ) -> Result<ContentHash, StepError> {
        let Some(body) = body else {
            return Ok(ContentHash::from_etag(&head.etag));
        };
        if let Some(hash) = head
            .sha256_hex
            .as_deref()
            .and_then(|h| ContentHash::parse(h).ok())
        {
            return Ok(hash);
        }
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let reporter = self.spawn_progress_reporter(task_id, head.size, rx);
        let mut progress = move |done: u64| {
            tx.send_replace(done);
        };
        let hashed = body.sha256(&mut progress).await;
        reporter.abort();
        if hashed.is_ok() {
            metrics::counter!(crate::service::metrics::HASHED_BYTES).increment(head.size);
        }
        // The body was checked against the size its headers gave.
        let hashed = hashed?;
        ContentHash::parse(&hashed.sha256_hex)
            .map_err(|e| StepError::Transient(format!("storage returned a bad hash: {e}")))
    }

    /// Writes hashing progress at most once a second, however fast bytes arrive.
    fn spawn_progress_reporter(
        &self,
        task_id: &str,
        total: u64,
        mut rx: tokio::sync::watch::Receiver<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let pipeline = self.clone();
        let task_id = task_id.to_owned();
        tokio::spawn(async move {
            let mut last = Instant::now();
            while rx.changed().await.is_ok() {
                let wait = Duration::from_secs(1).saturating_sub(last.elapsed());
                tokio::time::sleep(wait).await;
                let done = *rx.borrow_and_update();
                if let Err(e) = pipeline.report_progress(&task_id, done, total).await {
                    tracing::debug!(error = ?e, "progress not recorded");
                }
                last = Instant::now();
            }
        })
    }

    async fn report_progress(&self, task_id: &str, done: u64, total: u64) -> Result<(), StepError> {
        let percentage = if total == 0 {
            100.0
        } else {
            (done as f64 * 100.0 / total as f64).min(100.0)
        };
        let progress =
            json!({ "bytes_done": done, "bytes_total": total, "percentage": percentage });
        tasks::set_progress(&self.pool, task_id, &progress).await?;
        Ok(())
    }
}

/// The upload a started job confirms, and its namespace; an error when the job no longer
/// applies to them, which no retry changes.
fn check_started(
    job: &ConfirmJob,
    started: finish::Started,
) -> Result<(UploadRow, NamespaceRow), ApiError> {
    let upload = started
        .upload
        .ok_or_else(|| ApiError::not_found("upload"))?;
    if upload.status != UploadStatus::Processing.as_str()
        || upload.task_id.as_deref() != Some(&job.task_id)
    {
        return Err(ApiError::bad_request(
            "the upload no longer awaits this confirmation",
        ));
    }
    let namespace = started
        .namespace
        .ok_or_else(|| ApiError::not_found("namespace"))?;
    Ok((upload, namespace))
}

/// Steps 2–3: the ETag and size the client gave must be S3's.
fn check_head(head: &ObjectHead, options: &ConfirmOptions) -> Result<(), StepError> {
    if let Some(given) = &options.etag {
        if !etags_match(given, &head.etag) {
            return Err(StepError::Permanent(verification_failure(
                "etag_mismatch",
                "the given etag differs from the stored object's ETag".into(),
                json!(unquote_etag(given)),
                json!(unquote_etag(&head.etag)),
            )));
        }
    }
    if let Some(given) = options.file_size_bytes {
        if u64::try_from(given).ok() != Some(head.size) {
            return Err(StepError::Permanent(verification_failure(
                "size_mismatch",
                "the given file_size_bytes differs from the stored object's size".into(),
                json!(given),
                json!(head.size),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> ObjectHead {
        ObjectHead {
            size: 10,
            etag: "abc".into(),
            sha256_hex: None,
            content_type: None,
        }
    }

    fn reason(result: Result<(), StepError>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(StepError::Permanent(err)) => {
                Some(err.body()["details"]["reason"].as_str().unwrap().to_owned())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_checks() {
        let opts = |etag: Option<&str>, size: Option<i64>| ConfirmOptions {
            etag: etag.map(str::to_owned),
            file_size_bytes: size,
            auto_submit_batch: false,
        };
        let table = [
            (opts(None, None), None),
            (opts(Some("\"ABC\""), Some(10)), None),
            (opts(Some("abd"), None), Some("etag_mismatch")),
            (opts(None, Some(11)), Some("size_mismatch")),
            (opts(Some("abd"), Some(11)), Some("etag_mismatch")),
        ];
        for (options, want) in table {
            assert_eq!(
                reason(check_head(&head(), &options)).as_deref(),
                want,
                "{options:?}"
            );
        }
    }

    #[test]
    fn failures_replay_as_stored() {
        let err = verification_failure("size_mismatch", "m".into(), json!(1), json!(2));
        let outputs = failure_outputs("upl_x", &err);
        let replayed = stored_failure(Some(&outputs));
        assert_eq!(replayed.status().as_u16(), 400);
        assert_eq!(replayed.body()["details"]["reason"], "size_mismatch");
        let quota = ApiError::QuotaExceeded {
            message: "q".into(),
            resource: "storage_bytes".into(),
            current: 5,
            limit: 10,
        };
        let replayed = stored_failure(Some(&failure_outputs("upl_x", &quota)));
        assert_eq!(replayed.status().as_u16(), 403);
        assert_eq!(replayed.body()["type"], "QuotaExceededError");
    }
}

//! Shared harness of the black-box tests: each test starts its own service over a fresh
//! PostgreSQL database, its own RabbitMQ queue prefix and its own embedded S3 store, so
//! tests run in parallel without seeing each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use upconfirm::blob::embedded::EmbeddedS3;
use upconfirm::blob::BlobStore;
use upconfirm::service::config::Config;
use upconfirm::service::startup::{Components, Service};

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const S3_ACCESS_KEY: &str = "upconfirm-test-access";
pub const S3_SECRET_KEY: &str = "upconfirm-test-secret-key-0123456789";

/// Terminal task (and upload) statuses of the contract.
/// The API and its outbox relay, no worker: jobs wait in the queue until one is started.
pub const API_ONLY: Components = Components {
    api: true,
    worker: false,
    relay: true,
};

/// Only a worker (with its dead-letter and sweep duties).
pub const WORKER_ONLY: Components = Components {
    api: false,
    worker: true,
    relay: false,
};

pub const TERMINAL: &[&str] = &["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"];

/// Another organization with its own namespace and key, to probe tenant isolation.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org_id: String,
    pub namespace: String,
    pub namespace_id: String,
    pub api_key: String,
}

pub struct TestApp {
    pub base_url: String,
    pub api_key: String,
    pub namespace: String,
    pub namespace_id: String,
    pub org_id: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    service: Option<Service>,
    config: Config,
    s3: Option<EmbeddedS3>,
    db_name: String,
    queue_prefix: String,
    temp_dir: PathBuf,
    stopped: bool,
}

fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Quiet unless RUST_LOG asks for more; helps when a test fails.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the whole service; `tweak` may adjust the configuration before start.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_components(Components::all(), tweak).await
    }

    /// Starts only `components` (say, no worker, so that jobs wait in the queue).
    pub async fn spawn_components(
        components: Components,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        init_tracing();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("upconfirm_t_{id}");
        let database_url = format!("{PG_SERVER}/{db_name}");
        let queue_prefix = format!("t_{id}");
        let temp_dir = std::env::temp_dir().join(format!("upconfirm-test-{id}"));
        std::fs::create_dir_all(&temp_dir).expect("create temp dir");

        let s3 = EmbeddedS3::start(
            &temp_dir,
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        )
        .await
        .expect("start embedded S3");

        let mut config = Config::from_env();
        config.database.database_url = database_url.clone();
        config.database.database_max_connections = 12;
        config.queue.amqp_url = AMQP_URL.to_string();
        config.queue.queue_prefix = queue_prefix.clone();
        config.s3.s3_endpoint = Some(s3.endpoint());
        config.s3.s3_bucket = format!("test-{}", &id[..12]);
        config.s3.s3_region = "us-east-1".to_string();
        config.s3.s3_access_key_id = Some(S3_ACCESS_KEY.to_string());
        config.s3.s3_secret_access_key = Some(S3_SECRET_KEY.to_string());
        config.s3.s3_force_path_style = true;
        config.api.listen_addr = "127.0.0.1:0".parse().unwrap();
        config.api.sync_wait_ms = 15_000;
        config.worker.worker_concurrency = 8;
        config.relay.relay_interval_ms = 200;
        // Tests fire requests faster than the default rate limit allows; the admission
        // tests set the limits they check.
        config.api.rate_limit_per_second = 0.0;
        tweak(&mut config);

        upconfirm::store::create_database_if_missing(&config.database.database_url)
            .await
            .expect("create test database");
        {
            let pool = upconfirm::store::connect(&config.database)
                .await
                .expect("connect test database");
            upconfirm::store::migrate(&pool).await.expect("migrate");
            pool.close().await;
        }

        let service = upconfirm::service::startup::start(config.clone(), components)
            .await
            .expect("start service");
        let api_addr = service.api_addr.expect("the API listens");
        let pool = service.pool.clone();

        let org_id = upconfirm::cli::admin::create_organization(&pool, &format!("org-{id}"))
            .await
            .expect("create organization");
        let namespace = "ns-main".to_string();
        let namespace_id = upconfirm::cli::admin::create_namespace(&pool, &org_id, &namespace)
            .await
            .expect("create namespace");
        let api_key = upconfirm::cli::admin::create_api_key(&pool, &org_id)
            .await
            .expect("create api key");

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("http client");

        TestApp {
            base_url: format!("http://{api_addr}"),
            api_key,
            namespace,
            namespace_id,
            org_id,
            pool,
            client,
            service: Some(service),
            config,
            s3: Some(s3),
            db_name,
            queue_prefix,
            temp_dir,
            stopped: false,
        }
    }

    /// Starts more components of this app's service in this process (a worker, say).
    pub async fn start_more(&self, components: Components) -> Service {
        upconfirm::service::startup::start(self.config.clone(), components)
            .await
            .expect("start more components")
    }

    /// Starts more components with an adjusted copy of this app's configuration.
    pub async fn start_more_with(
        &self,
        components: Components,
        tweak: impl FnOnce(&mut Config),
    ) -> Service {
        let mut config = self.config.clone();
        tweak(&mut config);
        upconfirm::service::startup::start(config, components)
            .await
            .expect("start more components")
    }

    /// Ready messages in this test's dead-letter queue.
    pub async fn dead_letter_depth(&self) -> u32 {
        queue_depth(&format!("{}.confirm.dead", self.queue_prefix)).await
    }

    /// Ready messages in this test's confirm queue.
    pub async fn confirm_queue_depth(&self) -> u32 {
        queue_depth(&format!("{}.confirm", self.queue_prefix)).await
    }

    /// A series' value as this app's `/metrics` answers it now (0 when absent). Every app
    /// of one test binary shares the process's recorder.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("read /metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// What only the chaos suite uses (in `tests/alone/`).
#[allow(dead_code)]
impl TestApp {
    /// The configuration the service was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the S3 store: requests to it fail until `resume_s3`.
    pub async fn pause_s3(&mut self) {
        if let Some(s3) = self.s3.take() {
            s3.stop().await;
        }
    }

    /// Starts the S3 store again, on the same port and over the same files.
    pub async fn resume_s3(&mut self) {
        let endpoint = self.config.s3.s3_endpoint.clone().expect("an S3 endpoint");
        let addr: SocketAddr = endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("the store's address");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match EmbeddedS3::start(&self.temp_dir, addr, S3_ACCESS_KEY, S3_SECRET_KEY).await {
                Ok(s3) => {
                    self.s3 = Some(s3);
                    return;
                }
                Err(err) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = ?err, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("restart the S3 store on {addr}: {err:?}"),
            }
        }
    }

    /// The test's own folder (the store's data, the workers' log).
    pub fn temp_dir(&self) -> &std::path::Path {
        &self.temp_dir
    }

    /// The database of this test (its name).
    pub fn db_name(&self) -> &str {
        &self.db_name
    }
}

/// Ready messages in a queue that exists.
pub async fn queue_depth(queue: &str) -> u32 {
    let conn = upconfirm::queue::connect(AMQP_URL, "upconfirm-test-probe")
        .await
        .expect("connect to RabbitMQ");
    let channel = conn.create_channel().await.expect("channel");
    let depth = upconfirm::queue::ready_count(&channel, queue)
        .await
        .expect("declare the queue passively");
    let _ = conn.close(200, "done".into()).await;
    depth
}

/// Publishes raw bytes to the confirm queue of `prefix`, as a broken producer would.
pub async fn publish_raw(prefix: &str, body: &[u8]) {
    let conn = upconfirm::queue::connect(AMQP_URL, "upconfirm-test-publisher")
        .await
        .expect("connect to RabbitMQ");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "".into(),
            format!("{prefix}.confirm").as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("publisher confirm");
    let _ = conn.close(200, "done".into()).await;
}

/// An `upconfirm worker` child process of this test.
pub struct WorkerProcess {
    child: tokio::process::Child,
    /// Where it serves `/healthz` and `/readyz`.
    pub health: SocketAddr,
}

impl WorkerProcess {
    /// `kill -9`, then reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Its `/readyz` answer.
    pub async fn readyz(&self) -> Option<(StatusCode, Value)> {
        let resp = reqwest::get(format!("http://{}/readyz", self.health))
            .await
            .ok()?;
        let status = resp.status();
        Some((status, resp.json().await.ok()?))
    }

    /// Waits until its consumer is attached (ready), up to `within`.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((StatusCode::OK, _)) = self.readyz().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker {} not ready within {within:?}: {:?}",
                self.health,
                self.readyz().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What only the chaos suite uses.
#[allow(dead_code)]
impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running child has a pid")
    }

    /// Sends SIGTERM and waits up to `within` for it to exit; its exit code, if it did.
    pub async fn terminate(&mut self, within: Duration) -> Option<i32> {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl TestApp {
    /// The environment an `upconfirm worker` needs to join this app's service.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let mut env = vec![
            ("DATABASE_URL", c.database.database_url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
            ("AMQP_URL", c.queue.amqp_url.clone()),
            ("QUEUE_PREFIX", c.queue.queue_prefix.clone()),
            ("QUEUE_DELIVERY_LIMIT", c.queue.delivery_limit.to_string()),
            ("S3_BUCKET", c.s3.s3_bucket.clone()),
            ("S3_REGION", c.s3.s3_region.clone()),
            ("S3_FORCE_PATH_STYLE", "true".to_owned()),
            (
                "WORKER_CONCURRENCY",
                c.worker.worker_concurrency.to_string(),
            ),
            ("RETRY_BUDGET_MS", c.worker.retry_budget_ms.to_string()),
            (
                "ASYNC_THRESHOLD_BYTES",
                c.confirm.async_threshold_bytes.to_string(),
            ),
            ("EXPIRY_SWEEP_INTERVAL_SECONDS", "0".to_owned()),
            ("DEAD_LETTER_INTERVAL_MS", "500".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        if let Some(e) = &c.s3.s3_endpoint {
            env.push(("S3_ENDPOINT", e.clone()));
        }
        if let Some(k) = &c.s3.s3_access_key_id {
            env.push(("S3_ACCESS_KEY_ID", k.clone()));
        }
        if let Some(k) = &c.s3.s3_secret_access_key {
            env.push(("S3_SECRET_ACCESS_KEY", k.clone()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// `upconfirm <role>` with this app's settings and nothing else in its environment,
    /// killed when dropped.
    pub fn command(&self, role: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_upconfirm"));
        cmd.arg(role)
            .env_clear()
            .envs(self.worker_env())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Starts `upconfirm worker` as a child process (its log goes to the test's folder);
    /// `extra` overrides the environment.
    pub fn spawn_worker_process(&self, extra: &[(&str, &str)]) -> WorkerProcess {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.temp_dir.join("workers.log"))
            .expect("open the workers' log");
        let mut cmd = self.command("worker");
        cmd.env("HEALTH_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(log);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start upconfirm worker");
        WorkerProcess {
            child,
            health: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The workers' log so far (for failure messages).
    pub fn workers_log(&self) -> String {
        std::fs::read_to_string(self.temp_dir.join("workers.log")).unwrap_or_default()
    }

    /// The command line `upconfirm` with this app's database and queues in its environment.
    pub async fn run_cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_upconfirm"))
            .args(args)
            .env_clear()
            .envs(self.worker_env())
            .output()
            .await
            .expect("run upconfirm");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl TestApp {
    /// The prefix of this test's queues and exchanges.
    pub fn queue_prefix(&self) -> &str {
        &self.queue_prefix
    }

    pub fn blob(&self) -> &BlobStore {
        &self.service.as_ref().expect("service running").blob
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request with this tenant's key and namespace.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
            .header("X-Namespace", &self.namespace)
    }

    /// A request with an explicit key and (optional) namespace header.
    pub fn request_as(
        &self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        namespace: Option<&str>,
    ) -> RequestBuilder {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(k) = api_key {
            rb = rb.bearer_auth(k);
        }
        if let Some(ns) = namespace {
            rb = rb.header("X-Namespace", ns);
        }
        rb
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    pub async fn create_bucket(&self, name: &str) -> Value {
        let (status, body) = send(
            self.post("/v1/buckets")
                .json(&json!({ "bucket_name": name })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "create bucket {name}: {body}");
        body
    }

    pub async fn create_upload(&self, bucket: &str, body: Value) -> (StatusCode, Value) {
        send(
            self.post(&format!("/v1/buckets/{bucket}/uploads"))
                .json(&body),
        )
        .await
    }

    pub async fn put_bytes(
        &self,
        presigned_url: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> StatusCode {
        self.put_object(presigned_url, content_type, bytes).await.0
    }

    /// PUTs to a presigned URL; returns the status and the ETag header (quotes removed).
    pub async fn put_object(
        &self,
        presigned_url: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> (StatusCode, Option<String>) {
        let resp = self
            .client
            .put(presigned_url)
            .header("Content-Type", content_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT to S3");
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_string());
        (resp.status(), etag)
    }

    /// Creates an upload (body = filename + content_type + `extra`) and PUTs the bytes.
    pub async fn upload_file(
        &self,
        bucket: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
        extra: Value,
    ) -> (String, Value) {
        let (id, created, _) = self
            .upload_file_etag(bucket, filename, content_type, bytes, extra)
            .await;
        (id, created)
    }

    /// Uploads `bytes` as an `application/octet-stream` file; returns the upload's id.
    pub async fn upload_bin(&self, bucket: &str, filename: &str, bytes: &[u8]) -> String {
        self.upload_file(
            bucket,
            filename,
            "application/octet-stream",
            bytes,
            json!({}),
        )
        .await
        .0
    }

    /// Like `upload_file`, also returning the ETag S3 answered to the PUT.
    pub async fn upload_file_etag(
        &self,
        bucket: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
        extra: Value,
    ) -> (String, Value, Option<String>) {
        let created = self
            .create_pending(bucket, filename, content_type, extra)
            .await;
        let url = created["presigned_url"]
            .as_str()
            .unwrap_or_else(|| panic!("presigned_url in {created}"));
        let (status, etag) = self.put_object(url, content_type, bytes).await;
        assert!(
            status.is_success(),
            "PUT to presigned URL answered {status}"
        );
        let id = created["upload_id"].as_str().unwrap().to_string();
        (id, created, etag)
    }

    /// Creates an upload and asserts 200; nothing is PUT.
    pub async fn create_pending(
        &self,
        bucket: &str,
        filename: &str,
        content_type: &str,
        extra: Value,
    ) -> Value {
        let mut body = json!({ "filename": filename, "content_type": content_type });
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let (status, created) = self.create_upload(bucket, body).await;
        assert_eq!(status, StatusCode::OK, "create upload: {created}");
        created
    }

    /// `POST .../uploads/confirm/batch` with these items.
    pub async fn batch_confirm(&self, bucket: &str, items: Value) -> (StatusCode, Value) {
        send(
            self.post(&format!("/v1/buckets/{bucket}/uploads/confirm/batch"))
                .json(&json!({ "confirmations": items })),
        )
        .await
    }

    /// A batch confirmation of these uploads, with no per-item options.
    pub async fn batch_confirm_ids(&self, bucket: &str, ids: &[String]) -> (StatusCode, Value) {
        let items: Vec<Value> = ids.iter().map(|id| json!({ "upload_id": id })).collect();
        self.batch_confirm(bucket, Value::from(items)).await
    }

    /// `query` is either empty or a query string such as `async=true` (with or without `?`).
    pub async fn confirm(
        &self,
        bucket: &str,
        upload_id: &str,
        query: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let q = query.trim_start_matches('?');
        let path = if q.is_empty() {
            format!("/v1/buckets/{bucket}/uploads/{upload_id}/confirm")
        } else {
            format!("/v1/buckets/{bucket}/uploads/{upload_id}/confirm?{q}")
        };
        let mut rb = self.post(&path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        send(rb).await
    }

    pub async fn get_upload(&self, bucket: &str, upload_id: &str) -> Value {
        let (status, body) =
            send(self.get(&format!("/v1/buckets/{bucket}/uploads/{upload_id}"))).await;
        assert_eq!(status, StatusCode::OK, "get upload {upload_id}: {body}");
        body
    }

    /// Polls the task until it is terminal; panics with the last body after ~30 s.
    pub async fn wait_task(&self, task_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = send(self.get(&format!("/v1/tasks/{task_id}"))).await;
            if status == StatusCode::OK {
                if let Some(s) = body["status"].as_str() {
                    if TERMINAL.contains(&s) {
                        return body;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("task {task_id} not terminal within 30 s; last answer: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the upload until it is terminal; panics after ~30 s.
    pub async fn wait_upload(&self, bucket: &str, upload_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.get_upload(bucket, upload_id).await;
            if body["status"]
                .as_str()
                .is_some_and(|s| TERMINAL.contains(&s))
            {
                return body;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("upload {upload_id} not terminal within 30 s; last: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn second_tenant(&self) -> Tenant {
        let suffix = &Uuid::new_v4().simple().to_string()[..10];
        let org_id =
            upconfirm::cli::admin::create_organization(&self.pool, &format!("org-other-{suffix}"))
                .await
                .expect("create second organization");
        // A different name from ours, so that a name lookup cannot hit our own namespace.
        let namespace = format!("ns-other-{suffix}");
        let namespace_id = upconfirm::cli::admin::create_namespace(&self.pool, &org_id, &namespace)
            .await
            .expect("create second namespace");
        let api_key = upconfirm::cli::admin::create_api_key(&self.pool, &org_id)
            .await
            .expect("create second key");
        Tenant {
            org_id,
            namespace,
            namespace_id,
            api_key,
        }
    }

    pub async fn count_objects_for_upload(&self, upload_id: &str) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM objects WHERE upload_id = $1")
            .bind(upload_id)
            .fetch_one(&self.pool)
            .await
            .expect("count objects of upload")
    }

    pub async fn count_objects_in_bucket(&self, bucket_id: &str) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM objects WHERE bucket_id = $1")
            .bind(bucket_id)
            .fetch_one(&self.pool)
            .await
            .expect("count objects of bucket")
    }

    pub async fn count_uploads_in_bucket(&self, bucket_id: &str) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM uploads WHERE bucket_id = $1")
            .bind(bucket_id)
            .fetch_one(&self.pool)
            .await
            .expect("count uploads of bucket")
    }

    /// A task's status, error and attempts, read from its row.
    pub async fn task_row(&self, task_id: &str) -> (String, Option<String>, i32) {
        sqlx::query_as("SELECT status, error, attempts FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&self.pool)
            .await
            .expect("the task's row")
    }

    pub async fn storage_used(&self) -> i64 {
        // The namespace row plus its usage ledger.
        upconfirm::store::tenancy::storage_used(&self.pool, &self.namespace_id)
            .await
            .expect("storage used of namespace")
            .expect("the test namespace exists")
    }

    /// Waits (up to ~10 s) until every accepted job has been handed to the broker.
    pub async fn wait_outbox_empty(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
                .fetch_one(&self.pool)
                .await
                .expect("count outbox");
            if n == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{n} outbox rows still unpublished after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Shuts the service down and removes everything the test created (best effort).
    pub async fn stop(mut self) {
        self.stopped = true;
        if let Some(service) = self.service.take() {
            service.shutdown().await;
        }
        if let Some(s3) = self.s3.take() {
            s3.stop().await;
        }
        self.pool.close().await;
        cleanup(&self.queue_prefix, &self.db_name, &self.temp_dir).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // A failed test never reaches `stop`; still remove its database, queues and files.
        // The service keeps running on the test's runtime until the test returns, so stop
        // its components first, lest a worker re-declare the queues deleted below.
        if let Some(service) = &self.service {
            service.shutdown_token().cancel();
        }
        let prefix = self.queue_prefix.clone();
        let db = self.db_name.clone();
        let dir = self.temp_dir.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    cleanup(&prefix, &db, &dir).await;
                    // A reconnect already under way may have declared them again.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        upconfirm::queue::delete_topology(AMQP_URL, &prefix),
                    )
                    .await;
                });
            }
        })
        .join();
    }
}

async fn cleanup(queue_prefix: &str, db_name: &str, temp_dir: &PathBuf) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        upconfirm::queue::delete_topology(AMQP_URL, queue_prefix),
    )
    .await;
    let drop_db = async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drop_db).await;
    let _ = std::fs::remove_dir_all(temp_dir);
}

/// Sends a request and reads its body as JSON (a non-JSON body becomes a JSON string).
pub async fn send(rb: RequestBuilder) -> (StatusCode, Value) {
    let resp = rb.send().await.expect("HTTP request");
    let status = resp.status();
    let text = resp.text().await.expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts the error envelope `{success:false, status, error:{type, message, details}}`.
pub fn assert_error(status: StatusCode, body: &Value, code: u16, error_type: &str) {
    assert_eq!(
        status.as_u16(),
        code,
        "expected {code} {error_type}, got {status}: {body}"
    );
    assert_envelope(status, body);
    assert_eq!(
        body["error"]["type"],
        json!(error_type),
        "error type in {body}"
    );
}

/// Asserts the envelope shape of an error answer whatever its type.
pub fn assert_envelope(status: StatusCode, body: &Value) {
    assert_eq!(body["success"], json!(false), "success:false in {body}");
    assert_eq!(
        body["status"],
        json!(status.as_u16()),
        "status field in {body}"
    );
    assert!(body["error"]["type"].is_string(), "error.type in {body}");
    assert!(
        body["error"]["message"].is_string(),
        "error.message in {body}"
    );
    assert!(
        body["error"].get("details").is_some(),
        "error.details present in {body}"
    );
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `n` bytes of content that no other call produces.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let seed = Uuid::new_v4();
    let mut out = Vec::with_capacity(n + 32);
    let mut counter: u64 = 0;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(n);
    out
}

/// A fresh bucket name for one test.
pub fn bucket_name(tag: &str) -> String {
    format!("{tag}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

pub fn str_field<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("string field `{key}` in {body}"))
}

/// Polls `check` every 100 ms until it holds; fails the test after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Liveness and readiness: what `/healthz` and `/readyz` answer, on the API and on the
//! small listener a worker process may open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::queue::Publisher;

/// Longest one readiness check waits for the database or the broker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a consumer is attached to the broker right now (set by the worker loop).
#[derive(Clone, Default)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one process depends on, checked when asked.
#[derive(Clone)]
pub struct Health {
    pool: PgPool,
    /// The API's publisher: ready when it can open (or holds) a confirmed channel.
    publisher: Option<Publisher>,
    /// The worker's consumer: ready while it consumes.
    consumer: Option<Connected>,
}

/// The answer of a readiness check: each dependency, `"ok"` or why not.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Map<String, Value>,
}

impl Health {
    pub fn new(pool: PgPool, publisher: Option<Publisher>, consumer: Option<Connected>) -> Self {
        Health {
            pool,
            publisher,
            consumer,
        }
    }

    /// Database reachable with every migration applied, and the broker connected.
    pub async fn readiness(&self) -> Readiness {
        let mut checks = Map::new();
        let mut ready = true;
        let mut record = |name: &str, outcome: Result<(), String>| {
            if outcome.is_err() {
                ready = false;
            }
            checks.insert(
                name.to_owned(),
                Value::String(outcome.err().unwrap_or_else(|| "ok".to_owned())),
            );
        };
        let pending =
            tokio::time::timeout(CHECK_TIMEOUT, crate::store::pending_migrations(&self.pool)).await;
        match pending {
            Ok(Ok(0)) => {
                record("database", Ok(()));
                record("migrations", Ok(()));
            }
            Ok(Ok(n)) => {
                record("database", Ok(()));
                record("migrations", Err(format!("{n} migration(s) not applied")));
            }
            Ok(Err(e)) => record("database", Err(format!("unreachable: {e}"))),
            Err(_) => record("database", Err("no answer within 2 s".to_owned())),
        }
        if let Some(publisher) = &self.publisher {
            let outcome =
                match tokio::time::timeout(CHECK_TIMEOUT, publisher.ensure_connected()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("unreachable: {e}")),
                    Err(_) => Err("no answer within 2 s".to_owned()),
                };
            record("broker", outcome);
        }
        if let Some(consumer) = &self.consumer {
            let outcome = if consumer.get() {
                Ok(())
            } else {
                Err("not consuming: reconnecting".to_owned())
            };
            record("consumer", outcome);
        }
        Readiness { ready, checks }
    }
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(health): State<Health>) -> Response {
    let r = health.readiness().await;
    let (status, word) = if r.ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        status,
        axum::Json(json!({ "status": word, "checks": r.checks })),
    )
        .into_response()
}

/// `/healthz`, `/readyz` and `/metrics`, to merge into a router.
pub fn routes<S>(health: Health) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

/// The process's series in Prometheus text format.
async fn metrics_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::service::metrics::render(),
    )
        .into_response()
}

/// Serves only `/healthz`, `/readyz` and `/metrics` (a worker process) until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app: Router = routes(health);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the health listener stopped");
        }
    });
    Ok(local)
}

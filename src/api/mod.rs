//! The thin HTTP API: authenticate, validate, presign, write rows, publish, wait.

mod batches;
mod buckets;
mod confirm;
pub mod error;
mod extract;
mod objects;
mod pages;
mod tasks;
pub mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::blob::BlobStore;
use crate::notify::TaskEvents;
use crate::queue::Publisher;
use error::ApiError;

pub use extract::key_hash;

/// What the API's handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub blob: BlobStore,
    pub publisher: Publisher,
    pub events: TaskEvents,
    pub settings: Arc<ApiSettings>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub sync_wait: Duration,
    pub async_threshold_bytes: i64,
    pub max_body_bytes: usize,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/buckets", post(buckets::create))
        .route("/v1/buckets/list", post(buckets::list))
        .route("/v1/buckets/{bucket_identifier}", get(buckets::get))
        .route(
            "/v1/buckets/{bucket_identifier}/uploads",
            post(uploads::create),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/uploads/batch",
            post(uploads::create_batch),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/uploads/list",
            post(uploads::list),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/uploads/confirm/batch",
            post(confirm::confirm_batch),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/uploads/{upload_id}",
            get(uploads::get).delete(uploads::cancel),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/confirm",
            post(confirm::confirm),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/batches",
            post(batches::create),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/batches/list",
            post(batches::list),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/batches/{batch_id}",
            get(batches::get),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/batches/{batch_id}/submit",
            post(batches::submit),
        )
        .route(
            "/v1/buckets/{bucket_identifier}/objects/{object_id}",
            get(objects::get),
        )
        .route("/v1/tasks/list", post(tasks::list))
        .route("/v1/tasks/{task_id}", get(tasks::get).delete(tasks::cancel))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the API's address; port 0 picks a free one.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

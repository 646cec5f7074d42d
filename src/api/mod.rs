//! The thin HTTP API: authenticate, validate, presign, write rows, publish, wait.

mod admission;
mod backlog;
mod batch_confirm;
mod batches;
mod buckets;
mod confirm;
pub mod error;
mod extract;
mod filters;
mod objects;
pub mod openapi;
mod pages;
mod parts;
pub mod task_events;
pub mod task_outputs;
mod tasks;
pub mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::BytesMut;
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::{IntoResponses, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::task_events::TaskEvents;
use crate::blob::BlobStore;
use crate::queue::Publisher;
use crate::service::health::Health;
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
    pub health: Health,
    /// Namespaces' waiting bulk confirmations, as this process last counted them.
    pub backlog_counts: backlog::BacklogCounts,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub sync_wait: Duration,
    pub async_threshold_bytes: i64,
    /// Bulk confirmations a namespace may have waiting; 0 for no cap.
    pub namespace_backlog_cap: i64,
    pub max_body_bytes: usize,
    /// A declared `file_hash` is signed into the PUT URL unless the client opts out.
    pub enforce_declared_hash: bool,
    /// The request rate limit of an organization without its own.
    pub rate_limit: crate::store::rate_limits::Limit,
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

/// The routes, and the OpenAPI document collected from the same registrations.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(buckets::create))
        .routes(routes!(buckets::list))
        .routes(routes!(buckets::get))
        .routes(routes!(uploads::creation::create))
        .routes(routes!(uploads::batch::create_batch))
        .routes(routes!(uploads::listing::list))
        .routes(routes!(batch_confirm::confirm_batch))
        .routes(routes!(uploads::get, uploads::cancel))
        .routes(routes!(confirm::confirm))
        .routes(routes!(parts::sign, parts::list))
        .routes(routes!(batches::create))
        .routes(routes!(batches::list))
        .routes(routes!(batches::get))
        .routes(routes!(batches::submit))
        .routes(routes!(objects::get))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::get, tasks::cancel))
        .split_for_parts();
    (router, with_rate_limit_refusal(doc))
}

/// Every route above acts for an organization, so [`admission`] may refuse any with 429:
/// the document says so for each, in the words of [`error::NamespaceRefusals`], also where a
/// route lists its refusals one by one.
fn with_rate_limit_refusal(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let status = StatusCode::TOO_MANY_REQUESTS.as_str();
    let Some(refusal) = <error::NamespaceRefusals as IntoResponses>::responses().remove(status)
    else {
        return doc;
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| refusal.clone());
        }
    }
    doc
}

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let health = crate::service::health::routes(state.health.clone());
    let (routes, doc) = routes();
    let doc = Arc::new(doc);
    routes
        // Every route so far acts for an organization: each request takes from its rate limit.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admission::admit,
        ))
        .route(
            "/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc) }
            }),
        )
        .merge(health)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_body, read_whole_body))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Reads the whole request body before the request is routed, when it is within `limit`
/// bytes. A handler may answer without reading its body (a 401 for the key, a 404); hyper
/// then closes the kept-alive connection with the body's bytes unread, and a client that
/// sent them may see the connection reset before it reads the answer. A larger body is
/// handed on as it comes, so the handler's checks answer first as for any request (its
/// extractor answers 413); what the handler leaves unread is then read and dropped, up to
/// [`DRAIN_FACTOR`] times the limit, so that the client reads that answer too.
async fn read_whole_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut data = body.into_data_stream();
    let mut read = BytesMut::new();
    if declared.is_none_or(|n| n <= limit as u64) {
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(chunk) => read.extend_from_slice(&chunk),
                Err(_) => {
                    return ApiError::bad_request("could not read the request body").into_response()
                }
            }
            if read.len() > limit {
                break;
            }
        }
        if read.len() <= limit {
            return next
                .run(Request::from_parts(parts, Body::from(read.freeze())))
                .await;
        }
    }
    // Over the limit: the handler reads what it wants through a channel; the rest is drained.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, axum::Error>>(1);
    let cap = limit.saturating_mul(DRAIN_FACTOR);
    let forward = tokio::spawn(async move {
        let mut drained = 0usize;
        let mut pending = Some(read.freeze()).filter(|b| !b.is_empty());
        loop {
            let chunk = match pending.take() {
                Some(chunk) => chunk,
                None => match data.next().await {
                    Some(Ok(chunk)) => chunk,
                    _ => return,
                },
            };
            if let Err(unread) = tx.send(Ok(chunk)).await {
                drained += unread.0.map_or(0, |c| c.len());
                if drained > cap {
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let response = next.run(Request::from_parts(parts, body)).await;
    // Bounded, so a client trickling an endless body cannot hold the answer back.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, forward).await;
    response
}

/// How much of an oversized body is read and dropped after its 413, as a multiple of the
/// limit; past it the connection is closed.
const DRAIN_FACTOR: usize = 16;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Each request's span: method and path, and the upload and task it concerns, so that every
/// log line of it can be found by either id. A confirm records the task it started.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path,
        upload_id = tracing::field::Empty,
        task_id = tracing::field::Empty,
    );
    for (field, prefix) in [("upload_id", "upl_"), ("task_id", "task_")] {
        if let Some(id) = path.split('/').find(|segment| segment.starts_with(prefix)) {
            span.record(field, id);
        }
    }
    span
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

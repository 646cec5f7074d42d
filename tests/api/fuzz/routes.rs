//! The routes of the contract, and the requests generated for each: a path with ids of
//! every shape, a query, a body from the route's family, credentials and a content type.

use proptest::prelude::*;
use proptest::sample::select;
use reqwest::Method;

use super::auth::{auth_strategy, content_type_strategy, Auth, KeyFault};
use super::paths::{slot_strategy, unrouted_strategy};
use super::values::{odd_literal, MALFORMED};
use super::{batches, buckets, confirm, tasks, uploads};
use super::{Case, Fixtures, Gen, Seg};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Route {
    CreateBucket,
    ListBuckets,
    GetBucket,
    CreateUpload,
    CreateUploadBatch,
    ListUploads,
    ConfirmBatch,
    GetUpload,
    CancelUpload,
    ConfirmUpload,
    CreateBatch,
    ListBatches,
    GetBatch,
    SubmitBatch,
    GetObject,
    ListTasks,
    GetTask,
    CancelTask,
    /// A path no route serves.
    Unrouted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Bucket,
    Upload,
    Batch,
    Object,
    Task,
}

pub(super) const ROUTES: [Route; 18] = [
    Route::CreateBucket,
    Route::ListBuckets,
    Route::GetBucket,
    Route::CreateUpload,
    Route::CreateUploadBatch,
    Route::ListUploads,
    Route::ConfirmBatch,
    Route::GetUpload,
    Route::CancelUpload,
    Route::ConfirmUpload,
    Route::CreateBatch,
    Route::ListBatches,
    Route::GetBatch,
    Route::SubmitBatch,
    Route::GetObject,
    Route::ListTasks,
    Route::GetTask,
    Route::CancelTask,
];

impl Route {
    /// The path with `{}` for each id, in order.
    pub(super) fn template(self) -> &'static str {
        match self {
            Route::CreateBucket => "/v1/buckets",
            Route::ListBuckets => "/v1/buckets/list",
            Route::GetBucket => "/v1/buckets/{}",
            Route::CreateUpload => "/v1/buckets/{}/uploads",
            Route::CreateUploadBatch => "/v1/buckets/{}/uploads/batch",
            Route::ListUploads => "/v1/buckets/{}/uploads/list",
            Route::ConfirmBatch => "/v1/buckets/{}/uploads/confirm/batch",
            Route::GetUpload | Route::CancelUpload => "/v1/buckets/{}/uploads/{}",
            Route::ConfirmUpload => "/v1/buckets/{}/uploads/{}/confirm",
            Route::CreateBatch => "/v1/buckets/{}/batches",
            Route::ListBatches => "/v1/buckets/{}/batches/list",
            Route::GetBatch => "/v1/buckets/{}/batches/{}",
            Route::SubmitBatch => "/v1/buckets/{}/batches/{}/submit",
            Route::GetObject => "/v1/buckets/{}/objects/{}",
            Route::ListTasks => "/v1/tasks/list",
            Route::GetTask | Route::CancelTask => "/v1/tasks/{}",
            Route::Unrouted => "",
        }
    }

    pub(super) fn method(self) -> Method {
        match self {
            Route::GetBucket
            | Route::GetUpload
            | Route::GetBatch
            | Route::GetObject
            | Route::GetTask => Method::GET,
            Route::CancelUpload | Route::CancelTask => Method::DELETE,
            _ => Method::POST,
        }
    }

    /// Every method the route's path serves.
    pub(super) fn allowed(self) -> Vec<Method> {
        match self {
            Route::GetUpload | Route::CancelUpload | Route::GetTask | Route::CancelTask => {
                vec![Method::GET, Method::DELETE]
            }
            other => vec![other.method()],
        }
    }

    pub(super) fn slots(self) -> Vec<Slot> {
        match self {
            Route::CreateBucket | Route::ListBuckets | Route::ListTasks | Route::Unrouted => {
                vec![]
            }
            Route::GetBucket
            | Route::CreateUpload
            | Route::CreateUploadBatch
            | Route::ListUploads
            | Route::ConfirmBatch
            | Route::CreateBatch
            | Route::ListBatches => vec![Slot::Bucket],
            Route::GetUpload | Route::CancelUpload | Route::ConfirmUpload => {
                vec![Slot::Bucket, Slot::Upload]
            }
            Route::GetBatch | Route::SubmitBatch => vec![Slot::Bucket, Slot::Batch],
            Route::GetObject => vec![Slot::Bucket, Slot::Object],
            Route::GetTask | Route::CancelTask => vec![Slot::Task],
        }
    }

    /// The route acts in a namespace (tasks routes take none).
    pub(super) fn namespaced(self) -> bool {
        !matches!(
            self,
            Route::ListTasks | Route::GetTask | Route::CancelTask | Route::Unrouted
        )
    }

    /// The route reads a JSON body.
    pub(super) fn takes_body(self) -> bool {
        matches!(
            self,
            Route::CreateBucket
                | Route::ListBuckets
                | Route::CreateUpload
                | Route::CreateUploadBatch
                | Route::ListUploads
                | Route::ConfirmBatch
                | Route::ConfirmUpload
                | Route::CreateBatch
                | Route::ListBatches
                | Route::ListTasks
        )
    }

    pub(super) fn path(self, segs: &[Seg]) -> String {
        let mut out = String::new();
        let mut segs = segs.iter();
        let mut parts = self.template().split("{}").peekable();
        while let Some(part) = parts.next() {
            out.push_str(part);
            if parts.peek().is_some() {
                out.push_str(&segs.next().expect("a segment per slot").text);
            }
        }
        out
    }
}

/// Every method a request may come with, served or not.
pub(super) const ANY_METHOD: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::DELETE,
    Method::PUT,
    Method::PATCH,
    Method::OPTIONS,
];

/// Bodies for `route`, from its family's module.
fn body_for(route: Route, fx: &Fixtures) -> BoxedStrategy<Gen> {
    match route {
        Route::CreateBucket => buckets::create_bucket_body(),
        Route::ListBuckets => buckets::list_buckets_body(),
        Route::CreateUpload => uploads::create_upload_body(fx),
        Route::CreateUploadBatch => uploads::create_upload_batch_body(fx),
        Route::ListUploads => uploads::list_uploads_body(),
        Route::ConfirmBatch => confirm::confirm_batch_body(fx),
        Route::ConfirmUpload => confirm::confirm_body(),
        Route::CreateBatch => batches::create_batch_body(fx),
        Route::ListBatches => batches::list_batches_body(),
        Route::ListTasks => tasks::list_tasks_body(),
        // Routes that read no body: mostly none, sometimes junk.
        _ => prop_oneof![
            6 => Just(Gen { text: None, surely_invalid: false }),
            1 => select(MALFORMED).prop_map(|t| Gen::new(t, false)),
            1 => odd_literal().prop_map(|t| Gen::new(t, false)),
        ]
        .boxed(),
    }
}

/// Queries on routes that read none.
const JUNK_QUERIES: &[&str] = &[
    "",
    "?",
    "?a=b",
    "?limit=1000&offset=-1",
    "?namespace=ns-main",
    "?namespace=%00",
    "?namespace=nope",
    "?namespace=",
    "?%zz",
    "?&&&=",
    "?x=%ff",
    "?async=maybe",
    "?wait_seconds=-1",
    "?delete_s3_object=2",
];

/// Queries for `route`: its family's valid, invalid and odd ones, or junk it must ignore.
fn query_for(route: Route) -> BoxedStrategy<Gen> {
    let pick = |list: &'static [&'static str], invalid: bool| {
        select(list).prop_map(move |q| Gen::new(q, invalid)).boxed()
    };
    let long = Just(Gen::new(format!("?q={}", "z".repeat(4000)), false)).boxed();
    match route {
        Route::ConfirmUpload => prop_oneof![
            3 => pick(confirm::CONFIRM_QUERY_VALID, false),
            4 => pick(confirm::CONFIRM_QUERY_INVALID, true),
            2 => pick(confirm::CONFIRM_QUERY_ODD, false),
        ]
        .boxed(),
        Route::CancelUpload => prop_oneof![
            3 => pick(uploads::CANCEL_QUERY_VALID, false),
            4 => pick(uploads::CANCEL_QUERY_INVALID, true),
            2 => pick(uploads::CANCEL_QUERY_ODD, false),
        ]
        .boxed(),
        Route::GetTask => prop_oneof![6 => pick(tasks::TASK_QUERIES, false), 1 => long].boxed(),
        _ => prop_oneof![6 => pick(JUNK_QUERIES, false), 1 => long].boxed(),
    }
}

/// Requests for `route`, refused in most cases.
pub(super) fn case_strategy(route: Route, fx: &Fixtures) -> BoxedStrategy<Case> {
    if route == Route::Unrouted {
        return unrouted_strategy();
    }
    let segs: Vec<BoxedStrategy<Seg>> = route
        .slots()
        .into_iter()
        .map(|s| slot_strategy(s, fx))
        .collect();
    let body = if route == Route::CreateBatch {
        prop_oneof![3 => body_for(route, fx), 2 => batches::object_ids_body(fx)].boxed()
    } else {
        body_for(route, fx)
    };
    let wrong_method = prop_oneof![
        14 => Just(None),
        1 => select(ANY_METHOD.to_vec()).prop_map(Some),
    ];
    let armed = [fx.pending.clone(), fx.spare.clone()];
    let fx = fx.clone();
    (
        segs,
        query_for(route),
        body,
        confirm::invalid_confirm_body(),
        auth_strategy(),
        content_type_strategy(),
        wrong_method,
    )
        .prop_map(
            move |(mut segs, query, mut body, refused_body, mut auth, content_type, other)| {
                match route {
                    // A valid confirmation of a pending upload would start work: keep the
                    // query or the body surely invalid.
                    Route::ConfirmUpload
                        if armed.contains(&segs[1].text)
                            && !query.surely_invalid
                            && !body.surely_invalid =>
                    {
                        body = refused_body;
                    }
                    // Only the spare upload may be canceled.
                    Route::CancelUpload if segs[1].text == fx.pending && !query.surely_invalid => {
                        segs[1] = Seg::plain(&fx.spare);
                    }
                    // Submitting the fixture batch would start work: never authorized.
                    Route::SubmitBatch
                        if segs[1].text == fx.batch
                            && !matches!(auth, Auth::NoKey | Auth::BadKey(_)) =>
                    {
                        auth = Auth::BadKey(KeyFault::Unknown);
                    }
                    _ => {}
                }
                let method = match other {
                    Some(m) if !route.allowed().contains(&m) => m,
                    _ => route.method(),
                };
                let mut path = route.path(&segs);
                path.push_str(query.text.as_deref().unwrap_or(""));
                Case {
                    route,
                    method,
                    plain: segs.iter().all(|s| s.plain),
                    path,
                    body: body.text,
                    content_type,
                    auth,
                }
            },
        )
        .boxed()
}

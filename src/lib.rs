//! upconfirm finishes presigned S3 uploads: a thin HTTP API accepts confirmations, workers
//! verify and hash the objects, and PostgreSQL records the results.

pub mod admin;
pub mod api;
pub mod bench;
pub mod blob;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod dead_letter;
pub mod dev;
pub mod dispatch;
pub mod domain;
pub mod grouping;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod relay;
pub mod startup;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod turns;
pub mod worker;

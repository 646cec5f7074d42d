//! upconfirm finishes presigned S3 uploads: a thin HTTP API accepts confirmations, workers
//! verify and hash the objects, and PostgreSQL records the results.
//!
//! The rooms, by role:
//! - [`api`]: the HTTP API, and the one place domain failures become HTTP answers.
//! - [`worker`]: consumes confirmation jobs and runs the pipeline; dead letters, the sweep.
//! - [`relay`]: hands the outbox to the broker (the relay, and the fair dispatcher).
//! - [`store`]: PostgreSQL, every query the service runs.
//! - [`queue`]: RabbitMQ topology, publishing and the job's wire form.
//! - [`blob`]: the object store (S3, or the embedded one).
//! - [`domain`]: pure types and decisions: ids, states, checked values, failures.
//! - [`service`]: configuration, one startup path, health, metrics, logs.
//! - [`cli`]: the command line, `dev`, and operators' commands.

pub mod api;
pub mod blob;
pub mod cli;
pub mod domain;
pub mod queue;
pub mod relay;
pub mod service;
pub mod store;
pub mod worker;

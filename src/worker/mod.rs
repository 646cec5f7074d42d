//! The worker: consumes confirmation jobs, runs each through the pipeline to one terminal
//! state, and keeps what surrounds that honest (dead letters, lapsed leases, the expiry
//! sweep).

mod consumer;
pub mod dead_letters;
pub mod grouping;
mod lease;
pub mod pipeline;
pub mod sweep;
pub mod turns;
mod verify;

pub use consumer::{run, WorkerSettings};

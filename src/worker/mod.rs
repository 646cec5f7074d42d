//! The worker: consumes confirmation jobs, runs each through the pipeline to one terminal
//! state, and keeps what surrounds that honest (dead letters, the expiry sweep).

mod consumer;
pub mod dead_letters;
pub mod grouping;
pub mod pipeline;
pub mod sweep;
pub mod turns;

pub use consumer::{run, WorkerSettings};

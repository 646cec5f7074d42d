//! What every process of the service shares: configuration, one startup path, health,
//! metrics and logs.

pub mod config;
pub mod health;
pub mod metrics;
pub mod startup;
pub mod telemetry;

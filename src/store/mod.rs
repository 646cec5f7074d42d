//! PostgreSQL: the pool, migrations, and every query the service runs.

pub mod batch_confirm;
pub mod batches;
pub mod cancel;
pub mod completion;
pub mod dead_letters;
pub mod endings;
pub mod filter;
pub mod models;
pub mod objects;
pub mod outbox;
pub mod rate_limits;
pub mod start;
pub mod tasks;
pub mod tenancy;
pub mod uploads;

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::service::config::DatabaseConfig;

pub use batches::BatchDestination;
pub use models::{BatchRow, BucketRow, NamespaceRow, ObjectRow, TaskRow, UploadRow};

/// The channel on which task state changes are announced (payload: the task id).
pub const TASK_EVENTS_CHANNEL: &str = "upconfirm_task_events";

/// Creates the database named in `url` when it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    if !Postgres::database_exists(url)
        .await
        .context("checking whether the database exists")?
    {
        if let Err(err) = Postgres::create_database(url).await {
            // Another process may have created it in between.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(err).context("creating the database");
            }
        }
    }
    Ok(())
}

/// A pool whose every statement carries a timeout, so a stuck database never hangs a request.
pub async fn connect(cfg: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = cfg.database_url.parse().context("parsing DATABASE_URL")?;
    let options = options
        .application_name("upconfirm")
        // A process cut off from the database mid-transaction (a network partition, no
        // reset) would keep its row locks until the partition heals, stalling every
        // other worker's confirmation of those rows; the server ends such a session
        // after 10 s of silence instead. Transactions here wait on the network only
        // briefly (a publish, a store call), well within it.
        .options([
            ("statement_timeout", "30s"),
            ("idle_in_transaction_session_timeout", "10s"),
        ]);
    PgPoolOptions::new()
        .max_connections(cfg.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// How many of the migrations this build carries the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> sqlx::Result<usize> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            // No migration table: nothing applied yet.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e),
        };
    Ok(sqlx::migrate!("./migrations")
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}

/// Applies the migrations under `migrations/`.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("applying migrations")
}

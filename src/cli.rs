//! The `upconfirm` command line.

use clap::{Parser, Subcommand};

use crate::config::{Config, DatabaseConfig, DevConfig};
use crate::startup::{self, Components};
use crate::{admin, dev, store};

#[derive(Debug, Parser)]
#[command(
    name = "upconfirm",
    version,
    about = "Finishes presigned S3 uploads at scale"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed and apply migrations.
    Migrate(DatabaseConfig),
    /// Serve the HTTP API (with an outbox relay).
    Api(Box<Config>),
    /// Consume confirmation jobs.
    Worker(Box<Config>),
    /// Only sweep the outbox to the broker.
    Relay(Box<Config>),
    /// Everything in one process, on an embedded S3 store when none is configured.
    Dev {
        #[command(flatten)]
        settings: Box<Config>,
        #[command(flatten)]
        dev: DevConfig,
    },
    /// Load generators against a running service.
    #[command(subcommand)]
    Bench(BenchAction),
    /// Organizations, namespaces, API keys and limits.
    Admin {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchAction {
    /// Sequential sync confirm latency of distinct files.
    Latency(crate::bench::LatencyArgs),
    /// Time one batch confirmation of many uploads, from request to terminal task.
    BatchConfirm(crate::bench::BatchArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create an organization; prints its id.
    CreateOrg {
        #[arg(long)]
        name: String,
    },
    /// Create a namespace in an organization; prints its id.
    CreateNamespace {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
    /// Create an API key; prints it once (only its hash is stored).
    CreateKey {
        #[arg(long)]
        org: String,
    },
    /// Revoke an API key.
    RevokeKey {
        #[arg(long)]
        key: String,
    },
    /// Set a namespace's per-file limit and storage quota (omit one to remove it).
    SetLimits {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        max_file_size_bytes: Option<i64>,
        #[arg(long)]
        storage_quota_bytes: Option<i64>,
    },
}

async fn serve(config: Config, components: Components) -> anyhow::Result<()> {
    let service = startup::start(config, components).await?;
    startup::stop_signal().await;
    tracing::info!("stopping");
    service.shutdown().await;
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(db) => {
            store::create_database_if_missing(&db.database_url).await?;
            let pool = store::connect(&db).await?;
            store::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Api(s) => {
            let components = Components {
                api: true,
                worker: false,
                relay: true,
            };
            serve(*s, components).await
        }
        Command::Worker(s) => {
            let components = Components {
                api: false,
                worker: true,
                relay: false,
            };
            serve(*s, components).await
        }
        Command::Relay(s) => {
            let components = Components {
                api: false,
                worker: false,
                relay: true,
            };
            serve(*s, components).await
        }
        Command::Dev { settings, dev } => dev::run(*settings, dev).await,
        Command::Bench(BenchAction::Latency(args)) => crate::bench::latency(args).await,
        Command::Bench(BenchAction::BatchConfirm(args)) => crate::bench::batch_confirm(args).await,
        Command::Admin { database, action } => {
            let pool = store::connect(&database).await?;
            run_admin(&pool, action).await
        }
    }
}

async fn run_admin(pool: &sqlx::PgPool, action: AdminAction) -> anyhow::Result<()> {
    match action {
        AdminAction::CreateOrg { name } => {
            println!("{}", admin::create_organization(pool, &name).await?)
        }
        AdminAction::CreateNamespace { org, name } => {
            println!("{}", admin::create_namespace(pool, &org, &name).await?);
        }
        AdminAction::CreateKey { org } => {
            let key = admin::create_api_key(pool, &org).await?;
            println!("{key}");
            eprintln!("Store this key now: it is not shown again.");
        }
        AdminAction::RevokeKey { key } => {
            if admin::revoke_api_key(pool, &key).await? {
                println!("revoked");
            } else {
                anyhow::bail!("no live key matches");
            }
        }
        AdminAction::SetLimits {
            namespace,
            max_file_size_bytes,
            storage_quota_bytes,
        } => {
            admin::set_namespace_limits(pool, &namespace, max_file_size_bytes, storage_quota_bytes)
                .await?;
            println!("limits set");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn worker_settings_come_from_flags() {
        let cli = Cli::try_parse_from([
            "upconfirm",
            "worker",
            "--worker-concurrency",
            "3",
            "--queue-prefix",
            "p",
        ])
        .unwrap();
        let Command::Worker(settings) = cli.command else {
            panic!("parsed {cli:?}");
        };
        let config = *settings;
        assert_eq!(config.worker.worker_concurrency, 3);
        assert_eq!(config.queue.queue_prefix, "p");
        assert!(Cli::try_parse_from(["upconfirm", "worker", "--worker-concurrency", "x"]).is_err());
    }
}

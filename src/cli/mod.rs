//! The `upconfirm` command line.

use clap::{Parser, Subcommand};

use crate::queue::Topology;
use crate::service::config::{Config, DatabaseConfig, DevConfig, QueueConfig};
use crate::service::startup::{self, Components};
use crate::store;
use crate::store::dead_letters;
use crate::store::rate_limits::Limit;
use crate::worker::dead_letters as dead_letter_queue;

pub mod admin;
pub mod dev;

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
    /// Organizations, namespaces, API keys and limits.
    Admin {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        queue: QueueConfig,
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Confirmations failed by the dead-letter consumer, and the messages it left in the
    /// dead-letter queue because no task could be found for them.
    List {
        /// At most this many of each.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put dead-lettered confirmations back on the queue (published by the relay).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["task", "all"])))]
    Replay {
        /// The task of one dead-lettered confirmation.
        #[arg(long)]
        task: Option<String>,
        /// Every dead-lettered confirmation not replayed yet.
        #[arg(long)]
        all: bool,
    },
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
    /// Set an organization's request rate limit, which every API replica shares, or put it
    /// back on the service default (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST).
    #[command(group(clap::ArgGroup::new("limit").required(true).args(["per_second", "default"])))]
    SetRateLimit {
        #[arg(long)]
        org: String,
        /// Requests a second, averaged (0: no limit).
        #[arg(long, requires = "burst", allow_negative_numbers = true)]
        per_second: Option<f64>,
        /// Requests at once before the rate applies (0: no limit; else at least 1).
        #[arg(long, requires = "per_second", allow_negative_numbers = true)]
        burst: Option<f64>,
        /// Back to the service default.
        #[arg(long, conflicts_with_all = ["per_second", "burst"])]
        default: bool,
    },
    /// The dead-letter queue: list, replay.
    #[command(subcommand)]
    Dlq(DlqAction),
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
        Command::Admin {
            database,
            queue,
            action,
        } => {
            let pool = store::connect(&database).await?;
            match action {
                AdminAction::Dlq(dlq) => run_dlq(&pool, &queue, dlq).await,
                other => run_admin(&pool, other).await,
            }
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
        AdminAction::SetRateLimit {
            org,
            per_second,
            burst,
            default: _,
        } => {
            let limit = per_second
                .zip(burst)
                .map(|(per_second, burst)| Limit { per_second, burst });
            admin::set_rate_limit(pool, &org, limit).await?;
            match limit {
                Some(l) if l.is_unlimited() => println!("rate limit set: none"),
                Some(l) => println!(
                    "rate limit set: {} a second, {} at once",
                    l.per_second, l.burst
                ),
                None => println!("rate limit set: the service default"),
            }
        }
        AdminAction::Dlq(_) => unreachable!("handled by run_dlq"),
    }
    Ok(())
}

async fn run_dlq(
    pool: &sqlx::PgPool,
    queue: &QueueConfig,
    action: DlqAction,
) -> anyhow::Result<()> {
    let topology = Topology::from_config(queue);
    match action {
        DlqAction::List { limit } => {
            let failed =
                dead_letters::list_open(pool, i64::try_from(limit).unwrap_or(i64::MAX)).await?;
            println!(
                "dead-lettered confirmations (FAILED, replayable): {}",
                failed.len()
            );
            for d in &failed {
                println!(
                    "  task={} upload={} at={} reason={} attempts={} error={}",
                    d.task_id,
                    d.upload_id,
                    d.dead_lettered_at.to_rfc3339(),
                    d.reason,
                    d.attempts,
                    d.error
                );
            }
            let (total, left) = dead_letter_queue::peek(&queue.amqp_url, &topology, limit).await?;
            println!(
                "messages left in {} (no task to fail): {total}",
                topology.dead_letter_queue()
            );
            for m in &left {
                println!("  reason={} body={:?}", m.reason, m.body);
            }
        }
        DlqAction::Replay { task, all } => {
            let which = if all { None } else { task.as_deref() };
            let replayed = dead_letters::replay(pool, which, &topology.confirm_queue()).await?;
            if replayed.is_empty() {
                match which {
                    Some(id) => anyhow::bail!("no dead-lettered confirmation for task {id}"),
                    None => println!("nothing to replay"),
                }
            }
            for r in &replayed {
                if r.queued {
                    println!("replayed task={} upload={}", r.task_id, r.upload_id);
                } else {
                    println!(
                        "skipped task={} upload={}: it moved on since it was dead-lettered",
                        r.task_id, r.upload_id
                    );
                }
            }
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

    #[test]
    fn rate_limit_flags_go_together() {
        let parse = |args: &[&str]| {
            let mut all = vec!["upconfirm", "admin", "set-rate-limit", "--org", "org_a"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        let Ok(Cli {
            command:
                Command::Admin {
                    action:
                        AdminAction::SetRateLimit {
                            per_second, burst, ..
                        },
                    ..
                },
        }) = parse(&["--per-second", "1.5", "--burst", "3"])
        else {
            panic!("parsed");
        };
        assert_eq!((per_second, burst), (Some(1.5), Some(3.0)));
        assert!(parse(&["--default"]).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--per-second", "1"]).is_err());
        assert!(parse(&["--burst", "1"]).is_err());
        assert!(parse(&["--default", "--per-second", "1", "--burst", "2"]).is_err());
    }

    #[test]
    fn the_default_rate_limit_comes_from_flags_and_is_checked() {
        let api = |args: &[&str]| {
            let mut all = vec!["upconfirm", "api"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Api(config) => config.api.default_rate_limit(),
                other => panic!("parsed {other:?}"),
            })
        };
        let limit = api(&["--rate-limit-per-second", "5", "--rate-limit-burst", "0"]).unwrap();
        assert_eq!((limit.per_second, limit.burst), (5.0, 0.0));
        assert!(limit.is_unlimited());
        assert!(api(&["--rate-limit-per-second", "-1"]).is_err());
        assert!(api(&["--rate-limit-burst", "0.5"]).is_err());
        assert!(api(&["--rate-limit-per-second", "fast"]).is_err());
    }
}

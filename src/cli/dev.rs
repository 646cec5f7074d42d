//! `upconfirm dev`: the whole service in one process, ready to call.

use std::path::Path;

use anyhow::Context;
use sqlx::PgPool;

use crate::api::key_hash;
use crate::cli::admin;
use crate::domain;
use crate::service::config::{Config, DevConfig};
use crate::service::startup::{self, Components};
use crate::store::{self, tenancy};

const DEV_NAME: &str = "dev";

/// What `dev` sets up so that the first request works.
pub struct DevTenant {
    pub organization_id: String,
    pub namespace_id: String,
    pub bucket_id: String,
    pub api_key: String,
}

pub async fn run(mut config: Config, dev: DevConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dev.data_dir)
        .with_context(|| format!("creating {}", dev.data_dir.display()))?;
    let _embedded = start_embedded_s3(&mut config, &dev).await?;

    store::create_database_if_missing(&config.database.database_url).await?;
    let pool = store::connect(&config.database).await?;
    store::migrate(&pool).await?;
    let service = startup::start(config.clone(), Components::all()).await?;
    service
        .blob
        .ensure_bucket()
        .await
        .context("creating the S3 bucket")?;
    let tenant = ensure_tenant(&pool, &dev.data_dir).await?;
    print_welcome(&service.base_url().unwrap_or_default(), &tenant);

    startup::stop_signal().await;
    tracing::info!("stopping");
    service.shutdown().await;
    Ok(())
}

#[cfg(feature = "embedded-s3")]
async fn start_embedded_s3(
    config: &mut Config,
    dev: &DevConfig,
) -> anyhow::Result<Option<crate::blob::embedded::EmbeddedS3>> {
    if config.s3.s3_endpoint.is_some() {
        return Ok(None);
    }
    let access = config
        .s3
        .s3_access_key_id
        .get_or_insert_with(|| "upconfirm-dev".to_owned())
        .clone();
    let secret = config
        .s3
        .s3_secret_access_key
        .get_or_insert_with(|| "upconfirm-dev-secret".to_owned())
        .clone();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], dev.s3_port));
    let s3 =
        crate::blob::embedded::EmbeddedS3::start(&dev.data_dir.join("s3"), addr, &access, &secret)
            .await
            .with_context(|| format!("starting the embedded S3 store on {addr}"))?;
    tracing::info!(endpoint = %s3.endpoint(), "embedded S3 store serving {}", dev.data_dir.join("s3").display());
    config.s3.s3_endpoint = Some(s3.endpoint());
    config.s3.s3_force_path_style = true;
    Ok(Some(s3))
}

#[cfg(not(feature = "embedded-s3"))]
async fn start_embedded_s3(config: &mut Config, _: &DevConfig) -> anyhow::Result<Option<()>> {
    if config.s3.s3_endpoint.is_none() {
        anyhow::bail!(
            "no S3_ENDPOINT set and this build has no embedded store (feature embedded-s3)"
        );
    }
    Ok(None)
}

/// The dev organization, namespace, bucket and key, created when absent. The key is kept in the
/// data folder so that every start can print it.
async fn ensure_tenant(pool: &PgPool, data_dir: &Path) -> anyhow::Result<DevTenant> {
    let org: Option<String> = sqlx::query_scalar(
        "SELECT id FROM organizations WHERE name = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(DEV_NAME)
    .fetch_optional(pool)
    .await?;
    let organization_id = match org {
        Some(id) => id,
        None => admin::create_organization(pool, DEV_NAME).await?,
    };
    let namespace_id = match tenancy::find_namespace(pool, &organization_id, DEV_NAME).await? {
        Some(ns) => ns.id.into(),
        None => admin::create_namespace(pool, &organization_id, DEV_NAME).await?,
    };
    let bucket_id = match tenancy::find_bucket(pool, &namespace_id, DEV_NAME).await? {
        Some(b) => b.id.into(),
        None => {
            let id = domain::new_id(domain::IdKind::Bucket);
            tenancy::insert_bucket(
                pool,
                &id,
                &namespace_id,
                DEV_NAME,
                Some("created by upconfirm dev"),
                &serde_json::json!({}),
                None,
            )
            .await?;
            id
        }
    };
    let key_file = data_dir.join("api-key");
    let saved = std::fs::read_to_string(&key_file)
        .ok()
        .map(|k| k.trim().to_owned());
    let api_key = match saved {
        Some(key)
            if tenancy::organization_for_key(pool, &key_hash(&key))
                .await?
                .as_deref()
                == Some(organization_id.as_str()) =>
        {
            key
        }
        _ => {
            let key = admin::create_api_key(pool, &organization_id).await?;
            write_private(&key_file, &key)?;
            key
        }
    };
    Ok(DevTenant {
        organization_id,
        namespace_id,
        bucket_id,
        api_key,
    })
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn print_welcome(base_url: &str, t: &DevTenant) {
    println!(
        "\nupconfirm dev is running.\n\n  API        {base_url}\n  API key    {key}\n  namespace  {ns} ({ns_id})\n  bucket     {bucket} ({bucket_id})\n\nTry:\n  curl -s -X POST {base_url}/v1/buckets/{bucket}/uploads \\\n    -H 'Authorization: Bearer {key}' -H 'X-Namespace: {ns}' -H 'Content-Type: application/json' \\\n    -d '{{\"filename\": \"hello.txt\", \"content_type\": \"text/plain\"}}'\n",
        key = t.api_key,
        ns = DEV_NAME,
        ns_id = t.namespace_id,
        bucket = DEV_NAME,
        bucket_id = t.bucket_id,
    );
    let _ = &t.organization_id;
}

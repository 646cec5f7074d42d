//! Operator actions: organizations, namespaces, API keys, limits.

use anyhow::{bail, Context};
use sqlx::PgPool;

use crate::api::key_hash;
use crate::domain::{new_api_key, new_id, IdKind};
use crate::store::rate_limits::{self, Limit};
use crate::store::tenancy;

pub async fn create_organization(pool: &PgPool, name: &str) -> anyhow::Result<String> {
    let id = new_id(IdKind::Organization);
    tenancy::insert_organization(pool, &id, name)
        .await
        .context("creating the organization")?;
    Ok(id)
}

pub async fn create_namespace(pool: &PgPool, org_id: &str, name: &str) -> anyhow::Result<String> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        bail!("a namespace name is 1 to 255 printable characters");
    }
    let id = new_id(IdKind::Namespace);
    tenancy::insert_namespace(pool, &id, org_id, name)
        .await
        .context("creating the namespace (is the name already taken in this organization?)")?;
    Ok(id)
}

/// Creates a key and returns it in plain text: the only time it is ever seen.
pub async fn create_api_key(pool: &PgPool, org_id: &str) -> anyhow::Result<String> {
    let key = new_api_key();
    tenancy::insert_api_key(pool, &new_id(IdKind::ApiKey), org_id, &key_hash(&key))
        .await
        .context("storing the API key (does the organization exist?)")?;
    Ok(key)
}

pub async fn revoke_api_key(pool: &PgPool, key: &str) -> anyhow::Result<bool> {
    Ok(tenancy::revoke_api_key(pool, &key_hash(key)).await?)
}

pub async fn set_namespace_limits(
    pool: &PgPool,
    ns_id: &str,
    max_file_size_bytes: Option<i64>,
    storage_quota_bytes: Option<i64>,
) -> anyhow::Result<()> {
    if max_file_size_bytes.is_some_and(|v| v < 1) || storage_quota_bytes.is_some_and(|v| v < 0) {
        bail!("limits must be positive");
    }
    if !tenancy::set_namespace_limits(pool, ns_id, max_file_size_bytes, storage_quota_bytes).await?
    {
        bail!("no namespace {ns_id}");
    }
    Ok(())
}

/// Gives the organization its own request rate limit (0 in either: none), or with `None`
/// puts it back on the service default.
pub async fn set_rate_limit(
    pool: &PgPool,
    org_id: &str,
    limit: Option<Limit>,
) -> anyhow::Result<()> {
    if let Some(limit) = limit {
        rate_limits::check_rate(limit.per_second).map_err(anyhow::Error::msg)?;
        rate_limits::check_burst(limit.burst).map_err(anyhow::Error::msg)?;
    }
    if !rate_limits::set(pool, org_id, limit).await? {
        bail!("no organization {org_id}");
    }
    Ok(())
}

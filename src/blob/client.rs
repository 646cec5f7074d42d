//! The [`BlobStore`] client: how the store is reached, the client bound to one bucket,
//! and the bucket made sure of.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::error::{http_status, transient};
use super::BlobError;

/// Time allowed to establish a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one attempt up to the response headers; streamed bodies are not covered.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for one CopyObject: the store answers when the whole object is copied,
/// and a single-request object may have 5 GiB.
const COPY_TIMEOUT: Duration = Duration::from_secs(900);
/// The caller retries with its own backoff, so the SDK only smooths over blips.
const MAX_ATTEMPTS: u32 = 2;
/// CreateBucket error codes meaning there is nothing left to do.
const BUCKET_EXISTS: [&str; 2] = ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"];

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `None` => AWS default endpoint resolution.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Both set => static credentials; otherwise the aws-config default chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
}

/// A client bound to one bucket.
#[derive(Clone)]
pub struct BlobStore {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) bucket: String,
    pub(super) region: String,
}

/// A config override that allows one attempt [`COPY_TIMEOUT`], for the calls the store
/// answers only once a whole object is written.
pub(super) fn whole_object_attempt() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new().timeout_config(
        TimeoutConfig::builder()
            .operation_attempt_timeout(COPY_TIMEOUT)
            .build(),
    )
}

impl BlobStore {
    /// Builds the client; does no network I/O.
    pub async fn connect(settings: &S3Settings) -> anyhow::Result<BlobStore> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "upconfirm-static",
            ));
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.force_path_style)
            // The object is hashed with SHA-256 anyway; a second SDK-side checksum only costs CPU.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(BlobStore {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
            region: settings.region.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist (idempotent).
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        // Probing first keeps this working under policies that allow HeadBucket but not CreateBucket.
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(err) if http_status(&err) == Some(404) => {}
            Err(err) => return Err(transient(&err)),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that rejects an explicit location constraint.
        if self.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Err(err) if !err.code().is_some_and(|c| BUCKET_EXISTS.contains(&c)) => {
                Err(transient(&err))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use crate::blob::embedded::test_support::Harness;

    #[tokio::test]
    async fn ensure_bucket_is_idempotent() {
        let h = Harness::new().await;
        h.store.ensure_bucket().await.unwrap();
        h.store.ensure_bucket().await.unwrap();
    }
}

//! S3, one async fn per call, typed errors. The only module that talks to S3.
//!
//! The client comes from the standard AWS chain (env, profile, SSO, IMDS/IRSA). When
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set (an S3-compatible store, moto in tests),
//! path-style addressing is forced: virtual-hosted names (`bucket.127.0.0.1`) do not resolve
//! there.

use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use crate::source::Endpoint;
use crate::Error;

/// A connected store and the endpoint its sources are written for.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    pub endpoint: Endpoint,
}

/// What HeadObject says about an object.
#[derive(Debug, Clone)]
pub struct Head {
    /// The `x-amz-meta-tfmod-sha256` tfmod wrote, if any (a claim; the bytes decide).
    pub sha256: Option<String>,
    pub version_id: Option<String>,
}

/// What a conditional PutObject did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the key did not exist (as far as the store enforces If-None-Match).
    Created,
    /// Refused by `If-None-Match: *`: the key exists.
    Exists,
}

/// The endpoint override from the environment, as the AWS SDKs read it.
pub fn endpoint_override() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim().trim_end_matches('/').to_string())
}

impl Store {
    /// A client from the standard chain; fails when no region is configured.
    pub async fn connect() -> Result<Store, Error> {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(60))
            .operation_timeout(Duration::from_secs(180))
            .build();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::Usage("no AWS region: set AWS_REGION (or a profile's region)".into())
        })?;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk);
        let endpoint = match endpoint_override() {
            Some(url) => {
                b = b.endpoint_url(url.clone()).force_path_style(true);
                Endpoint::Custom { base: url, region }
            }
            None => Endpoint::Aws { region },
        };
        Ok(Store {
            client: Client::from_conf(b.build()),
            endpoint,
        })
    }

    /// HeadObject; `None` when the key does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, Error> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Head {
                sha256: out.metadata().and_then(|m| m.get("tfmod-sha256")).cloned(),
                version_id: out.version_id().map(str::to_string),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(s3_error(
                &format!("HeadObject s3://{bucket}/{key}"),
                bucket,
                e,
            )),
        }
    }

    /// GetObject, the whole body; `None` when the key does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let what = format!("GetObject s3://{bucket}/{key}");
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::S3(format!("{what}: reading the body: {e}")))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(s3_error(&what, bucket, e)),
        }
    }

    /// PutObject with `If-None-Match: *`: never replaces an existing key where the store
    /// enforces the condition (AWS S3 does since 2024-08).
    #[tracing::instrument(skip(self, body, meta))]
    pub async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        meta: &[(&str, &str)],
    ) -> Result<Put, Error> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(ByteStream::from(body));
        for (k, v) in meta {
            req = req.metadata(*k, *v);
        }
        match req.send().await {
            Ok(_) => Ok(Put::Created),
            // 412 PreconditionFailed; 409 ConditionalRequestConflict (a concurrent write won).
            Err(e) if matches!(status(&e), Some(412) | Some(409)) => Ok(Put::Exists),
            Err(e) => Err(s3_error(
                &format!("PutObject s3://{bucket}/{key}"),
                bucket,
                e,
            )),
        }
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                s3_error(&format!("ListObjectsV2 s3://{bucket}/{prefix}"), bucket, e)
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    /// How many versions (delete markers included) the key has had. 1 on an unversioned bucket
    /// once written; more means it was overwritten or deleted since.
    #[tracing::instrument(skip(self))]
    pub async fn version_count(&self, bucket: &str, key: &str) -> Result<usize, Error> {
        let mut n = 0;
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| {
                    s3_error(
                        &format!("ListObjectVersions s3://{bucket}/{key}"),
                        bucket,
                        e,
                    )
                })?;
            n += page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .count();
            n += page
                .delete_markers()
                .iter()
                .filter(|v| v.key() == Some(key))
                .count();
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        Ok(n)
    }
}

fn status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status_u16()),
        _ => None,
    }
}

/// The raw HTTP response's status, whatever the response type.
trait HasStatus {
    fn status_u16(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

fn s3_error<E, R>(what: &str, bucket: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &e {
        let err = se.err();
        if err.code() == Some("NoSuchBucket") {
            return Error::S3(format!(
                "bucket {bucket:?} does not exist (or these credentials cannot see it): check --bucket and the AWS account"
            ));
        }
        if let Some(code) = err.code() {
            return Error::S3(format!(
                "{what}: {code}: {}",
                err.message().unwrap_or("no message")
            ));
        }
    }
    Error::S3(format!("{what}: {}", DisplayErrorContext(&e)))
}

impl Store {
    /// The same client for buckets in another AWS region.
    pub fn with_region(&self, region: &str) -> Store {
        let conf = self
            .client
            .config()
            .to_builder()
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .build();
        Store {
            client: Client::from_conf(conf),
            endpoint: Endpoint::Aws {
                region: region.to_string(),
            },
        }
    }
}

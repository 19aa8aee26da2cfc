//! S3, one async fn per call, typed errors. The only module that talks to S3.
//!
//! The client comes from the standard AWS chain (env, profile, SSO, IMDS/IRSA). When
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set (an S3-compatible store, moto in tests),
//! path-style addressing is forced: virtual-hosted names (`bucket.127.0.0.1`) do not resolve
//! there. Every call is bounded by one timeout (`--s3-timeout`), retries included. Bodies are
//! streamed both ways: an archive is uploaded from its file and hashed as it is downloaded, so
//! memory does not grow with the archive.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use crate::source::Endpoint;

/// Why S3 could not be used; each message is one line naming the call, bucket, key and fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, timed out, refused, failing, or in another region: fix what the message names.
    #[error("S3 unavailable: {0}")]
    Unavailable(String),
    /// The bucket does not exist (or these credentials cannot see it): check --bucket.
    #[error("{0}")]
    NoBucket(String),
    /// No AWS region configured.
    #[error("no AWS region: set AWS_REGION (or a profile's region)")]
    NoRegion,
}

/// A connected store and the endpoint its sources are written for.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    pub endpoint: Endpoint,
    region: String,
    timeout: Duration,
}

/// An object's bytes, hashed as they streamed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: String,
    pub size: u64,
    /// The VersionId S3 served (`None` on an unversioned bucket).
    pub version_id: Option<String>,
}

/// What a conditional PutObject did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the key did not exist (as far as the store enforces If-None-Match). The
    /// VersionId, on a versioned bucket.
    Created(Option<String>),
    /// Refused by `If-None-Match: *`: the key exists.
    Exists,
}

/// What ListObjectVersions shows under a prefix: every version and delete marker ever kept.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (key, VersionId) of each object version.
    pub versions: Vec<(String, Option<String>)>,
    /// The key of each delete marker.
    pub delete_markers: Vec<String>,
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The endpoint override from the environment, as the AWS SDKs read it.
pub fn endpoint_override() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim().trim_end_matches('/').to_string())
}

/// A VersionId worth writing into a source (an unversioned bucket answers "null" or nothing).
fn real_version(v: Option<&str>) -> Option<String> {
    v.filter(|v| !v.is_empty() && *v != "null")
        .map(str::to_string)
}

impl Store {
    /// A client from the standard chain, every call bounded by `timeout` (retries included).
    pub async fn connect(timeout: Duration) -> Result<Store, StoreError> {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .read_timeout(timeout)
            .operation_attempt_timeout(timeout)
            .operation_timeout(timeout)
            .build();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or(StoreError::NoRegion)?;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk);
        let endpoint = match endpoint_override() {
            Some(url) => {
                b = b.endpoint_url(url.clone()).force_path_style(true);
                Endpoint::Custom {
                    base: url,
                    region: region.clone(),
                }
            }
            None => Endpoint::Aws {
                region: region.clone(),
            },
        };
        Ok(Store {
            client: Client::from_conf(b.build()),
            endpoint,
            region,
            timeout,
        })
    }

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
            region: region.to_string(),
            timeout: self.timeout,
        }
    }

    fn fail<E, R>(&self, call: &str, bucket: &str, key: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static + HasHead,
    {
        describe(call, bucket, key, &self.region, self.timeout, e)
    }

    /// HeadObject; `None` when the key does not exist. The VersionId otherwise.
    #[tracing::instrument(skip(self))]
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(real_version(out.version_id()))),
            Err(e) if status(&e) == Some(404) && code(&e).is_none_or(|c| c != "NoSuchBucket") => {
                Ok(None)
            }
            Err(e) => Err(self.fail("HeadObject", bucket, key, e)),
        }
    }

    /// GetObject, hashed as it streams; `None` when the key (or that version) does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Fetched>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(self.fail("GetObject", bucket, key, e)),
        };
        let version_id = real_version(out.version_id());
        let mut body = out.body;
        let mut h = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                StoreError::Unavailable(format!(
                    "GetObject s3://{bucket}/{key}: the body broke off ({e}): retry"
                ))
            })?;
            size += chunk.len() as u64;
            h.update(&chunk);
        }
        Ok(Some(Fetched {
            sha256: hex(&h.finalize()),
            size,
            version_id,
        }))
    }

    /// GetObject of a small object (metadata), at most `limit` bytes; `None` when missing.
    #[tracing::instrument(skip(self))]
    pub async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        limit: usize,
    ) -> Result<Option<Result<Vec<u8>, u64>>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(self.fail("GetObject", bucket, key, e)),
        };
        let mut body = out.body;
        let mut bytes = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                StoreError::Unavailable(format!(
                    "GetObject s3://{bucket}/{key}: the body broke off ({e}): retry"
                ))
            })?;
            size += chunk.len() as u64;
            if bytes.len() + chunk.len() <= limit {
                bytes.extend_from_slice(&chunk);
            }
        }
        Ok(Some(if size as usize > limit {
            Err(size)
        } else {
            Ok(bytes)
        }))
    }

    /// PutObject with `If-None-Match: *` from a file (streamed): never replaces an existing key
    /// where the store enforces the condition (AWS S3 does since 2024-08).
    #[tracing::instrument(skip(self, meta))]
    pub async fn put_new_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        content_type: &str,
        meta: &[(&str, &str)],
    ) -> Result<Put, StoreError> {
        let body = ByteStream::from_path(path).await.map_err(|e| {
            StoreError::Unavailable(format!("reading {} to upload: {e}", path.display()))
        })?;
        self.put_new(bucket, key, body, content_type, meta).await
    }

    /// PutObject with `If-None-Match: *` of a small body.
    pub async fn put_new_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Put, StoreError> {
        self.put_new(bucket, key, ByteStream::from(body), content_type, &[])
            .await
    }

    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        content_type: &str,
        meta: &[(&str, &str)],
    ) -> Result<Put, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(body);
        for (k, v) in meta {
            req = req.metadata(*k, *v);
        }
        match req.send().await {
            Ok(out) => Ok(Put::Created(real_version(out.version_id()))),
            // 412 PreconditionFailed; 409 ConditionalRequestConflict (a concurrent write won).
            Err(e) if matches!(status(&e), Some(412) | Some(409)) => Ok(Put::Exists),
            Err(e) => Err(self.fail("PutObject", bucket, key, e)),
        }
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("ListObjectsV2", bucket, prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    /// Every version and delete marker of the keys under `prefix` (ListObjectVersions, all
    /// pages). An unversioned bucket lists its current objects (VersionId "null").
    #[tracing::instrument(skip(self))]
    pub async fn history(&self, bucket: &str, prefix: &str) -> Result<History, StoreError> {
        let mut h = History::default();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.fail("ListObjectVersions", bucket, prefix, e))?;
            for v in page.versions() {
                if let Some(k) = v.key() {
                    h.versions
                        .push((k.to_string(), real_version(v.version_id())));
                }
            }
            for m in page.delete_markers() {
                if let Some(k) = m.key() {
                    h.delete_markers.push(k.to_string());
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        Ok(h)
    }

    /// Whether the bucket keeps versions; `None` when these credentials may not ask
    /// (s3:GetBucketVersioning).
    #[tracing::instrument(skip(self))]
    pub async fn versioned(&self, bucket: &str) -> Result<Option<bool>, StoreError> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.status() == Some(&BucketVersioningStatus::Enabled))),
            Err(e) if status(&e) == Some(403) => Ok(None),
            // A 200 the SDK cannot parse: moto answers a never-versioned bucket with an empty
            // <GetBucketVersioningResponse/> (AWS: <VersioningConfiguration/>). Read it as text.
            Err(SdkError::ServiceError(se)) if se.raw().status_u16() == 200 => {
                let body = se.raw().body().bytes().unwrap_or_default();
                let text = String::from_utf8_lossy(body);
                Ok(Some(text.contains("<Status>Enabled</Status>")))
            }
            Err(e) => Err(self.fail("GetBucketVersioning", bucket, "", e)),
        }
    }

    /// DeleteObjects of `keys` (their current versions; a versioned bucket keeps the bytes).
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), StoreError> {
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Unavailable(format!("DeleteObjects: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("DeleteObjects: {e}")))?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| self.fail("DeleteObjects", bucket, &keys.join(","), e))?;
        if let Some(err) = out.errors().first() {
            return Err(StoreError::Unavailable(format!(
                "DeleteObjects s3://{bucket}/{}: {} {}",
                err.key().unwrap_or("?"),
                err.code().unwrap_or("?"),
                err.message().unwrap_or("")
            )));
        }
        Ok(())
    }
}

/// The raw HTTP response's status and headers, whatever the response type.
pub trait HasHead {
    fn status_u16(&self) -> u16;
    fn header(&self, name: &str) -> Option<String>;
}

impl HasHead for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers().get(name).map(str::to_string)
    }
}

fn status<E, R: HasHead>(e: &SdkError<E, R>) -> Option<u16> {
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status_u16()),
        _ => None,
    }
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<String> {
    match e {
        SdkError::ServiceError(se) => se.err().code().map(str::to_string),
        _ => None,
    }
}

/// A missing key or version (not a missing bucket).
fn missing<E: ProvideErrorMetadata, R: HasHead>(e: &SdkError<E, R>) -> bool {
    match code(e).as_deref() {
        Some("NoSuchKey") | Some("NoSuchVersion") => true,
        Some("NoSuchBucket") => false,
        _ => status(e) == Some(404),
    }
}

/// The IAM action a call needs.
fn permission(call: &str) -> &'static str {
    match call {
        "HeadObject" | "GetObject" => "s3:GetObject",
        "PutObject" => "s3:PutObject",
        "ListObjectsV2" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "DeleteObjects" => "s3:DeleteObject",
        _ => "the S3 permission for it",
    }
}

/// One line: the call, the object, what S3 said, the fix.
fn describe<E, R>(
    call: &str,
    bucket: &str,
    key: &str,
    region: &str,
    timeout: Duration,
    e: SdkError<E, R>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static + HasHead,
{
    let at = format!("{call} s3://{bucket}/{key}");
    let timed_out = || {
        StoreError::Unavailable(format!(
            "{at}: no answer within {} (TFMOD_S3_TIMEOUT / --s3-timeout): check the endpoint and the network, or raise the timeout",
            humantime::format_duration(timeout)
        ))
    };
    match &e {
        SdkError::TimeoutError(_) => timed_out(),
        SdkError::DispatchFailure(d) if d.is_timeout() => timed_out(),
        SdkError::DispatchFailure(_) => StoreError::Unavailable(format!(
            "{at}: cannot reach S3 ({}): check AWS_ENDPOINT_URL_S3 and the network",
            innermost(&e)
        )),
        SdkError::ServiceError(se) => {
            let status = se.raw().status_u16();
            let code = se.err().code().unwrap_or("");
            let bucket_region = se.raw().header("x-amz-bucket-region");
            if code == "NoSuchBucket" {
                return StoreError::NoBucket(format!(
                    "bucket {bucket:?} does not exist (or these credentials cannot see it): check --bucket and the AWS account"
                ));
            }
            let wrong_region = status == 301
                || code == "PermanentRedirect"
                || code == "AuthorizationHeaderMalformed"
                || bucket_region.as_deref().is_some_and(|r| r != region);
            if wrong_region {
                return StoreError::Unavailable(match bucket_region {
                    Some(r) => format!(
                        "{at}: bucket {bucket} is in {r} (S3's x-amz-bucket-region), not {region}: set AWS_REGION={r}, and write the source for {r}"
                    ),
                    None => format!(
                        "{at}: bucket {bucket} is not in {region} (S3 answered {status}): set AWS_REGION to the bucket's region"
                    ),
                });
            }
            let said = if code.is_empty() {
                status.to_string()
            } else {
                format!("{status} {code}")
            };
            StoreError::Unavailable(match status {
                403 => format!(
                    "{at}: refused ({said}): grant {} on arn:aws:s3:::{bucket} to these credentials (docs/tfmod.md, IAM)",
                    permission(call)
                ),
                500..=599 => format!("{at}: S3 answered {said}: S3 is failing; retry later"),
                _ => {
                    let msg: String = se.err().message().unwrap_or("").chars().take(120).collect();
                    format!("{at}: S3 answered {said}: {msg}")
                }
            })
        }
        _ => StoreError::Unavailable(format!("{at}: {}", innermost(&e))),
    }
}

/// The last error in the chain, one line, at most 160 characters.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let s = cur.to_string();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(160).collect()
}

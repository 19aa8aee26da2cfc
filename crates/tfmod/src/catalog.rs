//! What is published, as stored beside each archive: the metadata (`NAME/X.Y.Z.json`), the
//! tombstone of a deleted version (`NAME/X.Y.Z.deleted`), and reading them from the store.

use serde::{Deserialize, Serialize};

use crate::names::{self, ModuleName};
use crate::store::Store;
use crate::Error;

/// What is stored beside each archive, as `NAME/X.Y.Z.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    /// Lowercase hex SHA-256 of the archive's bytes.
    pub sha256: String,
    pub size: u64,
    pub files: Vec<String>,
    pub git_revision: String,
    pub published_by: String,
    pub published_at: String,
    pub source: String,
    pub tfmod_version: String,
    /// The archive's S3 VersionId, on a versioned bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// What `delete` leaves at `NAME/X.Y.Z.deleted`: the number stays used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tombstone {
    pub name: String,
    pub version: String,
    pub sha256: Option<String>,
    pub deleted_by: String,
    pub deleted_at: String,
}

/// Validated store flags.
pub struct Where {
    pub bucket: String,
    pub prefix: String,
}

/// The metadata at `key`; `None` when missing; `Exists` (damaged) when it is not tfmod's.
pub async fn read_metadata(
    store: &Store,
    bucket: &str,
    key: &str,
) -> Result<Option<Metadata>, Error> {
    let damaged = |why: String| {
        Error::Exists(format!(
            "s3://{bucket}/{key} is not tfmod metadata ({why}): the version's record is damaged; inspect it and publish a new version"
        ))
    };
    match store.get_small(bucket, key, 1 << 20).await? {
        None => Ok(None),
        Some(Err(size)) => Err(damaged(format!("{size} bytes"))),
        Some(Ok(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| damaged(e.to_string())),
    }
}

/// The metadata of a published version, or NotFound.
pub async fn published(
    store: &Store,
    w: &Where,
    name: &ModuleName,
    version: &semver::Version,
) -> Result<Metadata, Error> {
    let meta_key = names::key(&w.prefix, name, version, "json");
    read_metadata(store, &w.bucket, &meta_key)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} {version} is not published (no s3://{}/{meta_key}): publish it first, or check --bucket and --prefix",
                name.as_str(),
                w.bucket
            ))
        })
}

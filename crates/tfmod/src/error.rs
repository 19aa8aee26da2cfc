//! One error type; every variant maps to one exit code in [`Error::exit_code`].

use std::path::PathBuf;

use cli_edge::exit;

use crate::store::StoreError;

/// Exit codes, as `--help` and docs/tfmod.md state them.
pub const EXIT_CODES: &str = "\
EXIT CODES:
  0  done (publishing bytes that are already published is done, too)
  1  verify, lock or promote found problems (one line each on stdout), or show found the archive changed
  2  bad usage: a flag's value, an unreadable or unparsable file, a module tree tfmod refuses
  3  S3 unavailable: unreachable, timed out, credentials or permissions refused, bucket missing
  4  the version is used: published with other bytes, deleted, or its metadata damaged (nothing written)
  5  not published: the module version asked for is not in the bucket
  70 a bug in tfmod (a panic): one line on stderr; please report it";

/// What went wrong, and what the user does about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument has a value tfmod refuses: fix the value named in the message.
    #[error("{0}")]
    Usage(String),
    /// A file or directory could not be read, written or parsed: fix or restore it.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// S3 did not answer or refused the call: check the endpoint, credentials, IAM and bucket.
    #[error(transparent)]
    S3(#[from] StoreError),
    /// The version number is used (other bytes, a deletion, damaged metadata): never
    /// overwritten by tfmod; publish a new version instead.
    #[error("{0}")]
    Exists(String),
    /// The module version is not in the bucket: publish it, or check --bucket and --prefix.
    #[error("{0}")]
    NotFound(String),
    /// `verify`/`lock`/`promote` found problems, or `show` a changed archive; each was printed.
    #[error("{0} problem(s) found")]
    Problems(usize),
}

impl Error {
    /// The process exit code (see [`EXIT_CODES`]; 3, 4 and 5 are tfmod's own, a panic's 70 is
    /// set by `main`'s hook).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Problems(_) => exit::CHECK_FAILED,
            Error::Usage(_) | Error::File { .. } => exit::USAGE,
            Error::S3(StoreError::NoRegion) => exit::USAGE,
            Error::S3(_) => 3,
            Error::Exists(_) => 4,
            Error::NotFound(_) => 5,
        }
    }

    /// A file error from an I/O error.
    pub fn file(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Error {
        Error::File {
            path: path.into(),
            msg: e.to_string(),
        }
    }
}

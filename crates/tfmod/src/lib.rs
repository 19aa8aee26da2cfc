//! tfmod: versioned, immutable, checksummed Terraform modules in S3, pinned per stage.
//!
//! - [`names`], [`source`], [`lockfile`], [`hcl`]: pure — names and versions, the go-getter
//!   `s3::` source string, the lock file's text, the `terraform { source }` edit. No I/O.
//! - [`archive`]: the deterministic zip of a module tree (reads the tree, nothing else).
//! - [`terragrunt`]: which source a unit uses and where it is written, following includes
//!   (reads files, nothing else).
//! - [`store`]: one async fn per S3 call, typed errors; the only module that talks to S3.
//! - [`catalog`]: what is published (metadata, tombstones), read through the store.
//! - [`commands`] (publish, versions, show, delete), [`gate`] (lock, verify),
//!   [`promote`] (pin, promote): orchestration.
//! - [`cli`], [`error`]: clap types; the error enum and its exit codes.

pub mod archive;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod error;
pub mod gate;
pub mod hcl;
pub mod lockfile;
pub mod names;
pub mod promote;
pub mod source;
pub mod store;
pub mod terragrunt;

pub use error::Error;

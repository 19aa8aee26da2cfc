//! `eipool release`: give back this interface's pool address (the preStop hook).

use std::path::Path;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ops_context, print_json};
use crate::app::cli::{Global, ReleaseArgs};
use crate::app::config;
use crate::pure::error::Error;
use crate::pure::ids::AssociationId;
use crate::services::{identity, release};
use crate::support::budget::Budget;
use crate::support::output::env_value;

pub(super) async fn run(
    g: &Global,
    args: &ReleaseArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let only = match &args.env_file {
        Some(f) => association_in_env_file(f)?,
        None => config::validate_association(args.association_id.as_deref())?,
    };
    let source = config::validate_identity(g)?;
    let ctx = ops_context(g).await?;
    let budget = Budget::new(Instant::now() + args.timeout, cancel);
    let me = identity::resolve_in(&ctx.ec2, &budget, &source, g.private_ip).await?;
    print_json(&release::release(&ctx, &budget, &me, only.as_ref()).await?)
}

/// The association id in an env file written by `claim --output`. A missing file means nothing
/// was claimed (`Ok(None)`: release then checks the interface itself).
fn association_in_env_file(path: &Path) -> Result<Option<AssociationId>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::usage(format!(
                "--env-file {}: cannot read it: {e}",
                path.display()
            )))
        }
    };
    match env_value(&text, "EIPOOL_ASSOCIATION_ID") {
        Some(id) => id.parse().map(Some).map_err(|_| {
            Error::usage(format!(
                "--env-file {}: EIPOOL_ASSOCIATION_ID={id:?} is not an association id",
                path.display()
            ))
        }),
        None => Err(Error::usage(format!(
            "--env-file {}: no EIPOOL_ASSOCIATION_ID line",
            path.display()
        ))),
    }
}

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
    let given = config::validate_association(args.association_id.as_deref())?;
    let only = match &args.env_file {
        Some(f) => {
            let in_file = association_in_env_file(f)?;
            // The file's variables may be exported (set -a, docker --env-file, systemd
            // EnvironmentFile): EIPOOL_ASSOCIATION_ID then names the same association.
            if let Some(g) = given.as_ref().filter(|g| **g != in_file) {
                return Err(Error::usage(format!(
                    "--association-id {g} and --env-file {} ({in_file}) name different associations; give one of them",
                    f.display()
                )));
            }
            Some(in_file)
        }
        None => given,
    };
    let source = config::validate_identity(g)?;
    let ctx = ops_context(g).await?;
    let budget = Budget::new(Instant::now() + args.timeout, cancel).of_timeout(args.timeout);
    let me = identity::resolve_in(&ctx.ec2, &budget, &source, g.private_ip)
        .await?
        .me;
    print_json(&release::release(&ctx, &budget, &me, only.as_ref()).await?)
}

/// The association id in an env file written by `claim --output`. A missing file is an error:
/// releasing "whatever the interface holds" instead could take an address another claim made.
fn association_in_env_file(path: &Path) -> Result<AssociationId, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "--env-file {}: cannot read it: {e}. Nothing is released; without --env-file, release gives back whatever pool address this interface holds",
            path.display()
        ))
    })?;
    match env_value(&text, "EIPOOL_ASSOCIATION_ID") {
        Some(id) => id.parse().map_err(|_| {
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

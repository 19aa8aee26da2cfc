//! `eipool doctor`: the checklist; exit 1 when a line fails.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ops_context, print_text};
use crate::app::cli::{DoctorArgs, Global, RoleArg};
use crate::app::config;
use crate::pure::error::Error;
use crate::services::doctor::{self, Role, Verdict};
use crate::support::budget::Budget;

pub(super) async fn run(
    g: &Global,
    args: &DoctorArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let source = config::validate_identity(g)?;
    let ctx = ops_context(g).await?;
    let budget =
        Budget::new(Instant::now() + args.ops.timeout, cancel).of_timeout(args.ops.timeout);
    let role = match args.role {
        RoleArg::Node => Role::Node,
        RoleArg::Operator => Role::Operator,
    };
    let checks = doctor::run(&ctx, &budget, &source, g.private_ip, role).await;
    print_text(&doctor::render(&checks))?;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "doctor: failed: {}",
            failed.join(", ")
        )))
    }
}

//! `eipool gc`: what nobody alive can be using; `--apply` frees it.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ops_context, print_json, print_text};
use crate::app::cli::{GcArgs, GcFormat, Global};
use crate::pure::error::Error;
use crate::services::gc;
use crate::support::budget::Budget;

pub(super) async fn run(g: &Global, args: &GcArgs, cancel: CancellationToken) -> Result<(), Error> {
    let ctx = ops_context(g).await?;
    let budget =
        Budget::new(Instant::now() + args.ops.timeout, cancel).of_timeout(args.ops.timeout);
    let report = gc::gc(&ctx, &budget, args.apply).await?;
    match args.output {
        GcFormat::Text => print_text(&report.text()),
        GcFormat::Json => print_json(&report),
    }
}

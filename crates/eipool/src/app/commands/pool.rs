//! `eipool pool grow` and `eipool pool shrink`.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ops_context, print_json};
use crate::app::cli::{Global, GrowArgs, ShrinkArgs};
use crate::app::config;
use crate::pure::address::AddressSource;
use crate::pure::error::Error;
use crate::services::pool;
use crate::support::budget::Budget;

pub(super) async fn grow(
    g: &Global,
    args: &GrowArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let token = config::validate_token(args.idempotency_token.as_deref())?;
    let source = match (&args.ipam_pool_id, &args.public_ipv4_pool) {
        (Some(id), _) => AddressSource::Ipam(id.clone()),
        (None, Some(id)) => AddressSource::PublicIpv4Pool(id.clone()),
        (None, None) => AddressSource::Amazon,
    };
    let ctx = ops_context(g).await?;
    let budget =
        Budget::new(Instant::now() + args.ops.timeout, cancel).of_timeout(args.ops.timeout);
    let count = usize::from(args.count);
    print_json(&pool::grow(&ctx, &budget, count, token.as_deref(), &source).await?)
}

pub(super) async fn shrink(
    g: &Global,
    args: &ShrinkArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let ctx = ops_context(g).await?;
    let budget =
        Budget::new(Instant::now() + args.ops.timeout, cancel).of_timeout(args.ops.timeout);
    print_json(&pool::shrink(&ctx, &budget, usize::from(args.count)).await?)
}

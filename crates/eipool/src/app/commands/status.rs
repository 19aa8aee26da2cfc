//! `eipool status`: the pool as a table or JSON, `--min-free` for scripts, `--cidrs` for
//! firewall admins.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ops_context, print_json, print_text};
use crate::app::cli::{Global, StatusArgs, StatusFormat};
use crate::pure::address::POOL_TAG;
use crate::pure::classify::State;
use crate::pure::error::Error;
use crate::services::pool_view;
use crate::support::budget::Budget;

pub(super) async fn run(
    g: &Global,
    args: &StatusArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let ctx = ops_context(g).await?;
    ctx.warn_without_redis("states come from EC2 alone");
    let budget =
        Budget::new(Instant::now() + args.ops.timeout, cancel).of_timeout(args.ops.timeout);
    let st = pool_view::collect(&ctx, &budget).await?;
    if st.total == 0 {
        // An empty allow-list must never reach customers; a misspelled pool is not "all free".
        let empty = Error::Exhausted {
            pool: st.pool.clone(),
            size: 0,
            elapsed: std::time::Duration::ZERO,
            tag: POOL_TAG,
        };
        if args.cidrs || args.min_free.is_some() {
            return Err(empty);
        }
        tracing::warn!("{empty}");
    }
    if args.cidrs {
        let blocks: Vec<String> = st.cidrs().iter().map(|b| b.to_string()).collect();
        match args.output {
            StatusFormat::Json => print_json(&blocks)?,
            StatusFormat::Table => {
                print_text(&blocks.iter().map(|b| format!("{b}\n")).collect::<String>())?
            }
        }
    } else {
        match args.output {
            StatusFormat::Json => print_json(&st)?,
            StatusFormat::Table => print_text(&st.table())?,
        }
    }
    match args.min_free {
        Some(n) if st.count(State::Free) < n => Err(Error::CheckFailed(format!(
            "pool {:?} has {} free addresses, fewer than --min-free {n}",
            st.pool,
            st.count(State::Free)
        ))),
        _ => Ok(()),
    }
}

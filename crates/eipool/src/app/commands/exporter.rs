//! `eipool exporter`: the pool's gauges for alerts, from one replica (every agent listing the
//! whole pool would spend the describe budget a herd needs). Ready once a read succeeded.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ops_context;
use crate::app::cli::{ExporterArgs, Global};
use crate::app::{config, http};
use crate::pure::error::Error;
use crate::pure::plan;
use crate::services::context::Context;
use crate::services::pool_view;
use crate::support::budget::Budget;
use crate::support::health::Health;
use crate::support::metrics::Served;

pub(super) async fn run(
    g: &Global,
    args: &ExporterArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    if args.interval < Duration::from_secs(5) {
        return Err(Error::usage(format!(
            "--interval {} is too short for reading a whole pool; use at least 5s",
            crate::pure::error::shown(args.interval)
        )));
    }
    let per_read = config::exporter_read_timeout(args.interval, args.timeout)?;
    let ctx = ops_context(g).await?;
    // The exporter holds no address: its readiness is not eipool_ready's.
    let health = Health::starting_untracked("starting: pool not read yet");
    let server = http::serve(&args.listen, health.clone(), Served::ByExporter).await?;
    // The line's count is one cheap Redis call: kept fresh apart from the pool's read.
    let line =
        (ctx.redis.is_some()).then(|| tokio::spawn(count_the_line(ctx.clone(), cancel.clone())));
    loop {
        let budget = Budget::new(Instant::now() + per_read, cancel.clone());
        if pool_view::publish_gauges(&ctx, &budget).await {
            health.set(true, format!("pool {:?} read", ctx.pool));
        } else {
            health.set(false, format!("could not read pool {:?}", ctx.pool));
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
    server.stop().await;
    if let Some(line) = line {
        line.abort();
    }
    Ok(())
}

/// Count the pool's waiting line every `plan::LINE_COUNT_EVERY` until cancelled; a failure is
/// warned once (the error names what to fix: a Redis that refuses the command is an ACL to fix),
/// then noted until it is counted again.
async fn count_the_line(ctx: Context, cancel: CancellationToken) {
    let mut failing = false;
    loop {
        match pool_view::publish_waiting(&ctx).await {
            Ok(_) if failing => {
                tracing::info!("the pool's waiting line is counted again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "could not count the pool's waiting line: eipool_pool_waiting is absent until it can");
                failing = true;
            }
            Err(e) => tracing::debug!(error = %e, "could not count the pool's waiting line"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(plan::LINE_COUNT_EVERY) => {}
        }
    }
}

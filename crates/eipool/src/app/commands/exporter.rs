//! `eipool exporter`: the pool's gauges for alerts, from one replica (every agent listing the
//! whole pool would spend the describe budget a herd needs). Ready once a read succeeded.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ops_context;
use crate::app::cli::{ExporterArgs, Global};
use crate::app::{config, http};
use crate::pure::error::Error;
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
    Ok(())
}

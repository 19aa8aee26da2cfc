//! `eipool claim`: who am I, then the claim protocol; the report on stdout (and `--output`).

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::print_json;
use crate::app::cli::{ClaimArgs, Global};
use crate::app::config;
use crate::pure::error::Error;
use crate::pure::plan;
use crate::services::{claim, context, identity, line};
use crate::support::budget::Budget;
use crate::support::metrics;

pub(super) async fn run(
    g: &Global,
    args: &ClaimArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let started = Instant::now();
    let cfg = config::claim_config(g, args)?;
    if let Some(out) = &cfg.output {
        claim::check_output(out)?;
    }
    let ctx = context::connect(&cfg.pool, cfg.redis.as_ref(), cfg.call_timeout, cfg.lease).await?;
    let work = Budget::new(
        started + cfg.timeout - plan::cleanup_reserve(cfg.timeout),
        cancel.clone(),
    )
    .of_timeout(cfg.timeout);
    let found = match identity::resolve_paced(&ctx, &work, &cfg.identity, cfg.private_ip).await {
        Ok(found) => found,
        Err(e) => {
            metrics::global().claim_finished(e.label(), started.elapsed().as_secs_f64());
            return Err(e);
        }
    };
    let claimed = if args.wait {
        line::claim_waiting(&ctx, found, &cfg, started, cancel).await?
    } else {
        let prior = claim::Prior {
            look: found.look,
            ..Default::default()
        };
        claim::run(&ctx, &found.me, &cfg, prior, started, cancel).await?
    };
    print_json(&claimed)
}

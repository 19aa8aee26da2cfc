//! `eipool claim`: who am I, then the claim protocol; the report on stdout (and `--output`).
//! A report nobody can receive gives its address back (`undelivered`).

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tracing::warn;

use super::print_json;
use crate::app::cli::{ClaimArgs, Global};
use crate::app::config;
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::plan;
use crate::services::claim::ClaimConfig;
use crate::services::context::Context;
use crate::services::{claim, context, identity, line, release};
use crate::support::budget::Budget;
use crate::support::metrics;
use crate::support::output::Claimed;

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
    let me = found.me.clone();
    let claimed = if args.wait {
        line::claim_waiting(&ctx, found, &cfg, started, cancel).await?
    } else {
        let prior = claim::Prior {
            look: found.look,
            ..Default::default()
        };
        claim::run(&ctx, &found.me, &cfg, prior, started, cancel).await?
    };
    match print_json(&claimed) {
        Err(Error::Undelivered(why)) => undelivered(&ctx, &cfg, &me, &claimed, why, started).await,
        other => other,
    }
}

/// The report of a won claim could not be written to stdout. The env file (`--output`) has
/// it: keep the address, warn, succeed. Otherwise nobody will learn the address: give it back
/// (unless this interface held it before the claim) and say so.
async fn undelivered(
    ctx: &Context,
    cfg: &ClaimConfig,
    me: &Identity,
    claimed: &Claimed,
    why: String,
    started: Instant,
) -> Result<(), Error> {
    let ip = claimed.public_ip;
    if let Some(out) = &cfg.output {
        warn!(output = %out.display(), public_ip = %ip, "{why}; the env file has the report: keeping the address");
        return Ok(());
    }
    if claimed.reused {
        return Err(Error::Undelivered(format!(
            "{why}. The interface held {ip} before this claim: kept. Keep stdout open until the claim ends, or use --output FILE"
        )));
    }
    let cleanup = Budget::cleanup(started + cfg.timeout);
    let gave_back = release::release(ctx, &cleanup, me, Some(&claimed.association_id)).await;
    Err(Error::Undelivered(match gave_back {
        Ok(r) if !r.released.is_empty() => format!(
            "{why}. Nobody would learn the address, so {ip} was given back. Keep stdout open until the claim ends, or use --output FILE"
        ),
        Ok(_) => format!(
            "{why}. {ip} was to be given back, but the interface no longer holds it under the claim's association"
        ),
        Err(e) => format!(
            "{why}; giving {ip} back failed too ({e}): release it with `eipool release` on this interface"
        ),
    }))
}

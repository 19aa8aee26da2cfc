//! The claim protocol: list the pool once, take a per-address lease in Redis, associate with
//! EC2's compare-and-swap, validate by polling, record, report. Decisions come from
//! [`crate::pure::plan`]; calls go through the AWS and Redis adapters.
//!
//! Every await is bounded by the deadline and the cancellation token. Anything taken on the way
//! (a lease, an association) is given back before an error is returned.
//!
//! One concept per file: [`protocol`] (the claimer: the interface lease, and the drivers of the
//! claim and passes machines, `pure::claim` and `pure::passes`; the only `impl` with state; every
//! step below is a plain function over [`Means`]),
//! [`coordination`] (with or without Redis: leases, the pace, the shared listing, markers, the
//! cool-down; nothing else asks whether Redis answers), [`listing`] (our own listing or the
//! herd's), [`occupant`] (what already holds our private IP), [`attempt`] (one candidate:
//! lease, associate, and what it came to), [`validate`] (confirm and record the win),
//! [`cleanup`] (giving back on EC2, plain functions).

mod attempt;
mod cleanup;
mod coordination;
mod listing;
mod occupant;
mod protocol;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::adapters::aws::Ec2;
use crate::adapters::redis::RedisTarget;
use crate::pure::error::Error;
use crate::pure::identity::{Identity, IdentitySource};
use crate::pure::ids::AllocationId;
use crate::services::context::Context;
use crate::services::identity::InterfaceLook;
use crate::support::budget::{Budget, Interrupt, Stopped};
use crate::support::metrics;
use crate::support::output::{self, Claimed};

use coordination::Coordination;
use protocol::Claimer;

/// Everything a claim needs, validated.
#[derive(Debug, Clone)]
pub(crate) struct ClaimConfig {
    /// The pool name (value of the `eipool:pool` tag).
    pub(crate) pool: String,
    /// Which interface we are.
    pub(crate) identity: IdentitySource,
    /// The private IP to map to, when not the primary.
    pub(crate) private_ip: Option<std::net::Ipv4Addr>,
    /// `--redis-url`, checked for form.
    pub(crate) redis: Option<RedisTarget>,
    /// `--require-leases`.
    pub(crate) require_leases: bool,
    /// The whole command's budget.
    pub(crate) timeout: Duration,
    /// `--output` env file.
    pub(crate) output: Option<PathBuf>,
    /// Lease on one address.
    pub(crate) lease: Duration,
    /// Timeout of each EC2 call.
    pub(crate) call_timeout: Duration,
}

/// What each step of a claim acts through: EC2, the coordination with the herd, and the two
/// budgets. [`protocol`]'s claimer owns it and hands it to the steps, which are plain functions:
/// [`listing`], [`occupant`], [`attempt`], [`validate`], [`cleanup`].
struct Means {
    ec2: Ec2,
    /// With or without Redis: the only one that knows which.
    coord: Coordination,
    /// The pool name (value of the `eipool:pool` tag).
    pool: String,
    /// Whether this claim is one of a herd (it was handed the herd's shared listing): EC2's
    /// describe budget is then shared, and validation looks once, a little later.
    herd: bool,
    /// A turn in the herd's AssociateAddress pace, waited for before choosing an address and
    /// not yet used (the candidate turned out busy): the next association uses it.
    slot: Option<coordination::Slot>,
    /// The budget for claiming: ends before the overall deadline, leaving the rest for cleanup.
    work: Budget,
    /// The budget for giving back what a failing claim took: the overall deadline, deaf to
    /// signals.
    cleanup: Budget,
}

/// Why the protocol stopped early.
#[derive(Debug)]
enum Stop {
    /// The work deadline passed, or a signal arrived.
    Interrupted(Interrupt),
    /// A failure no retry will fix.
    Fatal(Error),
    /// The interface lease ran out before an association (the process was paused longer than
    /// the lease, or Redis lost it): another claim of this interface may have run since. The
    /// claim takes the lease again and starts over from the listing.
    InterfaceLost,
}

impl From<Interrupt> for Stop {
    fn from(i: Interrupt) -> Self {
        Stop::Interrupted(i)
    }
}

impl<E: Into<Error>> From<Stopped<E>> for Stop {
    fn from(s: Stopped<E>) -> Self {
        match s {
            Stopped::Interrupted(i) => Stop::Interrupted(i),
            Stopped::Failed(e) => Stop::Fatal(e.into()),
        }
    }
}

/// What a claim knows or owes before it starts.
#[derive(Debug, Default)]
pub(crate) struct Prior {
    /// An address to try first when it is free (the agent taking back the address its media
    /// server still announces).
    pub(crate) prefer: Option<AllocationId>,
    /// What EC2 showed on the interface when the identity was looked up just before, if it was.
    pub(crate) look: Option<InterfaceLook>,
    /// This claimer would wait in the pool's line if the pool were full, and is not in it yet:
    /// it leaves free addresses to the servers already waiting (`plan::leave_to_the_line`).
    pub(crate) behind_the_line: bool,
    /// Since when this claimer has waited in the pool's line, if it has: a win is then counted
    /// once, as `outcome="waited"`, and its wait measured (`eipool_line_wait_seconds`, the
    /// report's `waited_ms`).
    pub(crate) waited_since: Option<Instant>,
}

/// Claim an address of the pool for `me`, within `cfg.timeout` of `started`: the address, or an
/// error after cleaning up. Counts the outcome in the metrics.
pub(crate) async fn run(
    ctx: &Context,
    me: &Identity,
    cfg: &ClaimConfig,
    prior: Prior,
    started: Instant,
    cancel: CancellationToken,
) -> Result<Claimed, Error> {
    let waited_since = prior.waited_since;
    let mut result = run_inner(ctx, me, cfg, prior, started, cancel).await;
    let outcome = match (&mut result, waited_since) {
        (Ok(c), Some(since)) => {
            let waited = since.elapsed();
            c.waited_ms = Some(waited.as_millis() as u64);
            info!(
                waited_s = waited.as_secs_f64(),
                "a freed address reached us after waiting in the pool's line"
            );
            metrics::global().waited(waited.as_secs_f64());
            "waited"
        }
        (Ok(c), None) if c.reused => "reused",
        (Ok(_), None) => "claimed",
        (Err(e), _) => e.label(),
    };
    metrics::global().claim_finished(outcome, started.elapsed().as_secs_f64());
    result
}

async fn run_inner(
    ctx: &Context,
    me: &Identity,
    cfg: &ClaimConfig,
    prior: Prior,
    started: Instant,
    cancel: CancellationToken,
) -> Result<Claimed, Error> {
    if let Some(out) = &cfg.output {
        check_output(out)?;
    }
    let mut claimer = Claimer::new(ctx, cfg, prior, started, cancel);
    let mut claimed = claimer.claim(me).await?;
    claimed.elapsed_ms = started.elapsed().as_millis() as u64;
    if let Some(out) = &cfg.output {
        if let Err(e) = output::write_atomically(out, &claimed.env_file()) {
            // The media server would never learn its address: give it back rather than leak it.
            if !claimed.reused {
                cleanup::give_back(&claimer.m, &claimed).await;
            }
            return Err(Error::usage(format!(
                "--output {}: cannot write the env file: {e}",
                out.display()
            )));
        }
    }
    Ok(claimed)
}

/// Refuse an `--output` that cannot be written, before anything is taken.
pub(crate) fn check_output(out: &std::path::Path) -> Result<(), Error> {
    output::check_writable(out).map_err(|e| {
        Error::usage(format!(
            "--output {}: cannot write there: {e}",
            out.display()
        ))
    })
}

//! The claimer: holds the interface's lease around a claim, and drives the claim machine
//! ([`crate::pure::claim`]: list the pool, look at what our private IP already holds, order the
//! candidates, weigh how the passes ended) and the passes machine ([`crate::pure::passes`]: try
//! the candidates, pass after pass, while some may still come free). The machines decide; this
//! file performs their calls and feeds back the answers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::attempt::{self, Attempt};
use super::coordination::{Coordination, PaceClass};
use super::{listing, occupant, validate, ClaimConfig, Means, Prior, Stop};
use crate::pure::address::{Address, POOL_TAG};
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::plan::{self, AfterDeadline, PassTally};
use crate::pure::{claim, passes};
use crate::services::context::Context;
use crate::services::identity::InterfaceLook;
use crate::support::budget::{Budget, Interrupt};
use crate::support::output::Claimed;

/// One claim in progress: what its steps act through, and what it has learnt.
pub(super) struct Claimer {
    /// EC2, the coordination with the herd, the budgets: handed to each step.
    pub(super) m: Means,
    started: Instant,
    rng: StdRng,
    pool_size: usize,
    /// An address to try first when it is free.
    prefer: Option<AllocationId>,
    /// What the identity's lookup saw on the interface; used once, if at all.
    look: Option<InterfaceLook>,
    /// Leave free addresses to the servers already waiting in the pool's line.
    behind_the_line: bool,
}

impl Claimer {
    pub(super) fn new(
        ctx: &Context,
        cfg: &ClaimConfig,
        prior: Prior,
        started: Instant,
        cancel: CancellationToken,
    ) -> Self {
        let deadline = started + cfg.timeout;
        Claimer {
            m: Means {
                ec2: ctx.ec2.clone(),
                coord: Coordination::new(ctx.redis.clone(), cfg.require_leases, cfg.lease),
                pool: cfg.pool.clone(),
                herd: false,
                slot: None,
                // Claiming ends before the overall deadline, leaving the rest for cleanup.
                work: Budget::new(deadline - plan::cleanup_reserve(cfg.timeout), cancel)
                    .of_timeout(cfg.timeout),
                cleanup: Budget::cleanup(deadline),
            },
            started,
            rng: StdRng::from_os_rng(),
            pool_size: 0,
            prefer: prior.prefer,
            look: prior.look,
            behind_the_line: prior.behind_the_line,
        }
    }

    /// Claim an address for `me`, or say why not. One claim per interface and private IP runs at
    /// a time (the interface lease, when Redis answers).
    pub(super) async fn claim(&mut self, me: &Identity) -> Result<Claimed, Error> {
        let mut last_tally = None;
        let result = loop {
            let result = match self.m.coord.take_interface_lease(&self.m.work, me).await {
                Ok(guard) => {
                    let result = self
                        .claim_inner(me, guard.in_redis(), &mut last_tally)
                        .await;
                    self.m
                        .coord
                        .give_back_interface_lease(&self.m.cleanup, guard, me)
                        .await;
                    result
                }
                Err(stop) => Err(stop),
            };
            match result {
                Err(Stop::InterfaceLost) => {
                    warn!(eni = %me.eni, private_ip = %me.private_ip, "the interface lease ran out before associating; taking it again and starting over");
                }
                other => break other,
            }
        };
        match result {
            Err(Stop::InterfaceLost) => unreachable!("handled in the loop above"),
            Ok(c) => Ok(c),
            Err(Stop::Fatal(e)) => Err(e),
            Err(Stop::Interrupted(Interrupt::Cancelled)) => Err(Error::Interrupted),
            Err(Stop::Interrupted(Interrupt::Deadline)) => {
                Err(match plan::deadline_verdict(last_tally) {
                    AfterDeadline::Exhausted => self.exhausted(),
                    AfterDeadline::Temporary => self.m.work.error(Interrupt::Deadline),
                })
            }
        }
    }

    pub(super) fn exhausted(&self) -> Error {
        Error::Exhausted {
            pool: self.m.pool.clone(),
            size: self.pool_size,
            elapsed: self.started.elapsed(),
            tag: POOL_TAG,
        }
    }

    /// The claim, under the interface lease (held in Redis when `lease_in_redis`): the driver
    /// of the claim machine ([`crate::pure::claim`]). It performs each call the machine asks
    /// for and feeds the answer back, with the time since the claim started; the passes go to
    /// their own driver ([`Self::passes`]).
    async fn claim_inner(
        &mut self,
        me: &Identity,
        lease_in_redis: bool,
        last_tally: &mut Option<PassTally>,
    ) -> Result<Claimed, Stop> {
        info!(eni = %me.eni, private_ip = %me.private_ip, pool = %self.m.pool, "claiming");
        let mut look = self.look.take();
        let mut machine = claim::Claim::new(
            me.clone(),
            self.prefer.clone(),
            self.behind_the_line,
            lease_in_redis,
            look.as_ref().map(|l| l.at.elapsed()),
            self.rng.random(),
        );
        // When the listing being tried was made, for the passes' clock.
        let mut listed_at = Instant::now();
        let mut input = claim::Input::Start;
        loop {
            let call = machine.step(input, self.started.elapsed());
            input = match call {
                claim::Call::Intent => claim::Input::Recalled(self.m.coord.intent(&self.m.work, me).await?),
                claim::Call::List { shared } => {
                    if shared.is_none() {
                        debug!("listing the pool ourselves");
                    }
                    let (listing, shared, made) = listing::list_pool(&mut self.m, shared).await?;
                    self.m.herd |= shared;
                    self.pool_size = listing.len();
                    listed_at = made;
                    claim::Input::Listed {
                        listing,
                        shared,
                        age: made.elapsed(),
                    }
                }
                claim::Call::Adopt { addr, others } => {
                    if others > 0 {
                        warn!(
                            count = others + 1,
                            "this interface holds several addresses of the pool; reporting the first"
                        );
                    }
                    info!(public_ip = %addr.public_ip, allocation_id = %addr.allocation_id, "already held: adopting");
                    validate::write_holder_tag(&self.m, &addr, me).await;
                    return validate::report(&addr, me, true);
                }
                claim::Call::Occupant { look: use_look } => {
                    let listing = machine.listing().unwrap_or(&[]);
                    let look = if use_look { look.take() } else { None };
                    claim::Input::Occupant(occupant::occupant(&mut self.m, me, listing, look).await?)
                }
                claim::Call::Waiting => claim::Input::Waiting(self.m.coord.waiting(&self.m.work).await?),
                claim::Call::Passes {
                    order,
                    suspect,
                    shared,
                    seed,
                } => {
                    info!(
                        pool_size = self.pool_size,
                        free = order.len(),
                        shared,
                        "listed the pool"
                    );
                    let passed = self
                        .passes(order, me, suspect.as_ref(), (shared, listed_at), seed, last_tally)
                        .await?;
                    match passed {
                        Ok(claimed) => return Ok(claimed),
                        Err((end, suspect_gone)) => claim::Input::Passed { end, suspect_gone },
                    }
                }
                claim::Call::Ended(claim::Ended::Exhausted) => return Err(Stop::Fatal(self.exhausted())),
                claim::Call::Ended(claim::Ended::LeftToTheLine { free, waiting }) => {
                    info!(free, waiting, "servers are waiting in the pool's line for these addresses: joining it behind them");
                    return Err(Stop::Fatal(self.exhausted()));
                }
                claim::Call::Ended(claim::Ended::Foreign {
                    public_ip,
                    allocation_id,
                }) => {
                    return Err(Stop::Fatal(Error::usage(format!(
                        "private IP {} of {} already holds Elastic IP {public_ip} ({allocation_id}), which is not in pool {:?}; \
                         eipool never displaces it. Disassociate it if it is not needed, or claim for another --private-ip",
                        me.private_ip, me.eni, self.m.pool
                    ))))
                }
            };
        }
    }

    /// The passes over one listing: the driver of the passes machine ([`crate::pure::passes`]).
    /// It performs each call the machine asks for and feeds the answer back, with the time
    /// since the listing; each candidate is tried by the attempt machine's driver. `Ok(Ok)`: won
    /// or adopted; `Ok(Err)`: how the passes ended without a win.
    async fn passes(
        &mut self,
        order: Vec<Address>,
        me: &Identity,
        suspect: Option<&AllocationId>,
        (shared, listed_at): (bool, Instant),
        seed: u64,
        last_tally: &mut Option<PassTally>,
    ) -> Result<Result<Claimed, (passes::End, bool)>, Stop> {
        let mut machine = passes::Passes::new(me.clone(), order, suspect.cloned(), shared, seed);
        let mut input = passes::Input::Start;
        loop {
            let call = machine.step(input, listed_at.elapsed());
            *last_tally = machine.last_tally();
            input = match call {
                passes::Call::Turn => {
                    let m = &mut self.m;
                    if m.slot.is_some() || !m.coord.knows_what_others_took() {
                        passes::Input::Turn(false)
                    } else {
                        m.slot = m.coord.pace(&m.work, PaceClass::Mutating, None).await?;
                        passes::Input::Turn(true)
                    }
                }
                passes::Call::Outsiders => {
                    passes::Input::Outsiders(self.m.coord.outsiders(&self.m.work).await?)
                }
                passes::Call::Try { cand, suspect } => {
                    let outcome = match attempt::attempt(&mut self.m, &cand, me, suspect).await? {
                        Attempt::Won(c) => return Ok(Ok(c)),
                        Attempt::Done(outcome) => outcome,
                    };
                    passes::Input::Tried {
                        outcome,
                        redis: self.m.coord.knows_what_others_took(),
                    }
                }
                passes::Call::Describe(allocs) => passes::Input::Seen(
                    self.m
                        .coord
                        .describe_masked(&self.m.work, &self.m.ec2, &allocs)
                        .await?,
                ),
                passes::Call::ClearMarker(alloc, age) => {
                    info!(allocation_id = %alloc, marker_age_ms = age.as_millis() as u64, "a marker hides it but EC2 shows it free: dropping the marker");
                    self.m.coord.clear_marker(&self.m.work, &alloc).await?;
                    passes::Input::Done
                }
                passes::Call::Sleep(wait) => {
                    let d = match wait {
                        passes::Wait::Backoff(pass) => {
                            debug!(tally = ?machine.last_tally(), pass, "nothing won this pass; backing off");
                            Budget::backoff(pass)
                        }
                        passes::Wait::MarkerAges(d) => {
                            debug!(wait = ?d, "EC2 shows masked addresses free; waiting for their markers to age");
                            d
                        }
                    };
                    self.m.work.sleep(d).await?;
                    passes::Input::Slept {
                        redis: self.m.coord.knows_what_others_took(),
                    }
                }
                passes::Call::ListOwn => {
                    passes::Input::Listed(listing::list_own(&mut self.m).await?.0)
                }
                passes::Call::Adopt(a) => {
                    info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, "the listing shows an address on this interface: adopting");
                    validate::write_holder_tag(&self.m, &a, me).await;
                    return validate::report(&a, me, true).map(Ok);
                }
                passes::Call::Ended(end) => {
                    match end {
                        passes::End::Stale(_) => debug!(listing_age_ms = listed_at.elapsed().as_millis() as u64, "our turn came; choosing from a newer listing"),
                        passes::End::Behind => debug!("a candidate was taken by a caller outside the herd: the listing is behind EC2; taking a newer one"),
                        _ => {}
                    }
                    return Ok(Err((end, machine.suspect_gone())));
                }
            };
        }
    }
}

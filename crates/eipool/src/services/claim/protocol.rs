//! The claimer and its passes: hold the interface's lease, list the pool, look at what our
//! private IP already holds, try the free addresses in random order, back off and try again while
//! some may still come free, and report exhaustion only when EC2 agrees none can.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::attempt::{self, Attempt};
use super::coordination::{Coordination, PaceClass, Recalled};
use super::{listing, occupant, validate, ClaimConfig, Means, Prior, Stop};
use crate::pure::address::{Address, Occupant, POOL_TAG};
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::passes::{Call, End, Input, Passes, Wait};
use crate::pure::plan::{self, AfterDeadline, PassTally};
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
    /// The suspect (what Redis or our private IP said may be ours) was tried and EC2 showed it
    /// someone else's, past its consistency bound: it is not ours, and not tried again on the
    /// next listing (else each listing would wait out that bound on it again, and grow too old
    /// to choose from before reaching a free address).
    suspect_gone: bool,
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
                coord: Coordination::new(ctx.redis.clone(), cfg.require_lock, cfg.lease),
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
            suspect_gone: false,
        }
    }

    /// Claim an address for `me`, or say why not. One claim per interface and private IP runs at
    /// a time (the interface lease, when Redis answers).
    pub(super) async fn claim(&mut self, me: &Identity) -> Result<Claimed, Error> {
        let mut last_tally = None;
        let result = loop {
            let result = match self.m.coord.lock_interface(&self.m.work, me).await {
                Ok(guard) => {
                    let result = self
                        .claim_inner(me, guard.in_redis(), &mut last_tally)
                        .await;
                    self.m
                        .coord
                        .unlock_interface(&self.m.cleanup, guard, me)
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

    /// The claim, under the interface lease (held in Redis when `lease_in_redis`).
    async fn claim_inner(
        &mut self,
        me: &Identity,
        lease_in_redis: bool,
        last_tally: &mut Option<PassTally>,
    ) -> Result<Claimed, Stop> {
        info!(eni = %me.eni, private_ip = %me.private_ip, pool = %self.m.pool, "claiming");

        // A re-run after a crash: Redis remembers what this interface was taking, which a stale
        // DescribeAddresses may not show yet. Try that one first, as possibly ours.
        let recalled = self.m.coord.intent(&self.m.work, me).await?;
        // The identity's look at the interface may spare the first look at our private IP.
        let mut look = self.look.take().filter(|l| {
            plan::identity_look_will_do(
                l.at.elapsed(),
                lease_in_redis,
                recalled == Recalled::Nothing,
            )
        });
        let mut suspect = match recalled {
            Recalled::Taking(alloc) => Some(alloc),
            Recalled::Nothing | Recalled::Unknown => None,
        };
        let mut allow_shared = true;
        let mut newer_than = None;
        loop {
            let (listing, shared, listed_at) =
                listing::list_pool(&mut self.m, allow_shared, newer_than.take()).await?;
            self.m.herd |= shared;
            self.pool_size = listing.len();
            let mine: Vec<&Address> = listing.iter().filter(|a| a.held_by_me(me)).collect();
            if shared
                && !plan::shared_listing_will_do(
                    suspect.is_some(),
                    !mine.is_empty(),
                    listing.is_empty(),
                )
            {
                allow_shared = false;
                continue;
            }
            if let Some(a) = mine.first() {
                if mine.len() > 1 {
                    warn!(
                        count = mine.len(),
                        "this interface holds several addresses of the pool; reporting the first"
                    );
                }
                info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, "already held: adopting");
                let a = (*a).clone();
                validate::record_holder(&self.m, &a, me).await;
                return validate::report(&a, me, true);
            }
            if listing.is_empty() {
                return Err(Stop::Fatal(self.exhausted()));
            }

            let free: Vec<Address> = listing
                .iter()
                .filter(|a| a.association.is_none())
                .cloned()
                .collect();
            // AWS replaces an Elastic IP already on our private IP: look before associating.
            if !free.is_empty() {
                match occupant::occupant(&mut self.m, me, &listing, look.take()).await? {
                    Occupant::Free => {}
                    Occupant::Pool(alloc) if shared => {
                        debug!(allocation_id = %alloc, "our private IP holds a pool address; listing the pool ourselves");
                        suspect = Some(alloc);
                        allow_shared = false;
                        continue;
                    }
                    Occupant::Pool(alloc) => suspect = Some(alloc),
                    Occupant::Foreign {
                        public_ip,
                        allocation_id,
                    } => {
                        return Err(Stop::Fatal(Error::usage(format!(
                            "private IP {} of {} already holds Elastic IP {public_ip} ({allocation_id}), which is not in pool {:?}; \
                             eipool never displaces it. Disassociate it if it is not needed, or claim for another --private-ip",
                            me.private_ip, me.eni, self.m.pool
                        ))))
                    }
                }
            }
            // First come, first served: what is free goes to the servers already waiting. Not
            // for a claim that may already hold its address (a suspect: Redis's intent, or what
            // its private IP shows), and only on a listing of our own, as "exhausted" always is.
            if self.behind_the_line && suspect.is_none() && !free.is_empty() {
                let waiting = self.m.coord.waiting(&self.m.work).await?;
                if plan::leave_to_the_line(free.len(), waiting) {
                    if shared {
                        allow_shared = false;
                        continue;
                    }
                    info!(free = free.len(), waiting, "servers are waiting in the pool's line for these addresses: joining it behind them");
                    return Err(Stop::Fatal(self.exhausted()));
                }
            }
            let order = plan::claim_order(
                &listing,
                self.prefer.as_ref(),
                suspect.as_ref(),
                &mut self.rng,
            );
            info!(
                pool_size = listing.len(),
                free = order.len(),
                shared,
                "listed the pool"
            );
            let passed = self
                .passes(order, me, suspect.as_ref(), (shared, listed_at), last_tally)
                .await?;
            if std::mem::take(&mut self.suspect_gone) {
                suspect = None;
            }
            match passed {
                Ok(claimed) => return Ok(claimed),
                Err(End::Relist) => allow_shared = false,
                Err(End::Behind) => {
                    allow_shared = true;
                    newer_than = Some(listed_at);
                }
                Err(End::Stale(within)) => {
                    allow_shared = true;
                    newer_than = Instant::now().checked_sub(within);
                }
                Err(End::Exhausted) if !plan::exhaustion_stands(shared, listed_at.elapsed()) => {
                    debug!(shared, listing_age_ms = listed_at.elapsed().as_millis() as u64, "every candidate of the listing is taken; listing the pool again before giving up");
                    allow_shared = false;
                    // The suspect was among them, and EC2 showed it someone else's past its
                    // consistency bound (an agent's address taken while it ran, not a crashed
                    // run's): trying it again would make every listing too old for exhaustion
                    // to stand, and the claim would relist until its deadline.
                    suspect = None;
                }
                Err(End::Exhausted) => return Err(Stop::Fatal(self.exhausted())),
            }
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
        last_tally: &mut Option<PassTally>,
    ) -> Result<Result<Claimed, End>, Stop> {
        let mut machine = Passes::new(
            me.clone(),
            order,
            suspect.cloned(),
            shared,
            self.rng.random(),
        );
        let mut input = Input::Start;
        loop {
            let call = machine.step(input, listed_at.elapsed());
            *last_tally = machine.last_tally();
            self.suspect_gone = machine.suspect_gone();
            input = match call {
                Call::Turn => {
                    let m = &mut self.m;
                    if m.slot.is_some() || !m.coord.knows_what_others_took() {
                        Input::Turn(false)
                    } else {
                        m.slot = m.coord.pace(&m.work, PaceClass::Mutating, None).await?;
                        Input::Turn(true)
                    }
                }
                Call::Outsiders => Input::Outsiders(self.m.coord.outsiders(&self.m.work).await?),
                Call::Try { cand, suspect } => {
                    let outcome = match attempt::attempt(&mut self.m, &cand, me, suspect).await? {
                        Attempt::Won(c) => return Ok(Ok(c)),
                        Attempt::Done(outcome) => outcome,
                    };
                    Input::Tried {
                        outcome,
                        redis: self.m.coord.knows_what_others_took(),
                    }
                }
                Call::Describe(allocs) => Input::Seen(
                    self.m
                        .coord
                        .describe_masked(&self.m.work, &self.m.ec2, &allocs)
                        .await?,
                ),
                Call::ClearMarker(alloc) => {
                    info!(allocation_id = %alloc, "Redis marks it assigned but EC2 shows it free (the marker is older than EC2's consistency bound): dropping the marker");
                    self.m.coord.clear_marker(&self.m.work, &alloc).await?;
                    Input::Done
                }
                Call::Sleep(wait) => {
                    let d = match wait {
                        Wait::Backoff(pass) => {
                            debug!(tally = ?machine.last_tally(), pass, "nothing won this pass; backing off");
                            Budget::backoff(pass)
                        }
                        Wait::MarkerAges(d) => {
                            debug!(wait = ?d, "EC2 shows masked addresses free; waiting for their markers to age");
                            d
                        }
                    };
                    self.m.work.sleep(d).await?;
                    Input::Slept {
                        redis: self.m.coord.knows_what_others_took(),
                    }
                }
                Call::ListOwn => Input::Listed(listing::list_own(&mut self.m).await?.0),
                Call::Adopt(a) => {
                    info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, "the listing shows an address on this interface: adopting");
                    validate::record_holder(&self.m, &a, me).await;
                    return validate::report(&a, me, true).map(Ok);
                }
                Call::Ended(end) => {
                    match end {
                        End::Stale(_) => debug!(listing_age_ms = listed_at.elapsed().as_millis() as u64, "our turn came; choosing from a newer listing"),
                        End::Behind => debug!("a candidate was taken by a caller outside the herd: the listing is behind EC2; taking a newer one"),
                        _ => {}
                    }
                    return Ok(Err(end));
                }
            };
        }
    }
}

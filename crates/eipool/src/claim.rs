//! The claim protocol, orchestration only: list the pool once, take a per-address Redis claim,
//! associate with EC2's compare-and-swap, validate by polling, record, report. Decisions come
//! from [`crate::plan`]; calls go through [`crate::ec2`] and [`crate::lock`].
//!
//! Every await is bounded by the deadline and the cancellation token. Anything taken on the way
//! (a Redis claim, an association) is given back before an error is returned.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::budget::{Budget, Interrupt};
use crate::config::{ClaimConfig, LEASE_MARGIN};
use crate::context;
use crate::ec2::{self, Address, AllocationId, AssociationId, Ec2, Ec2Error};
use crate::error::Error;
use crate::identity::{self, Identity};
use crate::lock::{Acquire, Claims, Held, LockError, SharedListing};
use crate::output::{self, Claimed};
use crate::plan::{self, AfterDeadline, AfterPass, PassTally};

/// After Redis fails (without `--require-lock`), how long to claim without it before trying again.
const REDIS_COOL_DOWN: Duration = Duration::from_secs(5);
/// Without Redis: how many addresses found taken before re-listing the pool.
const LOCK_FREE_BATCH: usize = 3;

/// Why the protocol stopped early.
#[derive(Debug)]
enum Stop {
    /// The work deadline passed.
    Deadline,
    /// SIGTERM/SIGINT.
    Cancelled,
    /// A failure no retry will fix.
    Fatal(Error),
}

impl From<Interrupt> for Stop {
    fn from(i: Interrupt) -> Self {
        match i {
            Interrupt::Deadline => Stop::Deadline,
            Interrupt::Cancelled => Stop::Cancelled,
        }
    }
}

/// What trying one candidate came to.
#[derive(Debug)]
enum Attempt {
    Won(Claimed),
    /// Someone else holds it (EC2 said so, or Redis knows it was just assigned).
    Taken,
    /// Another claimer is working on it: maybe later.
    Busy,
    /// A passing failure: try again later.
    Transient,
}

/// How an AssociateAddress attempt got the address.
#[derive(Debug)]
enum Associated {
    /// This call associated it; validation follows.
    New(AssociationId),
    /// An earlier call (whose answer was lost, or a crashed run's) had: EC2 shows it on our interface.
    Adopted(Address),
}

/// Map an EC2 error that no retry fixes to the command's error.
pub fn ec2_failure(e: Ec2Error, pool: Option<&str>) -> Error {
    match e {
        Ec2Error::Unauthorized { action, message } => Error::Permission { action, message },
        Ec2Error::Configuration { action, message } => Error::Usage(format!(
            "cannot call ec2:{action}: {message}. Check the AWS credentials and region (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, IRSA)"
        )),
        Ec2Error::InterfaceNotFound(id) => Error::Usage(format!("network interface {id} does not exist in this region")),
        Ec2Error::InstanceNotFound(id) => Error::Usage(format!("instance {id} does not exist in this region")),
        e @ (Ec2Error::Throttled { .. } | Ec2Error::Transient { .. }) => Error::Temporary {
            last: e.to_string(),
            elapsed: Duration::ZERO,
        },
        other => Error::Internal(format!(
            "{other}{}",
            pool.map(|p| format!(" (pool {p})")).unwrap_or_default()
        )),
    }
}

/// Run `eipool claim` to the end: the address, or an error after cleaning up.
pub async fn run(cfg: ClaimConfig, cancel: CancellationToken) -> Result<Claimed, Error> {
    let started = Instant::now();
    let result = run_inner(cfg, cancel, started).await;
    let outcome = match &result {
        Ok(c) if c.reused => "reused",
        Ok(_) => "claimed",
        Err(e) => e.label(),
    };
    crate::metrics::global().claim_finished(outcome, started.elapsed().as_secs_f64());
    result
}

async fn run_inner(
    cfg: ClaimConfig,
    cancel: CancellationToken,
    started: Instant,
) -> Result<Claimed, Error> {
    if let Some(out) = &cfg.output {
        output::check_writable(out).map_err(|e| {
            Error::Usage(format!(
                "--output {}: cannot write there: {e}",
                out.display()
            ))
        })?;
    }
    let ctx = context::connect(&cfg.pool, cfg.redis.as_ref(), cfg.call_timeout, cfg.lease).await?;
    ctx.warn_without_redis(
        "claiming on EC2's compare-and-swap alone (safe, but a herd will collide more)",
    );
    let (ec2, claims) = (ctx.ec2, ctx.claims);
    let mut claimer = Claimer::new(ec2, claims, &cfg, started, cancel);
    let mut claimed = claimer.claim(&cfg).await?;
    claimed.elapsed_ms = started.elapsed().as_millis() as u64;
    if let Some(out) = &cfg.output {
        if let Err(e) = output::write_atomically(out, &claimed.env_file()) {
            // The media server would never learn its address: give it back rather than leak it.
            if !claimed.reused {
                claimer.give_back(&claimed).await;
            }
            return Err(Error::Usage(format!(
                "--output {}: cannot write the env file: {e}",
                out.display()
            )));
        }
    }
    Ok(claimed)
}

struct Claimer {
    ec2: Ec2,
    claims: Option<Claims>,
    require_lock: bool,
    pool: String,
    started: Instant,
    /// The overall deadline: nothing runs past it.
    deadline: Instant,
    /// The budget for claiming: ends before `deadline`, leaving the rest for cleanup.
    work: Budget,
    rng: StdRng,
    redis_down_until: Option<Instant>,
    pool_size: usize,
    /// Lease of our Redis claims (renewed while waiting for a paced slot).
    lease: Duration,
}

impl Claimer {
    fn new(
        ec2: Ec2,
        claims: Option<Claims>,
        cfg: &ClaimConfig,
        started: Instant,
        cancel: CancellationToken,
    ) -> Self {
        let deadline = started + cfg.timeout;
        Claimer {
            ec2,
            claims,
            require_lock: cfg.require_lock,
            pool: cfg.pool.clone(),
            started,
            deadline,
            work: Budget::new(deadline - plan::cleanup_reserve(cfg.timeout), cancel),
            rng: StdRng::from_os_rng(),
            redis_down_until: None,
            pool_size: 0,
            lease: cfg.lease,
        }
    }

    async fn claim(&mut self, cfg: &ClaimConfig) -> Result<Claimed, Error> {
        let mut last_tally = None;
        match self.claim_inner(cfg, &mut last_tally).await {
            Ok(c) => Ok(c),
            Err(Stop::Fatal(e)) => Err(e),
            Err(Stop::Cancelled) => Err(Error::Interrupted),
            Err(Stop::Deadline) => Err(match plan::deadline_verdict(last_tally) {
                AfterDeadline::Exhausted => self.exhausted(),
                AfterDeadline::Temporary => Error::Temporary {
                    last: self
                        .work
                        .last_error()
                        .unwrap_or_else(|| "no answer in time".into()),
                    elapsed: self.started.elapsed(),
                },
            }),
        }
    }

    fn exhausted(&self) -> Error {
        Error::Exhausted {
            pool: self.pool.clone(),
            size: self.pool_size,
            elapsed: self.started.elapsed(),
            tag: ec2::POOL_TAG,
        }
    }

    async fn claim_inner(
        &mut self,
        cfg: &ClaimConfig,
        last_tally: &mut Option<PassTally>,
    ) -> Result<Claimed, Stop> {
        let ec2 = self.ec2.clone();
        if cfg.identity.calls_ec2(cfg.private_ip) {
            self.pace("describe", plan::DESCRIBE_PACE, None).await?;
        }
        let me = identity::resolve_in(&ec2, &self.work, &cfg.identity, cfg.private_ip)
            .await
            .map_err(Stop::Fatal)?;
        info!(eni = %me.eni, private_ip = %me.private_ip, pool = %self.pool, "claiming");

        // A re-run after a crash: Redis remembers what this interface was taking, which a stale
        // DescribeAddresses may not show yet. Try that one first, as possibly ours.
        let intent = self.intent(&me).await;
        let mut allow_shared = true;
        loop {
            let (listing, shared) = self.list_pool(allow_shared).await?;
            self.pool_size = listing.len();
            let mine: Vec<&Address> = listing
                .iter()
                .filter(|a| a.held_by(&me.eni, me.private_ip))
                .collect();
            if shared
                && !plan::shared_listing_will_do(
                    intent.is_some(),
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
                return Ok(self.report(a, &me, a.association.as_ref().map(|x| x.id.clone()), true));
            }
            if listing.is_empty() {
                return Err(Stop::Fatal(self.exhausted()));
            }

            let free: Vec<Address> = listing
                .iter()
                .filter(|a| a.association.is_none())
                .cloned()
                .collect();
            let mut order = plan::candidate_order(&free, &mut self.rng);
            if let Some(alloc) = &intent {
                if let Some(a) = listing.iter().find(|a| &a.allocation_id == alloc) {
                    order.retain(|c| &c.allocation_id != alloc);
                    order.insert(0, a.clone());
                }
            }
            info!(
                pool_size = listing.len(),
                free = order.len(),
                shared,
                "listed the pool"
            );
            match self.passes(order, &me, intent.as_ref(), last_tally).await? {
                Some(claimed) => return Ok(claimed),
                None if shared => {
                    debug!("every candidate of the herd's listing is taken; listing the pool before giving up");
                    allow_shared = false;
                }
                None => return Err(Stop::Fatal(self.exhausted())),
            }
        }
    }

    /// Try the candidates, pass after pass, until one is won (`Some`) or every one is known taken
    /// (`None`: exhausted, as far as this listing knows).
    async fn passes(
        &mut self,
        mut order: Vec<Address>,
        me: &Identity,
        intent: Option<&AllocationId>,
        last_tally: &mut Option<PassTally>,
    ) -> Result<Option<Claimed>, Stop> {
        let mut pass = 0u32;
        loop {
            let mut tally = PassTally::default();
            let mut again = Vec::new();
            let mut blind_taken = 0;
            let mut rest = order.into_iter();
            while let Some(cand) = rest.next() {
                let suspect_ours = intent == Some(&cand.allocation_id);
                match self.attempt(&cand, me, suspect_ours).await? {
                    Attempt::Won(c) => return Ok(Some(c)),
                    Attempt::Taken => {
                        // Without Redis, each "taken" cost a mutating call. After a few, a fresh
                        // listing (below) is cheaper than trying the rest of a stale one.
                        if self.live_claims().is_none() {
                            blind_taken += 1;
                            if blind_taken >= LOCK_FREE_BATCH {
                                let unseen: Vec<Address> = rest.collect();
                                tally.busy += unseen.len();
                                again.extend(unseen);
                                break;
                            }
                        }
                    }
                    Attempt::Busy => {
                        tally.busy += 1;
                        again.push(cand);
                    }
                    Attempt::Transient => {
                        tally.transient += 1;
                        again.push(cand);
                    }
                }
            }
            *last_tally = Some(tally);
            match plan::after_pass(tally) {
                AfterPass::Exhausted => return Ok(None),
                AfterPass::TryAgain => {
                    debug!(
                        busy = tally.busy,
                        transient = tally.transient,
                        pass,
                        "nothing won this pass; backing off"
                    );
                    let wait = Budget::backoff(pass);
                    self.work.sleep(wait).await?;
                    pass += 1;
                    if self.live_claims().is_none() {
                        // Without Redis nobody tells us what the others took: one fresh listing
                        // beats trying every address blind under EC2's mutating-call budget.
                        let listing = self.list_own().await?;
                        if let Some(a) = listing.iter().find(|a| a.held_by(&me.eni, me.private_ip))
                        {
                            info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, "the listing shows an address on this interface: adopting");
                            return Ok(Some(self.report(a, me, None, true)));
                        }
                        again = listing
                            .into_iter()
                            .filter(|a| a.association.is_none())
                            .collect();
                    }
                    order = plan::candidate_order(&again, &mut self.rng);
                }
            }
        }
    }

    /// The pool's addresses, and whether they are the herd's listing rather than our own.
    ///
    /// With `allow_shared` and Redis, a listing another claimer made less than
    /// [`plan::SHARED_LISTING_TTL`] ago is used as is; if none is recent, one claimer lists the
    /// pool while the others wait for its answer, so a herd lists the pool about once instead of
    /// once per claimer. Our own listings are shared with the herd.
    async fn list_pool(&mut self, allow_shared: bool) -> Result<(Vec<Address>, bool), Stop> {
        if allow_shared {
            let lead_ttl = self.ec2.call_timeout() * 2;
            while let Some(claims) = self.live_claims().cloned() {
                match self.work.bounded(claims.shared_listing(lead_ttl)).await? {
                    Ok(SharedListing::Recent(mut listing)) => {
                        // Whatever Redis holds, only the pool's own addresses are candidates.
                        listing.retain(|a| a.pool.as_deref() == Some(self.pool.as_str()));
                        return Ok((listing, true));
                    }
                    Ok(SharedListing::Lead) => break,
                    Ok(SharedListing::Pending) => {
                        self.work.sleep(plan::SHARED_LISTING_POLL).await?
                    }
                    Err(e) => {
                        // Listing needs no lock, even with --require-lock.
                        let _ = self.redis_failed(e);
                        break;
                    }
                }
            }
        }
        let listed = self.list_own().await;
        if let Some(claims) = self.live_claims() {
            // Share the listing, or on failure just end our lead so another claimer takes over.
            let share = listed.as_ref().ok().map(Vec::as_slice);
            let shared = self.cleanup(claims.share_listing(share, plan::SHARED_LISTING_TTL));
            if let Some(Err(e)) = shared.await {
                debug!(error = %e, "could not share the listing");
            }
        }
        Ok((listed?, false))
    }

    /// DescribeAddresses of the whole pool, in our slot of the herd's describe rate.
    async fn list_own(&mut self) -> Result<Vec<Address>, Stop> {
        self.pace("describe", plan::DESCRIBE_PACE, None).await?;
        let (ec2, pool) = (self.ec2.clone(), self.pool.clone());
        self.work
            .retry("list pool", || ec2.describe_pool(&pool))
            .await?
            .map_err(|e| Stop::Fatal(ec2_failure(e, Some(&pool))))
    }

    /// Try to win one candidate. Returns `Err` only to stop the whole claim (deadline, signal,
    /// fatal), after giving back anything taken for this candidate.
    async fn attempt(
        &mut self,
        cand: &Address,
        me: &Identity,
        suspect_ours: bool,
    ) -> Result<Attempt, Stop> {
        let alloc = &cand.allocation_id;
        // The address a crashed run of ours was taking goes straight to EC2's compare-and-swap:
        // its Redis claim may still be leased to the dead run's owner token.
        let mut held = if suspect_ours {
            None
        } else {
            match self.acquire(alloc, me).await? {
                Ok(h) => h,
                Err(other) => return Ok(other),
            }
        };

        let assoc = match self.associate(cand, me, &mut held, suspect_ours).await {
            Ok(Ok(Associated::New(assoc))) => assoc,
            Ok(Ok(Associated::Adopted(addr))) => {
                self.record(alloc, held.as_ref(), me).await;
                info!(public_ip = %addr.public_ip, allocation_id = %alloc, "an earlier attempt had associated it: adopting");
                return Ok(Attempt::Won(self.report(&addr, me, None, true)));
            }
            Ok(Err(outcome)) => {
                self.release(held.as_ref(), me, true).await;
                return Ok(outcome);
            }
            Err(stop) => {
                // We may or may not have associated (an answer was lost): look, and undo if so.
                self.undo_if_ours(alloc, me).await;
                self.release(held.as_ref(), me, false).await;
                return Err(stop);
            }
        };

        match self.validate(alloc, &assoc, me).await {
            Ok(Some(addr)) => {
                self.record(alloc, held.as_ref(), me).await;
                info!(public_ip = %addr.public_ip, allocation_id = %alloc, association_id = %assoc, fence = held.as_ref().map(|h| h.fence), "claimed");
                Ok(Attempt::Won(self.report(&addr, me, Some(assoc), false)))
            }
            Ok(None) => {
                // EC2 shows someone else holding it: not ours to keep, nothing of ours to undo
                // beyond our own association id (idempotent if already gone).
                warn!(allocation_id = %alloc, "validation found the address held elsewhere; moving on");
                self.disassociate_quietly(&assoc).await;
                self.release(held.as_ref(), me, true).await;
                Ok(Attempt::Taken)
            }
            Err(stop) => {
                self.disassociate_quietly(&assoc).await;
                self.release(held.as_ref(), me, true).await;
                Err(stop)
            }
        }
    }

    /// Record a won address in Redis as assigned to us (and drop our claim on it).
    async fn record(&self, alloc: &AllocationId, held: Option<&Held>, me: &Identity) {
        if let Some(claims) = self.live_claims() {
            if let Err(e) = claims
                .mark_assigned(alloc, held.map(|h| h.fence), &me.eni, me.private_ip)
                .await
            {
                warn!(error = %e, "could not record the assignment in Redis; others will learn it from EC2");
            }
        }
    }

    /// Take the Redis claim. `Ok(Ok(None))`: proceed without one (Redis down, lock not required).
    async fn acquire(
        &mut self,
        alloc: &AllocationId,
        me: &Identity,
    ) -> Result<Result<Option<Held>, Attempt>, Stop> {
        let Some(claims) = self.live_claims().cloned() else {
            return Ok(Ok(None));
        };
        match self
            .work
            .bounded(claims.acquire(alloc, &me.eni, me.private_ip))
            .await?
        {
            Ok(Acquire::Acquired(h)) => {
                debug!(allocation_id = %alloc, fence = h.fence, "claimed in Redis");
                Ok(Ok(Some(h)))
            }
            Ok(Acquire::Busy) => Ok(Err(Attempt::Busy)),
            Ok(Acquire::Assigned) => Ok(Err(Attempt::Taken)),
            Err(e) => {
                if self.redis_failed(e) {
                    Ok(Err(Attempt::Transient))
                } else {
                    Ok(Ok(None))
                }
            }
        }
    }

    /// AssociateAddress with `AllowReassociation=false`, retried on passing failures while the
    /// lease allows. `Ok(Err(outcome))`: gave up on this candidate.
    async fn associate(
        &mut self,
        cand: &Address,
        me: &Identity,
        held: &mut Option<Held>,
        suspect_ours: bool,
    ) -> Result<Result<Associated, Attempt>, Stop> {
        let alloc = &cand.allocation_id;
        let mut maybe_ours = suspect_ours;
        let mut attempt = 0u32;
        loop {
            // The lease gates *new* associations. Once an attempt may have applied, the retry
            // (still AllowReassociation=false, so it can take nothing from anyone) is how we
            // learn whether it did: giving up instead could leave the address on our interface
            // with nobody using it.
            let renewing = held.as_mut().filter(|_| !maybe_ours);
            if !self.pace("mutating", plan::MUTATING_PACE, renewing).await? {
                return Ok(Err(Attempt::Busy));
            }
            if let Some(h) = held.as_mut().filter(|_| !maybe_ours) {
                if !self.renew(h).await? {
                    return Ok(Err(Attempt::Busy));
                }
                let left = h.valid_until.saturating_duration_since(Instant::now());
                if !plan::lease_allows(left, self.ec2.call_timeout(), LEASE_MARGIN) {
                    warn!(allocation_id = %alloc, ?left, "lease too short for another EC2 call; stopping before associating");
                    return Ok(Err(Attempt::Transient));
                }
            }
            match self
                .work
                .bounded(self.ec2.associate(alloc, &me.eni, me.private_ip))
                .await?
            {
                Ok(assoc) => return Ok(Ok(Associated::New(assoc))),
                Err(Ec2Error::AlreadyAssociated(_)) => {
                    if maybe_ours {
                        if let Some(addr) = self.owner_is_me(alloc, me).await? {
                            return Ok(Ok(Associated::Adopted(addr)));
                        }
                    }
                    debug!(allocation_id = %alloc, "taken (Resource.AlreadyAssociated)");
                    if let Some(claims) = self.live_claims() {
                        let _ = claims.mark_taken(alloc).await;
                    }
                    return Ok(Err(Attempt::Taken));
                }
                Err(Ec2Error::AllocationNotFound(_)) => return Ok(Err(Attempt::Taken)),
                Err(e) if e.is_transient() => {
                    maybe_ours |= e.maybe_applied();
                    self.work.note(&e);
                    let wait = Budget::backoff(attempt);
                    self.work.sleep(wait).await?;
                    attempt += 1;
                }
                Err(e) => return Err(Stop::Fatal(ec2_failure(e, Some(&self.pool)))),
            }
        }
    }

    /// After `Resource.AlreadyAssociated` on an address we may have associated ourselves (an
    /// answer was lost, or a crashed run did it): poll until EC2 shows the holder.
    async fn owner_is_me(
        &mut self,
        alloc: &AllocationId,
        me: &Identity,
    ) -> Result<Option<Address>, Stop> {
        let mut poll = 0;
        loop {
            let ec2 = self.ec2.clone();
            match self
                .work
                .retry("find holder", || ec2.describe_address(alloc))
                .await?
            {
                Ok(Some(a)) if a.held_by(&me.eni, me.private_ip) => return Ok(Some(a)),
                Ok(Some(a)) if a.association.is_some() => return Ok(None),
                Ok(None) => return Ok(None),
                Ok(Some(_)) => {} // stale: not visible yet
                Err(e) => return Err(Stop::Fatal(ec2_failure(e, Some(&self.pool)))),
            }
            self.work.sleep(plan::validation_delay(poll)).await?;
            poll += 1;
        }
    }

    /// Poll DescribeAddresses by allocation id until it shows our association.
    /// `Ok(None)`: it shows the address held by someone else (or gone).
    async fn validate(
        &mut self,
        alloc: &AllocationId,
        assoc: &AssociationId,
        me: &Identity,
    ) -> Result<Option<Address>, Stop> {
        let mut poll = 0;
        loop {
            self.work.sleep(plan::validation_delay(poll)).await?;
            self.pace("describe", plan::DESCRIBE_PACE, None).await?;
            poll += 1;
            let ec2 = self.ec2.clone();
            let seen = match self
                .work
                .retry("validate", || ec2.describe_address(alloc))
                .await?
            {
                Ok(seen) => seen,
                Err(e) => return Err(Stop::Fatal(ec2_failure(e, Some(&self.pool)))),
            };
            match seen {
                None => return Ok(None),
                Some(a) if a.held_by(&me.eni, me.private_ip) => {
                    if a.association.as_ref().map(|x| &x.id) != Some(assoc) {
                        warn!(allocation_id = %alloc, "validated with a different association id than AssociateAddress returned");
                    }
                    return Ok(Some(a));
                }
                Some(a) if a.association.is_some() => {
                    // Either a stale view from before a previous holder let go, or someone took it
                    // after us. Disassociating our own association id is safe either way.
                    return Ok(None);
                }
                Some(_) => {
                    debug!(allocation_id = %alloc, poll, "not visible yet (eventual consistency)")
                }
            }
        }
    }

    /// Wait for our slot of the herd's shared `rate` for `class` calls (reserved in Redis), so the
    /// herd reaches EC2 at the rate EC2 allows instead of being throttled. A claim held meanwhile
    /// is renewed every third of its lease. `Ok(false)`: that claim was lost while waiting.
    /// Without Redis there is no shared pace: backoff on throttling is all there is.
    async fn pace(
        &mut self,
        class: &str,
        rate: plan::Rate,
        mut held: Option<&mut Held>,
    ) -> Result<bool, Stop> {
        let Some(claims) = self.live_claims().cloned() else {
            return Ok(true);
        };
        let mut left = match self.work.bounded(claims.pace(class, rate)).await? {
            Ok(wait) => wait,
            Err(e) => {
                let _ = self.redis_failed(e);
                return Ok(true);
            }
        };
        if !left.is_zero() {
            debug!(
                class,
                wait_ms = left.as_millis() as u64,
                "waiting for our slot of the herd's EC2 rate"
            );
        }
        while !left.is_zero() {
            let step = left.min(self.lease / 3);
            self.work.sleep(step).await?;
            left -= step;
            if let Some(h) = held.as_deref_mut() {
                if !self.renew(h).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Renew the lease before an EC2 call. `Ok(false)`: the claim is gone; stop on this address.
    async fn renew(&mut self, held: &mut Held) -> Result<bool, Stop> {
        let Some(claims) = self.live_claims().cloned() else {
            return Ok(true);
        };
        match self.work.bounded(claims.extend(held)).await? {
            Ok(true) => Ok(true),
            Ok(false) => {
                warn!(allocation_id = %held.alloc, fence = held.fence, "lost the Redis claim (lease ran out); stopping on this address");
                Ok(false)
            }
            // Redis went away mid-claim: keep going on the local lease only while it lasts;
            // EC2's compare-and-swap still guards the association.
            Err(e) => Ok(!self.redis_failed(e)),
        }
    }

    /// Record a Redis failure. Returns true when the claim must not go on without Redis.
    fn redis_failed(&mut self, e: LockError) -> bool {
        self.work.note(&e);
        if self.require_lock {
            warn!(error = %e, "Redis unavailable and --require-lock is set: waiting for it");
            true
        } else {
            warn!(error = %e, "Redis unavailable: claiming on EC2's compare-and-swap alone for a while");
            self.redis_down_until = Some(Instant::now() + REDIS_COOL_DOWN);
            false
        }
    }

    /// The Redis claims, unless Redis is cooling down after a failure.
    fn live_claims(&self) -> Option<&Claims> {
        match self.redis_down_until {
            Some(t) if Instant::now() < t && !self.require_lock => None,
            _ => self.claims.as_ref(),
        }
    }

    async fn intent(&mut self, me: &Identity) -> Option<AllocationId> {
        let claims = self.live_claims()?.clone();
        match self
            .work
            .bounded(claims.intent_of(&me.eni, me.private_ip))
            .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.redis_failed(e);
                None
            }
            Err(_) => None,
        }
    }

    /// Give back a Redis claim (best effort, bounded by the overall deadline).
    async fn release(&self, held: Option<&Held>, me: &Identity, forget_intent: bool) {
        let (Some(h), Some(claims)) = (held, self.claims.as_ref()) else {
            return;
        };
        match self
            .cleanup(claims.release(h, &me.eni, me.private_ip, forget_intent))
            .await
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                debug!(error = %e, "could not release the Redis claim; its lease will expire")
            }
            None => debug!("no time left to release the Redis claim; its lease will expire"),
        }
    }

    /// After an interrupted AssociateAddress: if EC2 shows the address on our interface, take it
    /// off again. Polls through eventual consistency until the cleanup budget runs out.
    async fn undo_if_ours(&self, alloc: &AllocationId, me: &Identity) {
        // An association we made may take a while to show: look until one shows, or until EC2's
        // consistency bound has passed, or the deadline.
        let give_up = Instant::now() + plan::CONSISTENCY_BOUND;
        let mut poll = 0;
        while Instant::now() < self.deadline {
            match self.cleanup(self.ec2.describe_address(alloc)).await {
                Some(Ok(Some(a))) if a.held_by(&me.eni, me.private_ip) => {
                    if let Some(x) = a.association {
                        self.disassociate_quietly(&x.id).await;
                    }
                    return;
                }
                Some(Ok(Some(a))) if a.association.is_some() => return, // someone else's
                Some(Ok(None)) | None => return,
                Some(Ok(Some(_))) if Instant::now() >= give_up => return,
                _ => {}
            }
            let wait = plan::clamp_wait(
                plan::validation_delay(poll),
                self.deadline.saturating_duration_since(Instant::now()),
            );
            tokio::time::sleep(wait).await;
            poll += 1;
        }
    }

    async fn disassociate_quietly(&self, assoc: &AssociationId) {
        let mut attempt = 0;
        loop {
            match self.cleanup(self.ec2.disassociate(assoc)).await {
                Some(Ok(())) => {
                    info!(association_id = %assoc, "gave the address back");
                    return;
                }
                Some(Err(e)) if e.is_transient() && Instant::now() < self.deadline => {
                    let wait = Budget::backoff(attempt);
                    tokio::time::sleep(plan::clamp_wait(
                        wait,
                        self.deadline.saturating_duration_since(Instant::now()),
                    ))
                    .await;
                    attempt += 1;
                }
                Some(Err(e)) => {
                    warn!(association_id = %assoc, error = %e, "could not give the address back; `eipool gc` or a re-run will");
                    return;
                }
                None => {
                    warn!(association_id = %assoc, "no time left to give the address back; a re-run adopts it");
                    return;
                }
            }
        }
    }

    /// Undo a finished claim (used when its result cannot be delivered).
    async fn give_back(&mut self, claimed: &Claimed) {
        self.disassociate_quietly(&claimed.association_id).await;
    }

    fn report(
        &self,
        a: &Address,
        me: &Identity,
        assoc: Option<AssociationId>,
        reused: bool,
    ) -> Claimed {
        Claimed {
            public_ip: a.public_ip,
            allocation_id: a.allocation_id.clone(),
            association_id: assoc
                .or_else(|| a.association.as_ref().map(|x| x.id.clone()))
                .unwrap_or(AssociationId(String::new())),
            network_interface_id: me.eni.clone(),
            private_ip: me.private_ip,
            reused,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Await cleanup work within the overall deadline, ignoring the signal (cleanup is what a
    /// signal asks for). `None` when out of time.
    async fn cleanup<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, fut).await.ok()
    }
}

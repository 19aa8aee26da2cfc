//! A bounded model of eipool's claim protocol, checked exhaustively by `stateright`.
//!
//! The lab proves the protocol by running it; this checks every interleaving of a small world:
//! [`CLAIMERS`] claimers (two of them for one interface, as a re-run or a second pod on the node
//! would be), [`ADDRESSES`] pool addresses, two interfaces; Redis with leases, fences, assigned
//! markers and the interface lease; EC2 with `AllowReassociation=false`, the replace rule (an
//! association displaces the address already on that private IP), answers stale for up to the
//! consistency bound, and lost answers; the world outside the claim: an address associated by hand
//! to a private IP that is not eipool's (from the start, in one of the two initial worlds), a
//! release (an agent's exit), a hand association or disassociation; and faults: Redis flushed,
//! Redis down, a claimer paused past its leases, a claimer killed. One fault or outside event per
//! run. Time is not modelled as a clock: leases expire and stale windows close as steps of their
//! own, in any order with the rest.
//!
//! **Every decision is eipool's own**: a claim under its interface lease is run by eipool's
//! claim machine (`eipool::decisions::claim::Claim`), a listing's passes by its passes machine
//! (`eipool::decisions::passes::Passes`) and each candidate by its attempt machine
//! (`eipool::decisions::attempt::Attempt`), the three `services/claim` drives: the model answers
//! their calls from the world (`ClaimModel::claim_on`, `ClaimModel::pass_on`,
//! `ClaimModel::drive`) and has no sequencing of its own for a claim. What is left to it is the
//! world: taking the interface lease (and taking it again when the attempt machine says it was
//! lost), recording a win, and the faults. A change to a machine is checked here.
//!
//! The waiting line has a model of its own, [`line::LineModel`], driving eipool's line machine
//! (`eipool::decisions::line::Line`) for each waiter (tests/line.rs).
//!
//! Seeded [`Mutation`]s break the protocol on purpose; each must be caught (tests/model.rs).
//! `NoFenceCheck` and `SkipValidation` mutate the attempt machine (`Attempt::mutated`),
//! `TrustMarker` the passes machine (`Passes::mutated`). `AllowReassociation` mutates EC2's
//! side: the flag is not a decision of either machine but a constant of the one adapter
//! function that calls AssociateAddress, so the model breaks what EC2 does with the call.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use eipool::decisions::attempt::{
    self as machine, AssociateAnswer, Attempt, Call, Input, Leased, Pause, Why,
};
use eipool::decisions::claim::{self, Claim};
use eipool::decisions::passes::{self, Passes};
use eipool::decisions::{occupant, Identity, CONSISTENCY_BOUND};
use eipool::model::{Address, AllocationId, Association, EniId};
use stateright::{Model, Property};

pub mod line;

/// Pool addresses in the model.
pub const ADDRESSES: usize = 2;
/// Interfaces eipool claims for in the model (one private IP each).
pub const INTERFACES: usize = 2;
/// A private IP outside eipool (someone's instance): where hand associations go.
pub const OUTSIDE: u8 = INTERFACES as u8;
/// The association number of a hand association (claimers' are their index).
const BY_HAND: u8 = CLAIMERS.len() as u8;
/// Claimers in the model, and the interface each claims for: two share interface 0.
pub const CLAIMERS: [u8; 3] = [0, 1, 0];
/// The pool's name (the `eipool:pool` tag).
const POOL: &str = "model";
/// Each EC2 call's timeout, as the attempt machine weighs it against the lease left.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What is left of a lease when it is renewed: time is not modelled, a lease that has not
/// expired (a step of its own, `ExpireLeases`) outlasts a call.
const LEASE_LEFT: Duration = Duration::from_secs(30);

/// A protocol step broken on purpose, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// AssociateAddress with `AllowReassociation=true`: it takes an address from whoever holds it.
    AllowReassociation,
    /// Associate without first checking that our leases (the address lease's fence, and the
    /// interface lease) still hold.
    NoFenceCheck,
    /// Report after AssociateAddress answered, without looking at EC2 again (`validate`).
    SkipValidation,
    /// Believe a Redis "assigned" marker over EC2: a masked address is taken without weighing
    /// EC2's answer with `masked_verdict` (the passes machine, `Passes::mutated`).
    TrustMarker,
}

/// What the checker explores.
#[derive(Debug, Clone)]
pub struct ClaimModel {
    /// How many faults and outside events (Redis flushed, Redis down, a pause past the leases,
    /// a kill, a lost answer, a release, a hand association or disassociation) one run may
    /// suffer.
    pub faults: u8,
    /// A protocol step broken on purpose, if any.
    pub mutation: Option<Mutation>,
}

/// One address as EC2 holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ec2Address {
    /// Its association: (interface, association number: the claimer that made it).
    pub assoc: Option<(u8, u8)>,
    /// While EC2 may still show the state from before the last change: that state.
    pub before: Option<Option<(u8, u8)>>,
    /// The holder tag (the interface eipool recorded).
    pub holder: Option<u8>,
    /// The open stale window hides a change made outside the claim protocol (by hand, or a
    /// release): a claimer that reads the state from before it cannot know.
    pub outside_change: bool,
}

/// Redis, as the claimers share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Redis {
    /// Whether it answers.
    pub up: bool,
    /// Per address: the lease (claimer, fence).
    pub lease: [Option<(u8, u8)>; ADDRESSES],
    /// Per address: the last fence handed out (survives a flush: fences are floored by a clock).
    pub fence: [u8; ADDRESSES],
    /// Per address: the "assigned" marker.
    pub marker: [bool; ADDRESSES],
    /// Per interface: the interface lease (claimer).
    pub iface: [Option<u8>; INTERFACES],
}

/// Where a claimer is in the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Taking the interface lease.
    Start,
    /// Claiming under it through eipool's claim machine, its call pending.
    Claiming(Claiming),
    /// Passing over a listing's candidates through eipool's passes machine, its call pending.
    Passes(Passing),
    /// Trying `addr` through eipool's attempt machine, its call pending.
    Attempt(Trying),
    /// Won `addr`: recording the holder and the marker.
    Record { addr: u8 },
    /// Reported `addr` (reused or not).
    Reported(u8),
    /// Said the pool is exhausted.
    Exhausted,
    /// Killed.
    Killed,
    /// Reported, then gave the address back (the agent's exit: `eipool release`).
    Released,
}

/// A candidate being tried: eipool's attempt machine and the call it asked for, which the
/// claimer's next step answers from the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trying {
    addr: u8,
    /// The fence of the lease the machine took, if it took one.
    fence: Option<u8>,
    m: Box<Attempt>,
    call: Call,
    /// Where the pass goes on once the attempt ends.
    rest: Box<Passing>,
}

/// The passes over a listing: eipool's passes machine and the call it asked for, which the
/// claimer's next step answers from the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Passing {
    m: Box<Passes>,
    call: passes::Call,
    /// The claim that ran them, told how they ended.
    claim: Box<Claim>,
}

/// A claim under its interface lease: eipool's claim machine and the call it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claiming {
    m: Box<Claim>,
    call: claim::Call,
}

impl Phase {
    fn ended(&self) -> bool {
        matches!(
            self,
            Phase::Reported(_) | Phase::Exhausted | Phase::Killed | Phase::Released
        )
    }
}

/// One claimer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claimer {
    pub phase: Phase,
    /// Whether it took the interface lease when it started (Redis answered then).
    pub locked: bool,
    /// Whether it ran any step without its interface lease because Redis was down or lost its
    /// data: two claims of one interface may then displace each other, which eipool documents
    /// and the agent repairs. (A pause past the lease is not an excuse: Redis answered.)
    pub unguarded: bool,
    /// Whether its report may be wrong through no fault of the protocol: an outside change (by
    /// hand, or a release) touched its address after its last look at EC2, or hid from that
    /// look in a stale answer.
    pub excused: bool,
    /// Whether time beyond EC2's consistency bound passed since its last listing.
    pub listing_old: bool,
    /// Whether, when it said "exhausted", EC2 had an address free for longer than the
    /// consistency bound (free, its stale window closed).
    pub exhausted_past_free: bool,
}

/// The whole world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    pub ec2: [Ec2Address; ADDRESSES],
    pub redis: Redis,
    pub claimers: Vec<Claimer>,
    pub faults_left: u8,
}

/// A step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Claimer `c` takes its next step; `stale` picks, for each address that has a stale
    /// window open, whether EC2's answer shows the state from before (bit set) or now.
    Step { c: u8, stale: u8 },
    /// Claimer `c`'s AssociateAddress is applied, but its answer is lost.
    LoseAnswer { c: u8 },
    /// Time passes beyond EC2's consistency bound: every answer is fresh.
    Settle,
    /// The leases of claimer `c` expire: it was paused (or killed) longer than a lease.
    ExpireLeases { c: u8 },
    /// Redis loses everything (flushed, or restarted empty, or a failover that lost writes).
    FlushRedis,
    /// Redis stops or starts answering.
    ToggleRedis,
    /// Claimer `c` is killed.
    Kill { c: u8 },
    /// Claimer `c`, having reported, gives its address back (its agent exits: `eipool release`
    /// disassociates it and forgets it in Redis; with Redis down the marker stays).
    Release { c: u8 },
    /// Someone associates free pool address `a` by hand, outside eipool, to a private IP that is
    /// not eipool's.
    HandAssociate { a: u8 },
    /// Someone disassociates pool address `a` by hand, outside eipool.
    HandDisassociate { a: u8 },
}

fn alloc(a: u8) -> AllocationId {
    format!("eipalloc-{a:017x}").parse().unwrap()
}

fn eni(i: u8) -> EniId {
    format!("eni-{i:017x}").parse().unwrap()
}

fn identity(c: u8) -> Identity {
    let i = CLAIMERS[c as usize];
    Identity {
        eni: eni(i),
        private_ip: Ipv4Addr::new(10, 0, 0, i + 1),
        instance_id: None,
        mac: None,
    }
}

/// An address as eipool's `Address` type, from what EC2 shows of it.
fn address(a: u8, assoc: Option<(u8, u8)>) -> Address {
    Address {
        allocation_id: alloc(a),
        public_ip: Ipv4Addr::new(198, 51, 100, a + 1),
        association: assoc.map(|(i, n)| Association {
            id: format!("eipassoc-{n:017x}").parse().unwrap(),
            network_interface_id: Some(eni(i)),
            private_ip: Some(Ipv4Addr::new(10, 0, 0, i + 1)),
            instance_id: None,
        }),
        pool: Some(POOL.into()),
        holder: None,
    }
}

fn index_of(id: &AllocationId) -> u8 {
    (0..ADDRESSES as u8).find(|a| alloc(*a) == *id).unwrap()
}

impl World {
    /// What DescribeAddresses shows of `a`: the state from before the last change when its
    /// stale window is open and `stale` asks for it.
    fn seen(&self, a: u8, stale: u8) -> Option<(u8, u8)> {
        let e = &self.ec2[a as usize];
        match e.before {
            Some(before) if stale & (1 << a) != 0 => before,
            _ => e.assoc,
        }
    }

    fn set_assoc(&mut self, a: u8, to: Option<(u8, u8)>) {
        let e = &mut self.ec2[a as usize];
        if e.before.is_none() {
            e.before = Some(e.assoc);
        }
        e.assoc = to;
    }

    /// AssociateAddress of `a` to interface `i`'s private IP, association number `n`: EC2's
    /// replace rule takes the address already there off. Returns the one it took off.
    fn associate(&mut self, a: u8, i: u8, n: u8) -> Option<u8> {
        let there = (0..ADDRESSES as u8)
            .find(|o| *o != a && self.ec2[*o as usize].assoc.is_some_and(|(j, _)| j == i));
        if let Some(o) = there {
            self.set_assoc(o, None);
        }
        self.set_assoc(a, Some((i, n)));
        there
    }

    /// Whether claimer `c` still holds its interface lease (always "yes" without Redis: there
    /// is none to hold, which `unguarded` records).
    fn holds_interface(&self, c: u8) -> bool {
        self.redis.iface[CLAIMERS[c as usize] as usize] == Some(c)
    }

    /// `a` was just changed outside the claim protocol (by hand, or a release): a claimer that
    /// already looked at `a` and is reporting it (or reported it) is excused, and a stale
    /// answer hides the change.
    fn changed_outside(&mut self, a: u8) {
        for cl in &mut self.claimers {
            if matches!(cl.phase, Phase::Record { addr } | Phase::Reported(addr) if addr == a) {
                cl.excused = true;
            }
        }
        self.ec2[a as usize].outside_change = true;
    }

    /// Whether a read of `a` through `stale` shows the state from before an outside change.
    fn hides_outside_change(&self, a: u8, stale: u8) -> bool {
        let e = &self.ec2[a as usize];
        e.outside_change && e.before.is_some() && stale & (1 << a) != 0
    }

    /// Whether EC2 has an address free for longer than its consistency bound.
    fn free_past_bound(&self) -> bool {
        self.ec2
            .iter()
            .any(|e| e.assoc.is_none() && e.before.is_none())
    }
}

impl ClaimModel {
    /// The model with `faults` faults and no mutation.
    pub fn new(faults: u8) -> Self {
        ClaimModel {
            faults,
            mutation: None,
        }
    }

    /// The same, with `mutation`.
    pub fn mutated(faults: u8, mutation: Mutation) -> Self {
        ClaimModel {
            mutation: Some(mutation),
            ..ClaimModel::new(faults)
        }
    }

    fn is(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    /// Claimer `c`'s next step, seeing EC2 through `stale`.
    fn step(&self, w: &mut World, c: u8, stale: u8, lose_answer: bool) {
        let me = identity(c);
        let my_iface = CLAIMERS[c as usize];
        let phase = w.claimers[c as usize].phase.clone();
        let next = match phase {
            Phase::Start => {
                if w.redis.up {
                    match w.redis.iface[my_iface as usize] {
                        None => {
                            w.redis.iface[my_iface as usize] = Some(c);
                            w.claimers[c as usize].locked = true;
                        }
                        Some(other) if other == c => {}
                        // Another claim of this interface runs: wait (no step).
                        Some(_) => return,
                    }
                } else {
                    // Redis down: claim without the interface lease.
                    w.claimers[c as usize].unguarded = true;
                }
                // eipool's claim machine decides every step of the claim; the model answers
                // its calls from the world (`Self::claim_on`).
                let locked = w.claimers[c as usize].locked;
                let mut m = Claim::new(me, None, false, locked, None, c.into());
                let call = m.step(claim::Input::Start, Duration::ZERO);
                let run = Claiming {
                    m: Box::new(m),
                    call,
                };
                self.claim_on(w, c, stale, run, false)
            }
            Phase::Claiming(run) => self.claim_on(w, c, stale, run, false),
            Phase::Passes(p) => self.pass_on(w, c, stale, p, false),
            Phase::Attempt(t) => self.drive(w, c, stale, lose_answer, t),
            Phase::Record { addr } => {
                w.ec2[addr as usize].holder = Some(my_iface);
                if w.redis.up {
                    w.redis.marker[addr as usize] = true;
                    release(w, c, addr);
                    if w.redis.iface[my_iface as usize] == Some(c) {
                        w.redis.iface[my_iface as usize] = None;
                    }
                    w.claimers[c as usize].locked = false;
                }
                Phase::Reported(addr)
            }
            ended => ended,
        };
        w.claimers[c as usize].phase = next;
    }

    /// The machine's mutation, for a mutation of the attempt.
    fn machine_mutation(&self) -> Option<machine::Mutation> {
        match self.mutation? {
            Mutation::NoFenceCheck => Some(machine::Mutation::NoFenceCheck),
            Mutation::SkipValidation => Some(machine::Mutation::SkipValidation),
            Mutation::AllowReassociation | Mutation::TrustMarker => None,
        }
    }

    /// Claimer `c`'s step in an attempt: answer the machine's pending call from the world, and
    /// the calls after it, up to the next one that reads shared state at a moment of its own
    /// (the lease renewed before associating, which goes with the interface check and the
    /// AssociateAddress after it; a look at EC2, or the wait before it, which goes with it). The
    /// attempt's end is the claimer's next phase.
    fn drive(&self, w: &mut World, c: u8, stale: u8, lose_answer: bool, mut t: Trying) -> Phase {
        let mut answered: Option<Call> = None;
        let mut hides = false;
        loop {
            let moment = match (&t.call, &answered) {
                (_, None) => false,
                // A wait before a look, or a look not waited for: the look is the next step.
                (Call::Renew | Call::Sleep(Pause::Validation { .. } | Pause::CheckTaken(_)), _) => {
                    true
                }
                (Call::Sleep(Pause::Undo(_)), _) => true,
                (Call::Describe | Call::LookForOurs, Some(prev)) => !matches!(prev, Call::Sleep(_)),
                (Call::StillHoldsInterface, Some(prev)) => *prev != Call::Renew,
                _ => false,
            };
            if moment {
                // The counts of looks and retries set only sleep lengths, which the model
                // does not have: without them, looking again is the same state.
                t.m = Box::new(t.m.without_counts());
                t.call = without_counts(t.call);
                return Phase::Attempt(t);
            }
            match &t.call {
                Call::Won { .. } => {
                    // Its last look read the state from before an outside change.
                    if hides {
                        w.claimers[c as usize].excused = true;
                    }
                    return Phase::Record { addr: t.addr };
                }
                Call::Done(outcome) => {
                    let mut p = *t.rest;
                    let tried = passes::Input::Tried {
                        outcome: *outcome,
                        redis: w.redis.up,
                    };
                    p.call = p.m.step(tried, Duration::ZERO);
                    return self.pass_on(w, c, stale, p, true);
                }
                // Take the interface lease again, and start over.
                Call::Stop(Why::InterfaceLost) => {
                    w.claimers[c as usize].locked = false;
                    return Phase::Start;
                }
                Call::Stop(Why::Stopped) => {
                    unreachable!("the model stops no claim: a kill ends it")
                }
                _ => {}
            }
            let (input, now) = self.answer(w, c, stale, lose_answer, &mut t, &mut hides);
            answered = Some(t.call.clone());
            t.call = t.m.step(input, now);
        }
    }

    /// What the world answers to the attempt's pending call, and when, as far as the machine
    /// can tell: a look at EC2 showing its state now counts as made past the consistency bound
    /// (`waited`); everything else at time zero (the model has no clock: a lease or a stale
    /// window ends as a step of its own).
    fn answer(
        &self,
        w: &mut World,
        c: u8,
        stale: u8,
        lose_answer: bool,
        t: &mut Trying,
        hides: &mut bool,
    ) -> (Input, Duration) {
        let a = t.addr;
        let input = match &t.call {
            Call::TakeLease => Input::Leased(if !w.redis.up {
                w.claimers[c as usize].unguarded = true;
                Leased::WithoutRedis
            } else if w.redis.marker[a as usize] {
                // A marker outlives EC2's consistency bound only by being wrong: the model's
                // markers are as old as it takes (a step of time may pass first).
                Leased::Masked(CONSISTENCY_BOUND)
            } else if w.redis.lease[a as usize].is_some_and(|(o, _)| o != c) {
                Leased::Busy
            } else {
                // Bounded, so the state space is: a fence is compared only with the lease's
                // own, and the owner tells a stale one apart.
                let f = (w.redis.fence[a as usize] + 1).min(3);
                w.redis.fence[a as usize] = f;
                w.redis.lease[a as usize] = Some((c, f));
                t.fence = Some(f);
                Leased::Got
            }),
            Call::Pace { .. } => Input::Paced(true),
            // `Coordination::renew`: Redis down, go on on the lease's own time.
            Call::Renew => Input::Renewed {
                held: !w.redis.up
                    || t.fence
                        .is_some_and(|f| w.redis.lease[a as usize] == Some((c, f))),
                left: LEASE_LEFT,
            },
            // `Coordination::still_holds_interface`: "yes" without Redis (`unguarded` says so).
            Call::StillHoldsInterface | Call::MayGiveBack => Input::Interface(
                !w.redis.up || !w.claimers[c as usize].locked || w.holds_interface(c),
            ),
            Call::Associate => Input::Associated(
                if w.ec2[a as usize].assoc.is_some() && !self.is(Mutation::AllowReassociation) {
                    AssociateAnswer::AlreadyAssociated
                } else {
                    // The association's number is the claimer's: all it needs to tell is
                    // whether the association there is still this claimer's own.
                    w.associate(a, CLAIMERS[c as usize], c);
                    let ours = address(a, w.ec2[a as usize].assoc).association.unwrap().id;
                    if lose_answer {
                        AssociateAnswer::Passing {
                            maybe_applied: true,
                            throttled: false,
                        }
                    } else {
                        AssociateAnswer::Ok(ours)
                    }
                },
            ),
            Call::Throttled => Input::Throttled { alone: false },
            Call::Sleep(_) => Input::Slept,
            Call::Describe | Call::LookForOurs => {
                *hides = w.hides_outside_change(a, stale);
                let seen = address(a, w.seen(a, stale));
                return (Input::Seen(Some(seen)), waited(w, a, stale));
            }
            Call::LookOnNode => Input::OnNode(None),
            Call::MarkTaken => {
                if w.redis.up {
                    w.redis.marker[a as usize] = true;
                }
                Input::Done
            }
            // Our own association only, if it is still there.
            Call::Disassociate(assoc, _) => {
                let there = address(a, w.ec2[a as usize].assoc).association;
                if there.is_some_and(|x| x.id == *assoc) {
                    w.set_assoc(a, None);
                }
                Input::Done
            }
            Call::ReleaseLease { .. } => {
                release(w, c, a);
                Input::Done
            }
            Call::Won { .. } | Call::Done(_) | Call::Stop(_) => unreachable!("an end is no call"),
        };
        (input, Duration::ZERO)
    }

    /// Claimer `c`'s step in its passes: answer the passes machine's pending call from the
    /// world, and the calls after it, up to the next one that reads shared state at a moment of
    /// its own (a candidate's attempt starting; a look at EC2: the masked addresses, or a listing
    /// of our own). `answered`: the pending call is the answer's to an earlier call in this
    /// step, so a moment ends the step. The passes' end is the claimer's next phase.
    fn pass_on(
        &self,
        w: &mut World,
        c: u8,
        stale: u8,
        mut p: Passing,
        mut answered: bool,
    ) -> Phase {
        use passes::{Call as P, Input as In};
        loop {
            let input = match &p.call {
                P::Try { .. } | P::Describe(_) | P::ListOwn if answered => {
                    // The count of passes sets only back-off lengths (see `without_counts`).
                    p.m = Box::new(p.m.without_counts());
                    return Phase::Passes(p);
                }
                P::Try { cand, suspect } => {
                    let a = index_of(&cand.allocation_id);
                    // eipool's attempt machine decides every step of the attempt; the model
                    // answers its calls from the world (`Self::drive`).
                    let mut m = Attempt::new(
                        cand.clone(),
                        identity(c),
                        *suspect,
                        false,
                        false,
                        CALL_TIMEOUT,
                    );
                    if let Some(mutation) = self.machine_mutation() {
                        m = m.mutated(mutation);
                    }
                    let call = m.step(Input::Start, Duration::ZERO);
                    let t = Trying {
                        addr: a,
                        fence: None,
                        m: Box::new(m),
                        call,
                        rest: Box::new(p),
                    };
                    return self.drive(w, c, stale, false, t);
                }
                // The herd's pace is not modelled: a turn is always ours at once.
                P::Turn => In::Turn(w.redis.up),
                P::Outsiders => In::Outsiders(false),
                // EC2's word on the masked addresses, as it is now (by allocation id).
                P::Describe(ids) => In::Seen(
                    ids.iter()
                        .map(|id| {
                            let a = index_of(id);
                            address(a, w.ec2[a as usize].assoc)
                        })
                        .collect(),
                ),
                P::ClearMarker(id, _) => {
                    if w.redis.up {
                        w.redis.marker[index_of(id) as usize] = false;
                    }
                    In::Done
                }
                P::Sleep(_) => In::Slept { redis: w.redis.up },
                P::ListOwn => In::Listed(listing(w, c, stale)),
                P::Adopt(a) => {
                    return Phase::Record {
                        addr: index_of(&a.allocation_id),
                    }
                }
                P::Ended(end) => {
                    let passed = claim::Input::Passed {
                        end: *end,
                        suspect_gone: p.m.suspect_gone(),
                    };
                    let mut m = p.claim;
                    // The model has no clock: the listing is as old as the world says.
                    let call = m.step(passed, since_listed(w, c));
                    return self.claim_on(w, c, stale, Claiming { m, call }, true);
                }
            };
            answered = true;
            p.call = p.m.step(input, Duration::ZERO);
        }
    }
}

/// The claim machine's calls, answered from the world.
impl ClaimModel {
    /// Claimer `c`'s step in its claim: answer the claim machine's pending call from the world,
    /// and the calls after it, up to the next that reads shared state at a moment of its own (a
    /// listing; the passes, which the passes machine runs, `Self::pass_on`). `answered`: the
    /// pending call is the answer's to an earlier call in this step. The claim's end is the
    /// claimer's next phase.
    fn claim_on(
        &self,
        w: &mut World,
        c: u8,
        stale: u8,
        mut run: Claiming,
        mut answered: bool,
    ) -> Phase {
        use claim::{Call as C, Ended, Input as In};
        let me = identity(c);
        let my_iface = CLAIMERS[c as usize];
        loop {
            let input = match &run.call {
                C::List { .. } if answered => {
                    // The count of listings seeds only the orders (see `without_counts`).
                    run.m = Box::new(run.m.without_counts());
                    return Phase::Claiming(run);
                }
                // The model has no record of what an interface was taking.
                C::Intent => In::Recalled(claim::Recalled::Unknown),
                // Our own listing (the model has no shared one), as EC2 shows it through `stale`.
                C::List { .. } => {
                    w.claimers[c as usize].listing_old = false;
                    In::Listed {
                        listing: listing(w, c, stale),
                        shared: false,
                        age: Duration::ZERO,
                    }
                }
                C::Adopt { addr, .. } => {
                    return Phase::Record {
                        addr: index_of(&addr.allocation_id),
                    }
                }
                // What our private IP holds (the node's own view: never stale).
                C::Occupant { .. } => {
                    let held = (0..ADDRESSES as u8)
                        .find(|a| w.ec2[*a as usize].assoc.is_some_and(|(i, _)| i == my_iface));
                    let in_pool = held.map(|a| address(a, w.ec2[a as usize].assoc));
                    In::Occupant(occupant(in_pool.as_ref(), None, POOL))
                }
                // The line is not modelled.
                C::Waiting => In::Waiting(0),
                C::Passes {
                    order,
                    suspect,
                    shared,
                    seed,
                } => {
                    // eipool's passes machine decides every step of the passes; the model
                    // answers its calls from the world (`Self::pass_on`).
                    let mut m = Passes::new(me, order.clone(), suspect.clone(), *shared, *seed);
                    if self.is(Mutation::TrustMarker) {
                        m = m.mutated(passes::Mutation::TrustMarker);
                    }
                    let call = m.step(passes::Input::Start, Duration::ZERO);
                    let p = Passing {
                        m: Box::new(m),
                        call,
                        claim: run.m,
                    };
                    return self.pass_on(w, c, stale, p, true);
                }
                C::Ended(Ended::Exhausted) => {
                    // Whether EC2 had an address free past its consistency bound when it
                    // said so.
                    w.claimers[c as usize].exhausted_past_free = w.free_past_bound();
                    return Phase::Exhausted;
                }
                C::Ended(Ended::Foreign { .. } | Ended::LeftToTheLine { .. }) => {
                    unreachable!("no foreign address and no line in the model")
                }
            };
            answered = true;
            run.call = run.m.step(input, Duration::ZERO);
        }
    }
}

/// Claimer `c`'s own listing of the pool, as EC2 shows it through `stale`. Adopting from it
/// what hides an outside change excuses the report.
fn listing(w: &mut World, c: u8, stale: u8) -> Vec<Address> {
    let me = identity(c);
    let listing: Vec<Address> = (0..ADDRESSES as u8)
        .map(|a| address(a, w.seen(a, stale)))
        .collect();
    if let Some(a) = listing.iter().find(|a| a.held_by_me(&me)) {
        if w.hides_outside_change(index_of(&a.allocation_id), stale) {
            w.claimers[c as usize].excused = true;
        }
    }
    listing
}

/// How long ago claimer `c` listed the pool, as far as the model tells: past EC2's consistency
/// bound once a step of time passed since (`Action::Settle`), else not at all.
fn since_listed(w: &World, c: u8) -> Duration {
    if w.claimers[c as usize].listing_old {
        CONSISTENCY_BOUND
    } else {
        Duration::ZERO
    }
}

/// How long a claimer has been looking at `a`, as far as a look through `stale` tells: a look
/// that shows EC2's state now counts as one made past the consistency bound (the model has no
/// clock; a look at the state from before a change is one made within the bound).
fn waited(w: &World, a: u8, stale: u8) -> Duration {
    if w.ec2[a as usize].before.is_none() || stale & (1 << a) == 0 {
        CONSISTENCY_BOUND
    } else {
        Duration::ZERO
    }
}

/// `call` with its count of looks or retries at zero (see `Attempt::without_counts`).
fn without_counts(call: Call) -> Call {
    Call::Sleep(match call {
        Call::Sleep(Pause::Validation { herd, .. }) => Pause::Validation { poll: 0, herd },
        Call::Sleep(Pause::CheckTaken(_)) => Pause::CheckTaken(0),
        Call::Sleep(Pause::Undo(_)) => Pause::Undo(0),
        Call::Sleep(Pause::NodeView(_)) => Pause::NodeView(0),
        Call::Sleep(Pause::Backoff(_)) => Pause::Backoff(0),
        other => return other,
    })
}

/// Give the lease on `a` back if it is still `c`'s.
fn release(w: &mut World, c: u8, a: u8) {
    if w.redis.up && w.redis.lease[a as usize].is_some_and(|(o, _)| o == c) {
        w.redis.lease[a as usize] = None;
    }
}

impl Model for ClaimModel {
    type State = World;
    type Action = Action;

    /// Two worlds: every address free; and the last one associated by hand outside eipool
    /// (one address for two interfaces: one claim must say "exhausted", unless it comes free).
    fn init_states(&self) -> Vec<World> {
        let free = World {
            ec2: [Ec2Address::default(); ADDRESSES],
            redis: Redis {
                up: true,
                ..Redis::default()
            },
            claimers: CLAIMERS
                .iter()
                .map(|_| Claimer {
                    phase: Phase::Start,
                    locked: false,
                    unguarded: false,
                    excused: false,
                    listing_old: false,
                    exhausted_past_free: false,
                })
                .collect(),
            faults_left: self.faults,
        };
        let mut held = free.clone();
        held.ec2[ADDRESSES - 1].assoc = Some((OUTSIDE, BY_HAND));
        vec![free, held]
    }

    fn actions(&self, w: &World, actions: &mut Vec<Action>) {
        let stale_mask = (0..ADDRESSES)
            .filter(|a| w.ec2[*a].before.is_some())
            .fold(0u8, |m, a| m | (1 << a));
        for c in 0..CLAIMERS.len() as u8 {
            let phase = &w.claimers[c as usize].phase;
            if phase.ended() {
                continue;
            }
            // Every subset of the open stale windows may be seen stale.
            let mut s = stale_mask;
            loop {
                actions.push(Action::Step { c, stale: s });
                if s == 0 {
                    break;
                }
                s = (s - 1) & stale_mask;
            }
            if w.faults_left > 0 {
                // An AssociateAddress is next in this claimer's step (`Self::drive`).
                if matches!(phase, Phase::Attempt(t) if matches!(t.call, Call::Renew | Call::StillHoldsInterface))
                {
                    actions.push(Action::LoseAnswer { c });
                }
                actions.push(Action::Kill { c });
                actions.push(Action::ExpireLeases { c });
            }
        }
        for c in 0..CLAIMERS.len() as u8 {
            // The leases of a claimer that ended (killed, or could not give them back) expire
            // with time, fault or not.
            let holds = w.redis.lease.iter().any(|l| l.is_some_and(|(o, _)| o == c))
                || w.redis.iface.contains(&Some(c));
            if w.claimers[c as usize].phase.ended() && holds {
                actions.push(Action::ExpireLeases { c });
            }
        }
        for c in 0..CLAIMERS.len() as u8 {
            if w.faults_left > 0 && matches!(w.claimers[c as usize].phase, Phase::Reported(_)) {
                actions.push(Action::Release { c });
            }
        }
        if stale_mask != 0 {
            actions.push(Action::Settle);
        }
        if w.faults_left > 0 {
            actions.push(Action::FlushRedis);
            actions.push(Action::ToggleRedis);
            for a in 0..ADDRESSES as u8 {
                match w.ec2[a as usize].assoc {
                    None => actions.push(Action::HandAssociate { a }),
                    Some(_) => actions.push(Action::HandDisassociate { a }),
                }
            }
        } else if !w.redis.up {
            // Faults stop: Redis comes back.
            actions.push(Action::ToggleRedis);
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut w = last.clone();
        match action {
            Action::Step { c, stale } => self.step(&mut w, c, stale, false),
            Action::LoseAnswer { c } => {
                w.faults_left -= 1;
                self.step(&mut w, c, 0, true);
            }
            Action::Settle => {
                for e in &mut w.ec2 {
                    e.before = None;
                    e.outside_change = false;
                }
                for cl in &mut w.claimers {
                    if !cl.phase.ended() {
                        cl.listing_old = true;
                    }
                }
            }
            Action::Release { c } => {
                let Phase::Reported(a) = w.claimers[c as usize].phase else {
                    return None;
                };
                w.faults_left -= 1;
                // `eipool release`: what EC2 shows on our interface is disassociated, and
                // forgotten in Redis (the marker, so others may claim it at once).
                if w.ec2[a as usize]
                    .assoc
                    .is_some_and(|(i, _)| i == CLAIMERS[c as usize])
                {
                    w.set_assoc(a, None);
                    w.changed_outside(a);
                }
                if w.redis.up {
                    w.redis.marker[a as usize] = false;
                }
                w.claimers[c as usize].phase = Phase::Released;
            }
            Action::HandAssociate { a } => {
                w.faults_left -= 1;
                let there = w.associate(a, OUTSIDE, BY_HAND);
                for x in std::iter::once(a).chain(there) {
                    w.changed_outside(x);
                }
            }
            Action::HandDisassociate { a } => {
                w.faults_left -= 1;
                w.set_assoc(a, None);
                w.changed_outside(a);
            }
            Action::ExpireLeases { c } => {
                if !w.claimers[c as usize].phase.ended() {
                    w.faults_left -= 1;
                }
                for l in &mut w.redis.lease {
                    if l.is_some_and(|(o, _)| o == c) {
                        *l = None;
                    }
                }
                for l in &mut w.redis.iface {
                    if *l == Some(c) {
                        *l = None;
                    }
                }
            }
            Action::FlushRedis => {
                w.faults_left -= 1;
                // Every claim in flight loses its interface lease with the data.
                for cl in &mut w.claimers {
                    if !cl.phase.ended() && cl.phase != Phase::Start {
                        cl.unguarded = true;
                    }
                }
                let fence = w.redis.fence;
                w.redis = Redis {
                    up: w.redis.up,
                    fence,
                    ..Redis::default()
                };
            }
            Action::ToggleRedis => {
                if w.redis.up {
                    w.faults_left -= 1;
                }
                w.redis.up = !w.redis.up;
            }
            Action::Kill { c } => {
                w.faults_left -= 1;
                w.claimers[c as usize].phase = Phase::Killed;
            }
        }
        (w != *last).then_some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "no address is reported for two interfaces",
                |_, w: &World| !reported_twice(w),
            ),
            Property::always(
                "once settled, every guarded report is on its interface in EC2",
                |_, w: &World| !report_not_on_interface(w),
            ),
            Property::always(
                "no exhausted while an address is free past the consistency bound",
                |_, w: &World| !exhausted_past_a_free_address(w),
            ),
            Property::always(
                "once settled, every address a claim associated is reported on its interface",
                |_, w: &World| !orphaned(w),
            ),
            Property::eventually("every claim ends", |_, w: &World| {
                w.claimers.iter().all(|c| c.phase.ended())
            }),
        ]
    }

    fn format_action(&self, action: &Action) -> String {
        match action {
            Action::Step { c, stale: 0 } => format!("claimer {c} steps"),
            Action::Step { c, stale } => format!("claimer {c} steps, EC2 stale for {stale:#b}"),
            other => format!("{other:?}"),
        }
    }
}

/// Whether every claim of interface `i` ran with Redis answering. Without it (Redis down or
/// flushed), two claims of one interface at once may
/// displace each other's address and one may report an address it no longer holds: eipool
/// documents this (README, "without Redis"), counts it, and the agent repairs it as drift.
fn guarded(w: &World, i: u8) -> bool {
    w.claimers
        .iter()
        .zip(CLAIMERS)
        .filter(|(_, j)| *j == i)
        .all(|(c, _)| !c.unguarded)
}

/// Two claimers of different interfaces, each interface's claims under its lease, reported the
/// same address.
pub fn reported_twice(w: &World) -> bool {
    let reports: Vec<(u8, u8)> = w
        .claimers
        .iter()
        .zip(CLAIMERS)
        .filter_map(|(c, i)| match c.phase {
            Phase::Reported(a) if guarded(w, i) && !c.excused => Some((a, i)),
            _ => None,
        })
        .collect();
    reports
        .iter()
        .any(|(a, i)| reports.iter().any(|(b, j)| a == b && i != j))
}

/// Every claim ended and no stale window is open: what the report properties judge.
fn settled(w: &World) -> bool {
    w.claimers.iter().all(|c| c.phase.ended()) && w.ec2.iter().all(|e| e.before.is_none())
}

/// Everything settled (every claim ended, no stale window), and a claimer whose interface's
/// claims all ran under the interface lease reported an address EC2 does not show on its
/// interface, or an interface holds two pool addresses.
pub fn report_not_on_interface(w: &World) -> bool {
    if !settled(w) {
        return false;
    }
    for i in 0..INTERFACES as u8 {
        if w.ec2
            .iter()
            .filter(|e| e.assoc.is_some_and(|(j, _)| j == i))
            .count()
            > 1
        {
            return true;
        }
    }
    w.claimers.iter().zip(CLAIMERS).any(|(c, i)| match c.phase {
        Phase::Reported(a) if guarded(w, i) && !c.excused => {
            w.ec2[a as usize].assoc.is_none_or(|(j, _)| j != i)
        }
        _ => false,
    })
}

/// Everything settled, and a pool address is associated to an interface by a claim, yet no claim
/// of that interface reports it: a failing claim left behind an association no one uses. Exempt:
/// a killed claim's (the agent and `gc` repair those), an interface whose claims ran without
/// Redis's guard, and a claim excused by an outside change.
pub fn orphaned(w: &World) -> bool {
    if !settled(w) {
        return false;
    }
    w.ec2.iter().enumerate().any(|(a, e)| match e.assoc {
        Some((i, n)) if i != OUTSIDE => {
            let by = &w.claimers[n as usize];
            let reported = w
                .claimers
                .iter()
                .zip(CLAIMERS)
                .any(|(c, j)| j == i && c.phase == Phase::Reported(a as u8));
            !reported && by.phase != Phase::Killed && !by.excused && guarded(w, i)
        }
        _ => false,
    })
}

/// A claimer said "exhausted" while EC2 had an address free for longer than its consistency
/// bound (free, its stale window closed).
pub fn exhausted_past_a_free_address(w: &World) -> bool {
    w.claimers.iter().any(|c| c.exhausted_past_free)
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ec2: Vec<String> = self
            .ec2
            .iter()
            .enumerate()
            .map(|(a, e)| {
                let window = match (e.before, e.outside_change) {
                    (None, _) => "",
                    (Some(_), false) => " (stale window)",
                    (Some(_), true) => " (stale window, outside change)",
                };
                match e.assoc {
                    Some((OUTSIDE, _)) => format!("addr{a}→outside (by hand){window}"),
                    Some((i, n)) => format!("addr{a}→iface{i}#{n}{window}"),
                    None => format!("addr{a} free{window}"),
                }
            })
            .collect();
        let claimers: Vec<String> = self
            .claimers
            .iter()
            .enumerate()
            .map(|(c, cl)| {
                format!(
                    "c{c}@iface{}: {}{}",
                    CLAIMERS[c],
                    short(&cl.phase),
                    if cl.excused { " (excused)" } else { "" }
                )
            })
            .collect();
        write!(
            f,
            "EC2 [{}] | Redis {} leases {:?} markers {:?} iface {:?} | {}",
            ec2.join(", "),
            if self.redis.up { "up" } else { "DOWN" },
            self.redis.lease,
            self.redis.marker,
            self.redis.iface,
            claimers.join(", ")
        )
    }
}

fn short(p: &Phase) -> String {
    match p {
        Phase::Passes(p) => format!("passes: {:?}", p.call),
        Phase::Attempt(t) => format!("addr{}: {:?}", t.addr, t.call),
        Phase::Record { addr } => format!("record addr{addr}"),
        Phase::Reported(a) => format!("REPORTED addr{a}"),
        Phase::Exhausted => "EXHAUSTED".into(),
        other => format!("{other:?}"),
    }
}

//! A bounded model of eipool's claim protocol, checked exhaustively by `stateright`.
//!
//! The lab proves the protocol by running it; this checks every interleaving of a small world:
//! [`CLAIMERS`] claimers (two of them for one interface, as a re-run or a second pod on the node
//! would be), [`ADDRESSES`] pool addresses, two interfaces; Redis with leases, fences, assigned
//! markers and the interface lease; EC2 with `AllowReassociation=false`, the replace rule (an
//! association displaces the address already on that private IP), answers stale for up to the
//! consistency bound, and lost answers; and faults: Redis flushed, Redis down, a claimer paused
//! past its leases, a claimer killed. Time is not modelled as a clock: leases expire and stale
//! windows close as steps of their own, in any order with the rest.
//!
//! **Every decision is eipool's own**: the model calls `eipool::decisions` (`claim_order`,
//! `standing`, `after_holder_look`, `after_pass`, `masked_verdict`, `occupant`,
//! `Address::held_by_me`) to decide each step; it models only what eipool asks Redis and EC2
//! and what they answer. A change to a decision is checked here.
//!
//! Seeded [`Mutation`]s break the protocol on purpose; each must be caught (tests/model.rs).

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use eipool::decisions::{
    after_holder_look, after_pass, claim_order, masked_verdict, occupant, standing, AfterPass,
    HolderLook, Identity, MaskedVerdict, Occupant, PassTally, Standing, CONSISTENCY_BOUND,
};
use eipool::model::{Address, AllocationId, Association, EniId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use stateright::{Model, Property};

/// Pool addresses in the model.
pub const ADDRESSES: usize = 2;
/// Interfaces in the model (one private IP each).
pub const INTERFACES: usize = 2;
/// Claimers in the model, and the interface each claims for: two share interface 0.
pub const CLAIMERS: [u8; 3] = [0, 1, 0];
/// The pool's name (the `eipool:pool` tag).
const POOL: &str = "model";

/// A protocol step broken on purpose, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// AssociateAddress with `AllowReassociation=true`: it takes an address from whoever holds it.
    AllowReassociation,
    /// Associate without first checking that our leases (the address lease's fence, and the
    /// interface lease) still hold.
    NoFenceCheck,
}

/// What the checker explores.
#[derive(Debug, Clone)]
pub struct ClaimModel {
    /// How many faults (Redis flushed, Redis down, a pause past the leases, a kill, a lost
    /// answer) one run may suffer.
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
    /// About to list the pool.
    List,
    /// Trying candidates in order.
    Try {
        order: Vec<u8>,
        next: usize,
        tally: (u8, u8),
        masked: Vec<u8>,
        suspect: Option<u8>,
    },
    /// About to AssociateAddress `addr` (with the fence of its lease, if any).
    Associate {
        addr: u8,
        fence: Option<u8>,
        maybe_ours: bool,
        rest: Box<Phase>,
    },
    /// The answer was lost: looking at who holds `addr`.
    HolderLook { addr: u8, rest: Box<Phase> },
    /// Associated `addr` (association `assoc`): validating.
    Validate {
        addr: u8,
        assoc: u8,
        rest: Box<Phase>,
    },
    /// Won `addr`: recording the holder and the marker.
    Record { addr: u8 },
    /// Reported `addr` (reused or not).
    Reported(u8),
    /// Said the pool is exhausted.
    Exhausted,
    /// Killed.
    Killed,
}

impl Phase {
    fn ended(&self) -> bool {
        matches!(self, Phase::Reported(_) | Phase::Exhausted | Phase::Killed)
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

    /// Whether claimer `c` still holds its interface lease (always "yes" without Redis: there
    /// is none to hold, which `unguarded` records).
    fn holds_interface(&self, c: u8) -> bool {
        self.redis.iface[CLAIMERS[c as usize] as usize] == Some(c)
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
            faults,
            mutation: Some(mutation),
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
                            Phase::List
                        }
                        Some(other) if other == c => Phase::List,
                        // Another claim of this interface runs: wait (no step).
                        Some(_) => return,
                    }
                } else {
                    // Redis down: claim without the interface lease.
                    w.claimers[c as usize].unguarded = true;
                    Phase::List
                }
            }
            Phase::List => {
                let listing: Vec<Address> = (0..ADDRESSES as u8)
                    .map(|a| address(a, w.seen(a, stale)))
                    .collect();
                if let Some(a) = listing.iter().find(|a| a.held_by_me(&me)) {
                    // Adopt what the listing shows on our interface.
                    Phase::Record {
                        addr: index_of(&a.allocation_id),
                    }
                } else {
                    // What our private IP holds (the node's own view: never stale).
                    let held = (0..ADDRESSES as u8)
                        .find(|a| w.ec2[*a as usize].assoc.is_some_and(|(i, _)| i == my_iface));
                    let in_pool = held.map(|a| address(a, w.ec2[a as usize].assoc));
                    let suspect = match occupant(in_pool.as_ref(), None, POOL) {
                        Occupant::Pool(id) => Some(index_of(&id)),
                        _ => None,
                    };
                    let mut rng = StdRng::seed_from_u64(u64::from(c));
                    let order: Vec<u8> =
                        claim_order(&listing, None, suspect.map(alloc).as_ref(), &mut rng)
                            .iter()
                            .map(|a| index_of(&a.allocation_id))
                            .collect();
                    Phase::Try {
                        order,
                        next: 0,
                        tally: (0, 0),
                        masked: Vec::new(),
                        suspect,
                    }
                }
            }
            Phase::Try {
                order,
                next,
                tally,
                masked,
                suspect,
            } => {
                if next == order.len() {
                    self.after_pass(w, tally, masked)
                } else {
                    let a = order[next];
                    let rest = Box::new(Phase::Try {
                        order: order.clone(),
                        next: next + 1,
                        tally,
                        masked: masked.clone(),
                        suspect,
                    });
                    if suspect == Some(a) {
                        // A run of ours may hold it: straight to EC2's compare-and-swap.
                        Phase::Associate {
                            addr: a,
                            fence: None,
                            maybe_ours: true,
                            rest,
                        }
                    } else if !w.redis.up {
                        w.claimers[c as usize].unguarded = true;
                        Phase::Associate {
                            addr: a,
                            fence: None,
                            maybe_ours: false,
                            rest,
                        }
                    } else if w.redis.marker[a as usize] {
                        let mut masked = masked.clone();
                        masked.push(a);
                        Phase::Try {
                            order: order.clone(),
                            next: next + 1,
                            tally,
                            masked,
                            suspect,
                        }
                    } else if w.redis.lease[a as usize].is_some_and(|(o, _)| o != c) {
                        busy_after(&rest)
                    } else {
                        // Bounded, so the state space is: a fence is compared only with the
                        // lease's own, and the owner tells a stale one apart.
                        let f = (w.redis.fence[a as usize] + 1).min(3);
                        w.redis.fence[a as usize] = f;
                        w.redis.lease[a as usize] = Some((c, f));
                        Phase::Associate {
                            addr: a,
                            fence: Some(f),
                            maybe_ours: false,
                            rest,
                        }
                    }
                }
            }
            Phase::Associate {
                addr,
                fence,
                maybe_ours,
                rest,
            } => {
                if let (Some(f), false) = (fence, self.is(Mutation::NoFenceCheck)) {
                    // Renew the lease before associating (`Coordination::renew`): a claimer
                    // paused past it must not associate. Redis down: go on (EC2's
                    // compare-and-swap still guards the address).
                    let ours = !w.redis.up || w.redis.lease[addr as usize] == Some((c, f));
                    if !ours {
                        if w.redis.lease[addr as usize].is_some_and(|(o, _)| o == c) {
                            w.redis.lease[addr as usize] = None;
                        }
                        w.claimers[c as usize].phase = busy_after(&rest);
                        return;
                    }
                }
                // `Coordination::still_holds_interface`: associate only while the interface
                // lease taken at the start is still ours; a lease that ran out means another
                // claim of this interface may have run: take it again, start over.
                if w.redis.up
                    && w.claimers[c as usize].locked
                    && !w.holds_interface(c)
                    && !self.is(Mutation::NoFenceCheck)
                {
                    release(w, c, addr);
                    w.claimers[c as usize].locked = false;
                    w.claimers[c as usize].phase = Phase::Start;
                    return;
                }
                let held = w.ec2[addr as usize].assoc;
                if held.is_some() && !self.is(Mutation::AllowReassociation) {
                    // Resource.AlreadyAssociated.
                    if maybe_ours {
                        Phase::HolderLook { addr, rest }
                    } else {
                        if w.redis.up {
                            w.redis.marker[addr as usize] = true;
                            release(w, c, addr);
                        }
                        *rest
                    }
                } else {
                    // The association's number is the claimer's: all it needs to tell is
                    // whether the association there is still this claimer's own.
                    let n = c;
                    // EC2's replace rule: the address already on this private IP goes.
                    for other in 0..ADDRESSES as u8 {
                        if other != addr
                            && w.ec2[other as usize]
                                .assoc
                                .is_some_and(|(i, _)| i == my_iface)
                        {
                            w.set_assoc(other, None);
                        }
                    }
                    w.set_assoc(addr, Some((my_iface, n)));
                    if lose_answer {
                        Phase::HolderLook { addr, rest }
                    } else {
                        Phase::Validate {
                            addr,
                            assoc: n,
                            rest,
                        }
                    }
                }
            }
            Phase::HolderLook { addr, rest } => {
                let seen = address(addr, w.seen(addr, stale));
                let settled = w.ec2[addr as usize].before.is_none() || stale & (1 << addr) == 0;
                let waited = if settled {
                    CONSISTENCY_BOUND
                } else {
                    Duration::ZERO
                };
                match after_holder_look(standing(Some(&seen), &me), waited) {
                    HolderLook::Ours => Phase::Record { addr },
                    HolderLook::NotOurs => {
                        release(w, c, addr);
                        *rest
                    }
                    HolderLook::NobodysNow => {
                        release(w, c, addr);
                        busy_after(&rest)
                    }
                    HolderLook::LookAgain => Phase::HolderLook { addr, rest },
                }
            }
            Phase::Validate { addr, assoc, rest } => {
                let seen = address(addr, w.seen(addr, stale));
                let fresh = w.ec2[addr as usize].before.is_none() || stale & (1 << addr) == 0;
                match standing(Some(&seen), &me) {
                    Standing::Mine => Phase::Record { addr },
                    Standing::Elsewhere => {
                        // Not ours: give back our own association if it is still there.
                        if w.ec2[addr as usize].assoc == Some((my_iface, assoc)) {
                            w.set_assoc(addr, None);
                        }
                        release(w, c, addr);
                        *rest
                    }
                    // Not visible yet: look again.
                    Standing::Free | Standing::Gone if !fresh => {
                        Phase::Validate { addr, assoc, rest }
                    }
                    // Displaced by another association to our private IP: never report it.
                    Standing::Free | Standing::Gone => {
                        release(w, c, addr);
                        Phase::List
                    }
                }
            }
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

    /// After a pass over the candidates that won nothing: eipool's `after_pass`, and for masked
    /// candidates EC2's word weighed by `masked_verdict`.
    fn after_pass(&self, w: &mut World, tally: (u8, u8), masked: Vec<u8>) -> Phase {
        let tally = PassTally {
            busy: usize::from(tally.0),
            transient: usize::from(tally.1),
            masked: masked.len(),
        };
        match after_pass(tally) {
            AfterPass::Exhausted => Phase::Exhausted,
            AfterPass::TryAgain => Phase::List,
            AfterPass::AskEc2 => {
                let mut any = false;
                for a in masked {
                    let free = w.ec2[a as usize].assoc.is_none();
                    // A marker outlives EC2's consistency bound only by being wrong: the model's
                    // markers are as old as it takes (a step of time may pass first).
                    match masked_verdict(free, CONSISTENCY_BOUND) {
                        MaskedVerdict::Taken => {}
                        MaskedVerdict::ClearMarker => {
                            w.redis.marker[a as usize] = false;
                            any = true;
                        }
                        MaskedVerdict::Wait => any = true,
                    }
                }
                if any {
                    Phase::List
                } else {
                    Phase::Exhausted
                }
            }
        }
    }
}

/// The pass goes on after a candidate that another claimer may still hand back.
fn busy_after(rest: &Phase) -> Phase {
    match rest.clone() {
        Phase::Try {
            order,
            next,
            tally,
            masked,
            suspect,
        } => Phase::Try {
            order,
            next,
            tally: (tally.0 + 1, tally.1),
            masked,
            suspect,
        },
        other => other,
    }
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

    fn init_states(&self) -> Vec<World> {
        vec![World {
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
                })
                .collect(),
            faults_left: self.faults,
        }]
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
                if matches!(phase, Phase::Associate { .. }) {
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
        if stale_mask != 0 {
            actions.push(Action::Settle);
        }
        if w.faults_left > 0 {
            actions.push(Action::FlushRedis);
            actions.push(Action::ToggleRedis);
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
                }
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
                "no exhausted while EC2 shows an address free and faults are over",
                |_, w: &World| !exhausted_with_a_free_address(w),
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
            Phase::Reported(a) if guarded(w, i) => Some((a, i)),
            _ => None,
        })
        .collect();
    reports
        .iter()
        .any(|(a, i)| reports.iter().any(|(b, j)| a == b && i != j))
}

/// Everything settled (every claim ended, no stale window), and a claimer whose interface's
/// claims all ran under the interface lease reported an address EC2 does not show on its
/// interface, or an interface holds two pool addresses.
pub fn report_not_on_interface(w: &World) -> bool {
    let settled =
        w.claimers.iter().all(|c| c.phase.ended()) && w.ec2.iter().all(|e| e.before.is_none());
    if !settled {
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
        Phase::Reported(a) if guarded(w, i) => w.ec2[a as usize].assoc.is_none_or(|(j, _)| j != i),
        _ => false,
    })
}

/// A claimer said "exhausted" while EC2 shows an address free, in a run without faults.
pub fn exhausted_with_a_free_address(w: &World) -> bool {
    let faultless = w
        .claimers
        .iter()
        .all(|c| !c.unguarded && c.phase != Phase::Killed)
        && w.redis.up;
    faultless
        && w.claimers.iter().all(|c| c.phase.ended())
        && w.ec2.iter().all(|e| e.before.is_none())
        && w.claimers.iter().any(|c| c.phase == Phase::Exhausted)
        && w.ec2.iter().any(|e| e.assoc.is_none())
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ec2: Vec<String> = self
            .ec2
            .iter()
            .enumerate()
            .map(|(a, e)| match (e.assoc, e.before) {
                (Some((i, n)), b) => format!(
                    "addr{a}→iface{i}#{n}{}",
                    if b.is_some() { " (stale window)" } else { "" }
                ),
                (None, b) => format!(
                    "addr{a} free{}",
                    if b.is_some() { " (stale window)" } else { "" }
                ),
            })
            .collect();
        let claimers: Vec<String> = self
            .claimers
            .iter()
            .enumerate()
            .map(|(c, cl)| format!("c{c}@iface{}: {}", CLAIMERS[c], short(&cl.phase)))
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
        Phase::Try { order, next, .. } => format!("try {:?}", &order[(*next).min(order.len())..]),
        Phase::Associate { addr, .. } => format!("associate addr{addr}"),
        Phase::HolderLook { addr, .. } => format!("look at addr{addr}"),
        Phase::Validate { addr, .. } => format!("validate addr{addr}"),
        Phase::Record { addr } => format!("record addr{addr}"),
        Phase::Reported(a) => format!("REPORTED addr{a}"),
        other => format!("{other:?}"),
    }
}

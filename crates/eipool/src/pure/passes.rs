//! One listing's passes as a sans-IO state machine: try the candidates (each one through the
//! attempt machine, [`crate::pure::attempt`]), pass after pass, until one is won, every one is
//! known taken, or the listing must give way to a newer one. The machine makes every decision of
//! the passes; `services::claim::protocol` (the driver) performs the [`Call`] it asks for and
//! feeds the answer back as an [`Input`], with the time since the listing was made.
//!
//! ```text
//!   ┌─▶ Turn ─▶ (Outsiders) ─▶ Try ─▶ … each candidate … ─▶ after_pass
//!   │     └── too late for this listing: Stale          │     │     └─ Exhausted
//!   │                                                   │     └─ AskEc2: Describe the masked ─▶ ClearMarker … ─▶ (Sleep: a marker ages)
//!   │                                TryAgain: Sleep(backoff) ─▶ (Redis silent: ListOwn ─▶ Adopt)
//!   └───────────────────────────────────────── the next pass ◀──┘
//! ```
//!
//! Two decisions live here whole:
//! - **A Redis marker hides an address EC2 may show free** (`masked`): on a listing of our own,
//!   a candidate a marker hides is counted, not dropped; when nothing else can come free,
//!   EC2 is asked about those by allocation id, and [`plan::masked_verdict`] weighs its word
//!   against the marker's age (drop the marker and try the address, wait for it to age, or
//!   take it as taken). Only then may the pool be called exhausted.
//! - **Redis is silent** (`redis: false` in an answer): nobody tells this claim what the others
//!   took, so "taken" says nothing of the listing's age; after a batch of blind takes
//!   ([`plan::relist_without_redis`]) the rest is set aside untried, and between passes a fresh
//!   listing of our own replaces the old one. (Whether Redis is used at all, and its cool-down
//!   after a failure, is [`plan::RedisHealth`]'s; the driver reports it with each answer.)
//!
//! The order of each pass is random: the sample is handed in (`seed`), as the machine has no
//! randomness of its own.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::pure::address::Address;
use crate::pure::attempt::Outcome;
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::plan::{self, AfterPass, MaskedVerdict, PassTally};

/// What the machine asks the driver to do next. The last call of a run is `Adopt` or `Ended`;
/// a won attempt ends the run in the driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// Wait for this claim's turn in the herd's AssociateAddress pace before choosing the next
    /// candidate (the turn is kept until an association uses it). `Turn(false)`: none was
    /// waited for (one is held already, or nobody paces the herd: Redis is silent).
    Turn,
    /// Whether callers outside the herd took addresses of the pool lately: `Outsiders(bool)`.
    Outsiders,
    /// Try this candidate with the attempt machine (`suspect`: it may be ours already).
    /// `Tried`, unless it is won.
    Try { cand: Address, suspect: bool },
    /// Look at these addresses in EC2, by allocation id (our listing shows them free, Redis
    /// has markers on them): `Seen`.
    Describe(Vec<AllocationId>),
    /// Drop Redis's marker on this address, set this long ago: EC2 outvoted it. `Done`.
    ClearMarker(AllocationId, Duration),
    /// Sleep, then `Slept`.
    Sleep(Wait),
    /// List the pool ourselves (no shared listing): `Listed`.
    ListOwn,
    /// The listing shows this address on our interface: adopt it.
    Adopt(Address),
    /// The passes are over without a win.
    Ended(End),
}

/// What a [`Call::Sleep`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// Back off after the `n`th pass that won nothing.
    Backoff(u32),
    /// Until the youngest standing marker is old enough for EC2 to outvote it.
    MarkerAges(Duration),
}

/// How the passes over one listing ended without a win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// Every candidate is taken, as far as this listing and EC2 know.
    Exhausted,
    /// Our association was replaced: list again, and look at what our private IP holds.
    Relist,
    /// A candidate the listing and Redis showed free was taken by a caller outside the herd:
    /// the listing is behind EC2. One newer listing (for the whole herd, from the describe
    /// bucket) beats trying the rest blind (an AssociateAddress each, from the mutating bucket
    /// every caller in the account shares).
    Behind,
    /// Our turn to associate came, and the listing is too old to choose from: choose from one
    /// made at most this long ago ([`plan::choose_within`]), keeping the turn.
    Stale(Duration),
}

/// The answer to the last [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// The first step.
    Start,
    /// `Turn`: whether a turn was waited for.
    Turn(bool),
    /// `Outsiders`.
    Outsiders(bool),
    /// `Try`: how the attempt ended; `redis`: whether Redis answers now (it tells this claim
    /// what the others took).
    Tried { outcome: Outcome, redis: bool },
    /// `Describe`: what EC2 showed (an address it does not show is gone).
    Seen(Vec<Address>),
    /// `ClearMarker`.
    Done,
    /// `Sleep`; `redis` as in `Tried`, once awake.
    Slept { redis: bool },
    /// `ListOwn`: the pool's addresses.
    Listed(Vec<Address>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum State {
    Start,
    Turn,
    /// Asking about outsiders; the listing's age when the turn came, which the answer weighs.
    Outsiders(Duration),
    Trying,
    Describe,
    /// Dropping the markers EC2 outvoted (`clear`, one call each), with what comes of it.
    Clearing {
        clear: Vec<(AllocationId, Duration)>,
        cleared: Vec<Address>,
        waiting: Vec<(Address, Duration)>,
    },
    /// Waiting for a marker to age; then these are tried again.
    AgingMarkers(Vec<Address>),
    Backoff,
    ListOwn,
    Ended,
}

/// The passes over one listing. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Passes {
    me: Identity,
    /// What Redis or our private IP said may be ours: tried first, straight to EC2.
    suspect: Option<AllocationId>,
    /// The listing is the herd's (shared), not our own: a marker on it is the herd's word.
    shared: bool,
    seed: u64,
    /// This pass's candidates, and the next one to try.
    order: Vec<Address>,
    next: usize,
    /// Passes that won nothing so far (sets only the back-off).
    pass: u32,
    tally: PassTally,
    /// What the last pass saw, once it ended: the deadline's verdict weighs it.
    last: Option<PassTally>,
    /// What the next pass tries again (busy, transient, set aside).
    again: Vec<Address>,
    /// Masked candidates, with their marker's age.
    masked: Vec<(Address, Duration)>,
    /// "Taken" answers that cost a mutating call each (Redis silent), this pass.
    taken_blind: usize,
    suspect_gone: bool,
    state: State,
    /// A step broken on purpose, for the model checker's mutation tests (never in eipool).
    mutation: Option<Mutation>,
}

/// A step of the machine broken on purpose: eipool-model shows its checker catches each.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Take a marker at its word: never ask EC2 about a masked address.
    TrustMarker,
}

impl Passes {
    /// Passes over `order` (a listing's candidates, in [`plan::claim_order`]), `shared`: the
    /// herd's listing, not our own. `seed`: a random sample for each later pass's order.
    pub fn new(
        me: Identity,
        order: Vec<Address>,
        suspect: Option<AllocationId>,
        shared: bool,
        seed: u64,
    ) -> Self {
        Passes {
            me,
            suspect,
            shared,
            seed,
            order,
            next: 0,
            pass: 0,
            tally: PassTally::default(),
            last: None,
            again: Vec::new(),
            masked: Vec::new(),
            taken_blind: 0,
            suspect_gone: false,
            state: State::Start,
            mutation: None,
        }
    }

    /// What the last pass that ended saw (`None` while a pass runs): a claim that runs out of
    /// time reports exhaustion or a temporary failure by it ([`plan::deadline_verdict`]).
    pub fn last_tally(&self) -> Option<PassTally> {
        self.last
    }

    /// Whether the suspect was tried and EC2 showed it someone else's past its consistency
    /// bound: it is not ours, and the next listing does not try it again (else each listing
    /// would wait out that bound on it again, and grow too old to choose from).
    pub fn suspect_gone(&self) -> bool {
        self.suspect_gone
    }

    /// This machine with its count of passes at zero: it sets only how long a back-off
    /// sleeps, and the seed of the next order. eipool-model, which has no clock, keeps
    /// machines this way so that passing again is one state, not one per pass.
    #[doc(hidden)]
    pub fn without_counts(mut self) -> Self {
        self.pass = 0;
        self
    }

    /// This machine with `mutation`: for eipool-model's mutation tests only.
    #[doc(hidden)]
    pub fn mutated(mut self, mutation: Mutation) -> Self {
        self.mutation = Some(mutation);
        self
    }

    /// Feed the answer to the last call, `since_listed` after the listing was made; get the
    /// next call.
    pub fn step(&mut self, input: Input, since_listed: Duration) -> Call {
        let state = std::mem::replace(&mut self.state, State::Ended);
        match (state, input) {
            (State::Start, Input::Start) => self.next(),
            (State::Turn, Input::Turn(false)) => self.try_next(),
            (State::Turn, Input::Turn(true)) => {
                // The word on outsiders matters only to a listing between the two bounds.
                let (fresh, old) = (plan::choose_within(true), plan::choose_within(false));
                if since_listed > fresh && since_listed <= old {
                    self.go(State::Outsiders(since_listed), Call::Outsiders)
                } else {
                    self.chosen(since_listed, false)
                }
            }
            (State::Outsiders(at_turn), Input::Outsiders(seen)) => self.chosen(at_turn, seen),
            (State::Trying, Input::Tried { outcome, redis }) => self.tried(outcome, redis),
            (State::Describe, Input::Seen(seen)) => self.settle(seen),
            (
                State::Clearing {
                    mut clear,
                    cleared,
                    waiting,
                },
                Input::Done,
            ) => {
                clear.remove(0);
                self.clearing(clear, cleared, waiting)
            }
            (State::AgingMarkers(again), Input::Slept { .. }) => self.new_pass(again),
            (State::Backoff, Input::Slept { redis }) => {
                self.pass += 1;
                let again = std::mem::take(&mut self.again);
                if redis {
                    self.new_pass(again)
                } else {
                    // Nobody tells us what the others took: one fresh listing beats trying
                    // every address blind under EC2's mutating-call budget.
                    self.go(State::ListOwn, Call::ListOwn)
                }
            }
            (State::ListOwn, Input::Listed(listing)) => {
                if let Some(a) = listing.iter().find(|a| a.held_by_me(&self.me)) {
                    return self.go(State::Ended, Call::Adopt(a.clone()));
                }
                let free = listing
                    .into_iter()
                    .filter(|a| a.association.is_none())
                    .collect();
                self.new_pass(free)
            }
            (state, input) => {
                unreachable!("passes machine: {input:?} does not answer a call made in {state:?}")
            }
        }
    }
}

/// The transitions `step` takes: each moves to a state and says the call it waits on there.
impl Passes {
    fn go(&mut self, state: State, call: Call) -> Call {
        self.state = state;
        call
    }

    fn end(&mut self, end: End) -> Call {
        self.go(State::Ended, Call::Ended(end))
    }

    fn is_suspect(&self, a: &Address) -> bool {
        self.suspect.as_ref() == Some(&a.allocation_id)
    }

    /// The next candidate of this pass, or the pass's end. In a herd, a turn in the pace comes
    /// before choosing (the wait may be seconds, and what is chosen before it may be taken
    /// meanwhile); not for the suspect, which goes straight to EC2.
    fn next(&mut self) -> Call {
        match self.order.get(self.next) {
            Some(cand) if !self.is_suspect(cand) => self.go(State::Turn, Call::Turn),
            Some(_) => self.try_next(),
            None => self.pass_ended(),
        }
    }

    fn try_next(&mut self) -> Call {
        let cand = self.order[self.next].clone();
        let suspect = self.is_suspect(&cand);
        self.go(State::Trying, Call::Try { cand, suspect })
    }

    /// Our turn came `since_listed` after the listing: choose from it only if it is young
    /// enough for what outsiders may have taken meanwhile.
    fn chosen(&mut self, since_listed: Duration, outsiders: bool) -> Call {
        let within = plan::choose_within(outsiders);
        if since_listed <= within {
            self.try_next()
        } else {
            self.end(End::Stale(within))
        }
    }

    fn tried(&mut self, outcome: Outcome, redis: bool) -> Call {
        let cand = self.order[self.next].clone();
        self.next += 1;
        let suspect = self.is_suspect(&cand);
        match outcome {
            Outcome::Displaced => return self.end(End::Relist),
            // A marker only hides an address from a listing older than it; ours was made for
            // this claim, so EC2 is asked before the address is given up.
            Outcome::Masked(age) if !self.shared => {
                self.tally.masked += 1;
                self.masked.push((cand, age));
            }
            Outcome::Masked(_) => {}
            // Not the suspect: it was tried although the listing showed it held (it may be
            // ours), so its being taken says nothing of the listing's age.
            Outcome::Taken if !suspect && redis => return self.end(End::Behind),
            Outcome::Taken => {
                self.suspect_gone |= suspect;
                // Redis silent: each "taken" cost a mutating call. After a few, a fresh
                // listing is cheaper than trying the rest of a stale one.
                if !redis {
                    self.taken_blind += 1;
                    if plan::relist_without_redis(self.taken_blind) {
                        // Set aside, never tried: nobody knows them taken.
                        let unseen = self.order.split_off(self.next);
                        self.tally.untried += unseen.len();
                        self.again.extend(unseen);
                    }
                }
            }
            Outcome::Busy => {
                self.tally.busy += 1;
                self.again.push(cand);
            }
            Outcome::Transient => {
                self.tally.transient += 1;
                self.again.push(cand);
            }
        }
        self.next()
    }

    fn pass_ended(&mut self) -> Call {
        self.last = Some(self.tally);
        match plan::after_pass(self.tally) {
            AfterPass::Exhausted => self.end(End::Exhausted),
            AfterPass::AskEc2 => {
                let allocs = self
                    .masked
                    .iter()
                    .map(|(a, _)| a.allocation_id.clone())
                    .collect();
                self.go(State::Describe, Call::Describe(allocs))
            }
            AfterPass::TryAgain => {
                // Masked addresses wait for EC2's word like busy ones wait for their lease.
                let masked = std::mem::take(&mut self.masked);
                self.again.extend(masked.into_iter().map(|(a, _)| a));
                self.go(State::Backoff, Call::Sleep(Wait::Backoff(self.pass)))
            }
        }
    }

    /// EC2's word on the masked candidates, weighed against each marker's age.
    fn settle(&mut self, seen: Vec<Address>) -> Call {
        let (mut clear, mut cleared, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for (cand, age) in std::mem::take(&mut self.masked) {
            let now = seen.iter().find(|a| a.allocation_id == cand.allocation_id);
            let free = now.is_some_and(|a| a.association.is_none());
            let verdict = match self.mutation {
                Some(Mutation::TrustMarker) => MaskedVerdict::Taken,
                None => plan::masked_verdict(free, age),
            };
            match verdict {
                MaskedVerdict::Taken => {}
                MaskedVerdict::Wait => waiting.push((cand, plan::CONSISTENCY_BOUND - age)),
                MaskedVerdict::ClearMarker => {
                    clear.push((cand.allocation_id.clone(), age));
                    cleared.extend(now.cloned());
                }
            }
        }
        self.last = Some(PassTally {
            busy: cleared.len() + waiting.len(),
            ..PassTally::default()
        });
        if cleared.is_empty() && waiting.is_empty() {
            return self.end(End::Exhausted);
        }
        self.clearing(clear, cleared, waiting)
    }

    fn clearing(
        &mut self,
        clear: Vec<(AllocationId, Duration)>,
        mut cleared: Vec<Address>,
        waiting: Vec<(Address, Duration)>,
    ) -> Call {
        if let Some((alloc, age)) = clear.first().cloned() {
            return self.go(
                State::Clearing {
                    clear,
                    cleared,
                    waiting,
                },
                Call::ClearMarker(alloc, age),
            );
        }
        let empty = cleared.is_empty();
        let wait = plan::until_a_marker_ages(waiting.iter().map(|(_, left)| *left));
        cleared.extend(waiting.into_iter().map(|(a, _)| a));
        if empty {
            // Only young markers stand in the way: wait until the first of them is old enough
            // for EC2's answer to outvote it.
            self.go(
                State::AgingMarkers(cleared),
                Call::Sleep(Wait::MarkerAges(wait)),
            )
        } else {
            self.new_pass(cleared)
        }
    }

    /// A new pass over `candidates`, in a new random order.
    fn new_pass(&mut self, candidates: Vec<Address>) -> Call {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(u64::from(self.pass)));
        self.order = plan::candidate_order(&candidates, &mut rng);
        self.next = 0;
        self.tally = PassTally::default();
        self.last = None;
        self.again.clear();
        self.masked.clear();
        self.taken_blind = 0;
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::fixtures::{a, held, me};
    use crate::pure::plan::CONSISTENCY_BOUND;

    const S: Duration = Duration::from_secs(1);

    fn passes(order: &[u8]) -> Passes {
        Passes::new(me(), order.iter().map(|n| a(*n)).collect(), None, false, 7)
    }

    fn tried(outcome: Outcome) -> Input {
        Input::Tried {
            outcome,
            redis: true,
        }
    }

    /// Which candidate a call tries.
    fn tries(c: &Call) -> Option<u8> {
        match c {
            Call::Try { cand, .. } => Some(cand.public_ip.octets()[3]),
            _ => None,
        }
    }

    /// Step `m` from `Start` past the turn (answered "none waited for") to its first `Try`.
    fn first_try(m: &mut Passes) -> Call {
        let mut call = m.step(Input::Start, S);
        while call == Call::Turn {
            call = m.step(Input::Turn(false), S);
        }
        call
    }

    /// Feed `input`, then answer turns until the next other call.
    fn then(m: &mut Passes, input: Input) -> Call {
        let mut call = m.step(input, S);
        while call == Call::Turn {
            call = m.step(Input::Turn(false), S);
        }
        call
    }

    #[test]
    fn every_candidate_taken_ends_exhausted_after_the_pass() {
        let mut m = passes(&[1, 2]);
        let first = tries(&first_try(&mut m)).unwrap();
        let no_redis = |outcome| Input::Tried {
            outcome,
            redis: false,
        };
        let second = tries(&then(&mut m, no_redis(Outcome::Taken))).unwrap();
        assert_ne!(first, second);
        assert_eq!(m.last_tally(), None, "a pass is running");
        assert_eq!(
            then(&mut m, no_redis(Outcome::Taken)),
            Call::Ended(End::Exhausted)
        );
        assert_eq!(m.last_tally(), Some(PassTally::default()));
    }

    #[test]
    fn a_marker_ec2_outvotes_is_dropped_and_the_address_tried_again() {
        let mut m = passes(&[1]);
        first_try(&mut m);
        let call = then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND)));
        assert_eq!(call, Call::Describe(vec![a(1).allocation_id]));
        let tally = m.last_tally().unwrap();
        assert_eq!((tally.masked, tally.busy), (1, 0));
        assert_eq!(
            then(&mut m, Input::Seen(vec![a(1)])),
            Call::ClearMarker(a(1).allocation_id, CONSISTENCY_BOUND)
        );
        assert_eq!(tries(&then(&mut m, Input::Done)), Some(1));
        assert_eq!(m.last_tally(), None, "a new pass runs");
    }

    #[test]
    fn a_young_marker_on_a_free_address_is_waited_for_not_dropped() {
        let mut m = passes(&[1, 2]);
        first_try(&mut m);
        then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND - 3 * S)));
        let call = then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND - S)));
        assert!(matches!(call, Call::Describe(ref ids) if ids.len() == 2));
        // EC2 shows both free, neither marker old enough: wait until the first one is (1 s).
        assert_eq!(
            then(&mut m, Input::Seen(vec![a(1), a(2)])),
            Call::Sleep(Wait::MarkerAges(S))
        );
        // Until then they count as held by the claimers that just won them (a young marker may
        // be right where EC2 is behind): a deadline meanwhile says "all taken" (exit 69).
        assert_eq!(m.last_tally().unwrap().busy, 2);
        assert_eq!(
            plan::deadline_verdict(m.last_tally()),
            plan::AfterDeadline::Exhausted
        );
        assert!(tries(&then(&mut m, Input::Slept { redis: true })).is_some());
    }

    #[test]
    fn a_masked_address_ec2_shows_held_or_gone_is_taken() {
        let mut m = passes(&[1, 2]);
        first_try(&mut m);
        then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND)));
        then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND)));
        // 1 held by someone, 2 no longer in the account.
        assert_eq!(
            then(&mut m, Input::Seen(vec![held(1, "eni-9")])),
            Call::Ended(End::Exhausted)
        );
    }

    #[test]
    fn trusting_the_marker_is_the_mutation_the_model_must_catch() {
        let mut m = passes(&[1]).mutated(Mutation::TrustMarker);
        first_try(&mut m);
        then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND)));
        assert_eq!(
            then(&mut m, Input::Seen(vec![a(1)])),
            Call::Ended(End::Exhausted)
        );
    }

    #[test]
    fn on_the_herds_listing_a_marker_is_the_herds_word() {
        let mut m = Passes::new(me(), vec![a(1)], None, true, 7);
        first_try(&mut m);
        assert_eq!(
            then(&mut m, tried(Outcome::Masked(CONSISTENCY_BOUND))),
            Call::Ended(End::Exhausted)
        );
    }

    #[test]
    fn taken_while_redis_answers_means_the_listing_is_behind_but_not_for_the_suspect() {
        let mut m = passes(&[1, 2]);
        first_try(&mut m);
        assert_eq!(
            then(&mut m, tried(Outcome::Taken)),
            Call::Ended(End::Behind)
        );

        let mut m = Passes::new(
            me(),
            vec![held(1, "eni-1"), a(2)],
            Some(a(1).allocation_id),
            false,
            7,
        );
        // The suspect goes straight to EC2, without a turn.
        let call = m.step(Input::Start, S);
        assert!(matches!(call, Call::Try { suspect: true, .. }), "{call:?}");
        assert_eq!(m.step(tried(Outcome::Taken), S), Call::Turn);
        assert!(m.suspect_gone());
    }

    #[test]
    fn with_redis_silent_a_batch_of_blind_takes_sets_the_rest_aside_for_a_listing_of_our_own() {
        let n = plan::WITHOUT_REDIS_BATCH as u8 + 2;
        let mut m = passes(&(1..=n).collect::<Vec<_>>());
        let blind = Input::Tried {
            outcome: Outcome::Taken,
            redis: false,
        };
        let mut call = first_try(&mut m);
        for _ in 0..plan::WITHOUT_REDIS_BATCH {
            assert!(tries(&call).is_some(), "{call:?}");
            call = then(&mut m, blind.clone());
        }
        assert_eq!(call, Call::Sleep(Wait::Backoff(0)));
        assert_eq!(m.last_tally().unwrap().untried, 2);
        assert_eq!(then(&mut m, Input::Slept { redis: false }), Call::ListOwn);
        // The fresh listing shows one free: that one is tried.
        let listed = vec![held(1, "eni-9"), a(4)];
        assert_eq!(tries(&then(&mut m, Input::Listed(listed))), Some(4));
    }

    #[test]
    fn a_listing_of_our_own_showing_ours_is_adopted() {
        let mut m = passes(&[1]);
        first_try(&mut m);
        let silent = Input::Tried {
            outcome: Outcome::Transient,
            redis: false,
        };
        assert_eq!(then(&mut m, silent), Call::Sleep(Wait::Backoff(0)));
        assert_eq!(then(&mut m, Input::Slept { redis: false }), Call::ListOwn);
        let listed = vec![a(2), held(1, "eni-1")];
        assert_eq!(
            then(&mut m, Input::Listed(listed)),
            Call::Adopt(held(1, "eni-1"))
        );
    }

    #[test]
    fn busy_and_passing_failures_are_tried_again_after_a_growing_back_off() {
        let mut m = passes(&[1, 2]);
        first_try(&mut m);
        then(&mut m, tried(Outcome::Busy));
        assert_eq!(
            then(&mut m, tried(Outcome::Transient)),
            Call::Sleep(Wait::Backoff(0))
        );
        let tally = m.last_tally().unwrap();
        assert_eq!((tally.busy, tally.transient), (1, 1));
        let mut again = vec![tries(&then(&mut m, Input::Slept { redis: true })).unwrap()];
        again.push(tries(&then(&mut m, tried(Outcome::Busy))).unwrap());
        again.sort();
        assert_eq!(again, [1, 2]);
        assert_eq!(
            then(&mut m, tried(Outcome::Busy)),
            Call::Sleep(Wait::Backoff(1))
        );
    }

    #[test]
    fn our_association_replaced_lists_again() {
        let mut m = passes(&[1, 2]);
        first_try(&mut m);
        assert_eq!(
            then(&mut m, tried(Outcome::Displaced)),
            Call::Ended(End::Relist)
        );
    }

    #[test]
    fn a_turn_that_comes_late_for_the_listing_ends_it_stale() {
        let (fresh, old) = (plan::choose_within(true), plan::choose_within(false));
        let turn_at = |since: Duration| {
            let mut m = passes(&[1]);
            assert_eq!(m.step(Input::Start, since), Call::Turn);
            (m.step(Input::Turn(true), since), m)
        };
        assert!(tries(&turn_at(fresh).0).is_some());
        assert_eq!(turn_at(old + S).0, Call::Ended(End::Stale(old)));
        // Between the bounds, the word on outsiders decides.
        let between = fresh + (old - fresh) / 2;
        let (call, mut m) = turn_at(between);
        assert_eq!(call, Call::Outsiders);
        assert_eq!(
            m.clone().step(Input::Outsiders(true), between),
            Call::Ended(End::Stale(fresh))
        );
        assert!(tries(&m.step(Input::Outsiders(false), between)).is_some());
        // The answer is weighed against the listing's age when the turn came, not when Redis
        // answered: a listing `old` old at its turn is chosen from if no outsider took any.
        let (call, mut m) = turn_at(old);
        assert_eq!(call, Call::Outsiders);
        assert!(tries(&m.step(Input::Outsiders(false), old + S)).is_some());
        // No turn waited for (one held, or no herd): the listing's age does not matter here.
        let mut m = passes(&[1]);
        m.step(Input::Start, old + S);
        assert!(tries(&m.step(Input::Turn(false), old + S)).is_some());
    }

    /// Any answers at all: the machine takes every one its call allows, and says "exhausted"
    /// only when its last pass found every candidate taken and EC2 agreed about every masked
    /// one (nothing busy, failing, set aside, or that EC2 showed free).
    #[test]
    fn any_answers_say_exhausted_only_when_nothing_can_come_free() {
        use proptest::prelude::*;
        use rand::{Rng, SeedableRng};

        crate::pure::tests_runner("passes machine", 1024)
            .run(
                &(any::<u64>(), 1u8..6, any::<bool>()),
                |(seed, n, shared)| {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let order: Vec<Address> = (1..=n).map(a).collect();
                    let mut m = Passes::new(me(), order, None, shared, seed);
                    let mut input = Input::Start;
                    // Whether anything could still come free, as far as this pass and EC2 said.
                    let mut hope = false;
                    let mut since = S;
                    let mut in_pass = false;
                    for _ in 0..500 {
                        since += S;
                        let call = m.step(input, since);
                        // What the last pass hoped for is weighed anew by the next one.
                        if m.last_tally().is_some() {
                            in_pass = false;
                        } else if !std::mem::replace(&mut in_pass, true) {
                            hope = false;
                        }
                        input = match &call {
                            Call::Turn => Input::Turn(rng.random()),
                            Call::Outsiders => Input::Outsiders(rng.random()),
                            Call::Try { .. } => {
                                let outcome = match rng.random_range(0..6) {
                                    0 => Outcome::Taken,
                                    1 => Outcome::Busy,
                                    2 => Outcome::Transient,
                                    3 => {
                                        Outcome::Masked(CONSISTENCY_BOUND * rng.random_range(0..2))
                                    }
                                    4 => Outcome::Displaced,
                                    _ => Outcome::Taken,
                                };
                                hope |= matches!(outcome, Outcome::Busy | Outcome::Transient);
                                Input::Tried {
                                    outcome,
                                    redis: rng.random_bool(0.8),
                                }
                            }
                            Call::Describe(ids) => {
                                let seen: Vec<Address> = ids
                                    .iter()
                                    .filter_map(|id| {
                                        let n = (1..=n).find(|n| a(*n).allocation_id == *id)?;
                                        match rng.random_range(0..3) {
                                            0 => Some(a(n)),
                                            1 => Some(held(n, "eni-9")),
                                            _ => None,
                                        }
                                    })
                                    .collect();
                                hope |= !seen.iter().all(|x| x.association.is_some());
                                Input::Seen(seen)
                            }
                            Call::ClearMarker(..) => Input::Done,
                            Call::Sleep(_) => Input::Slept {
                                redis: rng.random(),
                            },
                            Call::ListOwn => {
                                // A listing of our own is EC2's word on what is free.
                                hope = false;
                                let listing = (1..=n)
                                    .map(|n| match rng.random_range(0..4) {
                                        0 => held(n, "eni-1"),
                                        1 => held(n, "eni-9"),
                                        _ => a(n),
                                    })
                                    .collect();
                                Input::Listed(listing)
                            }
                            Call::Adopt(x) => {
                                prop_assert!(x.held_by_me(&me()));
                                return Ok(());
                            }
                            Call::Ended(End::Exhausted) => {
                                prop_assert!(!hope, "exhausted while something may come free");
                                let t = m.last_tally().unwrap();
                                prop_assert_eq!((t.busy, t.transient, t.untried), (0, 0, 0));
                                return Ok(());
                            }
                            Call::Ended(_) => return Ok(()),
                        };
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}

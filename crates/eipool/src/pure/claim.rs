//! A claim under its interface lease, as a sans-IO state machine: recall what a crashed run of
//! ours was taking, list the pool (the herd's listing or our own), adopt what the listing shows
//! on our interface, look at what our private IP holds, leave free addresses to the servers
//! waiting in the pool's line, order the candidates, run the passes over them (the passes
//! machine, [`crate::pure::passes`]) and weigh how they ended: list again, or call the pool
//! exhausted. `services::claim::protocol` (the driver) performs each [`Call`] and feeds the
//! answer back as an [`Input`], with the time since the claim started.
//!
//! ```text
//!   Intent ─▶ List ─▶ (ours on the listing: Adopt)
//!               ▲      └▶ (free ones: Occupant ─▶ (a newcomer: Waiting)) ─▶ Passes
//!               │                                                            │
//!               └──── relist, behind, stale, exhausted on an old listing ◀──┘─▶ Ended
//! ```
//!
//! Taking and giving back the interface lease, and starting over when it is lost, are the
//! driver's (`Claimer::claim`): they wrap the whole machine.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::pure::address::{Address, Occupant};
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::passes::End;
use crate::pure::plan;

/// What Redis recalls of this interface's last claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recalled {
    /// It was taking, or holds, this address.
    Taking(AllocationId),
    /// Redis answered: nothing recorded.
    Nothing,
    /// Redis did not answer (or is not used).
    Unknown,
}

/// What the machine asks the driver to do next. The last call of a run is `Adopt` or `Ended`;
/// a won pass ends the run in the driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// What Redis recalls of this interface's last claim: `Recalled`.
    Intent,
    /// List the pool: `Listed`. `shared`: the herd's listing will do if it is at most this old
    /// (else one claimer lists for the herd, the others wait for it); `None`: list it ourselves.
    List { shared: Option<Duration> },
    /// Adopt this address, which the listing shows on our interface (`others`: how many more of
    /// the pool it shows there).
    Adopt { addr: Address, others: usize },
    /// What holds our private IP: `Occupant`. `look`: the identity's look at the interface may
    /// stand for it (used once).
    Occupant { look: bool },
    /// How many servers wait in the pool's line: `Waiting`.
    Waiting,
    /// Run the passes over `order` (the passes machine; `seed` its random sample): `Passed`,
    /// unless won.
    Passes {
        order: Vec<Address>,
        suspect: Option<AllocationId>,
        shared: bool,
        seed: u64,
    },
    /// The claim is over without an address.
    Ended(Ended),
}

/// How a claim ends without an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ended {
    /// No address of the pool can come free, as far as a recent listing of our own and EC2 say
    /// (or the pool has none).
    Exhausted,
    /// Every free address is left to the servers already waiting in the pool's line: join it
    /// behind them.
    LeftToTheLine { free: usize, waiting: u64 },
    /// Our private IP holds an Elastic IP outside the pool: eipool never displaces it.
    Foreign {
        public_ip: std::net::Ipv4Addr,
        allocation_id: AllocationId,
    },
}

/// The answer to the last [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// The first step.
    Start,
    Recalled(Recalled),
    /// `List`: the pool's addresses, whether they are the herd's listing, and how long ago the
    /// listing was made.
    Listed {
        listing: Vec<Address>,
        shared: bool,
        age: Duration,
    },
    Occupant(Occupant),
    Waiting(u64),
    /// `Passes`: how they ended, and whether the suspect proved someone else's.
    Passed {
        end: End,
        suspect_gone: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum State {
    Start,
    Intent,
    List,
    /// Looking at what our private IP holds, for `listing`.
    Occupant(Listing),
    Waiting(Listing),
    Passes {
        shared: bool,
    },
    Ended,
}

/// A listing being weighed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Listing {
    addresses: Vec<Address>,
    shared: bool,
}

/// One claim under its interface lease. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    me: Identity,
    /// An address to try first when it is free.
    prefer: Option<AllocationId>,
    /// Leave free addresses to the servers already waiting in the pool's line.
    behind_the_line: bool,
    /// The interface lease is held in Redis: every claim of this interface is serialized by it.
    lease_in_redis: bool,
    /// How old the identity's look at the interface was when the claim started, if it made one.
    look_age: Option<Duration>,
    /// Whether the identity's look may stand for the first look at our private IP.
    look: bool,
    seed: u64,
    /// Listings made so far (each one's order has its own random sample).
    listings: u64,
    /// What Redis or our private IP said may be ours.
    suspect: Option<AllocationId>,
    /// The listing being tried: how old it was when it came, and when that was (`now`): its
    /// age later is the sum, never a time before the claim began (a herd's listing may be
    /// older than the claim).
    listed: (Duration, Duration),
    /// When the machine's first step came (`now`): the identity's look was `look_age` old then.
    began: Duration,
    state: State,
}

impl Claim {
    /// A claim for `me`. `look_age`: the identity looked at the interface this long before the
    /// machine's first step. `seed`: a random sample for the candidates' orders.
    pub fn new(
        me: Identity,
        prefer: Option<AllocationId>,
        behind_the_line: bool,
        lease_in_redis: bool,
        look_age: Option<Duration>,
        seed: u64,
    ) -> Self {
        Claim {
            me,
            prefer,
            behind_the_line,
            lease_in_redis,
            look_age,
            look: false,
            seed,
            listings: 0,
            suspect: None,
            listed: (Duration::ZERO, Duration::ZERO),
            began: Duration::ZERO,
            state: State::Start,
        }
    }

    /// This machine with its count of listings at zero: it seeds only the candidates' orders.
    /// eipool-model keeps machines this way so that listing again is one state, not one per
    /// listing.
    #[doc(hidden)]
    pub fn without_counts(mut self) -> Self {
        self.listings = 0;
        self
    }

    /// The listing being weighed, while the machine waits on a look at it (`Occupant`,
    /// `Waiting`).
    pub fn listing(&self) -> Option<&[Address]> {
        match &self.state {
            State::Occupant(l) | State::Waiting(l) => Some(&l.addresses),
            _ => None,
        }
    }

    /// Feed the answer to the last call, at `now` (since the claim started); get the next call.
    pub fn step(&mut self, input: Input, now: Duration) -> Call {
        let state = std::mem::replace(&mut self.state, State::Ended);
        match (state, input) {
            (State::Start, Input::Start) => {
                self.began = now;
                self.go(State::Intent, Call::Intent)
            }
            (State::Intent, Input::Recalled(recalled)) => {
                // The identity's look may spare the first look at our private IP, only when a
                // claim of ours that associated something here since would certainly show.
                self.look = self.look_age.is_some_and(|age| {
                    plan::identity_look_will_do(
                        age + now.saturating_sub(self.began),
                        self.lease_in_redis,
                        recalled == Recalled::Nothing,
                    )
                });
                // A re-run after a crash: Redis remembers what this interface was taking, which
                // a stale DescribeAddresses may not show yet. Tried first, as possibly ours.
                if let Recalled::Taking(alloc) = recalled {
                    self.suspect = Some(alloc);
                }
                self.list(Some(plan::SHARED_LISTING_TTL))
            }
            (
                State::List,
                Input::Listed {
                    listing,
                    shared,
                    age,
                },
            ) => {
                self.listed = (age, now);
                self.listed(Listing {
                    addresses: listing,
                    shared,
                })
            }
            (State::Occupant(l), Input::Occupant(occupant)) => match occupant {
                Occupant::Free => self.newcomer(l),
                // Ours, from a crashed run or a lost answer: tried first. On the herd's listing,
                // which may be older than that association, list the pool ourselves first.
                Occupant::Pool(alloc) => {
                    self.suspect = Some(alloc);
                    if l.shared {
                        self.list(None)
                    } else {
                        self.newcomer(l)
                    }
                }
                Occupant::Foreign {
                    public_ip,
                    allocation_id,
                } => self.end(Ended::Foreign {
                    public_ip,
                    allocation_id,
                }),
            },
            (State::Waiting(l), Input::Waiting(waiting)) => {
                let free = free(&l.addresses);
                if !plan::leave_to_the_line(free, waiting) {
                    self.passes(l)
                } else if l.shared {
                    // "Exhausted" is only ever said on a listing of our own.
                    self.list(None)
                } else {
                    self.end(Ended::LeftToTheLine { free, waiting })
                }
            }
            (State::Passes { shared }, Input::Passed { end, suspect_gone }) => {
                if suspect_gone {
                    self.suspect = None;
                }
                let (age, at) = self.listed;
                let since_listed = age + now.saturating_sub(at);
                match end {
                    End::Relist => self.list(None),
                    // A newer listing than the one found behind EC2.
                    End::Behind => {
                        self.list(Some(since_listed.saturating_sub(plan::NEWER_LISTING)))
                    }
                    End::Stale(within) => {
                        self.list(Some(within.saturating_sub(plan::NEWER_LISTING)))
                    }
                    End::Exhausted if plan::exhaustion_stands(shared, since_listed) => {
                        self.end(Ended::Exhausted)
                    }
                    // Passes over one listing may take long: an address freed after it, by now
                    // visible to every DescribeAddresses, would be missed. List again. The
                    // suspect was among the taken, past EC2's consistency bound (an agent's
                    // address taken while it ran, not a crashed run's): trying it again would
                    // keep every listing too old for exhaustion to stand.
                    End::Exhausted => {
                        self.suspect = None;
                        self.list(None)
                    }
                }
            }
            (state, input) => {
                unreachable!("claim machine: {input:?} does not answer a call made in {state:?}")
            }
        }
    }
}

/// The transitions `step` takes: each moves to a state and says the call it waits on there.
impl Claim {
    fn go(&mut self, state: State, call: Call) -> Call {
        self.state = state;
        call
    }

    fn end(&mut self, ended: Ended) -> Call {
        self.go(State::Ended, Call::Ended(ended))
    }

    fn list(&mut self, shared: Option<Duration>) -> Call {
        self.go(State::List, Call::List { shared })
    }

    fn listed(&mut self, l: Listing) -> Call {
        let mine: Vec<&Address> = l
            .addresses
            .iter()
            .filter(|a| a.held_by_me(&self.me))
            .collect();
        // The herd's listing may be seconds old: it can only suggest candidates.
        if l.shared
            && !plan::shared_listing_will_do(
                self.suspect.is_some(),
                !mine.is_empty(),
                l.addresses.is_empty(),
            )
        {
            return self.list(None);
        }
        if let Some(first) = mine.first() {
            let (addr, others) = ((*first).clone(), mine.len() - 1);
            return self.go(State::Ended, Call::Adopt { addr, others });
        }
        if l.addresses.is_empty() {
            return self.end(Ended::Exhausted);
        }
        if free(&l.addresses) == 0 {
            return self.newcomer(l);
        }
        // AWS replaces an Elastic IP already on our private IP: look before associating.
        let look = std::mem::take(&mut self.look);
        self.go(State::Occupant(l), Call::Occupant { look })
    }

    /// First come, first served: what is free goes to the servers already waiting. Not for a
    /// claim that may already hold its address (a suspect), and only on a listing of our own,
    /// as "exhausted" always is.
    fn newcomer(&mut self, l: Listing) -> Call {
        if self.behind_the_line && self.suspect.is_none() && free(&l.addresses) > 0 {
            return self.go(State::Waiting(l), Call::Waiting);
        }
        self.passes(l)
    }

    fn passes(&mut self, l: Listing) -> Call {
        let n = self.listings;
        self.listings += 1;
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(2 * n));
        let order = plan::claim_order(
            &l.addresses,
            self.prefer.as_ref(),
            self.suspect.as_ref(),
            &mut rng,
        );
        self.go(
            State::Passes { shared: l.shared },
            Call::Passes {
                order,
                suspect: self.suspect.clone(),
                shared: l.shared,
                seed: self.seed.wrapping_add(2 * n + 1),
            },
        )
    }
}

fn free(listing: &[Address]) -> usize {
    listing.iter().filter(|a| a.association.is_none()).count()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pure::fixtures::{a, held, me};
    use crate::pure::plan::{CONSISTENCY_BOUND, SHARED_LISTING_TTL};

    const S: Duration = Duration::from_secs(1);

    fn claim() -> Claim {
        Claim::new(me(), None, false, true, None, 7)
    }

    /// `m` started, Redis recalling `recalled`: its first listing call.
    fn started(m: &mut Claim, recalled: Recalled) -> Call {
        assert_eq!(m.step(Input::Start, Duration::ZERO), Call::Intent);
        m.step(Input::Recalled(recalled), Duration::ZERO)
    }

    fn listed(listing: Vec<Address>, shared: bool) -> Input {
        Input::Listed {
            listing,
            shared,
            age: Duration::ZERO,
        }
    }

    fn passed(end: End) -> Input {
        Input::Passed {
            end,
            suspect_gone: false,
        }
    }

    fn shared_ok() -> Call {
        Call::List {
            shared: Some(SHARED_LISTING_TTL),
        }
    }

    const OWN: Call = Call::List { shared: None };

    #[test]
    fn a_free_address_is_looked_at_then_passed_over() {
        let mut m = claim();
        assert_eq!(started(&mut m, Recalled::Nothing), shared_ok());
        let call = m.step(listed(vec![a(1), held(2, "eni-9")], false), S);
        assert_eq!(call, Call::Occupant { look: false });
        assert_eq!(m.listing().map(<[Address]>::len), Some(2));
        let call = m.step(Input::Occupant(Occupant::Free), S);
        let Call::Passes {
            order,
            suspect: None,
            shared: false,
            ..
        } = call
        else {
            panic!("{call:?}")
        };
        assert_eq!(order, vec![a(1)], "only the free one");
    }

    #[test]
    fn the_listing_showing_ours_is_adopted_without_a_look() {
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        let call = m.step(
            listed(vec![a(1), held(2, "eni-1"), held(3, "eni-1")], false),
            S,
        );
        assert_eq!(
            call,
            Call::Adopt {
                addr: held(2, "eni-1"),
                others: 1
            }
        );
    }

    #[test]
    fn the_herds_listing_only_suggests_a_re_run_an_owner_or_an_empty_pool_lists_itself() {
        // A re-run (Redis recalls what it was taking): its own listing at once.
        let mut m = claim();
        started(&mut m, Recalled::Taking(a(2).allocation_id));
        assert_eq!(m.step(listed(vec![a(1), a(2)], true), S), OWN);
        // The herd's listing shows ours, or nothing.
        for listing in [vec![held(1, "eni-1")], vec![]] {
            let mut m = claim();
            started(&mut m, Recalled::Nothing);
            assert_eq!(m.step(listed(listing, true), S), OWN);
        }
        // An empty pool on a listing of our own: exhausted.
        let mut m = claim();
        started(&mut m, Recalled::Unknown);
        assert_eq!(
            m.step(listed(vec![], false), S),
            Call::Ended(Ended::Exhausted)
        );
    }

    #[test]
    fn what_our_private_ip_holds_decides_a_suspect_a_relist_or_a_refusal() {
        // A pool address on a listing of our own: the suspect, first.
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        m.step(listed(vec![a(1), a(2)], false), S);
        let call = m.step(Input::Occupant(Occupant::Pool(a(2).allocation_id)), S);
        let Call::Passes { order, suspect, .. } = call else {
            panic!("{call:?}")
        };
        assert_eq!(
            (order[0].clone(), suspect),
            (a(2), Some(a(2).allocation_id))
        );
        // On the herd's listing: list ourselves first.
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        m.step(listed(vec![a(1), a(2)], true), S);
        assert_eq!(
            m.step(Input::Occupant(Occupant::Pool(a(2).allocation_id)), S),
            OWN
        );
        // Someone's Elastic IP outside the pool: never displaced.
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        m.step(listed(vec![a(1)], false), S);
        let foreign = Occupant::Foreign {
            public_ip: Ipv4Addr::new(203, 0, 113, 9),
            allocation_id: "eipalloc-99".parse().unwrap(),
        };
        assert!(matches!(
            m.step(Input::Occupant(foreign), S),
            Call::Ended(Ended::Foreign { .. })
        ));
    }

    #[test]
    fn the_identitys_look_stands_only_under_the_redis_lease_without_an_intent_while_young() {
        let look_on = |lease_in_redis, recalled, age: Duration| {
            let mut m = Claim::new(me(), None, false, lease_in_redis, Some(age), 7);
            m.step(Input::Start, Duration::ZERO);
            m.step(Input::Recalled(recalled), S);
            m.step(listed(vec![a(1)], false), S) == Call::Occupant { look: true }
        };
        assert!(look_on(true, Recalled::Nothing, S));
        assert!(!look_on(false, Recalled::Nothing, S));
        assert!(!look_on(true, Recalled::Unknown, S));
        assert!(!look_on(true, Recalled::Nothing, plan::INTENT_TTL));
        // Used once: a second listing looks for itself.
        let mut m = Claim::new(me(), None, false, true, Some(S), 7);
        m.step(Input::Start, Duration::ZERO);
        m.step(Input::Recalled(Recalled::Nothing), S);
        m.step(listed(vec![a(1)], false), S);
        m.step(Input::Occupant(Occupant::Free), S);
        assert_eq!(m.step(passed(End::Relist), S), OWN);
        assert_eq!(
            m.step(listed(vec![a(1)], false), S),
            Call::Occupant { look: false }
        );
    }

    #[test]
    fn the_identitys_look_ages_from_the_machines_first_step_not_from_the_claims_start() {
        // The claimer began long ago (it waited for its interface lease): the machine's clock
        // reads 100 s at its first step, when the look is 1 s old.
        let mut m = Claim::new(me(), None, false, true, Some(S), 7);
        let began = 100 * S;
        m.step(Input::Start, began);
        m.step(Input::Recalled(Recalled::Nothing), began + S);
        assert_eq!(
            m.step(listed(vec![a(1)], false), began + S),
            Call::Occupant { look: true }
        );
    }

    #[test]
    fn a_newcomer_leaves_free_addresses_to_the_line_on_a_listing_of_its_own() {
        let newcomer = || {
            let mut m = Claim::new(me(), None, true, true, None, 7);
            started(&mut m, Recalled::Nothing);
            m
        };
        let mut m = newcomer();
        m.step(listed(vec![a(1), a(2)], false), S);
        assert_eq!(m.step(Input::Occupant(Occupant::Free), S), Call::Waiting);
        assert_eq!(
            m.step(Input::Waiting(2), S),
            Call::Ended(Ended::LeftToTheLine {
                free: 2,
                waiting: 2
            })
        );
        // More free than waiting: it claims.
        let mut m = newcomer();
        m.step(listed(vec![a(1), a(2)], false), S);
        m.step(Input::Occupant(Occupant::Free), S);
        assert!(matches!(m.step(Input::Waiting(1), S), Call::Passes { .. }));
        // On the herd's listing: its own first, as "exhausted" always is.
        let mut m = newcomer();
        m.step(listed(vec![a(1)], true), S);
        m.step(Input::Occupant(Occupant::Free), S);
        assert_eq!(m.step(Input::Waiting(3), S), OWN);
        // A suspect (it may hold its address already) never yields.
        let mut m = Claim::new(me(), None, true, true, None, 7);
        started(&mut m, Recalled::Taking(a(1).allocation_id));
        m.step(listed(vec![a(1)], false), S);
        assert!(matches!(
            m.step(Input::Occupant(Occupant::Free), S),
            Call::Passes { .. }
        ));
    }

    #[test]
    fn exhaustion_stands_only_on_a_recent_listing_of_our_own() {
        let after = |since_listed: Duration| {
            let mut m = claim();
            started(&mut m, Recalled::Nothing);
            m.step(listed(vec![a(1)], false), S);
            m.step(Input::Occupant(Occupant::Free), S);
            m.step(passed(End::Exhausted), S + since_listed)
        };
        assert_eq!(after(S), Call::Ended(Ended::Exhausted));
        assert_eq!(after(CONSISTENCY_BOUND), OWN);
        // The herd's listing: never "exhausted" on it.
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        m.step(listed(vec![a(1)], true), S);
        m.step(Input::Occupant(Occupant::Free), S);
        assert_eq!(m.step(passed(End::Exhausted), S), OWN);
    }

    #[test]
    fn how_the_passes_ended_sets_the_next_listing() {
        let ended = |end: End, at: Duration| {
            let mut m = claim();
            started(&mut m, Recalled::Nothing);
            m.step(listed(vec![a(1)], false), S);
            m.step(Input::Occupant(Occupant::Free), S);
            m.step(passed(end), at)
        };
        assert_eq!(ended(End::Relist, S), OWN);
        // Behind EC2: the herd's listing, if newer than this one (made 4 s ago).
        assert_eq!(
            ended(End::Behind, 5 * S),
            Call::List {
                shared: Some(4 * S - plan::NEWER_LISTING)
            }
        );
        assert_eq!(
            ended(End::Stale(2 * S), 9 * S),
            Call::List {
                shared: Some(2 * S - plan::NEWER_LISTING)
            }
        );
    }

    #[test]
    fn a_suspect_proved_someone_elses_is_not_tried_on_the_next_listing() {
        let mut m = claim();
        started(&mut m, Recalled::Taking(a(1).allocation_id));
        m.step(listed(vec![a(1), a(2)], false), S);
        m.step(Input::Occupant(Occupant::Free), S);
        let gone = Input::Passed {
            end: End::Relist,
            suspect_gone: true,
        };
        assert_eq!(m.step(gone, S), OWN);
        m.step(listed(vec![held(1, "eni-9"), a(2)], false), S);
        let call = m.step(Input::Occupant(Occupant::Free), S);
        assert!(
            matches!(call, Call::Passes { suspect: None, ref order, .. } if order == &vec![a(2)]),
            "{call:?}"
        );
    }

    /// The herd's listing may be older than the claim itself (made by another claimer before
    /// this one started): its age is kept as it came plus the time since, never clamped at the
    /// claim's start (a hostile review's finding: `Behind` then asked a stricter age than the
    /// claim did before the machine).
    #[test]
    fn behind_on_a_herds_listing_older_than_the_claim_asks_newer_than_that_listing() {
        let ms = Duration::from_millis;
        let mut m = claim();
        started(&mut m, Recalled::Nothing);
        // 500 ms into the claim, the herd's listing is 3 s old.
        let listing = Input::Listed {
            listing: vec![a(1)],
            shared: true,
            age: 3 * S,
        };
        assert_eq!(m.step(listing, ms(500)), Call::Occupant { look: false });
        assert!(matches!(
            m.step(Input::Occupant(Occupant::Free), ms(500)),
            Call::Passes { shared: true, .. }
        ));
        // At 1 s, the passes find it behind EC2: the listing is now 3.5 s old.
        assert_eq!(
            m.step(passed(End::Behind), S),
            Call::List {
                shared: Some(ms(3500) - plan::NEWER_LISTING)
            }
        );
    }

    /// Exhaustion over a listing too old to stand drops the suspect (it was among the taken,
    /// past EC2's consistency bound): the next listing does not try it first again, else every
    /// listing would wait out that bound on it and grow too old for exhaustion to stand.
    #[test]
    fn exhaustion_over_an_old_listing_drops_the_suspect() {
        let mut m = claim();
        started(&mut m, Recalled::Taking(a(1).allocation_id));
        m.step(listed(vec![held(1, "eni-9"), a(2)], false), S);
        m.step(Input::Occupant(Occupant::Free), S);
        assert_eq!(m.step(passed(End::Exhausted), S + CONSISTENCY_BOUND), OWN);
        m.step(
            listed(vec![held(1, "eni-9"), a(2)], false),
            2 * CONSISTENCY_BOUND,
        );
        let call = m.step(Input::Occupant(Occupant::Free), 2 * CONSISTENCY_BOUND);
        assert!(
            matches!(call, Call::Passes { suspect: None, ref order, .. } if order == &vec![a(2)]),
            "{call:?}"
        );
    }
}

//! A server's place in the pool's waiting line, as a sans-IO state machine: join the line on
//! first use (or join again with our ticket when Redis lost our place), ask for our place and the
//! pool's count of freed addresses, and say when it is our turn ([`plan::line_turn`]: only the
//! head claims, when the count moved since its last try, and the head alone looks at the pool
//! every [`plan::LINE_WATCH`] for an address freed outside eipool). While Redis is silent, a
//! waiter's turn comes at the backstop (polling EC2 at a bounded rate), and Redis is asked again
//! meanwhile so the line resumes as soon as it answers. `services::line` (the driver) performs
//! each [`Call`] and feeds the answer back as an [`Input`], with the time (from any origin).
//!
//! ```text
//!   Start ─▶ (no ticket: Join) ─▶ Ask ─▶ head, freed moved ─────────▶ Turn
//!              ▲                   │ ├─ head, look due ─▶ Look ─ free ─▶ Turn
//!              │                   │ ├─ place lost ─▶ Join (our ticket) ─┐
//!              └── Sleep(poll) ◀───┴─┴─ wait ◀───────────────────────────┘
//!   Redis silent (a first join or an ask unanswered): Sleep, or Turn once the backstop passed;
//!   a rejoin unanswered keeps our ticket and sleeps a poll (the next ask tells)
//! ```
//!
//! The place belongs to the server: the ticket and the count at the last try outlive each wait,
//! until the server leaves the line ([`Line::left`]). Cancellation is the driver's.

use std::time::Duration;

use crate::pure::plan::{self, LineTurn};

/// What the machine asks the driver to do next. A wait ends with `Turn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Join the line, with our ticket when we had one (Redis lost our place): `Joined`.
    Join { ticket: Option<u64> },
    /// Our place, and the pool's count of freed addresses (also our heartbeat): `Asked`.
    Ask,
    /// Look at the pool (one DescribeAddresses): `Looked`.
    Look,
    /// Sleep, then `Slept`.
    Sleep(Duration),
    /// Our turn: claim now.
    Turn,
}

/// Our place in the line as Redis answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// Among the waiters present (0: the head), or `None` when Redis lost it.
    pub place: Option<u64>,
    /// How many addresses the pool has seen freed.
    pub freed: u64,
}

/// The answer to the last [`Call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// A wait begins; without Redis, the turn comes after `backstop`.
    Start {
        backstop: Duration,
    },
    /// `Join`: our ticket, or `None`: Redis did not answer (or there is none).
    Joined(Option<u64>),
    /// `Ask`: our place, or `None`: Redis did not answer.
    Asked(Option<Place>),
    /// `Look`: whether the pool shows an address free.
    Looked(bool),
    Slept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    Idle,
    Joining,
    Asking,
    Rejoining,
    Looking,
    Sleeping,
}

/// One server's place in the line. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    ticket: Option<u64>,
    /// The freed count at our last try: a new try only when it moved.
    tried_at: Option<u64>,
    /// This wait: when it began, its backstop, and the head's last look at the pool.
    since: Duration,
    backstop: Duration,
    looked: Duration,
    state: State,
    /// A step broken on purpose, for the model checker's mutation tests (never in eipool).
    mutation: Option<Mutation>,
}

/// A step of the machine broken on purpose: eipool-model shows its checker catches each.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Any waiter told its place claims when the count moved, not only the head.
    AnyPlaceClaims,
    /// The head claims at every ask, whether the freed count moved since its last try or not.
    TurnUnmoved,
    /// A place Redis lost is joined again with a new ticket, not ours (to the back of the line).
    RejoinAnew,
    /// The head never looks at the pool (an address freed outside eipool wakes no one).
    NoLook,
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Line {
    /// Not in the line yet.
    pub fn new() -> Self {
        Line {
            ticket: None,
            tried_at: None,
            since: Duration::ZERO,
            backstop: Duration::ZERO,
            looked: Duration::ZERO,
            state: State::Idle,
            mutation: None,
        }
    }

    /// This machine with `mutation`: for eipool-model's mutation tests only.
    #[doc(hidden)]
    pub fn mutated(mut self, mutation: Mutation) -> Self {
        self.mutation = Some(mutation);
        self
    }

    /// This machine with its clock's origin moved `by` later: each time it keeps (the wait's
    /// start, the head's last look) is moved back by `by`, none before zero. Its decisions
    /// compare only the time since each with a bound (`plan::LINE_WATCH`, the backstop), so
    /// this changes none of them while `now - by` (the next `now` fed) is at least the larger
    /// bound: a time clamped at zero was, and stays, past both. eipool-model, whose clock is a
    /// window of that length, keeps machines this way so that a wait is the same state
    /// whenever it began, past the window.
    #[doc(hidden)]
    pub fn rebased(mut self, by: Duration) -> Self {
        self.since = self.since.saturating_sub(by);
        self.looked = self.looked.saturating_sub(by);
        self
    }

    /// Our ticket, while we hold a place (joined, not left).
    pub fn ticket(&self) -> Option<u64> {
        self.ticket
    }

    /// We left the line (an address is held, we gave up, or we stepped away to restart): the
    /// place is Redis's to keep or drop now. The ticket we had, if any.
    pub fn left(&mut self) -> Option<u64> {
        self.tried_at = None;
        self.state = State::Idle;
        self.ticket.take()
    }

    /// Feed the answer to the last call, at `now`; get the next call.
    pub fn step(&mut self, input: Input, now: Duration) -> Call {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, input) {
            (_, Input::Start { backstop }) => {
                self.since = now;
                self.looked = now;
                self.backstop = backstop;
                self.ask()
            }
            (State::Joining, Input::Joined(Some(t))) => {
                self.ticket = Some(t);
                self.go(State::Asking, Call::Ask)
            }
            (State::Joining, Input::Joined(None)) | (State::Asking, Input::Asked(None)) => {
                self.silent(now)
            }
            (State::Asking, Input::Asked(Some(place))) => {
                // The count at our first ask is where we start from: becoming the head is not,
                // by itself, an address freed (the head's look covers what the count does not).
                let tried_at = *self.tried_at.get_or_insert(place.freed);
                let moved = tried_at != place.freed || self.is(Mutation::TurnUnmoved);
                let look_due = now.saturating_sub(self.looked) >= plan::LINE_WATCH
                    && !self.is(Mutation::NoLook);
                let at = match self.mutation {
                    Some(Mutation::AnyPlaceClaims) if moved => place.place.map(|_| 0),
                    _ => place.place,
                };
                match plan::line_turn(at, moved, look_due) {
                    LineTurn::Claim => {
                        self.tried_at = Some(place.freed);
                        Call::Turn
                    }
                    LineTurn::Look => {
                        self.tried_at = Some(place.freed);
                        self.go(State::Looking, Call::Look)
                    }
                    LineTurn::Rejoin => self.go(
                        State::Rejoining,
                        Call::Join {
                            ticket: self.ticket.filter(|_| !self.is(Mutation::RejoinAnew)),
                        },
                    ),
                    LineTurn::Wait => self.poll(),
                }
            }
            // Joined again or not, the next ask tells.
            (State::Rejoining, Input::Joined(t)) => {
                if t.is_some() {
                    self.ticket = t;
                }
                self.poll()
            }
            (State::Looking, Input::Looked(free)) => {
                self.looked = now;
                if free {
                    Call::Turn
                } else {
                    self.poll()
                }
            }
            (State::Sleeping, Input::Slept) => self.ask(),
            (state, input) => {
                unreachable!("line machine: {input:?} does not answer a call made in {state:?}")
            }
        }
    }
}

/// The transitions `step` takes: each moves to a state and says the call it waits on there.
impl Line {
    fn is(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    fn go(&mut self, state: State, call: Call) -> Call {
        self.state = state;
        call
    }

    fn ask(&mut self) -> Call {
        match self.ticket {
            None => self.go(State::Joining, Call::Join { ticket: None }),
            Some(_) => self.go(State::Asking, Call::Ask),
        }
    }

    fn poll(&mut self) -> Call {
        self.go(State::Sleeping, Call::Sleep(plan::LINE_POLL))
    }

    /// Redis did not answer: EC2 at the backstop's bounded rate; Redis asked again meanwhile.
    fn silent(&mut self, now: Duration) -> Call {
        let waited = now.saturating_sub(self.since);
        if waited >= self.backstop {
            return Call::Turn;
        }
        self.go(
            State::Sleeping,
            Call::Sleep(plan::LINE_POLL.min(self.backstop - waited)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const BACKSTOP: Duration = Duration::from_secs(5);

    fn place(place: u64, freed: u64) -> Input {
        Input::Asked(Some(Place {
            place: Some(place),
            freed,
        }))
    }

    /// A waiter that joined with ticket 7 and was told its place once (`first`), at time 0.
    fn waiting(first: Input) -> (Line, Call) {
        let mut l = Line::new();
        let start = Input::Start { backstop: BACKSTOP };
        assert_eq!(l.step(start, Duration::ZERO), Call::Join { ticket: None });
        assert_eq!(l.step(Input::Joined(Some(7)), MS), Call::Ask);
        let call = l.step(first, MS);
        (l, call)
    }

    #[test]
    fn only_the_head_claims_and_only_when_an_address_was_freed_since_its_last_try() {
        // Becoming the head is not, by itself, an address freed.
        let (mut l, call) = waiting(place(0, 3));
        assert_eq!(call, Call::Sleep(plan::LINE_POLL));
        assert_eq!(l.step(Input::Slept, 300 * MS), Call::Ask);
        assert_eq!(l.step(place(0, 4), 300 * MS), Call::Turn);
        // Not the head: an address freed is for the head.
        let (mut l, _) = waiting(place(1, 3));
        l.step(Input::Slept, 300 * MS);
        assert_eq!(l.step(place(1, 4), 300 * MS), Call::Sleep(plan::LINE_POLL));
        // The place and the count outlive the wait: the next wait starts from the last try.
        let (mut l, _) = waiting(place(0, 3));
        l.step(Input::Slept, 300 * MS);
        assert_eq!(l.step(place(0, 4), 300 * MS), Call::Turn);
        let start = Input::Start { backstop: BACKSTOP };
        assert_eq!(l.step(start, 400 * MS), Call::Ask, "no second join");
        assert_eq!(l.step(place(0, 4), 400 * MS), Call::Sleep(plan::LINE_POLL));
    }

    #[test]
    fn the_head_looks_at_the_pool_every_watch_for_an_address_freed_outside_eipool() {
        let (mut l, _) = waiting(place(0, 3));
        l.step(Input::Slept, plan::LINE_WATCH);
        assert_eq!(l.step(place(0, 3), plan::LINE_WATCH), Call::Look);
        assert_eq!(
            l.step(Input::Looked(false), plan::LINE_WATCH),
            Call::Sleep(plan::LINE_POLL)
        );
        // The watch starts again from the look.
        l.step(Input::Slept, plan::LINE_WATCH + MS);
        assert_eq!(
            l.step(place(0, 3), plan::LINE_WATCH + MS),
            Call::Sleep(plan::LINE_POLL)
        );
        l.step(Input::Slept, 2 * plan::LINE_WATCH);
        assert_eq!(l.step(place(0, 3), 2 * plan::LINE_WATCH), Call::Look);
        assert_eq!(
            l.step(Input::Looked(true), 2 * plan::LINE_WATCH),
            Call::Turn
        );
        // Behind the head: no look, ever.
        let (mut l, _) = waiting(place(2, 3));
        l.step(Input::Slept, 3 * plan::LINE_WATCH);
        assert_eq!(
            l.step(place(2, 3), 3 * plan::LINE_WATCH),
            Call::Sleep(plan::LINE_POLL)
        );
    }

    #[test]
    fn a_place_redis_lost_is_joined_again_with_our_ticket() {
        let lost = Input::Asked(Some(Place {
            place: None,
            freed: 0,
        }));
        let (mut l, call) = waiting(lost);
        assert_eq!(call, Call::Join { ticket: Some(7) });
        assert_eq!(
            l.step(Input::Joined(Some(7)), MS),
            Call::Sleep(plan::LINE_POLL)
        );
        // Redis silent on the rejoin: the ticket stays ours, the next ask tells.
        let (mut l, _) = waiting(lost);
        assert_eq!(
            l.step(Input::Joined(None), MS),
            Call::Sleep(plan::LINE_POLL)
        );
        assert_eq!(l.ticket(), Some(7));
        assert_eq!(l.step(Input::Slept, MS), Call::Ask);
    }

    #[test]
    fn with_redis_silent_the_turn_comes_at_the_backstop_and_redis_is_asked_meanwhile() {
        let mut l = Line::new();
        l.step(Input::Start { backstop: BACKSTOP }, 10 * BACKSTOP);
        let mut now = 10 * BACKSTOP;
        let mut asked = 0;
        let mut call = l.step(Input::Joined(None), now);
        while let Call::Sleep(d) = call {
            assert!(d <= plan::LINE_POLL && d > Duration::ZERO, "{d:?}");
            now += d;
            assert_eq!(l.step(Input::Slept, now), Call::Join { ticket: None });
            asked += 1;
            call = l.step(Input::Joined(None), now);
        }
        assert_eq!(call, Call::Turn);
        assert_eq!(now, 11 * BACKSTOP, "at the backstop, not after");
        assert_eq!(
            asked,
            (BACKSTOP.as_millis() / plan::LINE_POLL.as_millis()) as usize
        );
        // Redis answering again resumes the line.
        let (mut l, _) = waiting(place(3, 0));
        l.step(Input::Slept, MS);
        assert_eq!(
            l.step(Input::Asked(None), BACKSTOP),
            Call::Turn,
            "the backstop counts from the wait's start"
        );
    }

    #[test]
    fn leaving_gives_the_ticket_up_and_the_next_wait_joins_anew() {
        let (mut l, _) = waiting(place(0, 3));
        assert_eq!(l.left(), Some(7));
        assert_eq!(l.left(), None);
        let start = Input::Start { backstop: BACKSTOP };
        assert_eq!(l.step(start, MS), Call::Join { ticket: None });
        assert_eq!(l.step(Input::Joined(Some(9)), MS), Call::Ask);
        // The count starts again from this wait's first ask.
        assert_eq!(l.step(place(0, 5), MS), Call::Sleep(plan::LINE_POLL));
    }

    /// eipool-model's clock window (`Line::rebased`): moving the origin later, with the times
    /// older than the window clamped at zero, changes no decision while the next `now` is at
    /// least the window (the backstop here, the longer bound).
    #[test]
    fn rebasing_the_clock_within_its_window_changes_no_decision() {
        let (l, _) = waiting(place(0, 3));
        let later = 3 * BACKSTOP;
        let by = later - BACKSTOP;
        for answer in [place(0, 3), place(0, 4), place(1, 4), Input::Asked(None)] {
            let (mut a, mut b) = (l.clone(), l.clone().rebased(by));
            assert_eq!(a.step(Input::Slept, later), Call::Ask);
            assert_eq!(b.step(Input::Slept, later - by), Call::Ask);
            assert_eq!(
                a.step(answer, later),
                b.step(answer, later - by),
                "{answer:?}"
            );
        }
        // Within the window, a time is moved, not clamped: the watch counts from the moved
        // start (a wait begun at 1 s, moved 1 ms earlier).
        let at = Duration::from_secs(1);
        let mut b = Line::new();
        b.step(Input::Start { backstop: BACKSTOP }, at);
        b.step(Input::Joined(Some(7)), at);
        b.step(place(0, 3), at);
        let mut b = b.rebased(MS);
        let due = at - MS + plan::LINE_WATCH;
        assert_eq!(b.step(Input::Slept, due - MS), Call::Ask);
        assert_eq!(b.step(place(0, 3), due - MS), Call::Sleep(plan::LINE_POLL));
        assert_eq!(b.step(Input::Slept, due), Call::Ask);
        assert_eq!(b.step(place(0, 3), due), Call::Look);
        // So does the backstop, with Redis silent.
        let turn = at - MS + BACKSTOP;
        b.step(Input::Looked(false), due);
        assert_eq!(b.step(Input::Slept, turn - MS), Call::Ask);
        assert_eq!(b.step(Input::Asked(None), turn - MS), Call::Sleep(MS));
        assert_eq!(b.step(Input::Slept, turn), Call::Ask);
        assert_eq!(b.step(Input::Asked(None), turn), Call::Turn);
    }

    // Review (review-line): tests pinning the old async loop's behaviour where the machine's
    // tests left a mutation alive (each fails under the mutation named).

    /// Mutation "forget `tried_at` at each wait" (`self.tried_at = None` on `Start`): the old
    /// loop kept the count of the last try in the `Waiter`, so an address freed while the head
    /// claimed (its try failed: a newcomer took the one it saw) is its turn at the next wait's
    /// first ask, not two seconds later at its look.
    #[test]
    fn review_an_address_freed_while_the_head_claimed_is_its_turn_at_the_next_wait() {
        let (mut l, _) = waiting(place(0, 3));
        l.step(Input::Slept, 300 * MS);
        assert_eq!(l.step(place(0, 4), 300 * MS), Call::Turn);
        let start = Input::Start { backstop: BACKSTOP };
        assert_eq!(l.step(start, 400 * MS), Call::Ask);
        assert_eq!(l.step(place(0, 5), 400 * MS), Call::Turn);
    }

    /// Mutation "keep `looked` across waits" (`Start` no longer sets it): the old loop started
    /// the head's watch afresh at each `turn()`, so a head does not look at the pool at the first
    /// ask of a wait that begins long after its last look (its try has just listed the pool).
    #[test]
    fn review_each_wait_starts_the_heads_watch_afresh() {
        let (mut l, _) = waiting(place(0, 3));
        l.step(Input::Slept, 300 * MS);
        assert_eq!(l.step(place(0, 4), 300 * MS), Call::Turn);
        let later = 3 * plan::LINE_WATCH;
        assert_eq!(
            l.step(Input::Start { backstop: BACKSTOP }, later),
            Call::Ask
        );
        assert_eq!(l.step(place(0, 4), later), Call::Sleep(plan::LINE_POLL));
        // The watch counts from this wait's start.
        l.step(Input::Slept, later + plan::LINE_WATCH);
        assert_eq!(l.step(place(0, 4), later + plan::LINE_WATCH), Call::Look);
    }

    /// Mutation "a rejoin Redis does not answer is Redis silent" (`silent(now)` on
    /// `Joined(None)` in `Rejoining`): the old loop answered a rejoin with `Some(Rejoin)`
    /// whatever the join said, and slept `LINE_POLL`; the backstop was only for a first join or
    /// an ask unanswered. Past the backstop, the mutation claims out of turn.
    #[test]
    fn review_a_rejoin_unanswered_waits_a_poll_even_past_the_backstop() {
        let lost = Input::Asked(Some(Place {
            place: None,
            freed: 3,
        }));
        let (mut l, _) = waiting(place(2, 3));
        let late = 2 * BACKSTOP;
        assert_eq!(l.step(Input::Slept, late), Call::Ask);
        assert_eq!(l.step(lost, late), Call::Join { ticket: Some(7) });
        assert_eq!(
            l.step(Input::Joined(None), late),
            Call::Sleep(plan::LINE_POLL)
        );
    }

    /// Mutation "a rejoin keeps the old ticket": the old `join` stored the ticket Redis gave
    /// back, so the next rejoin (and `leave`'s answer) names that one.
    #[test]
    fn review_a_rejoin_under_a_new_ticket_keeps_the_new_one() {
        let lost = Input::Asked(Some(Place {
            place: None,
            freed: 3,
        }));
        let (mut l, call) = waiting(lost);
        assert_eq!(call, Call::Join { ticket: Some(7) });
        l.step(Input::Joined(Some(8)), MS);
        assert_eq!(l.ticket(), Some(8));
        l.step(Input::Slept, 300 * MS);
        assert_eq!(l.step(lost, 300 * MS), Call::Join { ticket: Some(8) });
    }

    /// Mutation "Redis silent sleeps a whole poll": the old loop slept at most what was left
    /// of the backstop, so the turn comes at the backstop when it is not a multiple of
    /// `LINE_POLL` (the agent's backstop is its `--interval`).
    #[test]
    fn review_with_redis_silent_the_last_sleep_ends_at_the_backstop() {
        let backstop = plan::LINE_POLL + 50 * MS;
        let mut l = Line::new();
        assert_eq!(
            l.step(Input::Start { backstop }, Duration::ZERO),
            Call::Join { ticket: None }
        );
        assert_eq!(
            l.step(Input::Joined(None), Duration::ZERO),
            Call::Sleep(plan::LINE_POLL)
        );
        assert_eq!(
            l.step(Input::Slept, plan::LINE_POLL),
            Call::Join { ticket: None }
        );
        assert_eq!(
            l.step(Input::Joined(None), plan::LINE_POLL),
            Call::Sleep(50 * MS)
        );
        assert_eq!(l.step(Input::Slept, backstop), Call::Join { ticket: None });
        assert_eq!(l.step(Input::Joined(None), backstop), Call::Turn);
    }
}

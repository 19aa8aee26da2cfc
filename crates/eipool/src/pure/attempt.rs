//! One candidate's attempt as a sans-IO state machine: take its lease, associate it with EC2's
//! compare-and-swap, learn what a lost answer did, validate, and give back whatever a failed
//! attempt took. The machine makes every decision; `services::claim::attempt` (the driver)
//! performs the [`Call`] it asks for and feeds the answer back as an [`Input`], with the time.
//!
//! ```text
//!   Lease ──▶ Pace ──▶ Renew ──▶ Interface ──▶ Associate ──▶ Validate ──▶ Won
//!     │         ▲                                 │  │  │          │
//!     │         └── Throttled / Sleep ◀── passing ┘  │  └ refused  ├─ elsewhere ─┐
//!     │                                              ▼             └─ displaced ─┤
//!     │                      AlreadyAssociated, in doubt: CheckTaken ─▶ Won        ▼
//!     └──────────────▶ Done(outcome) ◀── ReleaseLease ◀── Undo (in doubt) ◀── Disassociate
//! ```
//!
//! The crux is *in doubt*: an association of ours may be on the address without our knowing
//! (a crashed run's, the suspect; or a call of ours whose answer was lost or that was cut off in
//! flight). While in doubt the machine never takes "taken" at its word before looking who holds
//! the address (`CheckTaken`, its pauses `Pause::CheckTaken`), and never stops without looking for ours (`Undo`). It gives back what
//! a stopped claim may have associated only while the claim still holds its interface lease
//! (`MayGiveBack`): past it, what our private IP shows may be a re-run's, or ours adopted by
//! it, and is left to that claim (or to a re-run, which adopts it, or to `eipool gc`). When the
//! interface lease is found lost before associating, the claim starts over without looking.
//! Time comes in with each input (`now`, from any origin): the machine has no clock.

use std::time::Duration;

use crate::pure::address::{Address, Association};
use crate::pure::classify::standing;
use crate::pure::identity::Identity;
use crate::pure::ids::AssociationId;
use crate::pure::plan::{self, LookVerdict};

/// What the machine asks the driver to do next. The last call of a run is one of `Won`, `Done`
/// or `Stop`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// Take the candidate's lease in Redis (answer: [`Input::Leased`]).
    TakeLease,
    /// Wait for a turn in the herd's AssociateAddress pace, renewing the lease meanwhile when
    /// `renewing`; `waited`: use the turn waited for before the candidate was chosen instead
    /// (answer: [`Input::Paced`]).
    Pace { renewing: bool, waited: bool },
    /// Renew the lease before the call (answer: [`Input::Renewed`]).
    Renew,
    /// Whether this claim still holds its interface lease (answer: [`Input::Interface`]).
    StillHoldsInterface,
    /// The same, on the cleanup budget, before giving back what a stopped claim may have
    /// associated (answer: [`Input::Interface`], or [`Input::Stopped`] when no time is left).
    MayGiveBack,
    /// AssociateAddress with `AllowReassociation=false` (answer: [`Input::Associated`]).
    Associate,
    /// EC2 throttled the association: tell the herd's pace (answer: [`Input::Throttled`]).
    Throttled,
    /// Sleep (answer: [`Input::Slept`]). [`Pause::Undo`] sleeps on the cleanup budget, the
    /// others on the work budget.
    Sleep(Pause),
    /// DescribeAddresses of the candidate, in the herd's describe pace, passing failures
    /// retried (answer: [`Input::Seen`]).
    Describe,
    /// The node's own view (IMDSv2): does it map the candidate to our private IP? (answer:
    /// [`Input::OnNode`]).
    LookOnNode,
    /// Tell the herd EC2 called the candidate taken (answer: [`Input::Done`]).
    MarkTaken,
    /// On the cleanup budget: look whether the candidate is on our interface, in the describe
    /// pace (answer: [`Input::Seen`], or [`Input::Stopped`] when no look fits any more).
    LookForOurs,
    /// Give back our association, on the cleanup budget, and wake the pool's line
    /// (answer: [`Input::Done`]).
    Disassociate(AssociationId, GiveBack),
    /// Release the lease, if one is held; with `forget_intent`, also the interface's record of
    /// taking this address (answer: [`Input::Done`]). `lease_too_short`: why, when the renewed
    /// lease had only this much left, too little for another EC2 call (the driver warns).
    ReleaseLease {
        forget_intent: bool,
        lease_too_short: Option<Duration>,
    },
    /// Won: record it (Redis and the holder tag) and report it. `adopted`: an earlier call (a
    /// lost answer, a crashed run) had associated it.
    Won { addr: Address, adopted: bool },
    /// Ended without a win, nothing of ours left on the candidate.
    Done(Outcome),
    /// Stop the whole claim, nothing of ours left on the candidate.
    Stop(Why),
}

/// Why an association of ours is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveBack {
    /// Validation found the address held elsewhere.
    Elsewhere,
    /// Another association to our private IP replaced ours.
    Displaced,
    /// The claim stopped while validating.
    RolledBack,
    /// The claim stopped in doubt, and a look showed it ours.
    Undo,
}

/// How an attempt ended without a win (the claimer's passes decide what comes next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Someone else holds it (EC2 said so, or it is gone).
    Taken,
    /// Another claimer is working on it: maybe later.
    Busy,
    /// A passing failure: try again later.
    Transient,
    /// Masked: our own listing shows it free, but a marker hides it, put this long ago.
    Masked(Duration),
    /// We associated it, then EC2 showed it free again: another association to our private IP
    /// replaced ours. Look at what our private IP holds now.
    Displaced,
}

/// Why the claim stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// What the driver was told when it fed [`Input::Stopped`] or [`AssociateAnswer::Refused`]: the
    /// deadline, a signal, or a failure no retry fixes.
    Stopped,
    /// The interface lease ran out before associating: take it again and start over.
    InterfaceLost,
}

/// A wait the machine asks for; [`Pause::duration`] says how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pause {
    /// Before retry `n` of AssociateAddress after a passing failure (full jitter).
    Backoff(u32),
    /// Before look `poll` at our address by EC2 while validating (`herd`: in a herd).
    Validation { poll: u32, herd: bool },
    /// Before look `poll` at the node's own view while validating.
    NodeView(u32),
    /// Before look `poll` at an address we may have associated, where EC2 answered "taken".
    CheckTaken(u32),
    /// Before look `poll` for ours while giving back, on the cleanup budget.
    Undo(u32),
}

impl Pause {
    /// How long; `unit` is a random sample in [0, 1) for the jittered ones.
    pub fn duration(self, unit: f64) -> Duration {
        match self {
            Pause::Backoff(n) => plan::backoff(n, unit),
            Pause::Validation { poll, herd } => plan::validation_wait(poll, herd),
            Pause::NodeView(poll) => plan::node_view_delay(poll),
            Pause::CheckTaken(poll) | Pause::Undo(poll) => plan::validation_delay(poll),
        }
    }

    /// Whether it is waited out on the cleanup budget (deaf to signals).
    pub fn on_cleanup(self) -> bool {
        matches!(self, Pause::Undo(_))
    }
}

/// How taking the lease went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leased {
    /// Ours until it runs out.
    Got,
    /// Go on without one (no Redis, or Redis down and the lease not required).
    WithoutRedis,
    /// Another claimer is working on it.
    Busy,
    /// A marker hides it, put this long ago.
    Masked(Duration),
    /// Redis is down and `--require-leases` is set: not now.
    Unavailable,
}

/// What AssociateAddress answered, as the AWS adapter classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssociateAnswer {
    /// This call associated it.
    Ok(AssociationId),
    /// `Resource.AlreadyAssociated`: someone holds it (perhaps us).
    AlreadyAssociated,
    /// The allocation is gone.
    NotFound,
    /// A passing failure; `maybe_applied`: the answer was lost after the request may have
    /// reached EC2; `throttled`: EC2 throttled it.
    Passing {
        maybe_applied: bool,
        throttled: bool,
    },
    /// A failure no retry fixes (the driver keeps the error and reports it at [`Why::Stopped`]).
    Refused,
}

/// An answer to the last [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// The first input of a run.
    Start,
    Leased(Leased),
    /// `false`: the lease was lost while waiting for the turn.
    Paced(bool),
    /// `held`: the lease is still ours, `left` before it runs out.
    Renewed {
        held: bool,
        left: Duration,
    },
    Interface(bool),
    Associated(AssociateAnswer),
    /// `alone`: the herd's shared pace did not take the signal (no Redis): back off alone.
    Throttled {
        alone: bool,
    },
    Slept,
    /// The candidate as EC2 shows it (`None`: gone).
    Seen(Option<Address>),
    /// `None`: the node's view did not answer.
    OnNode(Option<bool>),
    /// A call without an answer is done.
    Done,
    /// The call could not finish: the work deadline, a signal or a fatal error (the driver
    /// keeps which), or, on the cleanup budget, no time left.
    Stopped,
}

/// Where the machine is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum State {
    Start,
    Lease,
    Pace,
    Renew,
    Interface,
    Associate {
        before: bool,
    },
    /// Told the pace EC2 throttled retry `n`.
    Throttled(u32),
    Backoff,
    /// Checking a "taken" (`AlreadyAssociated`) while in doubt: looking at who holds it.
    CheckTaken {
        since: Duration,
        poll: u32,
        sleeping: bool,
    },
    MarkTaken,
    /// Validating from the node's own view, then EC2's.
    NodeView {
        since: Duration,
        poll: u32,
        sleeping: bool,
    },
    Validate {
        since: Duration,
        poll: u32,
        sleeping: bool,
    },
    /// Giving back our association, then the lease, then ending.
    GiveBack {
        then: End,
    },
    /// Stopped: asking whether this claim still holds its interface lease before giving back
    /// `assoc`.
    MayGiveBack {
        assoc: AssociationId,
        why: GiveBack,
        then: End,
    },
    /// Looking for ours on the cleanup budget (stopped while in doubt), then stopping.
    Undo {
        since: Duration,
        poll: u32,
        sleeping: bool,
        why: Why,
    },
    /// Releasing the lease, then ending.
    Release {
        then: End,
    },
    Ended,
}

/// How the run ends, once cleanup is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Done(Outcome),
    Stop(Why),
}

/// One candidate's attempt. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    cand: Address,
    me: Identity,
    /// Redis or our private IP said it may be ours already: straight to EC2's compare-and-swap.
    suspect: bool,
    /// A turn in the pace was waited for before choosing this candidate, not used yet.
    waited_slot: bool,
    /// This claimer is one of a herd (validation's first look waits a little).
    herd: bool,
    /// Each EC2 call's timeout: the lease must outlast one.
    call_timeout: Duration,
    lease: bool,
    in_doubt: bool,
    retries: u32,
    /// Our association, once AssociateAddress answered with it.
    assoc: Option<AssociationId>,
    state: State,
    /// A step broken on purpose, for the model checker's mutation tests (never in eipool).
    mutation: Option<Mutation>,
}

/// A step of the machine broken on purpose: eipool-model shows its checker catches each.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Associate without first renewing the lease and checking the interface lease.
    NoFenceCheck,
    /// Report once the wait before validating is over, without looking at EC2.
    SkipValidation,
}

impl Attempt {
    pub fn new(
        cand: Address,
        me: Identity,
        suspect: bool,
        waited_slot: bool,
        herd: bool,
        call_timeout: Duration,
    ) -> Self {
        Attempt {
            cand,
            me,
            suspect,
            waited_slot,
            herd,
            call_timeout,
            lease: false,
            in_doubt: suspect,
            retries: 0,
            assoc: None,
            state: State::Start,
            mutation: None,
        }
    }

    /// This machine with its counts of looks and retries back at zero. They set only how long
    /// it sleeps ([`Pause`]), never what it decides: eipool-model, which has no clock, keeps
    /// machines this way so that a claimer looking again and again is one state, not one per
    /// look.
    #[doc(hidden)]
    pub fn without_counts(mut self) -> Self {
        self.retries = 0;
        match &mut self.state {
            State::CheckTaken { poll, .. }
            | State::NodeView { poll, .. }
            | State::Validate { poll, .. }
            | State::Undo { poll, .. } => *poll = 0,
            _ => {}
        }
        self
    }

    /// This machine with `mutation`: for eipool-model's mutation tests only.
    #[doc(hidden)]
    pub fn mutated(mut self, mutation: Mutation) -> Self {
        self.mutation = Some(mutation);
        self
    }

    /// Feed the answer to the last call, at `now`; get the next call.
    pub fn step(&mut self, input: Input, now: Duration) -> Call {
        let state = std::mem::replace(&mut self.state, State::Ended);
        match (state, input) {
            (State::Start, _) if self.suspect => self.pace(),
            (State::Start, _) => self.go(State::Lease, Call::TakeLease),
            (State::Lease, Input::Leased(l)) => match l {
                Leased::Got => {
                    self.lease = true;
                    self.pace()
                }
                Leased::WithoutRedis => self.pace(),
                Leased::Busy => self.end(End::Done(Outcome::Busy)),
                Leased::Masked(age) => self.end(End::Done(Outcome::Masked(age))),
                Leased::Unavailable => self.end(End::Done(Outcome::Transient)),
            },
            (State::Pace, Input::Paced(true)) => self.renew(),
            (State::Pace, Input::Paced(false)) => self.give_up(Outcome::Busy),
            (State::Renew, Input::Renewed { held: false, .. }) => self.give_up(Outcome::Busy),
            (State::Renew, Input::Renewed { held: true, left }) => {
                if plan::lease_allows(left, self.call_timeout, plan::LEASE_MARGIN) {
                    self.go(State::Interface, Call::StillHoldsInterface)
                } else {
                    // Too short for another call: give up before associating, saying why.
                    self.release_saying(true, End::Done(Outcome::Transient), Some(left))
                }
            }
            (State::Interface, Input::Interface(false)) => self.stopped(Why::InterfaceLost, now),
            (State::Interface, Input::Interface(true)) => {
                // Cut off in flight (deadline, signal), the call may have applied: in doubt
                // until an answer says otherwise.
                let before = std::mem::replace(&mut self.in_doubt, true);
                self.go(State::Associate { before }, Call::Associate)
            }
            (State::Associate { before }, Input::Associated(answer)) => {
                self.associated(before, answer, now)
            }
            (State::Throttled(_), Input::Throttled { alone: false }) => self.pace(),
            (State::Throttled(n), Input::Throttled { alone: true }) => {
                self.go(State::Backoff, Call::Sleep(Pause::Backoff(n)))
            }
            (State::Backoff, Input::Slept) => self.pace(),
            (State::CheckTaken { since, poll, .. }, Input::Seen(seen)) => {
                match plan::after_a_look(
                    standing(seen.as_ref(), &self.me),
                    now.saturating_sub(since),
                ) {
                    LookVerdict::Ours => match seen {
                        Some(addr) => self.won(addr, true),
                        None => self.taken(),
                    },
                    LookVerdict::NotOurs => self.taken(),
                    // Whoever held it let go: it may be free now; try it again later.
                    LookVerdict::NobodysNow => self.give_up(Outcome::Transient),
                    LookVerdict::LookAgain => self.go(
                        State::CheckTaken {
                            since,
                            poll: next_poll(poll),
                            sleeping: true,
                        },
                        Call::Sleep(Pause::CheckTaken(poll)),
                    ),
                }
            }
            (
                State::CheckTaken {
                    since,
                    poll,
                    sleeping: true,
                },
                Input::Slept,
            ) => self.go(
                State::CheckTaken {
                    since,
                    poll,
                    sleeping: false,
                },
                Call::Describe,
            ),
            (State::MarkTaken, Input::Done) => self.give_up(Outcome::Taken),
            (
                State::NodeView {
                    since,
                    poll,
                    sleeping: true,
                },
                Input::Slept,
            ) => self.go(
                State::NodeView {
                    since,
                    poll,
                    sleeping: false,
                },
                Call::LookOnNode,
            ),
            (State::NodeView { .. }, Input::OnNode(Some(true))) => {
                let addr = self.on_node();
                self.won(addr, false)
            }
            (State::NodeView { since, poll, .. }, Input::OnNode(Some(false))) => {
                self.node_view(since, poll, now)
            }
            // The node cannot answer: EC2 decides.
            (State::NodeView { since, .. }, Input::OnNode(None)) => self.validate(since, 0),
            (State::Validate { sleeping: true, .. }, Input::Slept)
                if self.mutation == Some(Mutation::SkipValidation) =>
            {
                let addr = self.on_node();
                self.won(addr, false)
            }
            (
                State::Validate {
                    since,
                    poll,
                    sleeping: true,
                },
                Input::Slept,
            ) => self.go(
                State::Validate {
                    since,
                    poll,
                    sleeping: false,
                },
                Call::Describe,
            ),
            (State::Validate { since, poll, .. }, Input::Seen(seen)) => {
                // Before EC2's consistency bound, a look may show the address as it was before
                // we associated it: free, or on its previous holder (who let go just before).
                match plan::after_a_look(
                    standing(seen.as_ref(), &self.me),
                    now.saturating_sub(since),
                ) {
                    LookVerdict::Ours => match seen {
                        Some(addr) => self.won(addr, false),
                        None => self.give_back(GiveBack::Elsewhere, End::Done(Outcome::Taken)),
                    },
                    // Someone took it after us, past the bound (or it was released).
                    // Disassociating our own association id is safe either way.
                    LookVerdict::NotOurs => {
                        self.give_back(GiveBack::Elsewhere, End::Done(Outcome::Taken))
                    }
                    // Never report it: our private IP holds something else now. Disassociating
                    // it again makes sure, and wakes the pool's line.
                    LookVerdict::NobodysNow => {
                        self.give_back(GiveBack::Displaced, End::Done(Outcome::Displaced))
                    }
                    LookVerdict::LookAgain => self.validate(since, poll),
                }
            }
            (State::GiveBack { then }, Input::Done) => self.release(!self.in_doubt, then),
            (State::MayGiveBack { assoc, why, then }, Input::Interface(true)) => {
                // Our own association (rolled back) is off once given back: nothing in doubt.
                // What a look showed (undo) stays recalled.
                if why == GiveBack::RolledBack {
                    self.in_doubt = false;
                }
                self.go(State::GiveBack { then }, Call::Disassociate(assoc, why))
            }
            // Another claim of this interface may hold what our private IP shows now (it may
            // have adopted our association): leave it to that claim, or to a re-run, which
            // adopts it (the interface's record of it is kept), or to gc.
            (State::MayGiveBack { then, .. }, Input::Interface(false) | Input::Stopped) => {
                self.release(false, then)
            }
            (
                State::Undo {
                    since, poll, why, ..
                },
                Input::Seen(seen),
            ) => {
                // The lease is released keeping the interface's record of taking this address
                // (`forget_intent` false): what was in doubt stays recalled for a re-run.
                let then = End::Stop(why);
                match plan::after_a_look(
                    standing(seen.as_ref(), &self.me),
                    now.saturating_sub(since),
                ) {
                    LookVerdict::Ours => match seen.and_then(|a| a.association) {
                        Some(x) => self.may_give_back(x.id, GiveBack::Undo, then),
                        None => self.release(false, then),
                    },
                    LookVerdict::NotOurs | LookVerdict::NobodysNow => self.release(false, then),
                    LookVerdict::LookAgain => self.go(
                        State::Undo {
                            since,
                            poll: next_poll(poll),
                            sleeping: true,
                            why,
                        },
                        Call::Sleep(Pause::Undo(poll)),
                    ),
                }
            }
            (
                State::Undo {
                    since,
                    poll,
                    sleeping: true,
                    why,
                },
                Input::Slept,
            ) => self.go(
                State::Undo {
                    since,
                    poll,
                    sleeping: false,
                    why,
                },
                Call::LookForOurs,
            ),
            // No look fits before the deadline any more: a re-run adopts it, or gc frees it.
            (State::Undo { why, .. }, Input::Stopped) => self.release(false, End::Stop(why)),
            (State::Release { then }, Input::Done) => self.end(then),
            // The claim stops (deadline, signal, a failure no retry fixes): give back what this
            // candidate took, first the association we made, or may have made.
            (State::Validate { .. } | State::NodeView { .. }, Input::Stopped) => {
                let assoc = self.assoc.clone().expect("associated before validating");
                self.may_give_back(assoc, GiveBack::RolledBack, End::Stop(Why::Stopped))
            }
            (
                State::Lease
                | State::Pace
                | State::Renew
                | State::Interface
                | State::Associate { .. }
                | State::Throttled(_)
                | State::Backoff
                | State::CheckTaken { .. }
                | State::MarkTaken,
                Input::Stopped,
            ) => self.stopped(Why::Stopped, now),
            (state, input) => {
                unreachable!("attempt machine: {input:?} does not answer a call made in {state:?}")
            }
        }
    }
}

/// The transitions `step` takes: each moves to a state and says the call it waits on there.
impl Attempt {
    fn go(&mut self, state: State, call: Call) -> Call {
        self.state = state;
        call
    }

    /// Our turn in the pace: the one waited for before choosing, else a new one.
    fn pace(&mut self) -> Call {
        let waited = std::mem::take(&mut self.waited_slot);
        self.go(
            State::Pace,
            Call::Pace {
                renewing: self.lease && !self.in_doubt,
                waited,
            },
        )
    }

    /// The lease gates *new* associations. Once an attempt may have applied, the retry (still
    /// AllowReassociation=false, so it can take nothing from anyone) is how we learn whether it
    /// did: giving up instead could leave the address on our interface with nobody using it.
    fn renew(&mut self) -> Call {
        if self.mutation == Some(Mutation::NoFenceCheck) {
            let before = std::mem::replace(&mut self.in_doubt, true);
            return self.go(State::Associate { before }, Call::Associate);
        }
        if self.lease && !self.in_doubt {
            self.go(State::Renew, Call::Renew)
        } else {
            // AWS replaces the address already on our private IP: associate only while no other
            // claim of this interface can be running.
            self.go(State::Interface, Call::StillHoldsInterface)
        }
    }

    fn associated(&mut self, before: bool, answer: AssociateAnswer, now: Duration) -> Call {
        match answer {
            AssociateAnswer::Ok(assoc) => {
                self.assoc = Some(assoc);
                match self.me.mac {
                    Some(_) => self.node_view(now, 0, now),
                    None => self.validate(now, 0),
                }
            }
            AssociateAnswer::AlreadyAssociated => {
                self.in_doubt = before;
                if before {
                    self.go(
                        State::CheckTaken {
                            since: now,
                            poll: 0,
                            sleeping: false,
                        },
                        Call::Describe,
                    )
                } else {
                    self.taken()
                }
            }
            AssociateAnswer::NotFound => {
                self.in_doubt = before;
                self.give_up(Outcome::Taken)
            }
            AssociateAnswer::Passing {
                maybe_applied,
                throttled,
            } => {
                self.in_doubt = before || maybe_applied;
                let n = self.retries;
                self.retries += 1;
                if throttled {
                    // The herd's pace slows, and spaces our retry with everyone's.
                    self.go(State::Throttled(n), Call::Throttled)
                } else {
                    self.go(State::Backoff, Call::Sleep(Pause::Backoff(n)))
                }
            }
            AssociateAnswer::Refused => {
                self.in_doubt = before;
                self.stopped(Why::Stopped, now)
            }
        }
    }

    /// EC2 says someone else holds it: tell the herd, give the lease back.
    fn taken(&mut self) -> Call {
        self.go(State::MarkTaken, Call::MarkTaken)
    }

    /// Look at the node's own view until it maps the candidate to our private IP (then our
    /// association stands: an address maps to one private IP at a time), or until EC2's
    /// consistency bound has passed since `since`: EC2 decides then.
    fn node_view(&mut self, since: Duration, poll: u32, now: Duration) -> Call {
        if now.saturating_sub(since) >= plan::CONSISTENCY_BOUND {
            return self.validate(since, 0);
        }
        self.go(
            State::NodeView {
                since,
                poll: next_poll(poll),
                sleeping: true,
            },
            Call::Sleep(Pause::NodeView(poll)),
        )
    }

    /// The next look at EC2 while validating, `since` the association's answer.
    fn validate(&mut self, since: Duration, poll: u32) -> Call {
        let herd = self.herd;
        self.go(
            State::Validate {
                since,
                poll: next_poll(poll),
                sleeping: true,
            },
            Call::Sleep(Pause::Validation { poll, herd }),
        )
    }

    /// The candidate as the node showed it: on our interface and private IP, with the
    /// association AssociateAddress answered.
    fn on_node(&self) -> Address {
        let mut ours = self.cand.clone();
        ours.association = Some(Association {
            id: self.assoc.clone().expect("associated before validating"),
            network_interface_id: Some(self.me.eni.clone()),
            private_ip: Some(self.me.private_ip),
            instance_id: self.me.instance_id.clone(),
        });
        ours
    }

    fn won(&mut self, addr: Address, adopted: bool) -> Call {
        self.in_doubt = false;
        self.state = State::Ended;
        Call::Won { addr, adopted }
    }

    /// Stopped (the deadline, a signal): give `assoc` back only while this claim still holds its
    /// interface lease. A claim paused past it may find on its private IP a re-run's
    /// association, or its own that the re-run adopted and reported: not its to give back
    /// (found by eipool-model driving this machine, and by its hostile review).
    fn may_give_back(&mut self, assoc: AssociationId, why: GiveBack, then: End) -> Call {
        self.go(State::MayGiveBack { assoc, why, then }, Call::MayGiveBack)
    }

    /// Give our association back (it is ours, and we will not use it), then the lease.
    fn give_back(&mut self, why: GiveBack, then: End) -> Call {
        let assoc = self.assoc.clone().expect("associated before giving back");
        self.in_doubt = false;
        self.go(State::GiveBack { then }, Call::Disassociate(assoc, why))
    }

    /// Gave up on this candidate: nothing of ours is on it.
    fn give_up(&mut self, outcome: Outcome) -> Call {
        self.release(true, End::Done(outcome))
    }

    /// Stop the claim: while in doubt, look for ours first (and give it back if it is there),
    /// until EC2's consistency bound has passed since `now`. Not when the interface lease was
    /// lost: another claim of this interface may run now, and what our private IP shows may be
    /// its association, which a look cannot tell from ours. The claim takes the lease again and
    /// starts over, keeping the interface's record of this address (`forget_intent` false): it
    /// adopts it then if it is ours (found by eipool-model driving this machine).
    fn stopped(&mut self, why: Why, now: Duration) -> Call {
        if why == Why::InterfaceLost {
            return self.release(!self.in_doubt, End::Stop(why));
        }
        if self.in_doubt {
            // Only an AssociateAddress that may have applied leaves something to undo. A claim
            // stopped before any call went out has nothing to look for: a herd reaching its
            // deadline costs EC2 no describe calls.
            return self.go(
                State::Undo {
                    since: now,
                    poll: 0,
                    sleeping: false,
                    why,
                },
                Call::LookForOurs,
            );
        }
        self.release(true, End::Stop(why))
    }

    fn release(&mut self, forget_intent: bool, then: End) -> Call {
        self.release_saying(forget_intent, then, None)
    }

    /// [`Self::release`], saying the renewed lease was too short for another call.
    fn release_saying(
        &mut self,
        forget_intent: bool,
        then: End,
        lease_too_short: Option<Duration>,
    ) -> Call {
        if !self.lease {
            return self.end(then);
        }
        self.go(
            State::Release { then },
            Call::ReleaseLease {
                forget_intent,
                lease_too_short,
            },
        )
    }

    fn end(&mut self, then: End) -> Call {
        self.state = State::Ended;
        match then {
            End::Done(o) => Call::Done(o),
            End::Stop(w) => Call::Stop(w),
        }
    }
}

/// The number of the look after look `poll`. Every schedule of looks is constant from look
/// [`POLLS_DISTINCT`] on (`plan::validation_delay` from 3, `plan::node_view_delay` from 5), so
/// the count stops there: a machine looking for long is one state, not one per look (the model
/// checker explores every state).
fn next_poll(poll: u32) -> u32 {
    (poll + 1).min(POLLS_DISTINCT)
}

/// See [`next_poll`].
const POLLS_DISTINCT: u32 = 5;

/// The machine driven in-process: scripted answers, a virtual clock (a sleep advances it by
/// its duration, a call by 10 ms). What the process suite proves with moto and redis-server, the
/// decisions of it are proven here in milliseconds.
#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pure::plan::CONSISTENCY_BOUND;

    const MS: Duration = Duration::from_millis(1);

    fn me(mac: bool) -> Identity {
        Identity {
            eni: "eni-1".parse().unwrap(),
            private_ip: Ipv4Addr::new(10, 0, 0, 1),
            instance_id: None,
            mac: mac.then(|| "02:00:00:00:00:01".into()),
        }
    }

    fn cand() -> Address {
        Address {
            allocation_id: "eipalloc-1".parse().unwrap(),
            public_ip: Ipv4Addr::new(198, 51, 100, 1),
            association: None,
            pool: Some("media".into()),
            holder: None,
        }
    }

    /// The candidate as EC2 shows it on `eni` (ours is eni-1), by association `assoc`.
    fn on(eni: &str, assoc: &str) -> Option<Address> {
        let mut a = cand();
        a.association = Some(Association {
            id: assoc.parse().unwrap(),
            network_interface_id: Some(eni.parse().unwrap()),
            private_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
            instance_id: None,
        });
        Some(a)
    }

    fn assoc(id: &str) -> AssociationId {
        id.parse().unwrap()
    }

    /// Run `m` to its end, answering each call with `answer(call, now)`; the calls made, in
    /// order, with the time each was made at.
    fn run(
        mut m: Attempt,
        mut answer: impl FnMut(&Call, Duration) -> Input,
    ) -> Vec<(Duration, Call)> {
        let mut now = Duration::ZERO;
        let mut input = Input::Start;
        let mut calls = Vec::new();
        for _ in 0..10_000 {
            let call = m.step(input, now);
            calls.push((now, call.clone()));
            if matches!(call, Call::Won { .. } | Call::Done(_) | Call::Stop(_)) {
                return calls;
            }
            now += match &call {
                Call::Sleep(p) => p.duration(0.5),
                _ => 10 * MS,
            };
            input = answer(&call, now);
        }
        panic!("the attempt never ended: {calls:?}");
    }

    /// The answers of a world where everything goes well; `then` overrides any of them.
    fn well(call: &Call) -> Input {
        match call {
            Call::TakeLease => Input::Leased(Leased::Got),
            Call::Pace { .. } => Input::Paced(true),
            Call::Renew => Input::Renewed {
                held: true,
                left: Duration::from_secs(30),
            },
            Call::StillHoldsInterface | Call::MayGiveBack => Input::Interface(true),
            Call::Associate => Input::Associated(AssociateAnswer::Ok(assoc("eipassoc-1"))),
            Call::Throttled => Input::Throttled { alone: false },
            Call::Sleep(_) => Input::Slept,
            Call::Describe | Call::LookForOurs => Input::Seen(on("eni-1", "eipassoc-1")),
            Call::LookOnNode => Input::OnNode(Some(true)),
            _ => Input::Done,
        }
    }

    /// AssociateAddress's answer lost after the call may have applied.
    fn lost() -> Input {
        Input::Associated(AssociateAnswer::Passing {
            maybe_applied: true,
            throttled: false,
        })
    }

    /// AssociateAddress's answers: the first lost after it applied, then AlreadyAssociated.
    fn lost_then_already_associated() -> impl FnMut() -> Input {
        let mut n = 0;
        move || {
            n += 1;
            if n == 1 {
                lost()
            } else {
                Input::Associated(AssociateAnswer::AlreadyAssociated)
            }
        }
    }

    fn calls(run: &[(Duration, Call)]) -> Vec<Call> {
        run.iter().map(|(_, c)| c.clone()).collect()
    }

    fn last(run: &[(Duration, Call)]) -> &Call {
        &run.last().unwrap().1
    }

    fn fresh(suspect: bool, mac: bool) -> Attempt {
        Attempt::new(
            cand(),
            me(mac),
            suspect,
            false,
            false,
            Duration::from_secs(5),
        )
    }

    #[test]
    fn the_look_count_stops_only_where_every_schedule_is_constant() {
        for herd in [false, true] {
            let at = |p| Pause::Validation { poll: p, herd }.duration(0.0);
            assert_eq!(at(POLLS_DISTINCT), at(POLLS_DISTINCT + 100));
        }
        for p in [Pause::NodeView, Pause::CheckTaken, Pause::Undo] {
            assert_eq!(
                p(POLLS_DISTINCT).duration(0.0),
                p(POLLS_DISTINCT + 100).duration(0.0)
            );
        }
        assert_ne!(
            Pause::NodeView(POLLS_DISTINCT - 1).duration(0.0),
            Pause::NodeView(POLLS_DISTINCT).duration(0.0),
            "no lower bound would do"
        );
    }

    #[test]
    fn a_clean_win_leases_paces_renews_checks_the_interface_associates_and_validates() {
        let r = run(fresh(false, false), |c, _| well(c));
        assert_eq!(
            calls(&r),
            vec![
                Call::TakeLease,
                Call::Pace {
                    renewing: true,
                    waited: false
                },
                Call::Renew,
                Call::StillHoldsInterface,
                Call::Associate,
                Call::Sleep(Pause::Validation {
                    poll: 0,
                    herd: false
                }),
                Call::Describe,
                Call::Won {
                    addr: on("eni-1", "eipassoc-1").unwrap(),
                    adopted: false
                },
            ]
        );
    }

    #[test]
    fn a_turn_waited_for_before_choosing_is_used_once_and_a_herd_looks_later() {
        let m = Attempt::new(cand(), me(false), false, true, true, Duration::from_secs(5));
        let mut first = true;
        let r = run(m, |c, _| match c {
            // Passing failure once: the retry takes a new turn.
            Call::Associate if std::mem::take(&mut first) => {
                Input::Associated(AssociateAnswer::Passing {
                    maybe_applied: false,
                    throttled: false,
                })
            }
            c => well(c),
        });
        let paces: Vec<_> = calls(&r)
            .into_iter()
            .filter_map(|c| match c {
                Call::Pace { waited, .. } => Some(waited),
                _ => None,
            })
            .collect();
        assert_eq!(paces, vec![true, false]);
        assert!(calls(&r).contains(&Call::Sleep(Pause::Validation {
            poll: 0,
            herd: true
        })));
    }

    /// The crux: AssociateAddress's answer was lost after it may have reached EC2. The retry
    /// (never renewing the lease: it can take nothing from anyone) says AlreadyAssociated, and
    /// a look shows it ours: adopted, never taken for someone else's.
    #[test]
    fn a_lost_answer_that_applied_is_adopted_after_already_associated() {
        let mut lost = lost_then_already_associated();
        let r = run(fresh(false, false), |c, _| match c {
            Call::Associate => lost(),
            c => well(c),
        });
        let c = calls(&r);
        let retry = c.iter().rposition(|c| *c == Call::Associate).unwrap();
        assert_eq!(
            c[retry - 2..=retry],
            [
                Call::Pace {
                    renewing: false,
                    waited: false
                },
                Call::StillHoldsInterface,
                Call::Associate
            ],
            "in doubt, the lease is not renewed before the retry: {c:?}"
        );
        assert_eq!(c[retry + 1], Call::Describe);
        assert!(matches!(last(&r), Call::Won { adopted: true, .. }), "{c:?}");
        assert!(!c.contains(&Call::MarkTaken), "{c:?}");
    }

    /// Not in doubt, AlreadyAssociated is someone else's: no look, the herd told, lease back.
    #[test]
    fn already_associated_not_in_doubt_is_taken_at_its_word() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::Associate => Input::Associated(AssociateAnswer::AlreadyAssociated),
            c => well(c),
        });
        assert_eq!(
            calls(&r)[4..],
            [
                Call::Associate,
                Call::MarkTaken,
                Call::ReleaseLease {
                    forget_intent: true,
                    lease_too_short: None
                },
                Call::Done(Outcome::Taken)
            ]
        );
    }

    /// A lost answer, then the deadline: look for ours through EC2's stale window, give it
    /// back, keep the interface's record of it (a re-run looks there first), then stop.
    #[test]
    fn a_lost_answer_then_the_deadline_looks_for_ours_through_the_stale_window_and_gives_it_back() {
        let r = run(fresh(false, false), |c, now| match c {
            Call::Associate => lost(),
            Call::Sleep(Pause::Backoff(_)) => Input::Stopped,
            // Stale for a second: shows it free.
            Call::LookForOurs if now < Duration::from_secs(1) => Input::Seen(Some(cand())),
            c => well(c),
        });
        let c = calls(&r);
        let first = c.iter().position(|c| *c == Call::LookForOurs).unwrap();
        assert!(matches!(c[first + 1], Call::Sleep(Pause::Undo(0))), "{c:?}");
        assert_eq!(
            c[c.len() - 3..],
            [
                Call::Disassociate(assoc("eipassoc-1"), GiveBack::Undo),
                Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                },
                Call::Stop(Why::Stopped)
            ]
        );
    }

    /// Cut off in flight (a signal, the deadline), the call may have applied: in doubt. A look
    /// that shows the address free past EC2's bound settles it: nothing to give back.
    #[test]
    fn cut_off_in_flight_looks_until_the_bound_then_stops() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::Associate => Input::Stopped,
            Call::LookForOurs => Input::Seen(Some(cand())),
            c => well(c),
        });
        let c = calls(&r);
        let looks: Vec<_> = r
            .iter()
            .filter(|(_, c)| *c == Call::LookForOurs)
            .map(|(t, _)| *t)
            .collect();
        assert!(looks.len() > 1, "{c:?}");
        assert!(
            *looks.last().unwrap() - looks[0] >= CONSISTENCY_BOUND,
            "a free look before the bound is no answer: {looks:?}"
        );
        assert!(
            !c.iter().any(|c| matches!(c, Call::Disassociate(..))),
            "{c:?}"
        );
        assert_eq!(
            c[c.len() - 2..],
            [
                Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                },
                Call::Stop(Why::Stopped)
            ]
        );
    }

    /// No time is left for a look: stop without one (a re-run adopts it, gc frees it).
    #[test]
    fn no_time_for_a_look_stops_keeping_the_record() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::Associate | Call::LookForOurs => Input::Stopped,
            c => well(c),
        });
        assert_eq!(
            calls(&r)[5..],
            [
                Call::LookForOurs,
                Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                },
                Call::Stop(Why::Stopped)
            ]
        );
    }

    /// A claim stopped before any association went out has nothing to look for: a herd
    /// reaching its deadline costs EC2 no describe calls.
    #[test]
    fn stopped_before_associating_costs_no_look() {
        for at in [Call::TakeLease, Call::Renew, Call::StillHoldsInterface] {
            let r = run(fresh(false, false), |c, _| {
                if std::mem::discriminant(c) == std::mem::discriminant(&at) {
                    Input::Stopped
                } else {
                    well(c)
                }
            });
            let c = calls(&r);
            assert!(!c.contains(&Call::LookForOurs), "{c:?}");
            assert_eq!(last(&r), &Call::Stop(Why::Stopped), "{c:?}");
            assert_eq!(
                c.contains(&Call::ReleaseLease {
                    forget_intent: true,
                    lease_too_short: None
                }),
                at != Call::TakeLease,
                "{c:?}"
            );
        }
    }

    /// A suspect (a crashed run's): no lease, straight to the compare-and-swap; AlreadyAssociated
    /// is looked at, and free past the bound means whoever held it let go: try later.
    #[test]
    fn a_suspect_goes_straight_to_associate_and_free_past_the_bound_is_transient() {
        let r = run(fresh(true, false), |c, _| match c {
            Call::Associate => Input::Associated(AssociateAnswer::AlreadyAssociated),
            Call::Describe => Input::Seen(Some(cand())),
            c => well(c),
        });
        let c = calls(&r);
        assert_eq!(
            c[..3],
            [
                Call::Pace {
                    renewing: false,
                    waited: false
                },
                Call::StillHoldsInterface,
                Call::Associate
            ]
        );
        assert!(c.contains(&Call::Sleep(Pause::CheckTaken(0))), "{c:?}");
        assert_eq!(last(&r), &Call::Done(Outcome::Transient));
        assert!(!c.iter().any(|c| matches!(c, Call::ReleaseLease { .. })));
    }

    /// A suspect someone else holds past the bound: taken, the herd told.
    #[test]
    fn a_suspect_held_elsewhere_is_taken() {
        let r = run(fresh(true, false), |c, _| match c {
            Call::Associate => Input::Associated(AssociateAnswer::AlreadyAssociated),
            Call::Describe => Input::Seen(on("eni-2", "eipassoc-9")),
            c => well(c),
        });
        let c = calls(&r);
        assert_eq!(
            c[c.len() - 2..],
            [Call::MarkTaken, Call::Done(Outcome::Taken)]
        );
    }

    /// Validation: within EC2's bound a look showing the old state is no answer; past it, free
    /// means another association to our private IP replaced ours (never reported, given back
    /// to make sure and wake the line), elsewhere means taken (ours given back).
    #[test]
    fn validation_waits_out_stale_looks_then_gives_back_what_is_not_ours() {
        for (seen, why, outcome) in [
            (Some(cand()), GiveBack::Displaced, Outcome::Displaced),
            (
                on("eni-2", "eipassoc-9"),
                GiveBack::Elsewhere,
                Outcome::Taken,
            ),
        ] {
            let r = run(fresh(false, false), |c, _| match c {
                Call::Describe => Input::Seen(seen.clone()),
                c => well(c),
            });
            let c = calls(&r);
            let looks: Vec<_> = r
                .iter()
                .filter(|(_, c)| *c == Call::Describe)
                .map(|(t, _)| *t)
                .collect();
            assert!(looks.len() > 1 && looks[0] < CONSISTENCY_BOUND, "{c:?}");
            assert_eq!(
                c[c.len() - 3..],
                [
                    Call::Disassociate(assoc("eipassoc-1"), why),
                    Call::ReleaseLease {
                        forget_intent: true,
                        lease_too_short: None
                    },
                    Call::Done(outcome)
                ]
            );
        }
    }

    /// Gone while validating (released by hand): taken at once, ours given back.
    #[test]
    fn gone_while_validating_is_taken_at_once() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::Describe => Input::Seen(None),
            c => well(c),
        });
        assert_eq!(
            r.iter().filter(|(_, c)| *c == Call::Describe).count(),
            1,
            "{r:?}"
        );
        assert_eq!(last(&r), &Call::Done(Outcome::Taken));
    }

    #[test]
    fn stopped_while_validating_rolls_back() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::Sleep(Pause::Validation { .. }) => Input::Stopped,
            c => well(c),
        });
        assert_eq!(
            calls(&r)[r.len() - 3..],
            [
                Call::Disassociate(assoc("eipassoc-1"), GiveBack::RolledBack),
                Call::ReleaseLease {
                    forget_intent: true,
                    lease_too_short: None
                },
                Call::Stop(Why::Stopped)
            ]
        );
    }

    /// The node's own view first (no EC2 call); a node that does not answer hands over to EC2,
    /// whose bound counts from the association, not from the hand-over.
    #[test]
    fn the_nodes_view_validates_without_ec2_and_hands_over_when_silent() {
        let r = run(fresh(false, true), |c, _| well(c));
        let c = calls(&r);
        assert!(!c.contains(&Call::Describe), "{c:?}");
        match last(&r) {
            Call::Won { addr, adopted } => {
                assert!(!adopted);
                assert!(addr.held_by_me(&me(true)));
                assert_eq!(addr.association.as_ref().unwrap().id, assoc("eipassoc-1"));
            }
            other => panic!("{other:?}"),
        }

        let mut silent_at = None;
        let r = run(fresh(false, true), |c, now| match c {
            Call::LookOnNode => {
                silent_at.get_or_insert(now);
                Input::OnNode(None)
            }
            Call::Describe => Input::Seen(Some(cand())),
            c => well(c),
        });
        let looks: Vec<_> = r
            .iter()
            .filter(|(_, c)| *c == Call::Describe)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(last(&r), &Call::Done(Outcome::Displaced));
        assert!(looks.len() > 1, "{r:?}");

        // The node never shows it: EC2 takes over once the bound has passed.
        let r = run(fresh(false, true), |c, _| match c {
            Call::LookOnNode => Input::OnNode(Some(false)),
            c => well(c),
        });
        let first_ec2 = r.iter().find(|(_, c)| *c == Call::Describe).unwrap().0;
        assert!(first_ec2 >= CONSISTENCY_BOUND, "{r:?}");
        assert!(matches!(last(&r), Call::Won { adopted: false, .. }));
    }

    #[test]
    fn a_lost_or_short_lease_gives_up_before_associating() {
        for (renewed, outcome) in [
            (
                Input::Renewed {
                    held: false,
                    left: Duration::ZERO,
                },
                Outcome::Busy,
            ),
            (
                Input::Renewed {
                    held: true,
                    left: Duration::from_secs(5),
                },
                Outcome::Transient,
            ),
        ] {
            let r = run(fresh(false, false), |c, _| match c {
                Call::Renew => renewed.clone(),
                c => well(c),
            });
            let c = calls(&r);
            assert!(!c.contains(&Call::Associate), "{c:?}");
            // A short lease says so, with what was left: the driver's warning.
            let lease_too_short = match renewed {
                Input::Renewed { held: true, left } => Some(left),
                _ => None,
            };
            assert_eq!(
                c[c.len() - 2..],
                [
                    Call::ReleaseLease {
                        forget_intent: true,
                        lease_too_short
                    },
                    Call::Done(outcome)
                ]
            );
        }
        let r = run(fresh(false, false), |c, _| match c {
            Call::Pace { .. } => Input::Paced(false),
            c => well(c),
        });
        assert_eq!(last(&r), &Call::Done(Outcome::Busy));
    }

    #[test]
    fn the_lease_tells_busy_masked_and_unavailable_without_a_call_to_ec2() {
        for (l, o) in [
            (Leased::Busy, Outcome::Busy),
            (Leased::Masked(3 * MS), Outcome::Masked(3 * MS)),
            (Leased::Unavailable, Outcome::Transient),
        ] {
            let r = run(fresh(false, false), |_, _| Input::Leased(l));
            assert_eq!(calls(&r), vec![Call::TakeLease, Call::Done(o)]);
        }
    }

    /// Throttled: the herd's shared pace spaces the retry (no backoff of our own); alone (no
    /// Redis), back off. Either way the retry number grows.
    #[test]
    fn throttled_backs_off_alone_only() {
        for alone in [false, true] {
            let mut n = 0;
            let r = run(fresh(false, false), |c, _| match c {
                Call::Associate if n < 2 => {
                    n += 1;
                    Input::Associated(AssociateAnswer::Passing {
                        maybe_applied: false,
                        throttled: true,
                    })
                }
                Call::Throttled => Input::Throttled { alone },
                c => well(c),
            });
            let backoffs: Vec<_> = calls(&r)
                .into_iter()
                .filter_map(|c| match c {
                    Call::Sleep(Pause::Backoff(n)) => Some(n),
                    _ => None,
                })
                .collect();
            assert_eq!(backoffs, if alone { vec![0, 1] } else { vec![] });
            assert!(matches!(last(&r), Call::Won { .. }));
        }
    }

    /// The interface lease lost before associating: start over. In doubt (a suspect, or an
    /// earlier try's answer lost) too, without looking: another claim of this interface may
    /// hold it now, and what our private IP shows may be its association (giving that back
    /// was the bug eipool-model found: two interfaces reported one address).
    #[test]
    fn the_interface_lost_stops_and_never_gives_back_what_our_private_ip_shows() {
        let r = run(fresh(false, false), |c, _| match c {
            Call::StillHoldsInterface => Input::Interface(false),
            c => well(c),
        });
        assert_eq!(
            calls(&r)[r.len() - 2..],
            [
                Call::ReleaseLease {
                    forget_intent: true,
                    lease_too_short: None
                },
                Call::Stop(Why::InterfaceLost)
            ]
        );
        for suspect in [true, false] {
            let mut n = 0;
            let r = run(fresh(suspect, false), |c, _| match c {
                // Not a suspect: the first answer is lost.
                Call::Associate => lost(),
                Call::StillHoldsInterface => {
                    n += 1;
                    Input::Interface(!suspect && n == 1)
                }
                c => well(c),
            });
            let c = calls(&r);
            assert!(!c.contains(&Call::LookForOurs), "{c:?}");
            assert!(
                !c.iter().any(|c| matches!(c, Call::Disassociate(..))),
                "{c:?}"
            );
            assert_eq!(last(&r), &Call::Stop(Why::InterfaceLost), "{c:?}");
            assert_eq!(
                c.contains(&Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                }),
                !suspect,
                "the record of what was in doubt stays: {c:?}"
            );
        }
    }

    /// Stopped (deadline, signal) while looking at who holds an address it may have
    /// associated (`CheckTaken`, in doubt): it must still look for ours and give it back, keeping
    /// the interface's record. (Found by the hostile review: with `(CheckTaken, Stopped)` sent to
    /// `release(true, Stop)`, no undo and the record forgotten, every other test passed.)
    #[test]
    fn stopped_while_looking_who_holds_it_looks_for_ours_and_keeps_the_record() {
        let mut lost = lost_then_already_associated();
        let r = run(fresh(false, false), |c, _| match c {
            Call::Associate => lost(),
            // Stale: free before the bound, so the holder look sleeps; the stop comes there.
            Call::Describe => Input::Seen(Some(cand())),
            Call::Sleep(Pause::CheckTaken(_)) => Input::Stopped,
            c => well(c),
        });
        let c = calls(&r);
        assert!(c.contains(&Call::LookForOurs), "{c:?}");
        assert_eq!(
            c[c.len() - 3..],
            [
                Call::Disassociate(assoc("eipassoc-1"), GiveBack::Undo),
                Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                },
                Call::Stop(Why::Stopped)
            ],
            "{c:?}"
        );
    }

    /// The node's view that stops answering hands over to EC2, whose bound counts from the
    /// association (`since`), not from the hand-over. (Found by the hostile review: with
    /// `OnNode(None) => self.validate(now, 0)` every other test passed.)
    #[test]
    fn handing_over_to_ec2_counts_the_bound_from_the_association() {
        let mut associated = None;
        let r = run(fresh(false, true), |c, now| match c {
            Call::Associate => {
                associated = Some(now);
                well(c)
            }
            // The node shows nothing for 4 s, then stops answering.
            Call::LookOnNode if now < Duration::from_secs(4) => Input::OnNode(Some(false)),
            Call::LookOnNode => Input::OnNode(None),
            // EC2 shows it free: displaced, once the bound has passed since the association.
            Call::Describe => Input::Seen(Some(cand())),
            c => well(c),
        });
        assert_eq!(last(&r), &Call::Done(Outcome::Displaced));
        let decided = r.iter().rfind(|(_, c)| *c == Call::Describe).unwrap().0;
        // The last look is the first one at or past the bound since the association (the
        // longest wait between looks is 2 s), not past the bound since the hand-over (≥ 9 s).
        assert!(
            decided - associated.unwrap() < CONSISTENCY_BOUND + Duration::from_secs(2),
            "{r:?}"
        );
    }

    /// (Found by the hostile review.) A claim paused past its interface lease, in doubt (its
    /// suspect, or a lost answer), then stopped by a signal or its deadline (in the pace, the
    /// backoff or the holder look), looks for "ours" and may find a re-run's association on
    /// our interface and private IP: it gives back only after checking that it still holds
    /// the interface lease, and gives back nothing when it does not.
    #[test]
    fn a_stop_in_doubt_gives_back_only_while_the_interface_lease_holds() {
        for suspect in [true, false] {
            let r = run(fresh(suspect, false), |c, _| match c {
                // The suspect: the signal comes in the pace, before any call went out.
                Call::Pace { .. } if suspect => Input::Stopped,
                // Not a suspect: the answer is lost, the signal comes in the backoff.
                Call::Associate => lost(),
                Call::Sleep(Pause::Backoff(_)) => Input::Stopped,
                // Meanwhile a re-run of this interface associated the candidate (and reported it).
                Call::LookForOurs => Input::Seen(on("eni-1", "eipassoc-9")),
                c => well(c),
            });
            let c = calls(&r);
            let looked = c.iter().position(|c| *c == Call::LookForOurs).unwrap();
            let gave = c
                .iter()
                .position(|c| matches!(c, Call::Disassociate(_, GiveBack::Undo)))
                .expect("the interface lease holds: gives back");
            assert_eq!(c[gave - 1], Call::MayGiveBack, "suspect {suspect}: {c:?}");
            assert!(looked < gave);
            // The interface lease lost meanwhile: gives back nothing, keeps the record.
            let r = run(fresh(suspect, false), |c, _| match c {
                Call::Pace { .. } if suspect => Input::Stopped,
                Call::Associate => lost(),
                Call::Sleep(Pause::Backoff(_)) => Input::Stopped,
                Call::LookForOurs => Input::Seen(on("eni-1", "eipassoc-9")),
                Call::MayGiveBack => Input::Interface(false),
                c => well(c),
            });
            let c = calls(&r);
            assert!(
                !c.iter().any(|c| matches!(c, Call::Disassociate(..))),
                "{c:?}"
            );
            assert_eq!(last(&r), &Call::Stop(Why::Stopped));
            assert_eq!(
                c.contains(&Call::ReleaseLease {
                    forget_intent: false,
                    lease_too_short: None
                }),
                !suspect,
                "{c:?}"
            );
        }
    }

    /// A random answer a driver could give to `c`.
    fn answer(c: &Call, rng: &mut rand::rngs::StdRng, shows: &[Option<Address>]) -> Input {
        use rand::Rng;
        match c {
            Call::TakeLease => Input::Leased(match rng.random_range(0..5) {
                0 => Leased::Got,
                1 => Leased::WithoutRedis,
                2 => Leased::Busy,
                3 => Leased::Masked(MS),
                _ => Leased::Unavailable,
            }),
            // Only a lease renewed while waiting can be lost meanwhile.
            Call::Pace { renewing, .. } => Input::Paced(!renewing || rng.random_bool(0.9)),
            Call::Renew => Input::Renewed {
                held: rng.random_bool(0.9),
                left: Duration::from_secs(rng.random_range(0..30)),
            },
            Call::StillHoldsInterface => Input::Interface(rng.random_bool(0.95)),
            Call::MayGiveBack if rng.random_bool(0.05) => Input::Stopped,
            Call::MayGiveBack => Input::Interface(rng.random_bool(0.9)),
            Call::Associate => match rng.random_range(0..6) {
                0 => Input::Stopped,
                1 => Input::Associated(AssociateAnswer::Ok(assoc("eipassoc-1"))),
                2 => Input::Associated(AssociateAnswer::AlreadyAssociated),
                3 => Input::Associated(AssociateAnswer::NotFound),
                4 => Input::Associated(AssociateAnswer::Passing {
                    maybe_applied: rng.random(),
                    throttled: rng.random(),
                }),
                _ => Input::Associated(AssociateAnswer::Refused),
            },
            Call::Throttled => Input::Throttled {
                alone: rng.random(),
            },
            Call::Sleep(_) if rng.random_bool(0.05) => Input::Stopped,
            Call::Sleep(_) => Input::Slept,
            Call::Describe | Call::LookForOurs if rng.random_bool(0.05) => Input::Stopped,
            Call::Describe | Call::LookForOurs => {
                Input::Seen(shows[rng.random_range(0..shows.len())].clone())
            }
            Call::LookOnNode => Input::OnNode(match rng.random_range(0..3) {
                0 => None,
                n => Some(n == 1),
            }),
            _ => Input::Done,
        }
    }

    /// Any answers at all, in any order a driver could give them: the attempt ends; it
    /// associates only right after checking the interface lease; once an association of ours
    /// may be on the address (one was answered, an answer was lost, or a call was cut off in
    /// flight) it ends won, or gives it back, or looks at EC2 (who holds it; for ours at the
    /// end), or EC2 said the allocation is gone, or it starts over (the interface lease lost),
    /// or, stopping, it asks whether it still holds the interface lease before giving back; a lease it took is given back unless it won.
    #[test]
    fn any_answers_end_with_nothing_of_ours_left_unless_won() {
        use proptest::prelude::*;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let shows = [
            Some(cand()),
            on("eni-1", "eipassoc-1"),
            on("eni-2", "eipassoc-9"),
            None,
        ];
        crate::pure::tests_runner("attempt machine", 2048)
            .run(
                &(any::<u64>(), any::<[bool; 3]>()),
                |(seed, [suspect, mac, herd])| {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let waited = rng.random();
                    let m = Attempt::new(cand(), me(mac), suspect, waited, herd, 5000 * MS);
                    let (mut leased, mut doubt, mut gone, mut n) = (false, None, false, 0);
                    let r = run(m, |c, _| {
                        n += 1;
                        let a = answer(c, &mut rng, &shows);
                        match (c, &a) {
                            (Call::TakeLease, Input::Leased(Leased::Got)) => leased = true,
                            (
                                Call::Associate,
                                Input::Stopped
                                | Input::Associated(
                                    AssociateAnswer::Ok(_)
                                    | AssociateAnswer::Passing {
                                        maybe_applied: true,
                                        ..
                                    },
                                ),
                            ) => {
                                doubt.get_or_insert(n);
                            }
                            (Call::Associate, Input::Associated(AssociateAnswer::NotFound)) => {
                                gone |= doubt.is_some()
                            }
                            _ => {}
                        }
                        a
                    });
                    let c = calls(&r);
                    let won = matches!(last(&r), Call::Won { .. });
                    for (i, call) in c.iter().enumerate() {
                        if *call == Call::Associate {
                            prop_assert_eq!(&c[i - 1], &Call::StillHoldsInterface, "{:?}", c);
                        }
                    }
                    // The interface lease lost: the claim starts over, and adopts ours then.
                    let again = *last(&r) == Call::Stop(Why::InterfaceLost);
                    if let (false, Some(i)) = (won, doubt) {
                        let settled = gone
                            || again
                            || c[i..].iter().any(|c| {
                                matches!(
                                    c,
                                    Call::Disassociate(..)
                                        | Call::LookForOurs
                                        | Call::Describe
                                        | Call::MayGiveBack
                                )
                            });
                        prop_assert!(settled, "{:?}", c);
                    }
                    let released = c.iter().any(|c| matches!(c, Call::ReleaseLease { .. }));
                    prop_assert_eq!(released, leased && !won, "{:?}", c);
                    Ok(())
                },
            )
            .unwrap();
    }

    /// Who EC2 says holds the candidate, in [`any_world_leaves_nothing_of_ours_unless_won`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Held {
        Free,
        Ours,
        Other,
    }

    /// EC2's view of the candidate: who holds it, and who held it before the last change, at
    /// `changed` (a look within the consistency bound of it may show that).
    struct Ec2 {
        held: Held,
        before: Held,
        changed: Duration,
    }

    impl Ec2 {
        fn set(&mut self, to: Held, now: Duration) {
            self.before = self.held;
            self.held = to;
            self.changed = now;
        }
    }

    /// A small world answering the machine truthfully: EC2 holds the candidate as the calls
    /// made it (AssociateAddress applies, or not, when its answer is lost or cut off in flight),
    /// and a look within EC2's consistency bound of a change may show the state before it. Any
    /// call may fail or be stopped. Then: a win is on our interface; no win leaves our
    /// association on the address, unless the claim lost its interface lease (another claim of
    /// it may hold the address now) or no time was left to look or give back.
    #[test]
    fn any_world_leaves_nothing_of_ours_unless_won() {
        use proptest::prelude::*;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        crate::pure::tests_runner("attempt machine in a world", 2048)
            .run(
                &(any::<u64>(), any::<[bool; 4]>()),
                |(seed, [suspect, mac, herd, taken])| {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let first = if taken { Held::Other } else { Held::Free };
                    let mut ec2 = Ec2 {
                        held: first,
                        before: first,
                        changed: Duration::ZERO,
                    };
                    let (mut lost_interface, mut out_of_time) = (false, false);
                    let shown = |h: Held| match h {
                        Held::Free => Some(cand()),
                        Held::Ours => on("eni-1", "eipassoc-1"),
                        Held::Other => on("eni-2", "eipassoc-9"),
                    };
                    let waited = rng.random();
                    let m = Attempt::new(cand(), me(mac), suspect, waited, herd, 5000 * MS);
                    let r = run(m, |c, now| {
                        let stale = now < ec2.changed + CONSISTENCY_BOUND && rng.random_bool(0.5);
                        let look = if stale { ec2.before } else { ec2.held };
                        match c {
                            Call::StillHoldsInterface | Call::MayGiveBack
                                if rng.random_bool(0.05) =>
                            {
                                lost_interface = true;
                                Input::Interface(false)
                            }
                            Call::MayGiveBack | Call::LookForOurs if rng.random_bool(0.05) => {
                                out_of_time = true;
                                Input::Stopped
                            }
                            Call::Sleep(Pause::Undo(_)) if rng.random_bool(0.05) => {
                                out_of_time = true;
                                Input::Stopped
                            }
                            Call::StillHoldsInterface | Call::MayGiveBack => Input::Interface(true),
                            Call::Associate if ec2.held != Held::Free => {
                                Input::Associated(AssociateAnswer::AlreadyAssociated)
                            }
                            Call::Associate => {
                                let applied = rng.random_bool(0.6);
                                let answer = match rng.random_range(0..4) {
                                    0 => Input::Stopped,
                                    1 if applied => lost(),
                                    1 | 2 => Input::Associated(AssociateAnswer::Passing {
                                        maybe_applied: false,
                                        throttled: rng.random(),
                                    }),
                                    _ => {
                                        Input::Associated(AssociateAnswer::Ok(assoc("eipassoc-1")))
                                    }
                                };
                                let applies = match &answer {
                                    Input::Associated(AssociateAnswer::Ok(_)) => true,
                                    Input::Associated(AssociateAnswer::Passing {
                                        maybe_applied,
                                        ..
                                    }) => *maybe_applied,
                                    _ => applied,
                                };
                                if applies {
                                    ec2.set(Held::Ours, now);
                                }
                                answer
                            }
                            Call::Describe | Call::LookForOurs => Input::Seen(shown(look)),
                            Call::LookOnNode => Input::OnNode(match rng.random_range(0..3) {
                                0 => None,
                                _ => Some(look == Held::Ours),
                            }),
                            Call::Disassociate(id, _) => {
                                if ec2.held == Held::Ours && *id == assoc("eipassoc-1") {
                                    ec2.set(Held::Free, now);
                                }
                                Input::Done
                            }
                            Call::Sleep(p) if !p.on_cleanup() && rng.random_bool(0.05) => {
                                Input::Stopped
                            }
                            Call::Sleep(_) => Input::Slept,
                            c => answer(c, &mut rng, &[]),
                        }
                    });
                    match last(&r) {
                        Call::Won { addr, .. } => {
                            prop_assert!(addr.held_by_me(&me(mac)), "{:?}", r);
                            prop_assert_eq!(ec2.held, Held::Ours, "{:?}", r);
                        }
                        _ => prop_assert!(
                            ec2.held != Held::Ours || lost_interface || out_of_time,
                            "ours left behind: {:?}",
                            r
                        ),
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}

//! A bounded model of the pool's waiting line, checked exhaustively by `stateright`.
//!
//! The world is what the line's Redis scripts hold (`adapters/redis/scripts.rs`: the waiters in
//! ticket order, each one's last sign of life, the pool's count of freed addresses, and the next
//! ticket, which is Redis's time and so survives a flush) and the pool's [`ADDRESSES`] addresses
//! as EC2 shows them. [`WAITERS`] servers found the pool exhausted and wait, each arriving at any
//! moment. **Each waiter is eipool's line machine** (`eipool::decisions::line::Line`, the one
//! `Waiter::turn` drives): the model answers its calls from the world (`LineModel::round`: a
//! join, an ask, the head's look at the pool, a sleep) and has no function deciding what a waiter
//! does next.
//!
//! When the machine says `Turn`, the waiter claims, and the claim is kept abstract: it takes a
//! free address if EC2 shows one (and leaves the line), else it waits again through the machine,
//! as `claim_waiting` and the agent do. The claim itself is not modelled again here: the claim,
//! passes and attempt machines are checked by [`crate::ClaimModel`] (two claims racing for one
//! address, EC2's answers, Redis's markers); what this model checks is who claims, and when.
//!
//! **Time** is a clock of [`TICK`]s, kept as a window (`eipool`'s `Line::rebased`): the
//! machines are always fed the same `now`, and each tick moves every time they keep back a tick,
//! clamped at the window's start; the world keeps ages (ticks since a waiter's last sign of
//! life, capped past [`LINE_GHOST_AFTER`]; ticks a waiter waited while an address was free). A
//! tick is longer than a poll (the machine's 250 ms sleep ends at the next tick, as an overrun
//! sleep would), and there are two waiters: 250 ms ticks with three waiters passed 14 million
//! unique states, 1 s ticks with three waiters and a 2 s backstop gave 5 million. A tick comes only when every live waiter sleeps: a live
//! waiter asks once a tick, so it is never taken for dead (no pause is modelled). The world's events: an address freed (an `eipool release`, counted in
//! Redis when it answers, or by hand, not counted), a free address taken outside the line (a
//! hand association, a newcomer). Faults, one per run: a waiter killed (it stops asking; Redis
//! drops it once its silence passes the ghost bound), Redis flushed (the line and the count
//! lost: each waiter joins again with its ticket), Redis silent (then back, once the fault is
//! spent).

use std::fmt;
use std::time::Duration;

use eipool::decisions::line::{
    Call, Input, Line, Mutation, Place, CLAIM_LINE_BACKSTOP, LINE_GHOST_AFTER, LINE_WATCH,
};
use stateright::{Model, Property};

/// Servers waiting in the line.
pub const WAITERS: usize = 2;
/// Pool addresses (each held outside the line at first: the pool is exhausted).
pub const ADDRESSES: usize = 2;
/// A waiter's backstop while Redis is silent (`claim --wait`'s).
const BACKSTOP: Duration = CLAIM_LINE_BACKSTOP;
/// The model's clock ticks by this much.
pub const TICK: Duration = Duration::from_secs(1);

/// `d` in ticks.
fn ticks(d: Duration) -> u8 {
    (d.as_millis() / TICK.as_millis()) as u8
}

/// The machines' `now`: the clock's window, as long as the longest bound they compare a time
/// with (see `Line::rebased`).
fn now() -> Duration {
    BACKSTOP.max(LINE_WATCH)
}

/// Whether a waiter silent for `silent` ticks is dead to Redis (the scripts' `line_dead`).
fn dead(silent: u8) -> bool {
    TICK * u32::from(silent) > LINE_GHOST_AFTER
}

/// How long a live waiter may wait while an address is free: the backstop (Redis silent: the
/// turn of a waiter whose wait just began), then, when Redis answers again just before it, the
/// head's look at the pool ([`LINE_WATCH`] from its wait's start: an address freed by hand moves
/// no count), and a tick for the look's round. With Redis answering throughout, a dead head is
/// dropped past [`LINE_GHOST_AFTER`] and the next claims within a tick or two, well within it.
/// The checker found this bound tight (a tick less fails: Redis silent for four ticks, then a
/// newcomer at the head). A waiter that waits forever while an address is free would pass any
/// bound: the world's count of it is capped just past this one, so a cycle reaches the cap.
pub fn starvation_bound() -> Duration {
    BACKSTOP + LINE_WATCH + TICK
}

/// What the checker explores.
#[derive(Debug, Clone)]
pub struct LineModel {
    /// How many faults (a waiter killed, Redis flushed, Redis silent) one run may suffer.
    pub faults: u8,
    /// The line machine broken on purpose, if at all.
    pub mutation: Option<Mutation>,
}

/// One pool address, as EC2 shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Held by a server outside the line.
    Outside,
    /// Free.
    Free,
    /// Taken, once free, by someone outside the line (by hand, a newcomer's claim).
    TakenOutside,
    /// Claimed by this waiter.
    Waiter(u8),
}

/// The line as Redis holds it (`line`, `line:beats`, `line:freed`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineRedis {
    /// Whether it answers.
    pub up: bool,
    /// The waiters present, (ticket, waiter), in ticket order.
    pub line: Vec<(u8, u8)>,
    /// Per waiter present: ticks since its last sign of life (capped past the ghost bound).
    pub silent: [u8; WAITERS],
    /// The pool's count of freed addresses.
    pub freed: u8,
    /// The next new ticket: Redis's time, so it survives a flush.
    pub next_ticket: u8,
}

/// Where a waiter is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not waiting yet (its claim has not found the pool exhausted).
    Away,
    /// Waiting: eipool's line machine and the call it asked for (`asleep` until the next tick
    /// when it is a sleep).
    Waiting {
        m: Box<Line>,
        call: Call,
        asleep: bool,
    },
    /// Claimed this address, and left the line.
    Holds(u8),
    /// Killed.
    Dead,
}

/// One waiting server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Waiter {
    pub phase: Phase,
    /// The ticket Redis gave it when it first joined: when it came.
    pub came: Option<u8>,
    /// The freed count Redis answered it at its last try (a turn, or the head's look), or at
    /// its first answered ask: a turn must have a reason since.
    pub count_at_try: Option<u8>,
}

/// The whole world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineWorld {
    pub pool: [Slot; ADDRESSES],
    pub redis: LineRedis,
    pub waiters: Vec<Waiter>,
    /// Per waiter: ticks it has waited, alive, while an address was free.
    pub starved: [u8; WAITERS],
    pub faults_left: u8,
    /// A waiter claimed with Redis answering while it was not the head.
    pub not_head_claimed: bool,
    /// A waiter got an address with Redis answering while a live waiter that came before it
    /// waited in the line.
    pub out_of_turn: bool,
    /// A waiter claimed with Redis answering, though no address was freed since its last try
    /// and the pool showed none free.
    pub turn_without_cause: bool,
}

/// A step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Waiter `w`'s claim found the pool exhausted: it starts waiting.
    Arrive { w: u8 },
    /// Waiter `w`, awake, answers its machine's calls up to its next sleep or claim.
    Step { w: u8 },
    /// A poll's time passes (every live waiter sleeps).
    Tick,
    /// Address `a`, held outside, is released by eipool (counted in Redis, if it answers).
    Release { a: u8 },
    /// Address `a`, held outside, is freed by hand (not counted).
    FreeByHand { a: u8 },
    /// Free address `a` is taken outside the line.
    TakeOutside { a: u8 },
    /// Waiter `w` is killed.
    Kill { w: u8 },
    /// Redis loses everything.
    FlushRedis,
    /// Redis stops or starts answering.
    ToggleRedis,
}

impl LineRedis {
    fn place_of(&self, w: u8) -> Option<usize> {
        self.line.iter().position(|(_, v)| *v == w)
    }

    fn drop_at(&mut self, i: usize) {
        let (_, v) = self.line.remove(i);
        self.silent[v as usize] = 0;
    }

    /// `LINE_JOIN_LUA`: a waiter present keeps its ticket, one absent comes back with the
    /// ticket it had, or gets a new one.
    fn join(&mut self, w: u8, ticket: Option<u64>) -> u8 {
        let t = match self.place_of(w) {
            Some(i) => self.line[i].0,
            None => {
                let t = match ticket {
                    Some(t) => u8::try_from(t).expect("a model ticket"),
                    None => {
                        self.next_ticket += 1;
                        self.next_ticket - 1
                    }
                };
                let at = self.line.partition_point(|(u, _)| *u < t);
                self.line.insert(at, (t, w));
                t
            }
        };
        self.silent[w as usize] = 0;
        t
    }

    /// `LINE_ASK_LUA`: the heartbeat, the dead dropped from the front (from anywhere when the
    /// head asks), and the place among those present.
    fn ask(&mut self, w: u8) -> Place {
        let freed = u64::from(self.freed);
        if self.place_of(w).is_none() {
            return Place { place: None, freed };
        }
        self.silent[w as usize] = 0;
        while self
            .line
            .first()
            .is_some_and(|(_, v)| dead(self.silent[*v as usize]))
        {
            self.drop_at(0);
        }
        let rank = self.place_of(w).unwrap();
        if rank == 0 {
            let mut i = 0;
            while i < self.line.len() {
                if dead(self.silent[self.line[i].1 as usize]) {
                    self.drop_at(i);
                } else {
                    i += 1;
                }
            }
        }
        Place {
            place: Some(rank as u64),
            freed,
        }
    }

    /// Whether `w` is the head: present, and everyone ahead dead.
    fn is_head(&self, w: u8) -> bool {
        self.place_of(w).is_some_and(|i| {
            self.line[..i]
                .iter()
                .all(|(_, v)| dead(self.silent[*v as usize]))
        })
    }
}

impl LineWorld {
    fn free(&self) -> Option<u8> {
        (0..ADDRESSES as u8).find(|a| self.pool[*a as usize] == Slot::Free)
    }

    /// Whether every live waiter sleeps: time may pass.
    fn all_asleep(&self) -> bool {
        self.waiters.iter().all(|w| match &w.phase {
            Phase::Waiting { asleep, .. } => *asleep,
            _ => true,
        })
    }
}

impl LineModel {
    /// The model with `faults` faults and no mutation.
    pub fn new(faults: u8) -> Self {
        LineModel {
            faults,
            mutation: None,
        }
    }

    /// The same, with the line machine broken by `mutation`.
    pub fn mutated(faults: u8, mutation: Mutation) -> Self {
        LineModel {
            mutation: Some(mutation),
            ..LineModel::new(faults)
        }
    }

    /// Waiter `w`'s round: answer its machine's pending `call` from the world (a sleep it
    /// wakes from: `Slept`), then each call it makes, up to its next sleep or its claim. The
    /// machine decides; this answers.
    fn round(&self, s: &mut LineWorld, w: u8, mut m: Line, mut call: Call) -> Phase {
        // The freed count Redis last answered this waiter, this round.
        let mut told: Option<u8> = None;
        let mut woken = false;
        loop {
            let input = match call {
                Call::Sleep(_) if !woken => Input::Slept,
                Call::Sleep(pause) => {
                    assert!(pause <= TICK, "a sleep ends at the next tick: {pause:?}");
                    return Phase::Waiting {
                        m: Box::new(m),
                        call,
                        asleep: true,
                    };
                }
                Call::Join { ticket } => Input::Joined(s.redis.up.then(|| {
                    let t = s.redis.join(w, ticket);
                    s.waiters[w as usize].came.get_or_insert(t);
                    u64::from(t)
                })),
                Call::Ask => Input::Asked(s.redis.up.then(|| {
                    let place = s.redis.ask(w);
                    let freed = place.freed as u8;
                    told = Some(freed);
                    s.waiters[w as usize].count_at_try.get_or_insert(freed);
                    place
                })),
                Call::Look => {
                    s.waiters[w as usize].count_at_try = told;
                    Input::Looked(s.free().is_some())
                }
                Call::Turn => unreachable!("a turn is answered where it is made"),
            };
            woken = true;
            call = m.step(input, now());
            if call != Call::Turn {
                continue;
            }
            // A turn at the backstop (Redis silent) is every waiter's: only a turn Redis
            // answered for is judged.
            let answered = !matches!(input, Input::Joined(None) | Input::Asked(None));
            if answered {
                self.judge_turn(s, w, told);
            }
            if let Some(a) = s.free() {
                if answered {
                    self.judge_served(s, w);
                }
                s.pool[a as usize] = Slot::Waiter(w);
                m.left();
                if s.redis.up {
                    if let Some(i) = s.redis.place_of(w) {
                        s.redis.drop_at(i);
                    }
                }
                return Phase::Holds(a);
            }
            // Nothing free: the claim says exhausted, and the waiter waits again; the claim
            // took its time, so the rest is its next step.
            let call = m.step(Input::Start { backstop: BACKSTOP }, now());
            return Phase::Waiting {
                m: Box::new(m),
                call,
                asleep: false,
            };
        }
    }

    /// A turn with Redis answering: only the head's, and only with a reason.
    fn judge_turn(&self, s: &mut LineWorld, w: u8, told: Option<u8>) {
        if !s.redis.is_head(w) {
            s.not_head_claimed = true;
        }
        let me = &mut s.waiters[w as usize];
        let freed_since = told.is_some() && told != me.count_at_try;
        let shows_free = s.pool.contains(&Slot::Free);
        if !freed_since && !shows_free {
            s.turn_without_cause = true;
        }
        if told.is_some() {
            me.count_at_try = told;
        }
    }

    /// `w` gets an address with Redis answering: no live waiter that came before it waits in
    /// the line.
    fn judge_served(&self, s: &mut LineWorld, w: u8) {
        let mine = s.waiters[w as usize].came;
        let before_me = s.waiters.iter().enumerate().any(|(v, other)| {
            v != w as usize
                && matches!(other.phase, Phase::Waiting { .. })
                && other.came.is_some_and(|c| mine.is_some_and(|m| c < m))
                && s.redis.place_of(v as u8).is_some()
        });
        if before_me {
            s.out_of_turn = true;
        }
    }
}

impl Model for LineModel {
    type State = LineWorld;
    type Action = Action;

    fn init_states(&self) -> Vec<LineWorld> {
        vec![LineWorld {
            pool: [Slot::Outside; ADDRESSES],
            redis: LineRedis {
                up: true,
                line: Vec::new(),
                silent: [0; WAITERS],
                freed: 0,
                next_ticket: 1,
            },
            waiters: (0..WAITERS)
                .map(|_| Waiter {
                    phase: Phase::Away,
                    came: None,
                    count_at_try: None,
                })
                .collect(),
            starved: [0; WAITERS],
            faults_left: self.faults,
            not_head_claimed: false,
            out_of_turn: false,
            turn_without_cause: false,
        }]
    }

    fn actions(&self, s: &LineWorld, actions: &mut Vec<Action>) {
        for (w, waiter) in s.waiters.iter().enumerate() {
            let w = w as u8;
            match &waiter.phase {
                Phase::Away => actions.push(Action::Arrive { w }),
                Phase::Waiting { asleep, .. } => {
                    if !asleep {
                        actions.push(Action::Step { w });
                    }
                    if s.faults_left > 0 {
                        actions.push(Action::Kill { w });
                    }
                }
                Phase::Holds(_) | Phase::Dead => {}
            }
        }
        if s.all_asleep() {
            actions.push(Action::Tick);
        }
        for (a, slot) in s.pool.iter().enumerate() {
            let a = a as u8;
            match slot {
                Slot::Outside => {
                    actions.push(Action::Release { a });
                    actions.push(Action::FreeByHand { a });
                }
                Slot::Free => actions.push(Action::TakeOutside { a }),
                Slot::TakenOutside | Slot::Waiter(_) => {}
            }
        }
        if s.faults_left > 0 {
            actions.push(Action::FlushRedis);
            actions.push(Action::ToggleRedis);
        } else if !s.redis.up {
            // Faults stop: Redis comes back.
            actions.push(Action::ToggleRedis);
        }
    }

    fn next_state(&self, last: &LineWorld, action: Action) -> Option<LineWorld> {
        let mut s = last.clone();
        match action {
            Action::Arrive { w } => {
                let mut m = Line::new();
                if let Some(mutation) = self.mutation {
                    m = m.mutated(mutation);
                }
                let call = m.step(Input::Start { backstop: BACKSTOP }, now());
                s.waiters[w as usize].phase = self.round(&mut s, w, m, call);
            }
            Action::Step { w } => {
                let Phase::Waiting { m, call, .. } = s.waiters[w as usize].phase.clone() else {
                    return None;
                };
                s.waiters[w as usize].phase = self.round(&mut s, w, *m, call);
            }
            Action::Tick => {
                let cap = ticks(LINE_GHOST_AFTER) + 1;
                for &(_, v) in &s.redis.line {
                    let silent = &mut s.redis.silent[v as usize];
                    *silent = (*silent + 1).min(cap);
                }
                for waiter in &mut s.waiters {
                    if let Phase::Waiting { m, asleep, .. } = &mut waiter.phase {
                        **m = m.as_ref().clone().rebased(TICK);
                        *asleep = false;
                    }
                }
                let cap = ticks(starvation_bound()) + 1;
                let some_free = s.free().is_some();
                for (starved, waiter) in s.starved.iter_mut().zip(&s.waiters) {
                    if matches!(waiter.phase, Phase::Waiting { .. }) && some_free {
                        *starved = (*starved + 1).min(cap);
                    }
                }
            }
            Action::Release { a } => {
                s.pool[a as usize] = Slot::Free;
                if s.redis.up {
                    s.redis.freed += 1;
                }
            }
            Action::FreeByHand { a } => s.pool[a as usize] = Slot::Free,
            Action::TakeOutside { a } => s.pool[a as usize] = Slot::TakenOutside,
            Action::Kill { w } => {
                s.faults_left -= 1;
                s.waiters[w as usize].phase = Phase::Dead;
            }
            Action::FlushRedis => {
                s.faults_left -= 1;
                s.redis = LineRedis {
                    up: s.redis.up,
                    line: Vec::new(),
                    silent: [0; WAITERS],
                    freed: 0,
                    next_ticket: s.redis.next_ticket,
                };
            }
            Action::ToggleRedis => {
                if s.redis.up {
                    s.faults_left -= 1;
                }
                s.redis.up = !s.redis.up;
            }
        }
        let none_free = s.free().is_none();
        for (starved, waiter) in s.starved.iter_mut().zip(&s.waiters) {
            if !matches!(waiter.phase, Phase::Waiting { .. }) || none_free {
                *starved = 0;
            }
        }
        (s != *last).then_some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("only the head claims", |_, s: &LineWorld| {
                !s.not_head_claimed
            }),
            Property::always("first come, first served", |_, s: &LineWorld| {
                !s.out_of_turn
            }),
            Property::always(
                "a turn only when an address was freed since the last try or shows free",
                |_, s: &LineWorld| !s.turn_without_cause,
            ),
            Property::always(
                "a dead waiter never blocks: no address stays free past the bound while a live waiter waits",
                |_, s: &LineWorld| s.starved.iter().all(|t| TICK * u32::from(*t) <= starvation_bound()),
            ),
            // That the properties above are not held vacuously: the states they speak of are
            // reached (each `sometimes` must find an example).
            Property::sometimes("reachable: every waiter holds an address", |_, s: &LineWorld| {
                s.waiters.iter().all(|w| matches!(w.phase, Phase::Holds(_)))
            }),
            Property::sometimes(
                "reachable: a dead waiter dropped from the line while another waits",
                |_, s: &LineWorld| {
                    let waiting = |w: &Waiter| matches!(w.phase, Phase::Waiting { .. });
                    s.waiters.iter().enumerate().any(|(d, w)| {
                        w.phase == Phase::Dead
                            && !s.redis.line.iter().any(|&(_, x)| usize::from(x) == d)
                    }) && s.waiters.iter().any(waiting)
                },
            ),
            Property::sometimes(
                "reachable: a waiter waits while Redis is silent",
                |_, s: &LineWorld| {
                    !s.redis.up
                        && s.waiters
                            .iter()
                            .any(|w| matches!(w.phase, Phase::Waiting { .. }))
                },
            ),
        ]
    }

    fn format_action(&self, action: &Action) -> String {
        format!("{action:?}")
    }
}

impl fmt::Display for LineWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool: Vec<String> = self
            .pool
            .iter()
            .enumerate()
            .map(|(a, slot)| match slot {
                Slot::Outside => format!("addr{a} held outside"),
                Slot::Free => format!("addr{a} FREE"),
                Slot::TakenOutside => format!("addr{a} taken outside"),
                Slot::Waiter(w) => format!("addr{a}→w{w}"),
            })
            .collect();
        let line: Vec<String> = self
            .redis
            .line
            .iter()
            .map(|(t, w)| format!("w{w}#{t} (silent {})", self.redis.silent[*w as usize]))
            .collect();
        let waiters: Vec<String> = self
            .waiters
            .iter()
            .enumerate()
            .map(|(w, waiter)| {
                let phase = match &waiter.phase {
                    Phase::Away => "away".to_string(),
                    Phase::Waiting {
                        call, asleep: true, ..
                    } => format!("asleep ({call:?})"),
                    Phase::Waiting { call, .. } => format!("awake ({call:?})"),
                    Phase::Holds(a) => format!("HOLDS addr{a}"),
                    Phase::Dead => "DEAD".to_string(),
                };
                format!("w{w} came #{:?}: {phase}", waiter.came)
            })
            .collect();
        write!(
            f,
            "pool [{}] | Redis {} line [{}] freed {} | {} | starved {:?} ticks",
            pool.join(", "),
            if self.redis.up { "up" } else { "DOWN" },
            line.join(", "),
            self.redis.freed,
            waiters.join(", "),
            self.starved
        )
    }
}

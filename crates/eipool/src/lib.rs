//! eipool: claim a distinct Elastic IP from a fixed, tagged pool, safely when a herd starts at once.
//!
//! A claim is a lease in Redis plus a compare-and-swap in EC2 (`AllowReassociation=false`).
//!
//! # Layout
//!
//! Five layers, each a folder; a module uses only its own layer and those below it (a test in
//! `tests/it/architecture.rs` reads every `use crate::…` and checks the table in ARCHITECTURE.md):
//!
//! - `pure` — the pure layer: ids, addresses, identity, the claim's and the line's machines,
//!   every decision (`plan`, `classify`, `cidr`), `Error`.
//! - `support` — the time budget, metrics, readiness, shutdown, the claim's report.
//! - `adapters` — `aws` (EC2 calls, IMDSv2, DryRun) and `redis` (leases, pace, the shared listing).
//! - `services` — identity, the claim protocol, release, the pool view, pool, gc, doctor, agent.
//! - `app` — clap types, config validation, HTTP endpoints, one file per command.
//!
//! The API is small: the command line ([`Cli`], [`run`], [`Error`]) for the binary, and the
//! model types and the Redis adapter for the integration tests ([`model`], [`redis`]), and the
//! part of the pure layer that the model checker drives ([`decisions`]).

// The AWS SDK's futures nest deeply; the claim future needs a deeper layout query.
#![recursion_limit = "256"]
// One visibility convention: `pub` only for what this file re-exports (the binary's and the
// integration tests' API), `pub(crate)` for everything else.
#![warn(unreachable_pub)]

mod adapters;
mod app;
mod pure;
mod services;
mod support;

pub use app::cli::{parse as parse_cli, Cli, LogFormat};
pub use app::run;
pub use pure::error::Error;

/// The data eipool reads from EC2: ids (checked on parse) and addresses.
pub mod model {
    pub use crate::pure::address::{Address, Association};
    pub use crate::pure::ids::{AllocationId, AssociationId, BadId, EniId, InstanceId};
}

/// The claim protocol's decisions, pure (no I/O, no clock: handed what they need), for the model
/// checker in `crates/eipool-model`, which calls them to decide each step of its model instead of
/// re-implementing them: a change to a decision is checked by the model.
pub mod decisions {
    pub use crate::pure::address::Occupant;
    /// The attempt machine: one candidate, sans-IO (the model drives it as the claim does).
    pub mod attempt {
        pub use crate::pure::attempt::{
            AssociateAnswer, Attempt, Call, GiveBack, Input, Leased, Mutation, Outcome, Pause, Why,
        };
    }
    /// The claim machine: one claim under its interface lease, around its passes, sans-IO.
    pub mod claim {
        pub use crate::pure::claim::{Call, Claim, Ended, Input, Recalled};
    }
    pub use crate::pure::classify::{occupant, standing, Standing};
    /// The passes machine: one listing's passes over its candidates, sans-IO.
    pub mod passes {
        pub use crate::pure::passes::{Call, End, Input, Mutation, Passes, Wait};
    }
    pub use crate::pure::identity::Identity;
    /// The line machine: one server's place in the pool's waiting line, sans-IO.
    pub mod line {
        pub use crate::pure::line::{Call, Input, Line, Mutation, Place};
        pub use crate::pure::plan::{CLAIM_LINE_BACKSTOP, LINE_GHOST_AFTER, LINE_POLL, LINE_WATCH};
    }
    pub use crate::pure::plan::{
        after_a_look, after_pass, candidate_order, claim_order, exhaustion_stands, masked_verdict,
        relist_without_redis, shared_listing_will_do, AfterPass, LookVerdict, MaskedVerdict,
        PaceState, PassTally, Rate, CONSISTENCY_BOUND, DESCRIBE_PACE, MUTATING_PACE,
        WITHOUT_REDIS_BATCH,
    };
}

/// The pool's shared state in Redis (leases, markers, the shared listing, the pace), as the
/// claimers use it.
pub mod redis {
    pub use crate::adapters::redis::{
        key, PaceAnswer, PaceAsk, Redis, RedisError, RedisTarget, SharedListing, Timing, TlsFiles,
    };
}

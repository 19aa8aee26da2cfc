//! eipool: claim a distinct Elastic IP from a fixed, tagged pool, safely when a herd starts at once.
//!
//! A claim is a lease in Redis plus a compare-and-swap in EC2 (`AllowReassociation=false`).
//! `cli`/`config` parse and validate flags; `identity` finds the interface; `claim` runs the
//! protocol, asking `plan` (pure decisions) what to do and calling `ec2` and `lock` (Redis) to do
//! it; `output` reports; `shutdown` turns signals into cancellation. See ARCHITECTURE.md.

// The AWS SDK's futures nest deeply; the claim future needs a deeper layout query.
#![recursion_limit = "256"]

pub mod agent;
pub mod budget;
pub mod cidr;
pub mod claim;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod doctor;
pub mod ec2;
pub mod error;
pub mod gc;
pub mod identity;
pub mod lock;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod pool;
pub mod release;
pub mod shutdown;
pub mod status;

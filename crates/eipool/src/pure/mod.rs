//! Layer 0, the pure layer: the data eipool reasons about, the claim's and the line's sans-IO
//! machines, and every decision they make, as plain functions over data (`plan` is one file of
//! it; `eipool::decisions` exports part of it to the model checker). No I/O, no clock, no randomness of its own, no async: time and random samples are
//! handed in, so each decision is unit-tested with tables.

pub(crate) mod address;
pub(crate) mod attempt;
pub(crate) mod cidr;
pub(crate) mod claim;
pub(crate) mod classify;
pub(crate) mod error;
pub(crate) mod holder;
pub(crate) mod identity;
pub(crate) mod ids;
pub(crate) mod line;
pub(crate) mod node;
pub(crate) mod passes;
pub(crate) mod plan;
pub(crate) mod secret;

/// Addresses and an identity the machines' tests share.
#[cfg(test)]
pub(crate) mod fixtures;

/// The seeded, bounded runner of the property tests (`eipool_lab::properties::runner`).
#[cfg(test)]
pub(crate) use eipool_lab::properties::runner as tests_runner;

//! Layer 1, cross-cutting: the time budget every await runs under, metrics, readiness,
//! shutdown on signals, and the claim's report (JSON and env file). Knows the pure layer only.

pub(crate) mod budget;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod output;
pub(crate) mod shutdown;

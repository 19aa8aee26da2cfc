//! What `/readyz` answers: set by the agent and the exporter, served by the HTTP module.

use std::sync::{Arc, Mutex};

use crate::support::metrics;

#[derive(Debug, Default)]
struct State {
    ready: bool,
    detail: String,
    /// Whether readiness is also `eipool_ready` (the agent's: it holds an address).
    tracked: bool,
}

/// Readiness and its reason, shared between a loop that decides it and the HTTP handlers that
/// report it. Setting it also sets the `eipool_ready` gauge.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health(Arc<Mutex<State>>);

impl Health {
    /// Not ready yet, for `detail`; readiness is exported as `eipool_ready`.
    pub(crate) fn starting(detail: &str) -> Health {
        let h = Health::default();
        h.0.lock().unwrap_or_else(|p| p.into_inner()).tracked = true;
        h.set(false, detail.to_string());
        h
    }

    /// Not ready yet, for `detail`; readiness is not `eipool_ready` (the exporter's).
    pub(crate) fn starting_untracked(detail: &str) -> Health {
        let h = Health::default();
        h.set(false, detail.to_string());
        h
    }

    /// Set readiness and its reason.
    pub(crate) fn set(&self, ready: bool, detail: String) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.tracked {
            metrics::global().ready.set(i64::from(ready));
        }
        s.ready = ready;
        s.detail = detail;
    }

    /// Whether ready, and why (or why not).
    pub(crate) fn get(&self) -> (bool, String) {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (s.ready, s.detail.clone())
    }
}

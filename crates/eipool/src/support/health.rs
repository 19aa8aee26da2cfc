//! What `/readyz` answers: set by the agent and the exporter, served by the HTTP module.

use std::sync::{Arc, Mutex};

use crate::support::metrics;

#[derive(Debug, Default)]
struct State {
    ready: bool,
    detail: String,
}

/// Readiness and its reason, shared between a loop that decides it and the HTTP handlers that
/// report it. Setting it also sets the `eipool_ready` gauge.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health(Arc<Mutex<State>>);

impl Health {
    /// Not ready yet, for `detail`.
    pub(crate) fn starting(detail: &str) -> Health {
        let h = Health::default();
        h.set(false, detail.to_string());
        h
    }

    /// Set readiness and its reason.
    pub(crate) fn set(&self, ready: bool, detail: String) {
        metrics::global().ready.set(i64::from(ready));
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.ready = ready;
        s.detail = detail;
    }

    /// Whether ready, and why (or why not).
    pub(crate) fn get(&self) -> (bool, String) {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (s.ready, s.detail.clone())
    }
}

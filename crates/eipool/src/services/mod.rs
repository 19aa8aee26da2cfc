//! Layer 3, services: what eipool does, without clap or HTTP — who am I ([`identity`]), the
//! claim protocol ([`claim`]), giving back ([`release`]), the pool as operators see it
//! ([`pool_view`]), growing and shrinking it ([`pool`]), collecting leaks ([`gc`]), the checklist
//! ([`doctor`]) and the agent's loop ([`agent`]). They use the adapters through a [`context`].

pub(crate) mod agent;
pub(crate) mod claim;
pub(crate) mod context;
pub(crate) mod doctor;
pub(crate) mod gc;
pub(crate) mod identity;
pub(crate) mod line;
pub(crate) mod node;
pub(crate) mod pool;
pub(crate) mod pool_view;
pub(crate) mod release;

//! Layer 2, adapters: the outside world, each adapter owning its error type, the `Transient`
//! answer for it and its conversion into the command's `Error`. They know the pure and
//! cross-cutting layers, never each other, never a service.

pub(crate) mod aws;
pub(crate) mod kube;
pub(crate) mod redis;

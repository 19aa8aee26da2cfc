//! eipool's integration tests: one binary, real moto and real redis-server as processes, the real
//! `eipool` binary driven as a process. Run with `scripts/test`.

mod agent;
mod architecture;
mod chaos;
mod claim;
mod harness;
mod hostile;
mod iam;
mod inputs;
mod operate;
mod ops;
mod redis_scripts;
mod redis_setups;
mod truth;
mod upgrade;

//! eipool's integration tests: one binary, real moto and real redis-server as processes, the real
//! `eipool` binary driven as a process. Run with `scripts/test`.

mod agent;
mod architecture;
mod chaos;
mod claim;
mod dashboard;
mod doctor;
mod harness;
mod hostile;
mod iam;
mod inputs;
mod line;
mod node;
mod pool;
mod private_ip;
mod redis_scripts;
mod redis_setups;
mod release;
mod truth;
mod upgrade;
mod waiting;

//! eipool-lab: the test and demo tooling of eipool (not shipped).
//!
//! - [`servers`]: start moto (EC2 emulator) and redis-server as real processes on free
//!   loopback ports, and stop them even when the test process dies.
//! - [`fixture`]: make VPCs, instances and tagged Elastic IP pools in moto; read EC2's state.
//! - [`claimer`]: run the real `eipool` binary as a process and collect what it reported.
//! - [`redis_setups`]: Redis Cluster, TLS with a private CA, ACL users (the setups users run).
//! - [`imds`]: a small IMDSv2 stub answering from EC2's current state (moto's IMDS is static).
//! - [`kube_api`]: the Kubernetes API's Node endpoints node mode calls (no API server runs here).
//! - [`iam`]: users limited to one role in moto, and its IAM enforcement.
//! - [`check`]: invariants over EC2's final state and the claimers' outcomes.
//! - [`chaos`], [`tcp_fault`]: AWS-like EC2 and faulty Redis in front of the real servers.
//! - [`node_bench`]: node mode's row of the benchmark (node start → taint removed).
//! - [`bench`], [`baseline`], [`profile`]: the herd benchmark, the strategies it compares
//!   eipool with, and where a traced herd's time went.
//! - [`soak`]: agents holding their addresses for minutes through faults.

pub mod baseline;
pub mod bench;
pub mod chaos;
pub mod check;
pub mod claimer;
pub mod fixture;
pub mod hostile;
pub mod iam;
pub mod imds;
pub mod kube_api;
pub mod node_bench;
pub mod profile;
pub mod properties;
pub mod redis_setups;
pub mod servers;
pub mod soak;
pub mod tcp_fault;

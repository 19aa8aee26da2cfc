//! tfmod's integration tests: the real binary against a real moto S3 on a loopback port.

mod archive;
mod docs_flow;
mod edges;
mod faults;
mod gate;
mod getter;
mod harness;
mod history;
mod promote;
mod publish;
mod verify;

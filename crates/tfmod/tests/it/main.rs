//! tfmod's integration tests: the real binary against a real moto S3 on a loopback port.

mod archive;
mod harness;
mod publish;
mod verify;

//! What the three binaries (`eipool`, `atlantis-authz`, `tfmod`) do at the process's edges, so
//! each does it the same way:
//! - [`exit`]: the exit codes, with what each means per tool;
//! - [`panic`]: a panic is one line asking for a report and the tool's exit code (70), never
//!   Rust's message and exit 101;
//! - [`blame`]: a bad value that came from an option's environment variable names the variable;
//! - [`out`]: a closed stdout (`… | head -1`) is never a panic.
//!
//! No tool crate is a dependency of this one; each binary's `main.rs` uses it.

pub mod blame;
pub mod exit;
pub mod out;
pub mod panic;

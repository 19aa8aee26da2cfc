//! The exit codes the three tools share, sysexits.h names where one fits. A code below 64 other
//! than these is the tool's own and means something else in each (3: eipool's drift,
//! atlantis-authz's Okta, tfmod's S3; 4 and 5: tfmod's "the version is used" and "not
//! published"); each tool's table (`--help`, README, docs/) says so.

/// Done. eipool: success; atlantis-authz: allowed (`pass` printed last); tfmod: done.
pub const OK: u8 = 0;

/// The command worked and the answer is no. eipool: `status --min-free` or `doctor` found a
/// problem; atlantis-authz: denied by the policy; tfmod: `verify`, `lock` or `promote` found
/// problems, or `show` a changed archive.
pub const CHECK_FAILED: u8 = 1;

/// Bad usage: a flag's or variable's value, a file, a combination; the message names it. The
/// same in all three (clap's own code, not EX_USAGE's 64).
pub const USAGE: u8 = 2;

/// EX_UNAVAILABLE. eipool only: the pool has no free address before the deadline.
pub const UNAVAILABLE: u8 = 69;

/// EX_SOFTWARE: a bug. All three: a panic (the hook in this crate's `panic` module); eipool
/// also an internal error it caught.
pub const SOFTWARE: u8 = 70;

/// EX_IOERR. eipool only: the report could not be written to stdout (closed, a broken pipe).
/// atlantis-authz and tfmod exit with the code they reached instead (this crate's `out` module).
pub const IOERR: u8 = 74;

/// EX_TEMPFAIL. eipool only: a temporary failure (EC2 or Redis unreachable, throttled) lasted
/// until the deadline.
pub const TEMPFAIL: u8 = 75;

/// EX_NOPERM. eipool only: AWS or Kubernetes refused permission.
pub const NOPERM: u8 = 77;

/// 128 + SIGINT. eipool only: interrupted by SIGINT/SIGTERM, what was held released first.
pub const INTERRUPTED: u8 = 130;

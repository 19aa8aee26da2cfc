//! The errors a command ends with, and the exit code of each: the one table behind both
//! `--help` and the process's exit status, so they cannot drift apart.

use std::time::Duration;

/// Exit codes (sysexits.h where one fits).
pub(crate) mod exit {
    /// The command did what was asked.
    pub(crate) const OK: u8 = 0;
    /// A check failed: `status --min-free` found fewer free addresses, or `doctor` found a problem.
    pub(crate) const CHECK_FAILED: u8 = 1;
    /// `agent --on-drift exit`: the address was moved or disassociated by someone else.
    pub(crate) const DRIFT: u8 = 3;
    /// An unexpected internal error or a panic (a bug): report it (EX_SOFTWARE).
    pub(crate) const INTERNAL: u8 = 70;
    /// The report could not be written to stdout (closed, a broken pipe) (EX_IOERR).
    pub(crate) const UNDELIVERED: u8 = 74;
    /// Bad usage or configuration: the message names the flag and what is wrong.
    pub(crate) const USAGE: u8 = 2;
    /// The pool has no free address (EX_UNAVAILABLE).
    pub(crate) const EXHAUSTED: u8 = 69;
    /// A temporary failure (EC2 or Redis unreachable, throttled) lasted until the deadline (EX_TEMPFAIL).
    pub(crate) const TEMPORARY: u8 = 75;
    /// AWS or Kubernetes refused permission (EX_NOPERM).
    pub(crate) const PERMISSION: u8 = 77;
    /// Interrupted by SIGINT/SIGTERM; what was held was released first.
    pub(crate) const INTERRUPTED: u8 = 130;
}

/// Every exit code with its meaning, for `--help` and the README.
pub(crate) const EXIT_CODES: &[(u8, &str)] = &[
    (exit::OK, "success"),
    (
        exit::CHECK_FAILED,
        "a check failed: status --min-free found fewer free addresses, or doctor found a problem",
    ),
    (
        exit::USAGE,
        "bad usage or configuration, including a Redis that answers but can never work (credentials, ACL, a replica, TLS trust); the message says what to fix",
    ),
    (
        exit::DRIFT,
        "agent --on-drift exit: the address was moved or disassociated by someone else",
    ),
    (
        exit::EXHAUSTED,
        "pool exhausted: no free address before the deadline",
    ),
    (
        exit::INTERNAL,
        "internal error or a panic (a bug: please report it with its stderr line)",
    ),
    (
        exit::UNDELIVERED,
        "the report could not be written to stdout (closed, a broken pipe); a claim gave back the address it took for it, unless --output delivered it (then: exit 0 and a warning)",
    ),
    (
        exit::TEMPORARY,
        "a temporary failure (EC2 or Redis unreachable, throttled) lasted until the deadline",
    ),
    (
        exit::PERMISSION,
        "AWS or Kubernetes refused permission; the message names the EC2 action or the RBAC rule to allow",
    ),
    (
        exit::INTERRUPTED,
        "interrupted by SIGINT/SIGTERM (a claim gives back what it took first)",
    ),
];

/// The exit-code table as `--help` shows it.
pub(crate) fn exit_code_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in EXIT_CODES {
        s.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    s
}

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, environment variable or referenced resource is wrong; the message says which.
    #[error("{0}")]
    Usage(String),
    /// No free address in the pool before the deadline (or none at all).
    #[error("{}", exhausted_message(pool, *size, *elapsed, tag))]
    Exhausted {
        /// The pool's name.
        pool: String,
        /// How many addresses the pool has.
        size: usize,
        /// Time since the command started.
        elapsed: Duration,
        /// The pool tag key.
        tag: &'static str,
    },
    /// EC2 or Redis kept failing until the deadline (or failed once, for a call that is not
    /// retried); the message has the last failure.
    #[error("{}", temporary_message(last, *timeout))]
    Temporary {
        /// The last failure seen.
        last: String,
        /// The `--timeout` the command gave up within, as configured; `None` when the failure
        /// did not wait for it.
        timeout: Option<Duration>,
    },
    /// AWS refused permission for an EC2 action.
    #[error("AWS refused permission for ec2:{action}: {message}. Allow ec2:{action} for this IAM identity: media nodes use deploy/iam/node.json, operators deploy/iam/operator.json")]
    Permission {
        /// The EC2 action.
        action: &'static str,
        /// AWS's message.
        message: String,
    },
    /// Kubernetes (RBAC) refused `verb` on `resource` to node mode's service account.
    #[error("the Kubernetes API refused permission to {verb} {resource} ({message}). Allow verb {verb:?} on resource {resource:?} (apiGroups [\"\"]) in the ClusterRole bound to this pod's service account: the chart's and deploy/'s eipool-node role has exactly get and patch on nodes")]
    KubePermission {
        /// The verb refused (`get`, `patch`).
        verb: &'static str,
        /// The resource (`nodes`).
        resource: &'static str,
        /// The API server's message (it names the user).
        message: String,
    },
    /// SIGINT or SIGTERM arrived. What the command does with what it holds on the way out is
    /// said when the signal arrives (`commands::on_signal`): a claim gives back what it took.
    #[error("interrupted by a signal (SIGTERM or SIGINT)")]
    Interrupted,
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
    /// The report could not be written to stdout (it was closed: the reader went away). A claim
    /// gives back the address nobody would learn of (unless it held it before, or `--output`
    /// delivered it); the message says which.
    #[error("{0}")]
    Undelivered(String),
    /// A check the user asked for failed (`status --min-free`, `doctor`); the message says which.
    #[error("{0}")]
    CheckFailed(String),
    /// The agent's address drifted away and `--on-drift exit` was set.
    #[error("{0}")]
    Drift(String),
}

fn temporary_message(last: &str, timeout: Option<Duration>) -> String {
    match timeout {
        Some(t) => format!(
            "gave up within --timeout {}: {last}. Check connectivity to EC2/Redis and rate limits, or raise --timeout",
            shown(t)
        ),
        None => format!(
            "temporary failure: {last}. Check connectivity to EC2/Redis and rate limits, then try again"
        ),
    }
}

/// A duration as an operator writes one, in its largest whole unit: `24h`, `90s`, `1500ms`
/// (humantime would say `1day`, `1m 30s`). Each form parses back as the same duration.
pub(crate) fn shown(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || d.subsec_nanos() % 1_000_000 != 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

fn exhausted_message(pool: &str, size: usize, elapsed: Duration, tag: &str) -> String {
    let grow = format!(
        "run `eipool --pool {pool} pool grow --count N` (operator role; it tags them {tag}={pool} as it allocates them), and tell customers the new addresses first"
    );
    if size == 0 {
        format!("pool {pool:?} has no addresses: no VPC Elastic IP in this region is tagged {tag}={pool}. Check --pool and AWS_REGION, or {grow}")
    } else {
        format!(
            "pool {pool:?} is exhausted: all {size} of its addresses are taken ({elapsed:.1?} elapsed). \
             Grow it: {grow}; or release addresses no longer in use"
        )
    }
}

impl Error {
    /// A usage or configuration error with this message (it names the flag and what to do).
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// The `outcome` label of this error in `eipool_claims_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Exhausted { .. } => "exhausted",
            Error::Temporary { .. } => "temporary",
            Error::Permission { .. } | Error::KubePermission { .. } => "permission",
            Error::Interrupted => "interrupted",
            Error::Internal(_) => "internal",
            Error::Undelivered(_) => "undelivered",
            Error::CheckFailed(_) => "check_failed",
            Error::Drift(_) => "drift",
        }
    }

    /// The process exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Exhausted { .. } => exit::EXHAUSTED,
            Error::Temporary { .. } => exit::TEMPORARY,
            Error::Permission { .. } | Error::KubePermission { .. } => exit::PERMISSION,
            Error::Interrupted => exit::INTERRUPTED,
            Error::Internal(_) => exit::INTERNAL,
            Error::Undelivered(_) => exit::UNDELIVERED,
            Error::CheckFailed(_) => exit::CHECK_FAILED,
            Error::Drift(_) => exit::DRIFT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_in_the_help_table() {
        let errors = [
            Error::Usage(String::new()),
            Error::Exhausted {
                pool: "p".into(),
                size: 3,
                elapsed: Duration::ZERO,
                tag: "eipool:pool",
            },
            Error::Temporary {
                last: String::new(),
                timeout: None,
            },
            Error::Permission {
                action: "AssociateAddress",
                message: String::new(),
            },
            Error::KubePermission {
                verb: "patch",
                resource: "nodes",
                message: String::new(),
            },
            Error::Interrupted,
            Error::Internal(String::new()),
            Error::Undelivered(String::new()),
            Error::CheckFailed(String::new()),
            Error::Drift(String::new()),
        ];
        for e in errors {
            assert!(
                EXIT_CODES.iter().any(|(c, _)| *c == e.exit_code()),
                "{e:?} exits {} which --help does not list",
                e.exit_code()
            );
        }
    }

    #[test]
    fn exhaustion_message_says_size_and_how_to_grow() {
        let e = Error::Exhausted {
            pool: "media".into(),
            size: 12,
            elapsed: Duration::from_millis(1500),
            tag: "eipool:pool",
        };
        let msg = e.to_string();
        assert!(msg.contains("all 12 of its addresses"), "{msg}");
        assert!(msg.contains("eipool:pool=media"), "{msg}");
        assert!(msg.contains("pool grow --count"), "{msg}");
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        let s = Duration::from_secs;
        for (d, want) in [
            (s(10), "10s"),
            (s(90), "90s"),
            (s(180), "3m"),
            (s(3600), "1h"),
            (s(86_400), "24h"),
            (s(90_000), "25h"),
            (s(7 * 86_400), "168h"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_millis(100), "100ms"),
        ] {
            assert_eq!(shown(d), want);
            assert_eq!(humantime::parse_duration(want).unwrap(), d, "{want}");
        }
    }

    #[test]
    fn a_deadline_message_names_the_timeout_given_not_what_was_left() {
        let e = Error::Temporary {
            last: "ec2:DescribeAddresses failed temporarily".into(),
            timeout: Some(Duration::from_secs(10)),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("gave up within --timeout 10s: ec2:"),
            "{msg}"
        );
        let e = Error::Temporary {
            last: "Redis is unavailable".into(),
            timeout: None,
        };
        let msg = e.to_string();
        assert!(!msg.contains("deadline") && !msg.contains("ns)"), "{msg}");
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    #[test]
    fn the_readme_lists_every_exit_code() {
        let readme = include_str!("../../../../README.md");
        for (code, _) in EXIT_CODES {
            assert!(
                readme.contains(&format!("\n| {code} | ")),
                "README's exit-code table lacks {code}"
            );
        }
    }
}

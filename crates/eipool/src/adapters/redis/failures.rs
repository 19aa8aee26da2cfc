//! Every Redis failure sorted into one of two kinds: Redis *unavailable* (down, slow, failing
//! over: a claim goes on without it for a while) or Redis *misconfigured* (it answers but can
//! never work: refused credentials, missing ACL permissions, a read-only replica, an untrusted
//! certificate — the command stops at once with exit 2 and what to fix). Also what one node
//! answers when asked whether it is a cluster, and the ACL rule eipool needs.

use redis::{ErrorKind, RedisError as ClientError, ServerErrorKind};

use super::target::RedisTarget;
use super::RedisError;
use crate::pure::secret::{percent_encoding_hint, redact_url};

/// What the server at `--redis-url` turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One node (with or without replicas behind it).
    Single,
    /// A Redis Cluster: keys are spread over shards by hash slot.
    Cluster,
}

/// Whether a failed CLUSTER INFO was Redis saying it is not a cluster (or will not say).
pub(super) fn says_single_node(e: &ClientError) -> bool {
    if is_auth(e) {
        return false;
    }
    let text = e.to_string();
    e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || text.contains("cluster support disabled")
        || text.contains("unknown command")
        || text.contains("unknown subcommand")
}

fn is_auth(e: &ClientError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH") | Some("WRONGPASS"))
}

/// The command a NOPERM answer names (`... to run the 'zadd' command`), if it names one.
fn refused_command(text: &str) -> Option<&str> {
    let (_, after) = text.split_once("to run the '")?;
    let (name, _) = after.split_once('\'')?;
    Some(name)
}

/// What Redis answers when a script runs a command the user's ACL refuses: Redis 7.0 does not
/// say which (`eipool doctor` does); 7.2 and later, and Valkey, name it.
pub(super) const REFUSED_IN_A_SCRIPT: [&str; 2] =
    ["can't run this command", "ACL failure in script"];

/// The Redis user may not run `what` (e.g. "the ZADD command"): grant eipool's whole rule.
pub(super) fn refused(what: &str, detail: &str) -> RedisError {
    RedisError::Misconfigured(format!(
        "the Redis user lacks a permission eipool needs: {what} ({detail}). Grant eipool's whole rule (docs/redis.md): ACL SETUSER <user> {}",
        super::commands::acl_rule()
    ))
}

/// Sort a Redis failure: misconfiguration (it answers but can never work) or unavailability.
/// `topology` is what the connection is: a READONLY or MOVED answer means a misconfiguration
/// only on a single-node connection (a cluster connection follows them).
pub(super) fn sort(e: &ClientError, topology: Topology) -> RedisError {
    // One line: a parse error's text spans two. A script's error names where it failed as
    // `@user_script:N`, which is not a URL's userinfo.
    let text = redact_url(&e.to_string().replace("@user_script", "user_script"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let misconfigured = |what: String| RedisError::Misconfigured(what);
    if is_auth(e) {
        return misconfigured(format!(
            "Redis refused the credentials ({text}). Put the user and password in the URL as rediss://USER:PASSWORD@HOST:PORT ({}); ElastiCache: the AUTH token, or the ACL user's password",
            percent_encoding_hint()
        ));
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            let what = refused_command(&text)
                .map(|c| format!("the {} command", c.to_uppercase()))
                .unwrap_or_else(|| "a command".into());
            return refused(&what, &text);
        }
        _ if REFUSED_IN_A_SCRIPT.iter().any(|r| text.contains(r)) => {
            let what = refused_command(&text)
                .map(|c| format!("the {} command", c.to_uppercase()))
                .unwrap_or_else(|| "a command of eipool's scripts (`eipool doctor` names it)".into());
            return refused(&what, &text);
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) if topology == Topology::Single => {
            return misconfigured(format!(
                "--redis-url points at a read-only replica ({text}). Use the primary endpoint (ElastiCache: the primary endpoint, or the configuration endpoint in cluster mode)"
            ))
        }
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
            if topology == Topology::Single =>
        {
            return misconfigured(format!(
                "Redis is a cluster, but it answered CLUSTER INFO with an error, so eipool took it for one node ({text}). Allow the user +cluster|info and +cluster|slots"
            ))
        }
        ErrorKind::InvalidClientConfig => return misconfigured(text),
        _ => {}
    }
    if text.contains("unknown command") {
        return misconfigured(format!(
            "this Redis does not offer a command eipool needs ({text}): eipool needs Lua scripting (EVALSHA, SCRIPT LOAD)"
        ));
    }
    if text.contains("invalid peer certificate")
        || text.contains("UnknownIssuer")
        || text.contains("NotValidForName")
    {
        return misconfigured(format!(
            "Redis's TLS certificate is not trusted ({text}). Give the CA that signed it with --redis-ca-file (PEM), and connect by a name the certificate holds"
        ));
    }
    if text.contains("CertificateRequired")
        || text.contains("certificate required")
        || text.contains("BadCertificate")
        || text.contains("UnknownCA")
    {
        return misconfigured(format!(
            "Redis refused our TLS client certificate, or needs one ({text}). Give --redis-client-cert and --redis-client-key signed by the CA Redis trusts"
        ));
    }
    if text.contains("corrupt message") || text.contains("InvalidContentType") {
        return misconfigured(format!(
            "TLS failed ({text}): the port does not speak TLS. Use redis:// for a plain port, rediss:// for a TLS one"
        ));
    }
    RedisError::Unavailable(text)
}

/// A connection that got no TLS answer, or that the server dropped right after it was made, or
/// that received what is not Redis's protocol, may be the URL's scheme not matching the port:
/// say so (it stays a passing failure: a slow or flaky network looks the same). A refused
/// connection, or a plain one that timed out, says nothing about the scheme: no hint.
pub(super) fn with_scheme_hint(
    sorted: RedisError,
    target: &RedisTarget,
    e: &ClientError,
) -> RedisError {
    let RedisError::Unavailable(text) = sorted else {
        return sorted;
    };
    let hint = scheme_hint(target.tls, e, &text);
    RedisError::Unavailable(format!("{text}{hint}"))
}

/// The hint for a failed first connection: only what looks like a protocol mismatch gets one.
fn scheme_hint(tls: bool, e: &ClientError, text: &str) -> &'static str {
    if e.is_connection_refusal() {
        return "";
    }
    if tls {
        if e.is_timeout() || text.contains("timed out") {
            return "; no TLS handshake answer: if this port does not speak TLS, use redis://";
        }
        return "";
    }
    // Reset, aborted, end of file, broken pipe (a refusal was answered above).
    let closed = (e.is_connection_dropped() && !e.is_timeout()) || text.contains("reset by peer");
    if closed {
        "; the server closed the connection right away: if this port speaks TLS, use rediss://"
    } else if e.kind() == ErrorKind::Parse {
        "; the server's answer is not Redis's protocol: if this port speaks TLS, use rediss://"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> ClientError {
        redis::RedisError::from((
            ErrorKind::Server(match code {
                "NOPERM" => ServerErrorKind::NoPerm,
                "READONLY" => ServerErrorKind::ReadOnly,
                "MOVED" => ServerErrorKind::Moved,
                _ => ServerErrorKind::ResponseError,
            }),
            "An error was signalled by the server",
            detail.to_string(),
        ))
    }

    #[test]
    fn a_refused_command_is_named_with_the_whole_rule_to_grant() {
        let e = server(
            "NOPERM",
            "User eipool has no permissions to run the 'zadd' command",
        );
        let RedisError::Misconfigured(m) = sort(&e, Topology::Single) else {
            panic!("NOPERM is a misconfiguration");
        };
        assert!(
            m.contains("lacks a permission eipool needs: the ZADD command"),
            "{m}"
        );
        assert!(m.contains(&super::super::commands::acl_rule()), "{m}");
        assert!(m.contains("docs/redis.md"), "{m}");
    }

    #[test]
    fn a_command_refused_inside_a_script_on_redis_7_2_or_valkey_is_named() {
        let e = server(
            "ERR",
            "ACL failure in script: User eipool has no permissions to run the 'zadd' command script: ef34f9e47d97491e4a7b4f5826627cef07a27f3c, on @user_script:1.",
        );
        let RedisError::Misconfigured(m) = sort(&e, Topology::Single) else {
            panic!("refused in a script is a misconfiguration");
        };
        assert!(
            m.contains("lacks a permission eipool needs: the ZADD command"),
            "{m}"
        );
        assert!(m.contains("ACL SETUSER <user> ~eipool:*"), "{m}");
    }

    #[test]
    fn a_command_refused_inside_a_script_is_a_misconfiguration_not_an_outage() {
        // What Redis 7 answers: an ERR without the command's name.
        let e = server(
            "ERR",
            "The user executing the script can't run this command or subcommand script: ef34f9e47d97491e4a7b4f5826627cef07a27f3c, on @user_script:1.",
        );
        let RedisError::Misconfigured(m) = sort(&e, Topology::Single) else {
            panic!("refused in a script is a misconfiguration");
        };
        assert!(m.contains("ACL SETUSER <user> ~eipool:*"), "{m}");
        assert!(m.contains("eipool doctor"), "{m}");
        assert!(
            m.contains("user_script:1"),
            "the server's words, not redacted: {m}"
        );
    }

    #[test]
    fn answers_that_can_never_work_are_misconfigurations() {
        for (e, topology, says) in [
            (
                server("NOPERM", "no permissions to run the 'evalsha' command"),
                Topology::Single,
                "ACL SETUSER",
            ),
            (server("NOPERM", "x"), Topology::Cluster, "ACL SETUSER"),
            (
                server("READONLY", "You can't write against a read only replica."),
                Topology::Single,
                "primary endpoint",
            ),
            (
                server("MOVED", "3999 127.0.0.1:7001"),
                Topology::Single,
                "+cluster|info",
            ),
            (
                ClientError::from((
                    ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                Topology::Single,
                "credentials",
            ),
            (
                server("ERR", "unknown command 'EVALSHA'"),
                Topology::Single,
                "Lua scripting",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "invalid peer certificate: UnknownIssuer",
                )),
                Topology::Single,
                "--redis-ca-file",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "received fatal alert: CertificateRequired",
                )),
                Topology::Single,
                "--redis-client-cert",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "received corrupt message of type InvalidContentType",
                )),
                Topology::Single,
                "rediss://",
            ),
        ] {
            match sort(&e, topology) {
                RedisError::Misconfigured(m) => assert!(m.contains(says), "{m}"),
                other => panic!("{e} sorted as {other:?}"),
            }
        }
    }

    #[test]
    fn only_the_servers_own_answer_makes_it_one_node() {
        for (e, single) in [
            (
                server("ERR", "This instance has cluster support disabled"),
                true,
            ),
            (server("ERR", "unknown command 'CLUSTER'"), true),
            (
                server("NOPERM", "no permissions to run the 'cluster|info' command"),
                true,
            ),
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                false,
            ),
            (
                ClientError::from((
                    ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                false,
            ),
        ] {
            assert_eq!(says_single_node(&e), single, "{e}");
        }
    }

    #[test]
    fn passing_trouble_is_unavailability() {
        for (e, topology) in [
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                Topology::Single,
            ),
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                Topology::Cluster,
            ),
            // A cluster connection follows these itself; what still surfaces is a failover.
            (
                server("READONLY", "You can't write against a read only replica."),
                Topology::Cluster,
            ),
            (server("MOVED", "3999 127.0.0.1:7001"), Topology::Cluster),
        ] {
            assert!(
                matches!(sort(&e, topology), RedisError::Unavailable(_)),
                "{e}"
            );
        }
    }

    #[test]
    fn only_a_protocol_mismatch_gets_the_scheme_hint() {
        let io = |kind| ClientError::from(std::io::Error::from(kind));
        let parse = ClientError::from((ErrorKind::Parse, "Incompatible type - Parse error at 1"));
        use std::io::ErrorKind::*;
        for (tls, e, says) in [
            // Nobody listens, or nothing answers: the scheme is not the question.
            (false, io(ConnectionRefused), None),
            (true, io(ConnectionRefused), None),
            (false, io(TimedOut), None),
            // A plain client at a TLS port: dropped at once, or TLS's bytes come back.
            (false, io(ConnectionReset), Some("use rediss://")),
            (false, io(UnexpectedEof), Some("use rediss://")),
            (false, parse, Some("use rediss://")),
            // A TLS client at a plain port: no handshake answer.
            (true, io(TimedOut), Some("use redis://")),
        ] {
            let hint = scheme_hint(tls, &e, &e.to_string());
            match says {
                Some(says) => assert!(hint.contains(says), "{e} (tls: {tls}): {hint:?}"),
                None => assert_eq!(hint, "", "{e} (tls: {tls})"),
            }
        }
        // A parse error's two lines become one.
        let garbage = ClientError::from((ErrorKind::Parse, "Parse error at 1\nUnexpected `21`"));
        match sort(&garbage, Topology::Single) {
            RedisError::Unavailable(text) => assert!(!text.contains('\n'), "{text:?}"),
            other => panic!("{other:?}"),
        }
    }
}

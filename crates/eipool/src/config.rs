//! Validated configuration. Turns parsed flags into a [`ClaimConfig`] or an
//! [`Error::Usage`](crate::error::Error::Usage) naming the flag; does no I/O.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ClaimArgs, Global};
use crate::ec2::{EniId, InstanceId};
use crate::error::Error;
use crate::plan;

/// Where the claimer learns which interface it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `--network-interface-id`.
    Interface(EniId),
    /// `--instance-id`: its device-index-0 interface.
    Instance(InstanceId),
    /// Neither: ask IMDSv2 (instance id, MAC, interface id).
    Imds,
}

impl IdentitySource {
    /// Whether resolving the identity costs EC2 Describe* calls (from the budget the herd
    /// shares): always with flags; from IMDSv2 only when `--private-ip` must be checked.
    pub fn calls_ec2(&self, private_ip: Option<std::net::Ipv4Addr>) -> bool {
        !matches!((self, private_ip), (IdentitySource::Imds, None))
    }
}

/// Everything `eipool claim` needs, validated.
#[derive(Debug, Clone)]
pub struct ClaimConfig {
    /// The pool name (value of the `eipool:pool` tag).
    pub pool: String,
    /// Which interface we are.
    pub identity: IdentitySource,
    /// The private IP to map to, when not the primary.
    pub private_ip: Option<Ipv4Addr>,
    /// `--redis-url`, checked for form.
    pub redis: Option<redis::Client>,
    /// `--require-lock`.
    pub require_lock: bool,
    /// The whole command's budget.
    pub timeout: Duration,
    /// `--output` env file.
    pub output: Option<PathBuf>,
    /// Lease of one Redis claim.
    pub lease: Duration,
    /// Timeout of each EC2 call.
    pub call_timeout: Duration,
}

/// Margin a lease must keep beyond one EC2 call before that call may be made.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// Check a pool name: it becomes a tag value and a Redis hash tag, so no braces, no spaces.
pub fn validate_pool(pool: Option<&str>) -> Result<String, Error> {
    let pool = pool.ok_or_else(|| Error::Usage("--pool is required (or set EIPOOL_POOL): the name in the eipool:pool tag of the pool's Elastic IPs".into()))?;
    if pool.is_empty() {
        return Err(Error::Usage(
            "--pool is empty: give the pool's name, the value of its eipool:pool tag".into(),
        ));
    }
    if pool.len() > 128 {
        return Err(Error::Usage(format!(
            "--pool is {} characters long; use at most 128",
            pool.len()
        )));
    }
    if let Some(c) = pool
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/=+@".contains(*c)))
    {
        return Err(Error::Usage(format!(
            "--pool {pool:?} contains {c:?}; use letters, digits and . _ - : / = + @"
        )));
    }
    Ok(pool.to_string())
}

/// Validate `--identity` flags: an interface, an instance, or IMDSv2.
pub fn validate_identity(global: &Global) -> Result<IdentitySource, Error> {
    match (&global.network_interface_id, &global.instance_id) {
        (Some(eni), _) => {
            if !is_aws_id(eni, "eni-") {
                return Err(Error::Usage(format!(
                    "--network-interface-id {eni:?} is not an interface id; expected eni- followed by hex digits"
                )));
            }
            Ok(IdentitySource::Interface(EniId(eni.clone())))
        }
        (None, Some(id)) => {
            if !is_aws_id(id, "i-") {
                return Err(Error::Usage(format!(
                    "--instance-id {id:?} is not an instance id; expected i- followed by hex digits"
                )));
            }
            Ok(IdentitySource::Instance(InstanceId(id.clone())))
        }
        (None, None) => Ok(IdentitySource::Imds),
    }
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Validate `--redis-url` (form only; nothing is sent).
pub fn validate_redis(global: &Global) -> Result<Option<redis::Client>, Error> {
    match &global.redis_url {
        Some(url) if url.trim().is_empty() => Err(Error::Usage(
            "--redis-url is empty: give redis://host:port, or leave it unset".into(),
        )),
        Some(url) => Ok(Some(
            crate::lock::parse_url(url).map_err(|e| Error::Usage(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

/// Validate the flags of `eipool claim` (and of the agent's claims).
pub fn claim_config(global: &Global, args: &ClaimArgs) -> Result<ClaimConfig, Error> {
    let pool = validate_pool(global.pool.as_deref())?;
    let identity = validate_identity(global)?;
    let redis = validate_redis(global)?;
    if args.require_lock && redis.is_none() {
        return Err(Error::Usage(
            "--require-lock needs --redis-url (or EIPOOL_REDIS_URL)".into(),
        ));
    }
    let min_lease = plan::minimum_lease(args.call_timeout, LEASE_MARGIN);
    if args.lease < min_lease {
        return Err(Error::Usage(format!(
            "--lease {:?} is too short for --call-timeout {:?}; use at least {:?}",
            args.lease, args.call_timeout, min_lease
        )));
    }
    if args.call_timeout >= args.timeout {
        return Err(Error::Usage(format!(
            "--timeout {:?} must be longer than --call-timeout {:?}",
            args.timeout, args.call_timeout
        )));
    }
    if let Some(out) = &args.output {
        if out.as_os_str().is_empty() || out.file_name().is_none() {
            return Err(Error::Usage(format!("--output {out:?} is not a file path")));
        }
    }
    Ok(ClaimConfig {
        pool,
        identity,
        private_ip: global.private_ip,
        redis,
        require_lock: args.require_lock,
        timeout: args.timeout,
        output: args.output.clone(),
        lease: args.lease,
        call_timeout: args.call_timeout,
    })
}

/// Validate the flags of `eipool agent`.
pub fn agent_config(
    global: &Global,
    args: &crate::cli::AgentArgs,
) -> Result<crate::agent::AgentConfig, Error> {
    let claim = claim_config(global, &args.claim)?;
    if args.interval < Duration::from_secs(1) {
        return Err(Error::Usage(format!(
            "--interval {:?} is too short; use at least 1s (each check is an EC2 call)",
            args.interval
        )));
    }
    Ok(crate::agent::AgentConfig {
        claim,
        listen: args.listen,
        interval: args.interval,
        on_drift: args.on_drift,
        release_on_exit: args.release_on_exit,
        release_timeout: args.release_timeout,
        pool_metrics: args.pool_metrics,
    })
}

/// Validate an association id given by flag (`eipassoc-…`).
pub fn validate_association(id: Option<&str>) -> Result<Option<crate::ec2::AssociationId>, Error> {
    match id {
        None => Ok(None),
        Some(s) if is_aws_id(s, "eipassoc-") => Ok(Some(crate::ec2::AssociationId(s.to_string()))),
        Some(s) => Err(Error::Usage(format!("--association-id {s:?} is not an association id; expected eipassoc- followed by hex digits"))),
    }
}

/// The association id in an env file written by `claim --output`. A missing file means nothing
/// was claimed (`Ok(None)`: release then checks the interface itself).
pub fn association_in_env_file(
    path: &std::path::Path,
) -> Result<Option<crate::ec2::AssociationId>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Usage(format!(
                "--env-file {}: cannot read it: {e}",
                path.display()
            )))
        }
    };
    let id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("EIPOOL_ASSOCIATION_ID="));
    match id {
        Some(id) => validate_association(Some(id.trim())).map_err(|_| {
            Error::Usage(format!(
                "--env-file {}: EIPOOL_ASSOCIATION_ID={id:?} is not an association id",
                path.display()
            ))
        }),
        None => Err(Error::Usage(format!(
            "--env-file {}: no EIPOOL_ASSOCIATION_ID line",
            path.display()
        ))),
    }
}

/// Validate an idempotency token: a tag value, so at most 256 characters.
pub fn validate_token(token: Option<&str>) -> Result<Option<String>, Error> {
    match token {
        Some("") => Err(Error::Usage(
            "--idempotency-token is empty; give any unique string, e.g. a ticket number".into(),
        )),
        Some(t) if t.len() > 256 => Err(Error::Usage(
            "--idempotency-token is longer than 256 characters".into(),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ClaimConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("eipool").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let Command::Claim(c) = &cli.command else {
            panic!("not a claim")
        };
        claim_config(&cli.global, c).map_err(|e| e.to_string())
    }

    #[test]
    fn only_imds_without_private_ip_resolves_identity_without_ec2() {
        let ip = Some(std::net::Ipv4Addr::new(10, 0, 0, 4));
        let eni = IdentitySource::Interface(EniId("eni-1".into()));
        let instance = IdentitySource::Instance(InstanceId("i-1".into()));
        // (source, --private-ip, calls EC2)
        let cases = [
            (&IdentitySource::Imds, None, false),
            (&IdentitySource::Imds, ip, true),
            (&eni, None, true),
            (&eni, ip, true),
            (&instance, None, true),
        ];
        for (source, private_ip, want) in cases {
            assert_eq!(
                source.calls_ec2(private_ip),
                want,
                "{source:?} {private_ip:?}"
            );
        }
    }

    #[test]
    fn good_flags() {
        let c = parse(&[
            "--pool",
            "media",
            "--network-interface-id",
            "eni-0a1b",
            "claim",
            "--timeout",
            "90s",
        ])
        .unwrap();
        assert_eq!(c.pool, "media");
        assert_eq!(
            c.identity,
            IdentitySource::Interface(EniId("eni-0a1b".into()))
        );
        assert_eq!(c.timeout, Duration::from_secs(90));
        let c = parse(&["claim", "--pool", "media", "--instance-id", "i-0f"]).unwrap();
        assert_eq!(
            c.identity,
            IdentitySource::Instance(InstanceId("i-0f".into()))
        );
        let c = parse(&["claim", "--pool", "media"]).unwrap();
        assert_eq!(c.identity, IdentitySource::Imds);
    }

    #[test]
    fn bad_flags_name_the_flag() {
        // (args, the flag the message must name)
        let cases: &[(&[&str], &str)] = &[
            (&["claim"], "--pool"),
            (&["claim", "--pool", ""], "--pool"),
            (&["claim", "--pool", "a{b}"], "--pool"),
            (
                &["claim", "--pool", "p", "--network-interface-id", "eth0"],
                "--network-interface-id",
            ),
            (
                &["claim", "--pool", "p", "--instance-id", "node-1"],
                "--instance-id",
            ),
            (
                &["claim", "--pool", "p", "--redis-url", "localhost:6379"],
                "--redis-url",
            ),
            (&["claim", "--pool", "p", "--redis-url", ""], "--redis-url"),
            (
                &["claim", "--pool", "p", "--require-lock"],
                "--require-lock",
            ),
            (&["claim", "--pool", "p", "--timeout", "soon"], "--timeout"),
            (&["claim", "--pool", "p", "--timeout", "0s"], "--timeout"),
            (&["claim", "--pool", "p", "--lease", "2s"], "--lease"),
            (&["claim", "--pool", "p", "--timeout", "3s"], "--timeout"),
            (
                &["claim", "--pool", "p", "--private-ip", "10.0.0"],
                "--private-ip",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert!(
                err.contains(flag),
                "{args:?}: message {err:?} does not name {flag}"
            );
        }
    }
}

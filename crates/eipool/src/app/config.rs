//! Validated configuration: turns parsed flags into what the services take, or an
//! [`Error::Usage`] naming the flag. Pure: no I/O.

use std::time::Duration;

use crate::adapters::redis::{RedisTarget, TlsFiles};
use crate::app::cli::{AgentArgs, ClaimArgs, Global, NodeArgs, OnDriftArg};
use crate::pure::error::{shown, Error};
use crate::pure::identity::IdentitySource;
use crate::pure::ids::{AssociationId, EniId, InstanceId};
use crate::pure::node::{self as pure_node, Marks};
use crate::pure::plan;
use crate::services::agent::{AgentConfig, OnDrift};
use crate::services::claim::ClaimConfig;
use crate::services::node::NodeConfig;

/// Check a pool name: it becomes a tag value and a Redis hash tag, so no braces, no spaces.
pub(crate) fn validate_pool(pool: Option<&str>) -> Result<String, Error> {
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
pub(crate) fn validate_identity(global: &Global) -> Result<IdentitySource, Error> {
    match (&global.network_interface_id, &global.instance_id) {
        (Some(eni), _) => Ok(IdentitySource::Interface(
            eni.parse::<EniId>()
                .map_err(|e| Error::usage(format!("--network-interface-id {e}")))?,
        )),
        (None, Some(id)) => Ok(IdentitySource::Instance(
            id.parse::<InstanceId>()
                .map_err(|e| Error::usage(format!("--instance-id {e}")))?,
        )),
        (None, None) => Ok(IdentitySource::Imds),
    }
}

/// Validate `--redis-url` and the TLS files (read, not sent anywhere; nothing is connected).
pub(crate) fn validate_redis(global: &Global) -> Result<Option<RedisTarget>, Error> {
    let tls = TlsFiles {
        ca: global.redis_ca_file.clone(),
        client_cert: global.redis_client_cert.clone(),
        client_key: global.redis_client_key.clone(),
    };
    match &global.redis_url {
        Some(url) if url.trim().is_empty() => Err(Error::Usage(
            "--redis-url is empty: give redis://host:port, or leave it unset".into(),
        )),
        Some(url) => Ok(Some(RedisTarget::parse(url, &tls).map_err(Error::from)?)),
        None if tls != TlsFiles::default() => Err(Error::Usage(
            "--redis-ca-file, --redis-client-cert and --redis-client-key need --redis-url rediss://...".into(),
        )),
        None => Ok(None),
    }
}

/// Validate the flags of `eipool claim` (and of the agent's claims).
pub(crate) fn claim_config(global: &Global, args: &ClaimArgs) -> Result<ClaimConfig, Error> {
    let pool = validate_pool(global.pool.as_deref())?;
    let identity = validate_identity(global)?;
    let redis = validate_redis(global)?;
    if args.require_leases && redis.is_none() {
        return Err(Error::Usage(
            "--require-leases needs --redis-url (or EIPOOL_REDIS_URL)".into(),
        ));
    }
    let min_lease = plan::minimum_lease(args.call_timeout, plan::LEASE_MARGIN);
    if args.lease < min_lease {
        return Err(Error::Usage(format!(
            "--lease {} is too short for --call-timeout {}; use at least {}",
            shown(args.lease),
            shown(args.call_timeout),
            shown(min_lease)
        )));
    }
    if args.call_timeout >= args.timeout {
        return Err(Error::Usage(format!(
            "--timeout {} must be longer than --call-timeout {}",
            shown(args.timeout),
            shown(args.call_timeout)
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
        require_leases: args.require_leases,
        timeout: args.timeout,
        output: args.output.clone(),
        lease: args.lease,
        call_timeout: args.call_timeout,
    })
}

/// Validate the flags of `eipool agent`.
pub(crate) fn agent_config(global: &Global, args: &AgentArgs) -> Result<AgentConfig, Error> {
    let claim = claim_config(global, &args.claim)?;
    if args.interval < Duration::from_secs(1) {
        return Err(Error::Usage(format!(
            "--interval {} is too short; use at least 1s (each check is an EC2 call)",
            shown(args.interval)
        )));
    }
    if args.ec2_check_every < args.interval {
        return Err(Error::usage(format!(
            "--ec2-check-every {} is shorter than --interval {}; EC2 is asked at most once per interval",
            shown(args.ec2_check_every),
            shown(args.interval)
        )));
    }
    Ok(AgentConfig {
        claim,
        interval: args.interval,
        ec2_check_every: args.ec2_check_every,
        on_drift: match args.on_drift {
            OnDriftArg::Reclaim => OnDrift::Reclaim,
            OnDriftArg::Exit => OnDrift::Exit,
        },
        release_on_exit: args.release_on_exit,
        release_timeout: args.release_timeout,
        pool_metrics: args.pool_metrics,
    })
}

/// Where node mode writes the env file when `--output` is not given: on the host, one file per
/// pool, for the node's media pods to mount read-only.
pub(crate) fn node_env_file(pool: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/eipool/{pool}.env"))
}

/// Validate the flags of `eipool node`.
pub(crate) fn node_config(global: &Global, args: &NodeArgs) -> Result<NodeConfig, Error> {
    let mut claim = claim_config(global, &args.claim)?;
    if claim.output.is_none() {
        if claim.pool.contains('/') {
            return Err(Error::usage(format!(
                "--pool {:?} contains '/': node mode's env file would be /run/eipool/{}.env, in a folder nobody makes; give --output (or EIPOOL_OUTPUT) a file directly in /run/eipool",
                claim.pool, claim.pool
            )));
        }
        claim.output = Some(node_env_file(&claim.pool));
    }
    let node_name = args.node_name.as_deref().ok_or_else(|| {
        Error::usage(
            "--node-name is required (or set EIPOOL_NODE_NAME): this pod's Node, from the downward API (fieldRef spec.nodeName)",
        )
    })?;
    pure_node::check_node_name(node_name).map_err(|e| Error::usage(format!("--node-name {e}")))?;
    pure_node::check_key(&args.node_label)
        .map_err(|e| Error::usage(format!("--node-label {e}")))?;
    let taint = pure_node::parse_taint(&args.node_taint)
        .map_err(|e| Error::usage(format!("--node-taint {e}")))?;
    if args.ec2_check_every < args.interval {
        return Err(Error::usage(format!(
            "--ec2-check-every {} is shorter than --interval {}; EC2 is asked at most once per interval",
            shown(args.ec2_check_every),
            shown(args.interval)
        )));
    }
    Ok(NodeConfig {
        agent: AgentConfig {
            claim,
            interval: args.interval,
            ec2_check_every: args.ec2_check_every,
            // A loss is reclaimed; one that cannot be taints the Node again.
            on_drift: OnDrift::Reclaim,
            // The address stays with the node across the pod's restarts; the instance's end
            // frees it (or `eipool gc`).
            release_on_exit: false,
            release_timeout: Duration::from_secs(1),
            pool_metrics: false,
        },
        node_name: node_name.to_string(),
        marks: Marks {
            label: args.node_label.clone(),
            taint,
        },
        kubeconfig: args.kubeconfig.clone(),
    })
}

/// Validate an association id given by flag (`eipassoc-…`).
pub(crate) fn validate_association(id: Option<&str>) -> Result<Option<AssociationId>, Error> {
    id.map(|s| {
        s.parse()
            .map_err(|e| Error::usage(format!("--association-id {e}")))
    })
    .transpose()
}

/// Validate an idempotency token: a tag value, so at most 256 characters.
pub(crate) fn validate_token(token: Option<&str>) -> Result<Option<String>, Error> {
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

/// The exporter's bound on each read of the pool when `--timeout` is not given.
const EXPORTER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The bound on each of the exporter's reads: `--timeout`, which must fit in `--interval` (a
/// longer one would be cut short to the interval, so it would not mean what it says); without
/// it, 20 s or the interval if shorter.
pub(crate) fn exporter_read_timeout(
    interval: Duration,
    timeout: Option<Duration>,
) -> Result<Duration, Error> {
    match timeout {
        None => Ok(EXPORTER_READ_TIMEOUT.min(interval)),
        Some(t) if t > interval => Err(Error::Usage(format!(
            "--timeout {} is longer than --interval {}: each read of the pool must end before the next one starts. Lower --timeout or raise --interval",
            shown(t),
            shown(interval)
        ))),
        Some(t) => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::cli::{Cli, Command};
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
            IdentitySource::Interface("eni-0a1b".parse().unwrap())
        );
        assert_eq!(c.timeout, Duration::from_secs(90));
        let c = parse(&["claim", "--pool", "media", "--instance-id", "i-0f"]).unwrap();
        assert_eq!(
            c.identity,
            IdentitySource::Instance("i-0f".parse().unwrap())
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
                &["claim", "--pool", "p", "--require-leases"],
                "--require-leases",
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

    #[test]
    fn node_modes_flags_are_checked_and_named() {
        let node_in = |pool: &str, args: &[&str]| {
            let cli =
                Cli::try_parse_from(["eipool", "--pool", pool, "node"].iter().chain(args.iter()))
                    .unwrap();
            let Command::Node(n) = &cli.command else {
                panic!("not node")
            };
            node_config(&cli.global, n)
        };
        let node = |args: &[&str]| node_in("media", args);
        let c = node(&["--node-name", "ip-10-0-1-4.ec2.internal"]).unwrap();
        assert_eq!(
            c.agent.claim.output.as_deref(),
            Some(std::path::Path::new("/run/eipool/media.env"))
        );
        assert_eq!(c.marks.label, "eipool.io/public-ip");
        assert_eq!(c.marks.taint.key, "eipool.io/unassigned");
        assert_eq!(c.marks.taint.effect, "NoSchedule");
        assert!(!c.agent.release_on_exit, "the address stays with the node");
        // (args, what the message must say)
        let cases: &[(&[&str], &str)] = &[
            (&[], "--node-name is required (or set EIPOOL_NODE_NAME)"),
            (&["--node-name", "Node_1"], "--node-name \"Node_1\""),
            (
                &["--node-name", "n1", "--node-label", "eipool.io/"],
                "--node-label",
            ),
            (
                &["--node-name", "n1", "--node-taint", "eipool.io/unassigned"],
                "--node-taint \"eipool.io/unassigned\" has no effect",
            ),
            (
                &["--node-name", "n1", "--node-taint", "x:NoWay"],
                "use NoSchedule, PreferNoSchedule or NoExecute",
            ),
        ];
        for (args, says) in cases {
            let e = node(args).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{args:?}: {e:?}");
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
        // A pool name with '/' (allowed in its tag) would put the default env file in a folder.
        let in_pool = |args: &[&str]| {
            let args = [&["--node-name", "n1"][..], args].concat();
            node_in("team/media", &args)
        };
        let e = in_pool(&[]).unwrap_err();
        assert!(e.to_string().contains("--output"), "{e}");
        assert!(in_pool(&["--output", "/run/eipool/team-media.env"]).is_ok());
    }

    #[test]
    fn the_exporters_read_fits_in_its_interval() {
        let s = Duration::from_secs;
        assert_eq!(exporter_read_timeout(s(30), None).unwrap(), s(20));
        assert_eq!(exporter_read_timeout(s(10), None).unwrap(), s(10));
        assert_eq!(exporter_read_timeout(s(30), Some(s(30))).unwrap(), s(30));
        let e = exporter_read_timeout(s(10), Some(s(20))).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("--timeout 20s") && e.contains("--interval 10s"),
            "{e}"
        );
    }
}

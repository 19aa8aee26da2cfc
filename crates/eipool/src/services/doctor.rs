//! `eipool doctor`: a checklist with one verdict per line — AWS region and credentials, IMDSv2,
//! who we are, every EC2 action eipool needs (asked with DryRun), Redis and its round trip, the
//! pool and how many addresses are free. Exit 1 when any line fails.

use std::time::Instant;

use crate::adapters::aws::{DryRunAction, Imds, Permission};
use crate::pure::address::POOL_TAG;
use crate::pure::identity::IdentitySource;
use crate::services::context::Context;
use crate::services::identity;
use crate::support::budget::Budget;

/// A line's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// Broken: eipool will fail.
    Fail,
    /// Not checked (something it needs failed first).
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// What was checked.
    pub(crate) name: String,
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// What was found, and what to do when it is not fine.
    pub(crate) detail: String,
}

fn line(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        detail: detail.into(),
    }
}

/// Render the checklist.
pub(crate) fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.verdict {
            Verdict::Ok => " ok ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        out.push_str(&format!("[{tag}] {}: {}\n", c.name, c.detail));
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    out.push_str(&if failed == 0 {
        "all checks passed\n".to_string()
    } else {
        format!("{failed} check(s) failed\n")
    });
    out
}

/// Run every check. Never fails itself: what goes wrong is a line.
pub(crate) async fn run(
    ctx: &Context,
    budget: &Budget,
    source: &IdentitySource,
    private_ip: Option<std::net::Ipv4Addr>,
) -> Vec<Check> {
    let ec2 = &ctx.ec2;
    let mut checks = vec![line("AWS region", Verdict::Ok, ec2.region().to_string())];

    let creds = budget
        .bounded(ec2.may_call(DryRunAction::DescribeAddresses))
        .await;
    let creds_ok = matches!(creds, Ok(Permission::Allowed) | Ok(Permission::Denied(_)));
    checks.push(match creds {
        Ok(Permission::Allowed) | Ok(Permission::Denied(_)) => line("AWS credentials", Verdict::Ok, "EC2 accepted them"),
        Ok(Permission::Unknown(e)) => line("AWS credentials", Verdict::Fail, format!("{e}. Provide credentials (IRSA on EKS, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")),
        Err(_) => line("AWS credentials", Verdict::Fail, "EC2 did not answer in time"),
    });

    let needs_imds = *source == IdentitySource::Imds;
    match budget.bounded(Imds::new().instance_id()).await {
        Ok(Ok(id)) => checks.push(line(
            "IMDSv2",
            Verdict::Ok,
            format!("reachable, instance {id}"),
        )),
        Ok(Err(e)) => checks.push(line(
            "IMDSv2",
            if needs_imds {
                Verdict::Fail
            } else {
                Verdict::Warn
            },
            if needs_imds {
                e.to_string()
            } else {
                format!(
                    "not reachable (not needed: the interface or instance is given by flag). {e}"
                )
            },
        )),
        Err(_) => checks.push(line(
            "IMDSv2",
            if needs_imds {
                Verdict::Fail
            } else {
                Verdict::Warn
            },
            "no answer in time",
        )),
    }

    let me = if creds_ok {
        match identity::resolve_in(ec2, budget, source, private_ip).await {
            Ok(me) => {
                checks.push(line(
                    "identity",
                    Verdict::Ok,
                    format!("interface {} private IP {}", me.eni, me.private_ip),
                ));
                Some(me)
            }
            Err(e) => {
                checks.push(line("identity", Verdict::Fail, e.to_string()));
                None
            }
        }
    } else {
        checks.push(line(
            "identity",
            Verdict::Skip,
            "needs working AWS credentials",
        ));
        None
    };

    let listing = if creds_ok {
        budget
            .retry("list pool", || ec2.describe_pool(&ctx.pool))
            .await
            .ok()
    } else {
        None
    };
    let first = listing
        .as_ref()
        .and_then(|l| l.first())
        .map(|a| a.allocation_id.clone());

    if creds_ok {
        let mut actions = vec![
            DryRunAction::DescribeAddresses,
            DryRunAction::DescribeNetworkInterfaces,
            DryRunAction::DescribeInstances,
            DryRunAction::DisassociateAddress,
            DryRunAction::AllocateAddress,
        ];
        if let (Some(a), Some(me)) = (&first, &me) {
            actions.push(DryRunAction::AssociateAddress(a, &me.eni));
        }
        if let Some(a) = &first {
            actions.push(DryRunAction::ReleaseAddress(a));
        }
        for action in actions {
            let name = format!("permission ec2:{}", action.name());
            checks.push(match budget.bounded(ec2.may_call(action)).await {
                Ok(Permission::Allowed) => line(name, Verdict::Ok, "allowed (DryRun)"),
                Ok(Permission::Denied(m)) => line(
                    name,
                    Verdict::Fail,
                    format!("denied: {m}. Add it to the IAM policy (deploy/iam-policy.json)"),
                ),
                Ok(Permission::Unknown(m)) => {
                    line(name, Verdict::Warn, format!("could not tell: {m}"))
                }
                Err(_) => line(name, Verdict::Warn, "no answer in time"),
            });
        }
        if first.is_none() || me.is_none() {
            checks.push(line(
                "permission ec2:AssociateAddress",
                Verdict::Skip,
                "needs a pool address and a resolved interface",
            ));
        }
    } else {
        checks.push(line(
            "permissions",
            Verdict::Skip,
            "need working AWS credentials",
        ));
    }

    match &ctx.herd {
        None => checks.push(line("Redis", Verdict::Warn, "no --redis-url: claims rely on EC2's compare-and-swap alone (safe; a herd collides more)")),
        Some(herd) => {
            let t = Instant::now();
            match budget.bounded(herd.ping()).await {
                Ok(Ok(())) => checks.push(line("Redis", Verdict::Ok, format!("reachable, round trip {:.1} ms", t.elapsed().as_secs_f64() * 1e3))),
                Ok(Err(e)) => checks.push(line(
                    "Redis",
                    Verdict::Fail,
                    format!("{e}. Check --redis-url and that Redis is up; claims then fall back to EC2 alone (or fail with --require-lock)"),
                )),
                Err(_) => checks.push(line("Redis", Verdict::Fail, "no answer in time")),
            }
        }
    }

    checks.push(match &listing {
        None if !creds_ok => line("pool", Verdict::Skip, "needs working AWS credentials"),
        None => line("pool", Verdict::Fail, format!("could not list pool {:?}", ctx.pool)),
        Some(l) if l.is_empty() => line(
            "pool",
            Verdict::Fail,
            format!(
                "pool {:?} has no addresses: no VPC Elastic IP in {} is tagged {POOL_TAG}={}. Check --pool and AWS_REGION, or run `eipool pool grow --pool {} --count N`",
                ctx.pool,
                ec2.region(),
                ctx.pool,
                ctx.pool
            ),
        ),
        Some(l) => {
            let free = l.iter().filter(|a| a.association.is_none()).count();
            let verdict = if free == 0 { Verdict::Fail } else { Verdict::Ok };
            let hint = if free == 0 { ". Grow it: eipool pool grow" } else { "" };
            line("pool", verdict, format!("{:?}: {} addresses, {free} free{hint}", ctx.pool, l.len()))
        }
    });
    checks
}

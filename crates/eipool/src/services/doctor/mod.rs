//! `eipool doctor`: a checklist with one verdict per line, for one role. It tells apart the
//! things that fail in different ways and are fixed by different people: the EC2 endpoint (the
//! network), the credentials, the role's permissions (asked with DryRun, exactly as eipool makes
//! each call, tags included), this node (skipped off-node, not failed), Redis, and the pool.

mod redis;

use crate::adapters::aws::{DryRunAction, Imds, Permission};
use crate::pure::address::{Address, POOL_TAG};
use crate::pure::identity::{Identity, IdentitySource};
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
    /// Not checked: not applicable here, or something it needs failed first.
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

/// Whose permissions to check: the shipped policies' two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `deploy/iam/node.json`: the media nodes (claim, agent, release) and the exporter.
    Node,
    /// `deploy/iam/operator.json`: operators (status, gc, pool grow and shrink).
    Operator,
}

impl Role {
    fn policy(self) -> &'static str {
        match self {
            Role::Node => "deploy/iam/node.json",
            Role::Operator => "deploy/iam/operator.json",
        }
    }
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

/// Run every check for `role`. Never fails itself: what goes wrong is a line.
pub(crate) async fn run(
    ctx: &Context,
    budget: &Budget,
    source: &IdentitySource,
    private_ip: Option<std::net::Ipv4Addr>,
    role: Role,
) -> Vec<Check> {
    let ec2 = &ctx.ec2;
    let mut checks = vec![line("AWS region", Verdict::Ok, ec2.region().to_string())];

    // The endpoint and the credentials, told apart by how the first DryRun fails.
    let reached = match budget
        .bounded(ec2.may_call(DryRunAction::DescribeAddresses))
        .await
    {
        Ok(Permission::Allowed | Permission::Denied(_)) => {
            checks.push(line("EC2 endpoint", Verdict::Ok, "answered"));
            checks.push(line("AWS credentials", Verdict::Ok, "EC2 accepted them"));
            true
        }
        Ok(Permission::Unreachable(e)) | Ok(Permission::Unknown(e)) => {
            checks.push(line("EC2 endpoint", Verdict::Fail, format!("no answer: {e}. Check the network path to EC2 (NAT, VPC endpoint, proxy, AWS_ENDPOINT_URL)")));
            checks.push(line(
                "AWS credentials",
                Verdict::Skip,
                "needs the EC2 endpoint",
            ));
            false
        }
        Ok(Permission::NoCredentials(e)) => {
            checks.push(line(
                "EC2 endpoint",
                Verdict::Skip,
                "needs credentials to sign a request",
            ));
            checks.push(line("AWS credentials", Verdict::Fail, format!("none usable: {e}. Provide credentials: IRSA on EKS, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")));
            false
        }
        Ok(Permission::BadCredentials(e)) => {
            checks.push(line("EC2 endpoint", Verdict::Ok, "answered"));
            checks.push(line("AWS credentials", Verdict::Fail, format!("EC2 rejected them: {e}. Check the keys, the profile or the IRSA role, and AWS_REGION")));
            false
        }
        Err(_) => {
            checks.push(line(
                "EC2 endpoint",
                Verdict::Fail,
                "no answer in time (--timeout)",
            ));
            checks.push(line(
                "AWS credentials",
                Verdict::Skip,
                "needs the EC2 endpoint",
            ));
            false
        }
    };

    let me = match role {
        Role::Operator => {
            checks.push(line(
                "this node",
                Verdict::Skip,
                "the operator role does not claim",
            ));
            None
        }
        Role::Node => node_checks(ctx, budget, source, private_ip, reached, &mut checks).await,
    };

    let listing = if reached {
        budget
            .retry("list pool", || ec2.describe_pool(&ctx.pool))
            .await
            .ok()
    } else {
        None
    };
    if reached {
        permission_checks(
            ctx,
            budget,
            role,
            listing.as_deref(),
            me.as_ref(),
            &mut checks,
        )
        .await;
    } else {
        checks.push(line(
            "permissions",
            Verdict::Skip,
            "need the EC2 endpoint and working credentials",
        ));
    }

    match &ctx.redis {
        None => checks.push(line("Redis", Verdict::Warn, "no --redis-url: claims rely on EC2's compare-and-swap alone (safe; a herd collides more)")),
        Some(handle) => checks.extend(redis::checks(handle, budget).await),
    }

    checks.push(match &listing {
        None if !reached => line("pool", Verdict::Skip, "needs the EC2 endpoint and working credentials"),
        None => line("pool", Verdict::Fail, format!("could not list pool {:?}", ctx.pool)),
        Some(l) if l.is_empty() => line(
            "pool",
            Verdict::Fail,
            format!(
                "pool {:?} has no addresses: no VPC Elastic IP in {} is tagged {POOL_TAG}={}. Check --pool and AWS_REGION, or run `eipool --pool {} pool grow --count N`",
                ctx.pool,
                ec2.region(),
                ctx.pool,
                ctx.pool
            ),
        ),
        Some(l) => {
            let free = l.iter().filter(|a| a.association.is_none()).count();
            let verdict = if free == 0 { Verdict::Fail } else { Verdict::Ok };
            let hint = if free == 0 { format!(". Grow it: eipool --pool {} pool grow --count N", ctx.pool) } else { String::new() };
            line("pool", verdict, format!("{:?}: {} addresses, {free} free{hint}", ctx.pool, l.len()))
        }
    });
    checks
}

/// IMDSv2 and who we are. Off a node (IMDSv2 silent and no interface given by flag), the node
/// checks are skipped, not failed: doctor may run on an operator's machine.
async fn node_checks(
    ctx: &Context,
    budget: &Budget,
    source: &IdentitySource,
    private_ip: Option<std::net::Ipv4Addr>,
    reached: bool,
    checks: &mut Vec<Check>,
) -> Option<Identity> {
    if *source == IdentitySource::Imds {
        match budget.bounded(Imds::new().instance_id()).await {
            Ok(Ok(id)) => checks.push(line(
                "IMDSv2",
                Verdict::Ok,
                format!("reachable, instance {id}"),
            )),
            _ => {
                checks.push(line(
                    "this node",
                    Verdict::Skip,
                    "not on an EC2 node (IMDSv2 does not answer): run doctor on a media node, or pass --network-interface-id to check an interface. In a pod without hostNetwork, set the instance metadata hop limit to 2",
                ));
                return None;
            }
        }
    } else {
        checks.push(line(
            "IMDSv2",
            Verdict::Skip,
            "not needed: the interface is given by flag",
        ));
    }
    if !reached {
        checks.push(line(
            "identity",
            Verdict::Skip,
            "needs the EC2 endpoint and working credentials",
        ));
        return None;
    }
    match identity::resolve_in(&ctx.ec2, budget, source, private_ip).await {
        Ok(identity::Resolved { me, .. }) => {
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
}

/// DryRun exactly what the role's shipped policy allows, and what it must not allow.
async fn permission_checks(
    ctx: &Context,
    budget: &Budget,
    role: Role,
    listing: Option<&[Address]>,
    me: Option<&Identity>,
    checks: &mut Vec<Check>,
) {
    let pool_addr = listing.and_then(|l| l.first());
    let ours = listing.and_then(|l| me.and_then(|me| l.iter().find(|a| a.held_by_me(me))));
    let alloc = pool_addr.map(|a| a.allocation_id.clone());
    let mut needed: Vec<Option<DryRunAction>> = vec![
        Some(DryRunAction::DescribeAddresses),
        Some(DryRunAction::DescribeNetworkInterfaces),
    ];
    let mut forbidden: Vec<Option<DryRunAction>> = Vec::new();
    let assoc = ours
        .and_then(|a| a.association.as_ref())
        .map(|x| x.id.clone());
    match role {
        Role::Node => {
            needed.push(match (&alloc, me) {
                (Some(a), Some(me)) => Some(DryRunAction::AssociateAddress(a, &me.eni)),
                _ => None,
            });
            needed.push(assoc.as_ref().map(DryRunAction::DisassociateAddress));
            needed.push(alloc.as_ref().map(DryRunAction::TagHolder));
            forbidden.push(Some(DryRunAction::AllocateAddress(&ctx.pool)));
            forbidden.push(alloc.as_ref().map(DryRunAction::ReleaseAddress));
        }
        Role::Operator => {
            needed.push(Some(DryRunAction::DescribeInstances));
            needed.push(Some(DryRunAction::AllocateAddress(&ctx.pool)));
            needed.push(alloc.as_ref().map(DryRunAction::ReleaseAddress));
        }
    }
    let why_skipped = |n: usize| match (role, n) {
        (Role::Node, 2) => "needs a pool address and this node's interface",
        (Role::Node, 3) => "needs a pool address on this interface (nothing claimed here yet)",
        _ => "needs a pool address",
    };
    let policy = role.policy();
    for (n, action) in needed.into_iter().enumerate() {
        let Some(action) = action else {
            let name = match (role, n) {
                (Role::Node, 2) => "AssociateAddress",
                (Role::Node, 3) => "DisassociateAddress",
                (Role::Node, 4) => "CreateTags",
                _ => "ReleaseAddress",
            };
            checks.push(line(
                format!("permission ec2:{name}"),
                Verdict::Skip,
                why_skipped(n),
            ));
            continue;
        };
        let name = format!("permission ec2:{}", action.name());
        checks.push(match budget.bounded(ctx.ec2.may_call(action)).await {
            Ok(Permission::Allowed) => line(name, Verdict::Ok, "allowed (DryRun)"),
            Ok(Permission::Denied(m)) => line(
                name,
                Verdict::Fail,
                format!("denied: {m}. This role needs it: see {policy}"),
            ),
            Ok(other) => line(name, Verdict::Warn, format!("could not tell: {other}")),
            Err(_) => line(name, Verdict::Warn, "no answer in time"),
        });
    }
    for action in forbidden.into_iter().flatten() {
        // The line reads as a sentence either way: "ec2:X should be denied: it is allowed …".
        let name = format!("ec2:{} should be denied", action.name());
        checks.push(match budget.bounded(ctx.ec2.may_call(action)).await {
            Ok(Permission::Denied(_)) => line(name, Verdict::Ok, "it is (DryRun): media nodes never allocate or release published addresses"),
            Ok(Permission::Allowed) => line(name, Verdict::Warn, format!("it is allowed (DryRun), so this role can allocate or release pool addresses, and a released published address is lost for good. Give media nodes {policy} and operators deploy/iam/operator.json")),
            Ok(other) => line(name, Verdict::Warn, format!("could not tell: {other}")),
            Err(_) => line(name, Verdict::Warn, "no answer in time"),
        });
    }
}

//! Who am I: the interface and private IP a claim maps its address to, from flags or IMDSv2,
//! checked against EC2 when that costs nothing extra or `--private-ip` asks for it.

use std::net::Ipv4Addr;

use tracing::{info, instrument, warn};

use crate::adapters::aws::{Ec2, Ec2Error, Imds, ImdsError};
use crate::adapters::redis::PaceAsk;
use crate::pure::address::{Interface, PublicMapping};
use crate::pure::error::Error;
use crate::pure::identity::{Identity, IdentitySource};
use crate::pure::ids::EniId;
use crate::pure::plan;
use crate::services::context::Context;
use crate::support::budget::{Budget, Transient};

/// What EC2 showed on the interface when the identity was looked up (flags mode): the public IPs
/// on its private IPs, and when the request was sent. The claim that follows may take it for
/// its look at what its private IP holds, sparing a second DescribeNetworkInterfaces, only when
/// `plan::identity_look_will_do` says nothing of ours can have changed there since.
#[derive(Debug, Clone)]
pub(crate) struct InterfaceLook {
    /// The public IPs mapped to the interface's private IPs.
    pub(crate) public: Vec<PublicMapping>,
    /// When the describe was sent.
    pub(crate) at: tokio::time::Instant,
}

/// Who we are and, when finding out cost a describe of the interface, what it showed.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The identity.
    pub(crate) me: Identity,
    /// The interface as described then (`None` when IMDSv2 alone said who we are).
    pub(crate) look: Option<InterfaceLook>,
}

/// Errors finding out who we are.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    /// IMDSv2 could not be read (not on EC2, or the hop limit is 1 and we run in a container
    /// without hostNetwork); pass `--network-interface-id` or `--instance-id`, or raise the hop limit.
    #[error("{0}. Pass --network-interface-id or --instance-id, or, in a pod without hostNetwork, set the instance metadata hop limit to 2")]
    Imds(#[from] ImdsError),
    /// `--private-ip` is not one of the interface's private IPs.
    #[error("--private-ip {ip} is not a private IP of {eni} (it has {have}); pick one of those")]
    NotOnInterface {
        /// The requested IP.
        ip: Ipv4Addr,
        /// The interface.
        eni: EniId,
        /// The IPs it has.
        have: String,
    },
    /// EC2 failed while describing the interface.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

impl Transient for IdentityError {
    fn is_transient(&self) -> bool {
        matches!(self, IdentityError::Ec2(e) if e.is_transient())
    }
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Ec2(Ec2Error::InterfaceNotFound(id)) => Error::usage(format!(
                "--network-interface-id {id} does not exist in this region; check the id and AWS_REGION"
            )),
            IdentityError::Ec2(Ec2Error::InstanceNotFound(id)) => Error::usage(format!(
                "--instance-id {id} does not exist in this region (or has no device-index-0 interface); check the id and AWS_REGION"
            )),
            IdentityError::Ec2(e) => e.into(),
            e @ (IdentityError::NotOnInterface { .. } | IdentityError::Imds(_)) => {
                Error::usage(e.to_string())
            }
        }
    }
}

/// Resolve the identity from flags or IMDSv2, then describe the interface (one EC2 call) to
/// learn its private IPs and check `--private-ip`.
#[instrument(skip(ec2), err(level = "debug", Display))]
pub(crate) async fn resolve(
    ec2: &Ec2,
    source: &IdentitySource,
    private_ip: Option<Ipv4Addr>,
) -> Result<Resolved, IdentityError> {
    let at = tokio::time::Instant::now();
    let iface: Interface = match source {
        IdentitySource::Interface(eni) => ec2.describe_interface(eni).await?,
        IdentitySource::Instance(id) => ec2.primary_interface_of(id).await?,
        IdentitySource::Imds => {
            let imds = Imds::new();
            let node = imds.primary_interface().await?;
            if private_ip.is_none() {
                // IMDSv2 already knows the primary interface's primary IP: no EC2 call, which
                // spares the describe budget a whole herd shares.
                let me = Identity {
                    eni: node.eni,
                    private_ip: imds.local_ipv4().await?,
                    instance_id: Some(node.instance_id),
                    mac: Some(node.mac),
                };
                return Ok(Resolved { me, look: None });
            }
            let iface = ec2.describe_interface(&node.eni).await?;
            return checked(iface, private_ip, Some(node.mac), at);
        }
    };
    checked(iface, private_ip, None, at)
}

/// The identity on `iface`, with `private_ip` (when given) checked against its private IPs.
fn checked(
    iface: Interface,
    private_ip: Option<Ipv4Addr>,
    mac: Option<String>,
    at: tokio::time::Instant,
) -> Result<Resolved, IdentityError> {
    let ip = match private_ip {
        None => iface.primary_private_ip,
        Some(ip) if iface.private_ips.contains(&ip) => ip,
        Some(ip) => {
            return Err(IdentityError::NotOnInterface {
                ip,
                eni: iface.id,
                have: iface
                    .private_ips
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let me = Identity {
        eni: iface.id,
        private_ip: ip,
        instance_id: iface.instance_id,
        mac,
    };
    let look = Some(InterfaceLook {
        public: iface.public,
        at,
    });
    Ok(Resolved { me, look })
}

/// [`resolve`], with passing failures retried within `budget`.
pub(crate) async fn resolve_in(
    ec2: &Ec2,
    budget: &Budget,
    source: &IdentitySource,
    private_ip: Option<Ipv4Addr>,
) -> Result<Resolved, Error> {
    budget
        .call("identity", || resolve(ec2, source, private_ip))
        .await
}

/// [`resolve_in`] as a herd member: when it costs an EC2 call (DescribeNetworkInterfaces), each
/// try waits for a turn in the herd's pace of that action, and a throttled answer slows the pace
/// for the whole herd and waits for a new turn (if Redis answers; it is only a pace).
pub(crate) async fn resolve_paced(
    ctx: &Context,
    budget: &Budget,
    source: &IdentitySource,
    private_ip: Option<Ipv4Addr>,
) -> Result<Resolved, Error> {
    let Some(redis) = ctx.redis.as_ref().filter(|_| source.calls_ec2(private_ip)) else {
        return resolve_in(&ctx.ec2, budget, source, private_ip).await;
    };
    let (class, rate) = (plan::PACE_DESCRIBE_INTERFACES, &plan::DESCRIBE_PACE);
    loop {
        let ticket = match budget.bounded(redis.paced(class, rate)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                warn!(error = %e, "Redis unavailable: looking up the interface unpaced");
                return resolve_in(&ctx.ec2, budget, source, private_ip).await;
            }
            Err(i) => return Err(budget.error(i)),
        };
        match budget.bounded(resolve(&ctx.ec2, source, private_ip)).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(IdentityError::Ec2(e @ Ec2Error::Throttled { .. }))) => {
                budget.note(&e);
                let told = redis.pace(class, rate, PaceAsk::Throttled(ticket));
                match budget.bounded(told).await {
                    Ok(Ok(a)) if a.cut => info!(
                        per_second = a.rate,
                        "EC2 throttled the interface lookup: the herd's DescribeNetworkInterfaces pace slows"
                    ),
                    Ok(_) => {}
                    Err(i) => return Err(budget.error(i)),
                }
            }
            // Anything else is retried, or not, as a lookup alone would be.
            Ok(Err(e)) if e.is_transient() => {
                budget.note(&e);
                return resolve_in(&ctx.ec2, budget, source, private_ip).await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(i) => return Err(budget.error(i)),
        }
    }
}

//! What already holds our private IP, looked at once per listing before associating: AWS
//! replaces an Elastic IP already there (it is disassociated, not released), so a claim that did
//! not look could pull someone's hand-attached address, or its own earlier one.

use tracing::{debug, warn};

use super::coordination::PaceClass;
use super::{Means, Stop};
use crate::adapters::aws::Imds;
use crate::pure::address::{Address, Occupant, PublicMapping};
use crate::pure::classify;
use crate::pure::identity::Identity;
use crate::services::identity::InterfaceLook;

/// What holds `me`'s private IP: the node's own view from IMDSv2 when we know our MAC (no EC2
/// call), else `look` (the identity's describe, when the protocol found it still stands), else
/// the interface as EC2 describes it. An unknown public IP costs one DescribeAddresses by
/// public IP, to tell an Elastic IP from an ephemeral address.
pub(super) async fn occupant(
    m: &mut Means,
    me: &Identity,
    listing: &[Address],
    look: Option<InterfaceLook>,
) -> Result<Occupant, Stop> {
    let mappings = public_mappings(m, me, look).await?;
    for seen in mappings.iter().filter(|s| s.private_ip == me.private_ip) {
        let in_pool = listing.iter().find(|a| a.public_ip == seen.public_ip);
        if in_pool.is_some() {
            return Ok(classify::occupant(in_pool, None, &m.pool));
        }
        let eip = match &seen.allocation_id {
            // The interface view names it: look it up for its pool tag.
            Some(alloc) => {
                let ec2 = m.ec2.clone();
                m.coord
                    .described(&m.work, PaceClass::Describe, "look up occupant", || {
                        ec2.describe_address(alloc)
                    })
                    .await?
                    .0
            }
            // IMDSv2 does not say whether it is an Elastic IP: ask EC2.
            None if seen.from_imds => {
                let (ec2, ip) = (m.ec2.clone(), seen.public_ip);
                m.coord
                    .described(&m.work, PaceClass::Describe, "look up occupant", || {
                        ec2.describe_public_ip(ip)
                    })
                    .await?
                    .0
            }
            // EC2's interface view shows no allocation: an ephemeral public IP.
            None => None,
        };
        let found = classify::occupant(None, eip.as_ref(), &m.pool);
        debug!(public_ip = %seen.public_ip, occupant = %found, "our private IP already has a public IP");
        if found != Occupant::Free {
            return Ok(found);
        }
    }
    Ok(Occupant::Free)
}

/// The public IPs mapped to the interface's private IPs, with where the answer came from.
async fn public_mappings(
    m: &mut Means,
    me: &Identity,
    look: Option<InterfaceLook>,
) -> Result<Vec<Seen>, Stop> {
    if let Some(mac) = &me.mac {
        match m.work.bounded(Imds::new().ipv4_associations(mac)).await? {
            Ok(pairs) => {
                return Ok(pairs
                    .into_iter()
                    .map(|(public_ip, private_ip)| Seen {
                        private_ip,
                        public_ip,
                        allocation_id: None,
                        from_imds: true,
                    })
                    .collect())
            }
            Err(e) => {
                warn!(error = %e, "IMDSv2 did not say what our interface holds; asking EC2")
            }
        }
    }
    let public = match look {
        Some(look) => {
            debug!(
                "what our private IP holds: as the identity's lookup of the interface showed it"
            );
            look.public
        }
        None => {
            let ec2 = m.ec2.clone();
            m.coord
                .described(
                    &m.work,
                    PaceClass::DescribeInterfaces,
                    "describe interface",
                    || ec2.describe_interface(&me.eni),
                )
                .await?
                .0
                .public
        }
    };
    Ok(public
        .into_iter()
        .map(
            |PublicMapping {
                 private_ip,
                 public_ip,
                 allocation_id,
             }| Seen {
                private_ip,
                public_ip,
                allocation_id,
                from_imds: false,
            },
        )
        .collect())
}

/// A public IP on one of our private IPs.
struct Seen {
    private_ip: std::net::Ipv4Addr,
    public_ip: std::net::Ipv4Addr,
    /// The allocation id, when EC2's interface view gave one.
    allocation_id: Option<crate::pure::ids::AllocationId>,
    /// Whether IMDSv2 said it (which cannot tell an Elastic IP from an ephemeral address).
    from_imds: bool,
}

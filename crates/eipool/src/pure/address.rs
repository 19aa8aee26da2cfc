//! Elastic IPs and interfaces as eipool sees them: plain data, read from EC2 by the AWS adapter.

use std::net::Ipv4Addr;

use super::identity::Identity;
use super::ids::{AllocationId, AssociationId, EniId, InstanceId};

/// The tag that puts an Elastic IP in a pool: `eipool:pool=<name>`.
pub const POOL_TAG: &str = "eipool:pool";

/// One Elastic IP as DescribeAddresses shows it. (Serialized only to share a listing with the
/// herd through Redis.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// `eipalloc-…`.
    pub allocation_id: AllocationId,
    /// The public IPv4 address.
    pub public_ip: Ipv4Addr,
    /// Where it is associated, if anywhere.
    pub association: Option<Association>,
    /// The value of the `eipool:pool` tag, if any.
    pub pool: Option<String>,
}

/// Where an Elastic IP is associated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Association {
    /// `eipassoc-…`.
    pub id: AssociationId,
    /// The interface holding it (absent for EC2-Classic style instance associations).
    pub network_interface_id: Option<EniId>,
    /// The private IP of that interface it maps to.
    pub private_ip: Option<Ipv4Addr>,
    /// The instance, when EC2 reports one (moto 5 does not for interface associations).
    pub instance_id: Option<InstanceId>,
}

impl Address {
    /// Whether this address is associated with exactly this interface and private IP.
    pub fn held_by(&self, eni: &EniId, private_ip: Ipv4Addr) -> bool {
        self.association.as_ref().is_some_and(|a| {
            a.network_interface_id.as_ref() == Some(eni) && a.private_ip == Some(private_ip)
        })
    }

    /// Whether this address is associated with `me` (its interface and private IP).
    pub fn held_by_me(&self, me: &Identity) -> bool {
        self.held_by(&me.eni, me.private_ip)
    }
}

/// A network interface and the private IPs it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `eni-…`.
    pub id: EniId,
    /// Its primary private IPv4 address.
    pub primary_private_ip: Ipv4Addr,
    /// All its private IPv4 addresses, primary first.
    pub private_ips: Vec<Ipv4Addr>,
    /// The instance it is attached to, if attached.
    pub instance_id: Option<InstanceId>,
}

/// An interface's status (`in-use`, `available`, …) and attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceState {
    /// `eni-…`.
    pub id: EniId,
    /// EC2's status of the interface.
    pub status: String,
    /// The instance it is attached to, if any.
    pub instance_id: Option<InstanceId>,
}

/// Where new addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// Amazon's pool.
    Amazon,
    /// An IPAM pool (`--ipam-pool-id`).
    Ipam(String),
    /// A BYOIP public IPv4 pool (`--public-ipv4-pool`).
    PublicIpv4Pool(String),
}

//! Elastic IPs and interfaces as eipool sees them: plain data, read from EC2 by the AWS adapter.

use std::net::Ipv4Addr;

use super::identity::Identity;
use super::ids::{AllocationId, AssociationId, EniId, InstanceId};

/// The tag that puts an Elastic IP in a pool: `eipool:pool=<name>`.
pub(crate) const POOL_TAG: &str = "eipool:pool";

/// The tag on an address that records where eipool put it: `eipool:holder=<HolderTag>`.
pub(crate) const HOLDER_TAG: &str = "eipool:holder";

/// Where eipool put an address, written on the address after validating the claim:
/// `<eni>/<private ip>/<association id>/<since, RFC 3339>`. The association id makes it exact:
/// the same address associated again by hand, even to the same interface, is a different
/// association, so it no longer matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HolderTag {
    /// The interface.
    pub eni: EniId,
    /// The private IP the address maps to.
    pub private_ip: Ipv4Addr,
    /// The association eipool validated.
    pub association: AssociationId,
    /// When, as RFC 3339 (seconds).
    pub since: String,
}

impl HolderTag {
    /// The tag's value.
    pub fn value(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.eni, self.private_ip, self.association, self.since
        )
    }

    /// Read a tag value; `None` when it is not one this version wrote.
    pub fn parse(value: &str) -> Option<HolderTag> {
        let mut parts = value.splitn(4, '/');
        Some(HolderTag {
            eni: parts.next()?.parse().ok()?,
            private_ip: parts.next()?.parse().ok()?,
            association: parts.next()?.parse().ok()?,
            since: parts.next()?.to_string(),
        })
    }

    /// The tag `addr` should get, held by `me` as of `now`: `None` when it is not associated or
    /// its tag already records this association (nothing to write).
    pub fn to_write(
        addr: &Address,
        me: &Identity,
        now: std::time::SystemTime,
    ) -> Option<HolderTag> {
        let x = addr.association.as_ref()?;
        if addr.holder.as_ref().is_some_and(|t| t.matches(x)) {
            return None;
        }
        Some(HolderTag {
            eni: me.eni.clone(),
            private_ip: me.private_ip,
            association: x.id.clone(),
            since: humantime::format_rfc3339_seconds(now).to_string(),
        })
    }

    /// Whether EC2's association is the one this tag records.
    pub fn matches(&self, x: &Association) -> bool {
        x.id == self.association
            && x.network_interface_id.as_ref() == Some(&self.eni)
            && x.private_ip == Some(self.private_ip)
    }
}

/// One Elastic IP as DescribeAddresses shows it. (Serialized only to share a listing with the
/// herd through Redis.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// `eipalloc-…`.
    pub allocation_id: AllocationId,
    /// The public IPv4 address.
    pub public_ip: Ipv4Addr,
    /// Where it is associated, if anywhere.
    pub association: Option<Association>,
    /// The value of the `eipool:pool` tag, if any.
    pub pool: Option<String>,
    /// The `eipool:holder` tag: where eipool put it, if it did.
    #[serde(default)]
    pub holder: Option<HolderTag>,
}

/// Where an Elastic IP is associated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
pub(crate) struct Interface {
    /// `eni-…`.
    pub id: EniId,
    /// Its primary private IPv4 address.
    pub primary_private_ip: Ipv4Addr,
    /// All its private IPv4 addresses, primary first.
    pub private_ips: Vec<Ipv4Addr>,
    /// The instance it is attached to, if attached.
    pub instance_id: Option<InstanceId>,
    /// The public IPv4 addresses mapped to its private IPs.
    pub public: Vec<PublicMapping>,
}

/// A public IPv4 address mapped to a private IP, as the interface or IMDSv2 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicMapping {
    /// The private IP.
    pub private_ip: Ipv4Addr,
    /// The public IP mapped to it.
    pub public_ip: Ipv4Addr,
    /// Its allocation id when EC2 says it is an Elastic IP (the interface view says; IMDSv2
    /// does not, so `None` there means "unknown").
    pub allocation_id: Option<AllocationId>,
}

impl std::fmt::Display for Occupant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Occupant::Free => f.write_str("nothing (or an ephemeral public IP)"),
            Occupant::Pool(a) => write!(f, "pool address {a}"),
            Occupant::Foreign {
                public_ip,
                allocation_id,
            } => write!(
                f,
                "Elastic IP {public_ip} ({allocation_id}) outside the pool"
            ),
        }
    }
}

/// What holds the private IP a claim would associate an address with. AWS replaces an Elastic IP
/// already there (it is disassociated, not released), so a claim must look before it associates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Occupant {
    /// Nothing, or an ephemeral public IP (AWS gives it back when an Elastic IP arrives): go on.
    Free,
    /// An address of our own pool: it is ours; adopt it.
    Pool(AllocationId),
    /// An Elastic IP outside the pool, associated by someone else: never displace it.
    Foreign {
        /// Its public IP.
        public_ip: Ipv4Addr,
        /// Its allocation id.
        allocation_id: AllocationId,
    },
}

/// An interface's status (`in-use`, `available`, …) and attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceState {
    /// `eni-…`.
    pub id: EniId,
    /// EC2's status of the interface.
    pub status: String,
    /// The instance it is attached to, if any.
    pub instance_id: Option<InstanceId>,
}

/// Where new addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddressSource {
    /// Amazon's pool.
    Amazon,
    /// An IPAM pool (`--ipam-pool-id`).
    Ipam(String),
    /// A BYOIP public IPv4 pool (`--public-ipv4-pool`).
    PublicIpv4Pool(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(id: &str, eni: &str, ip: &str) -> Association {
        Association {
            id: id.parse().unwrap(),
            network_interface_id: Some(eni.parse().unwrap()),
            private_ip: Some(ip.parse().unwrap()),
            instance_id: None,
        }
    }

    #[test]
    fn a_holder_tag_round_trips_and_matches_only_its_association() {
        let tag = HolderTag {
            eni: "eni-0a".parse().unwrap(),
            private_ip: "10.0.0.5".parse().unwrap(),
            association: "eipassoc-1b".parse().unwrap(),
            since: "2026-11-27T01:02:03Z".into(),
        };
        assert_eq!(
            tag.value(),
            "eni-0a/10.0.0.5/eipassoc-1b/2026-11-27T01:02:03Z"
        );
        assert_eq!(HolderTag::parse(&tag.value()), Some(tag.clone()));
        // (association, matches)
        let cases = [
            (assoc("eipassoc-1b", "eni-0a", "10.0.0.5"), true),
            (assoc("eipassoc-2c", "eni-0a", "10.0.0.5"), false), // associated again by hand
            (assoc("eipassoc-1b", "eni-0b", "10.0.0.5"), false),
            (assoc("eipassoc-1b", "eni-0a", "10.0.0.6"), false),
        ];
        for (x, want) in cases {
            assert_eq!(tag.matches(&x), want, "{x:?}");
        }
        for junk in ["", "x", "eni-0a/10.0.0.5", "eni-0a/not-an-ip/eipassoc-1b/t"] {
            assert_eq!(HolderTag::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_holder_tag_is_written_only_where_it_does_not_record_the_association() {
        let me = Identity {
            eni: "eni-0a".parse().unwrap(),
            private_ip: "10.0.0.5".parse().unwrap(),
            instance_id: None,
            mac: None,
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let mut addr = Address {
            allocation_id: "eipalloc-1".parse().unwrap(),
            public_ip: "198.51.100.1".parse().unwrap(),
            association: None,
            pool: Some("p".into()),
            holder: None,
        };
        assert_eq!(HolderTag::to_write(&addr, &me, at), None, "not associated");
        addr.association = Some(assoc("eipassoc-1b", "eni-0a", "10.0.0.5"));
        let tag = HolderTag::to_write(&addr, &me, at).expect("untagged: write it");
        assert_eq!(
            tag.value(),
            "eni-0a/10.0.0.5/eipassoc-1b/2027-01-15T08:00:00Z"
        );
        addr.holder = Some(tag);
        assert_eq!(
            HolderTag::to_write(&addr, &me, at),
            None,
            "already recorded"
        );
        addr.association = Some(assoc("eipassoc-2c", "eni-0a", "10.0.0.5"));
        assert!(
            HolderTag::to_write(&addr, &me, at).is_some(),
            "associated again: rewrite"
        );
    }

    #[test]
    fn a_holder_tag_reads_back_what_it_wrote_and_any_other_value_is_none_or_whole() {
        use proptest::prelude::*;
        let tag = (
            "[0-9a-f]{1,17}",
            any::<u32>(),
            "[0-9a-f]{1,17}",
            "\\PC{0,30}",
        )
            .prop_map(|(eni, ip, assoc, since)| HolderTag {
                eni: format!("eni-{eni}").parse().unwrap(),
                private_ip: ip.into(),
                association: format!("eipassoc-{assoc}").parse().unwrap(),
                since,
            });
        crate::pure::tests_runner("holder tag", 512)
            .run(&tag, |t| {
                prop_assert_eq!(HolderTag::parse(&t.value()), Some(t));
                Ok(())
            })
            .unwrap();
        crate::pure::tests_runner("holder tag text", 1024)
            .run(&"(eni-[0-9a-f]{1,4}/)?\\PC{0,60}", |v| {
                if let Some(t) = HolderTag::parse(&v) {
                    prop_assert_eq!(t.value(), v);
                }
                Ok(())
            })
            .unwrap();
    }
}

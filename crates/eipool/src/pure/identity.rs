//! Who a claimer is: the interface and private IP its address maps to, and where that is learnt.

use std::net::Ipv4Addr;

use super::ids::{EniId, InstanceId};

/// The claimer's interface, the private IP its address maps to, and its instance when known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The interface.
    pub eni: EniId,
    /// The private IPv4 of that interface the Elastic IP maps to.
    pub private_ip: Ipv4Addr,
    /// The instance the interface is attached to.
    pub instance_id: Option<InstanceId>,
    /// The interface's MAC, when IMDSv2 told who we are: the node's own view of its public
    /// addresses is then available (IMDSv2, no EC2 call).
    pub mac: Option<String>,
}

/// Where the claimer learns which interface it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdentitySource {
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
    pub(crate) fn calls_ec2(&self, private_ip: Option<Ipv4Addr>) -> bool {
        !matches!((self, private_ip), (IdentitySource::Imds, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_imds_without_private_ip_resolves_identity_without_ec2() {
        let ip = Some(Ipv4Addr::new(10, 0, 0, 4));
        let eni = IdentitySource::Interface("eni-1".parse().unwrap());
        let instance = IdentitySource::Instance("i-1".parse().unwrap());
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
}

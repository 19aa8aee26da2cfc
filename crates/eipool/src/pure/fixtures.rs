//! Addresses and an identity the machines' tests share: ours is `eni-1` at 10.0.0.1.

use std::net::Ipv4Addr;

use crate::pure::address::{Address, Association};
use crate::pure::identity::Identity;

/// Our identity: `eni-1`, 10.0.0.1, no MAC (EC2 validates, not the node's view).
pub(crate) fn me() -> Identity {
    Identity {
        eni: "eni-1".parse().unwrap(),
        private_ip: Ipv4Addr::new(10, 0, 0, 1),
        instance_id: None,
        mac: None,
    }
}

/// Pool address `n`, free.
pub(crate) fn a(n: u8) -> Address {
    Address {
        allocation_id: format!("eipalloc-{n}").parse().unwrap(),
        public_ip: Ipv4Addr::new(198, 51, 100, n),
        association: None,
        pool: Some("media".into()),
        holder: None,
    }
}

/// Pool address `n` on `eni` (ours is `eni-1`), at 10.0.0.1.
pub(crate) fn held(n: u8, eni: &str) -> Address {
    let mut x = a(n);
    x.association = Some(Association {
        id: format!("eipassoc-{n}").parse().unwrap(),
        network_interface_id: Some(eni.parse().unwrap()),
        private_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
        instance_id: None,
    });
    x
}

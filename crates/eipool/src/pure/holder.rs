//! What Redis recorded about eipool's claims: what is in flight (live leases) and, for addresses
//! claimed before the holder tag existed, its own holder records. The durable record is the
//! holder tag on the address in EC2 (`address::HolderTag`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::address::Association;
use super::ids::{AllocationId, EniId};

/// What Redis knows about a pool's addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RedisView {
    /// Addresses with a live lease (a claimer is working on them).
    pub claiming: BTreeSet<AllocationId>,
    /// Addresses eipool assigned, to whom and since when.
    pub holder_records: BTreeMap<AllocationId, HolderRecord>,
}

/// Who eipool assigned an address to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HolderRecord {
    /// `<eni>/<private ip>`.
    pub at: String,
    /// Unix time in milliseconds.
    pub since_ms: u64,
    /// The record as Redis holds it, for gc's compare-and-delete.
    pub record: String,
}

/// How a holder record names where an address is: `<eni>/<private ip>`.
pub(crate) fn holder_at(eni: &EniId, ip: Ipv4Addr) -> String {
    format!("{eni}/{ip}")
}

impl HolderRecord {
    /// Whether EC2's association is where this record says eipool put the address.
    pub(crate) fn matches(&self, x: &Association) -> bool {
        match (&x.network_interface_id, x.private_ip) {
            (Some(eni), Some(ip)) => self.at == holder_at(eni, ip),
            _ => false,
        }
    }
}

//! A won address: record it in Redis and on the address itself, and report it. (Confirming an
//! association stands is the attempt machine's, [`crate::pure::attempt`].)

use tracing::{debug, warn};

use super::{Means, Stop};
use crate::adapters::redis::Lease;
use crate::pure::address::{Address, HolderTag};
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::support::output::Claimed;

/// Record a won address: in Redis (`Coordination::record_win`: a marker, so that claimers
/// with an older listing skip it, and the holder record), and on the address itself (the holder tag), the durable
/// record status, gc and the exporter read. The two at once: neither waits for the other.
pub(super) async fn record(m: &Means, addr: &Address, lease: Option<&Lease>, me: &Identity) {
    tokio::join!(
        m.coord.record_win(addr, lease, me),
        write_holder_tag(m, addr, me)
    );
}

/// Write the holder tag on `addr` (on our interface) unless it already names this
/// association. Best effort: a failure is logged, and the address stays ours.
pub(super) async fn write_holder_tag(m: &Means, addr: &Address, me: &Identity) {
    let Some(tag) = HolderTag::to_write(addr, me, std::time::SystemTime::now()) else {
        return;
    };
    let ec2 = &m.ec2;
    match m
        .work
        .retry("tag holder", || ec2.tag_holder(&addr.allocation_id, &tag))
        .await
    {
        Ok(()) => {
            debug!(allocation_id = %addr.allocation_id, holder = %tag.value(), "recorded the holder on the address")
        }
        Err(e) => {
            warn!(allocation_id = %addr.allocation_id, error = %e, "could not tag the address with its holder; `eipool status` shows it foreign until the agent or a re-run tags it (allow ec2:CreateTags on pool addresses)")
        }
    }
}

/// The report of a won address, `a` as EC2 (or the node) showed it on our interface, with the
/// association shown there: the env file and the holder tag name the same one. `elapsed_ms` is
/// filled in by [`super::run`].
pub(super) fn report(a: &Address, me: &Identity, reused: bool) -> Result<Claimed, Stop> {
    let Some(association) = &a.association else {
        return Err(Stop::Fatal(Error::Internal(format!(
            "{} was to be reported as ours but shows no association",
            a.allocation_id
        ))));
    };
    Ok(Claimed {
        public_ip: a.public_ip,
        allocation_id: a.allocation_id.clone(),
        association_id: association.id.clone(),
        network_interface_id: me.eni.clone(),
        private_ip: me.private_ip,
        reused,
        elapsed_ms: 0,
        waited_ms: None,
    })
}

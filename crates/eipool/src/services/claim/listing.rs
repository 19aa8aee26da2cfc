//! The pool listing: the herd's shared one when it is recent, else our own (shared in turn).

use tokio::time::Instant;

use super::{Means, Stop};
use crate::pure::address::Address;

/// The pool's addresses, whether they are the herd's listing rather than our own, and when the
/// listing was asked for (for our own: when its DescribeAddresses went out, after our slot of
/// the herd's describe rate; for the herd's: now, its age unknown).
///
/// With `allow_shared` and Redis, a listing another claimer made less than
/// [`crate::pure::plan::SHARED_LISTING_TTL`] ago is used as is; if none is recent, one claimer
/// lists the pool while the others wait for its answer, so a herd lists the pool about once
/// instead of once per claimer. Our own listings are shared with the herd.
pub(super) async fn list_pool(
    m: &mut Means,
    allow_shared: bool,
) -> Result<(Vec<Address>, bool, Instant), Stop> {
    if allow_shared {
        let lead_ttl = m.ec2.call_timeout() * 2;
        if let Some(listing) = m.coord.shared_listing(&m.work, &m.pool, lead_ttl).await? {
            return Ok((listing, true, Instant::now()));
        }
    }
    let listed = list_own(m).await;
    m.coord
        .share_listing(&m.cleanup, listed.as_ref().ok().map(|(l, _)| l.as_slice()))
        .await;
    let (listing, sent) = listed?;
    Ok((listing, false, sent))
}

/// DescribeAddresses of the whole pool, in our slot of the herd's describe rate; and when it
/// was sent (the wait for the slot is not the listing's age).
pub(super) async fn list_own(m: &mut Means) -> Result<(Vec<Address>, Instant), Stop> {
    m.coord.describe_slot(&m.work).await?;
    let sent = Instant::now();
    let (ec2, pool) = (&m.ec2, &m.pool);
    let listing = m
        .work
        .retry("list pool", || ec2.describe_pool(pool))
        .await?;
    Ok((listing, sent))
}

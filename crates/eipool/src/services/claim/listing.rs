//! The pool listing: the herd's shared one when it is recent, else our own (shared in turn).

use std::time::Duration;

use tokio::time::Instant;

use super::coordination::PaceClass;
use super::{Means, Stop};
use crate::pure::address::Address;

/// The pool's addresses, whether they are the herd's listing rather than our own, and when the
/// listing was made (for our own: when its DescribeAddresses went out; for the herd's: as
/// Redis tells its age).
///
/// With `shared` (a maximum age) and Redis, a listing another claimer made at most that long
/// ago is used as is; if none is, one claimer lists the pool while the others wait for its
/// answer, so a herd lists the pool about once instead of once per claimer. Our own listings
/// are shared with the herd.
pub(super) async fn list_pool(
    m: &mut Means,
    shared: Option<Duration>,
) -> Result<(Vec<Address>, bool, Instant), Stop> {
    if let Some(max_age) = shared {
        let lead_ttl = m.ec2.call_timeout() * 2;
        if let Some((listing, age)) = m
            .coord
            .shared_listing(&m.work, &m.pool, lead_ttl, max_age)
            .await?
        {
            let made = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            return Ok((listing, true, made));
        }
    }
    let listed = list_own(m).await;
    m.coord
        .share_listing(&m.cleanup, listed.as_ref().ok().map(|(l, _)| l.as_slice()))
        .await;
    let (listing, sent) = listed?;
    Ok((listing, false, sent))
}

/// DescribeAddresses of the whole pool, in the herd's describe pace; and when the call that
/// answered was sent (neither the wait for a turn nor a throttled try is the listing's age).
pub(super) async fn list_own(m: &mut Means) -> Result<(Vec<Address>, Instant), Stop> {
    let (ec2, pool) = (m.ec2.clone(), m.pool.clone());
    m.coord
        .described(&m.work, PaceClass::Describe, "list pool", || {
            ec2.describe_pool(&pool)
        })
        .await
}

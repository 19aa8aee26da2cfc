//! The pool listing: the herd's shared one when it is recent, else our own (shared in turn).

use tracing::debug;

use super::protocol::Claimer;
use super::Stop;
use crate::adapters::herd::SharedListing;
use crate::pure::address::Address;
use crate::pure::plan;

impl Claimer {
    /// The pool's addresses, and whether they are the herd's listing rather than our own.
    ///
    /// With `allow_shared` and Redis, a listing another claimer made less than
    /// [`plan::SHARED_LISTING_TTL`] ago is used as is; if none is recent, one claimer lists the
    /// pool while the others wait for its answer, so a herd lists the pool about once instead of
    /// once per claimer. Our own listings are shared with the herd.
    pub(super) async fn list_pool(
        &mut self,
        allow_shared: bool,
    ) -> Result<(Vec<Address>, bool), Stop> {
        if allow_shared {
            let lead_ttl = self.ec2.call_timeout() * 2;
            let mut poll = 0;
            while let Some(herd) = self.live_herd().cloned() {
                match self.work.bounded(herd.shared_listing(lead_ttl)).await? {
                    Ok(SharedListing::Recent(mut listing)) => {
                        // Whatever Redis holds, only the pool's own addresses are candidates.
                        listing.retain(|a| a.pool.as_deref() == Some(self.pool.as_str()));
                        return Ok((listing, true));
                    }
                    Ok(SharedListing::Lead) => break,
                    Ok(SharedListing::Pending) => {
                        self.work.sleep(plan::listing_poll(poll)).await?;
                        poll += 1;
                    }
                    Err(e) => {
                        // Listing needs no lease, even with --require-lock.
                        self.redis_failed(e)?;
                        break;
                    }
                }
            }
        }
        let listed = self.list_own().await;
        if let Some(herd) = self.live_herd() {
            // Share the listing, or on failure just end our lead so another claimer takes over.
            let share = listed.as_ref().ok().map(Vec::as_slice);
            let shared = self
                .cleanup
                .bounded(herd.share_listing(share, plan::SHARED_LISTING_TTL));
            if let Ok(Err(e)) = shared.await {
                debug!(error = %e, "could not share the listing");
            }
        }
        Ok((listed?, false))
    }

    /// DescribeAddresses of the whole pool, in our slot of the herd's describe rate.
    pub(super) async fn list_own(&mut self) -> Result<Vec<Address>, Stop> {
        self.pace("describe", plan::DESCRIBE_PACE, None).await?;
        let (ec2, pool) = (self.ec2.clone(), self.pool.clone());
        Ok(self
            .work
            .retry("list pool", || ec2.describe_pool(&pool))
            .await?)
    }
}

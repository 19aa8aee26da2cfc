//! The pool listing: the herd's shared one when it is recent, else our own (shared in turn).

use super::protocol::Claimer;
use super::Stop;
use crate::pure::address::Address;

impl Claimer {
    /// The pool's addresses, and whether they are the herd's listing rather than our own.
    ///
    /// With `allow_shared` and Redis, a listing another claimer made less than
    /// [`crate::pure::plan::SHARED_LISTING_TTL`] ago is used as is; if none is recent, one claimer lists the
    /// pool while the others wait for its answer, so a herd lists the pool about once instead of
    /// once per claimer. Our own listings are shared with the herd.
    pub(super) async fn list_pool(
        &mut self,
        allow_shared: bool,
    ) -> Result<(Vec<Address>, bool), Stop> {
        if allow_shared {
            let lead_ttl = self.ec2.call_timeout() * 2;
            if let Some(listing) = self
                .coord
                .shared_listing(&self.work, &self.pool, lead_ttl)
                .await?
            {
                return Ok((listing, true));
            }
        }
        let listed = self.list_own().await;
        self.coord
            .share_listing(&self.cleanup, listed.as_ref().ok().map(Vec::as_slice))
            .await;
        Ok((listed?, false))
    }

    /// DescribeAddresses of the whole pool, in our slot of the herd's describe rate.
    pub(super) async fn list_own(&mut self) -> Result<Vec<Address>, Stop> {
        self.coord.describe_slot(&self.work).await?;
        let (ec2, pool) = (self.ec2.clone(), self.pool.clone());
        Ok(self
            .work
            .retry("list pool", || ec2.describe_pool(&pool))
            .await?)
    }
}

//! The herd's shared listing of the pool: one claimer lists, the others use its answer.

use std::time::Duration;

use tracing::instrument;

use super::scripts::{LISTING, SHARE};
use super::{Redis, RedisError};
use crate::pure::address::Address;

/// What the pool's shared listing slot gave a claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedListing {
    /// A listing another claimer made less than its lifetime ago.
    Recent(Vec<Address>),
    /// No recent listing: this claimer makes the next one and shares it ([`Redis::share_listing`]).
    Lead,
    /// Another claimer is making it right now: ask again shortly.
    Pending,
}

impl Redis {
    /// The herd's recent listing of the pool, or the lead of the next one (lease for at most
    /// `lead_ttl`, so a leader that dies holds nobody up for longer), or word that someone else
    /// is making it. A listing this version cannot read counts as none.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub async fn shared_listing(&self, lead_ttl: Duration) -> Result<SharedListing, RedisError> {
        let mut inv = LISTING.prepare_invoke();
        inv.key(self.key("listing:v1"))
            .key(self.key("listing:lead"))
            .arg(&self.owner)
            .arg(lead_ttl.as_millis() as u64);
        let v: redis::Value = self.eval(inv).await?;
        Ok(match v {
            redis::Value::Int(1) => SharedListing::Lead,
            redis::Value::Int(_) => SharedListing::Pending,
            redis::Value::BulkString(json) => match serde_json::from_slice(&json) {
                Ok(listing) => SharedListing::Recent(listing),
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable shared listing; making a new one");
                    SharedListing::Lead
                }
            },
            other => {
                return Err(RedisError::Unavailable(format!(
                    "unexpected answer to the listing script: {other:?}"
                )))
            }
        })
    }

    /// Share `listing` with the herd for `ttl` and end our lead, if we had it. `None` only ends
    /// the lead (the listing failed), so that another claimer takes it over at once.
    #[instrument(skip(self, listing), err(level = "debug", Display))]
    pub async fn share_listing(
        &self,
        listing: Option<&[Address]>,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let json = match listing {
            Some(l) => serde_json::to_string(l)
                .map_err(|e| RedisError::Unavailable(format!("cannot encode the listing: {e}")))?,
            None => String::new(),
        };
        let mut inv = SHARE.prepare_invoke();
        inv.key(self.key("listing:v1"))
            .key(self.key("listing:lead"))
            .arg(json)
            .arg(ttl.as_millis() as u64)
            .arg(&self.owner);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }
}

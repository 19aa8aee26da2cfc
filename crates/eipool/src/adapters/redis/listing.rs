//! The herd's shared listing of the pool: one claimer lists, the others use its answer.

use std::time::Duration;

use tracing::instrument;

use super::scripts::{LISTING, SHARE};
use super::{Redis, RedisError};
use crate::pure::address::Address;
use crate::pure::plan;

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
    /// The herd's recent listing of the pool, or the lead of the next (lease for at most
    /// `lead_ttl`, so a leader that dies holds nobody up for longer), or word that someone else
    /// is making it. A listing this version cannot read counts as none.
    pub async fn shared_listing(&self, lead_ttl: Duration) -> Result<SharedListing, RedisError> {
        let lived = plan::SHARED_LISTING_TTL;
        Ok(self.shared_listing_within(lead_ttl, lived).await?.0)
    }

    /// [`Redis::shared_listing`], but only a listing made at most `max_age` ago (a claimer that
    /// found its listing behind EC2 wants a newer one); and the listing's age.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub async fn shared_listing_within(
        &self,
        lead_ttl: Duration,
        max_age: Duration,
    ) -> Result<(SharedListing, Duration), RedisError> {
        let mut inv = LISTING.prepare_invoke();
        inv.key(self.key("listing:v1"))
            .key(self.key("listing:lead"))
            .key(self.key("listing:at"))
            .arg(&self.owner)
            .arg(lead_ttl.as_millis() as u64)
            .arg(plan::SHARED_LISTING_TTL.as_millis() as u64)
            .arg(max_age.as_millis() as u64);
        let v: redis::Value = self.eval(inv).await?;
        Ok(match v {
            redis::Value::Int(1) => (SharedListing::Lead, Duration::ZERO),
            redis::Value::Int(_) => (SharedListing::Pending, Duration::ZERO),
            redis::Value::Array(parts) => match parts.as_slice() {
                [redis::Value::BulkString(json), redis::Value::Int(age)] => {
                    let age = Duration::from_millis(u64::try_from(*age).unwrap_or(0));
                    match serde_json::from_slice(json) {
                        Ok(listing) => (SharedListing::Recent(listing), age),
                        Err(e) => {
                            tracing::debug!(error = %e, "unreadable shared listing; making a new one");
                            (SharedListing::Lead, Duration::ZERO)
                        }
                    }
                }
                other => {
                    return Err(RedisError::Unavailable(format!(
                        "unexpected answer to the listing script: {other:?}"
                    )))
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
            .key(self.key("listing:at"))
            .arg(json)
            .arg(ttl.as_millis() as u64)
            .arg(&self.owner);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }
}

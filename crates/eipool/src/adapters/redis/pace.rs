//! The herd's shared pace of EC2 calls: a GCRA in Redis tells each caller how long to wait for
//! its slot, so a herd reaches EC2 at the rate EC2 allows instead of being throttled.

use std::time::Duration;

use tracing::instrument;

use super::scripts::PACE;
use super::{Redis, RedisError};
use crate::pure::plan::Rate;

impl Redis {
    /// Reserve the next slot of the region's shared `rate` for calls of `class` (e.g. EC2's
    /// mutating calls) and return how long to wait for it.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn pace(&self, class: &str, rate: Rate) -> Result<Duration, RedisError> {
        let mut inv = PACE.prepare_invoke();
        inv.key(self.pace_key(class))
            .arg(rate.interval().as_millis() as u64)
            .arg(rate.tolerance().as_millis() as u64);
        let wait_ms: i64 = self.eval(inv).await?;
        Ok(Duration::from_millis(wait_ms.max(0) as u64))
    }
}

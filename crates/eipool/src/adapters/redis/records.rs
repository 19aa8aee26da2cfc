//! What Redis recorded about the pool: live leases and holder records, for status and gc.

use tracing::instrument;

use super::scripts::DROP_HOLDER_RECORD;
use super::{Redis, RedisError};
use crate::pure::holder::{HolderRecord, RedisView};
use crate::pure::ids::AllocationId;

impl Redis {
    /// What Redis knows about these addresses: live leases and holder records.
    #[instrument(skip(self, allocs), err(level = "debug", Display))]
    pub(crate) async fn view(&self, allocs: &[AllocationId]) -> Result<RedisView, RedisError> {
        let mut view = RedisView::default();
        if !allocs.is_empty() {
            let keys: Vec<String> = allocs.iter().map(|a| self.lease_key(a)).collect();
            let leases: Vec<Option<String>> = self
                .bounded(
                    |mut c| async move { redis::cmd("MGET").arg(&keys).query_async(&mut c).await },
                )
                .await?;
            for (a, c) in allocs.iter().zip(leases) {
                if c.is_some() {
                    view.claiming.insert(a.clone());
                }
            }
        }
        let holders: std::collections::HashMap<String, String> = self
            .bounded(|mut c| async move {
                redis::cmd("HGETALL")
                    .arg(self.holder_records_key())
                    .query_async(&mut c)
                    .await
            })
            .await?;
        for (alloc, v) in holders {
            let Ok(alloc) = alloc.parse::<AllocationId>() else {
                continue; // not an allocation id: not a record this version wrote
            };
            let (who, since) = v.rsplit_once('|').unwrap_or((v.as_str(), "0"));
            view.holder_records.insert(
                alloc,
                HolderRecord {
                    at: who.to_string(),
                    since_ms: since.parse().unwrap_or(0),
                    record: v.clone(),
                },
            );
        }
        Ok(view)
    }

    /// Drop the holder record of `alloc` that gc found no longer matching EC2, only if it still
    /// holds `seen` (the value gc read): a claim recording a fresh assignment meanwhile keeps
    /// its record. `Ok(false)`: it changed, and stays.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub async fn drop_holder_record(
        &self,
        alloc: &AllocationId,
        seen: &str,
    ) -> Result<bool, RedisError> {
        let mut inv = DROP_HOLDER_RECORD.prepare_invoke();
        inv.key(self.holder_records_key())
            .arg(alloc.as_str())
            .arg(seen);
        let dropped: i64 = self.eval(inv).await?;
        Ok(dropped == 1)
    }
}

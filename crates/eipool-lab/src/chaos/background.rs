//! Another caller in the account: EC2's buckets are per account and region, shared by every
//! caller (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>), so the
//! VPC CNI, Karpenter, Terraform or a second cluster draw from the bucket eipool paces itself
//! under. This one takes a given share of one action's refill, steadily, as a tool with a queue
//! of work does: a call every `1 / (share × refill)` seconds, retried every
//! [`RETRY`] while the bucket is empty (an SDK's retry), and never more than one second's worth
//! of calls behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// How soon the other caller tries again after a throttled call.
pub const RETRY: Duration = Duration::from_millis(50);

/// Another caller taking `share` (0 to 1) of `action`'s bucket refill.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// The EC2 action whose bucket it draws from, e.g. `AssociateAddress`.
    pub action: String,
    /// The share of the bucket's refill rate it takes.
    pub share: f64,
}

/// What the other caller got: calls the bucket admitted, and throttled ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundStats {
    /// Calls the bucket admitted.
    pub admitted: u64,
    /// Calls the bucket refused (each retried).
    pub throttled: u64,
}

/// Run the other caller until `stop`; it starts at once, on a full bucket.
pub(super) fn spawn(shared: Arc<Shared>, bg: Background, stop: CancellationToken) {
    let Some(refill) = shared.buckets.lock().unwrap().refill(&bg.action) else {
        return;
    };
    let rate = refill * bg.share.clamp(0.0, 1.0);
    if rate <= 0.0 {
        return;
    }
    let every = Duration::from_secs_f64(1.0 / rate);
    tokio::spawn(async move {
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            if shared.buckets.lock().unwrap().admit(&bg.action) {
                shared.background.lock().unwrap().admitted += 1;
                // A second's worth of work at most piles up while the bucket is empty.
                next = (next + every).max(Instant::now() - Duration::from_secs(1));
            } else {
                shared.background.lock().unwrap().throttled += 1;
                next = Instant::now() + RETRY;
            }
        }
    });
}

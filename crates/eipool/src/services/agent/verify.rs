//! Is the address still ours? Asked of the node first (IMDSv2: which public IPs map to our
//! private IP; no EC2 call, and it answers while the EC2 API is throttled or down), and of EC2
//! only when the node says no, when there is no IMDSv2 (identity by flag), or as a rare backstop.
//!
//! An answer that does not come is "unknown", never drift: the address is kept. Except one: the
//! node showing the address gone from our private IP for longer than EC2's consistency bound
//! while EC2 cannot say (down, throttled) is a loss, as it is: the node's own view lags EC2 by
//! moments, not by an outage, and keeping it would leave the address named (the env file, the
//! Node's label) while it is another's.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::adapters::aws::Imds;
use crate::pure::address::{Address, HolderTag};
use crate::pure::classify::{standing, Standing};
use crate::pure::identity::Identity;
use crate::pure::plan::CONSISTENCY_BOUND;
use crate::services::context::Context;
use crate::support::budget::{Budget, Interrupt, Stopped};
use crate::support::output::Claimed;

/// What one verification found.
#[derive(Debug)]
pub(super) enum Verdict {
    /// The address is on our interface and private IP.
    Holds,
    /// Nobody could say (IMDSv2 and EC2 failed, or EC2 did not answer in time): keep it.
    Unknown(String),
    /// EC2 shows it elsewhere (`Some(where)`), free (`None`), or gone.
    Lost(Standing, Option<Address>),
    /// The node has shown the address gone from our private IP for `for_s` seconds (past EC2's
    /// consistency bound), and EC2 could not say (`ec2`).
    LostOnNode { for_s: u64, ec2: String },
    /// SIGTERM/SIGINT arrived meanwhile.
    Cancelled,
}

/// Asks the node every time and EC2 now and then.
pub(super) struct Verifier {
    imds: Imds,
    /// When EC2 is asked next even though the node says all is well.
    backstop_at: Instant,
    backstop_every: Duration,
    /// Since when the node has shown the address gone (reset when it shows it again).
    node_gone_since: Option<Instant>,
}

impl Verifier {
    /// A verifier whose first EC2 backstop comes at a random point of the first period, so a
    /// fleet started together does not ask EC2 together.
    pub(super) fn new(backstop_every: Duration, first_fraction: f64) -> Verifier {
        Verifier {
            imds: Imds::new(),
            backstop_at: Instant::now() + backstop_every.mul_f64(first_fraction.clamp(0.0, 1.0)),
            backstop_every,
            node_gone_since: None,
        }
    }

    /// Verify that `held` is still ours, within `budget`.
    pub(super) async fn check(
        &mut self,
        ctx: &Context,
        me: &Identity,
        held: &Claimed,
        budget: &Budget,
    ) -> Verdict {
        let on_node = match &me.mac {
            Some(mac) => match budget.bounded(self.imds.ipv4_associations(mac)).await {
                Ok(Ok(pairs)) => Some(pairs.iter().any(|(public, private)| {
                    *public == held.public_ip && *private == me.private_ip
                })),
                Ok(Err(e)) => {
                    debug!(error = %e, "IMDSv2 did not answer; asking EC2");
                    None
                }
                Err(Interrupt::Cancelled) => return Verdict::Cancelled,
                Err(Interrupt::Deadline) => None,
            },
            None => None,
        };
        match on_node {
            Some(true) => self.node_gone_since = None,
            Some(false) => {
                self.node_gone_since.get_or_insert_with(Instant::now);
            }
            None => {}
        }
        let backstop_due = Instant::now() >= self.backstop_at;
        if on_node == Some(true) && !backstop_due {
            return Verdict::Holds;
        }
        // The node says no (it may lag EC2 by a moment), cannot say, or the backstop is due.
        self.backstop_at = Instant::now() + self.backstop_every;
        match budget
            .retry("verify", || ctx.ec2.describe_address(&held.allocation_id))
            .await
        {
            Ok(seen) => match standing(seen.as_ref(), me) {
                Standing::Mine => {
                    // The node's "gone" was its lag (or its own fault): count afresh.
                    self.node_gone_since = None;
                    if let Some(a) = &seen {
                        repair_holder_tag(ctx, me, a, budget).await;
                    }
                    Verdict::Holds
                }
                // Associated moments ago and not visible yet is not a loss while the node says
                // it holds the address.
                Standing::Free if on_node == Some(true) => Verdict::Holds,
                lost => Verdict::Lost(lost, seen),
            },
            Err(Stopped::Interrupted(Interrupt::Cancelled)) => Verdict::Cancelled,
            Err(Stopped::Interrupted(Interrupt::Deadline)) => self.unanswered(
                on_node,
                budget
                    .last_error()
                    .unwrap_or_else(|| "EC2 did not answer in time".into()),
            ),
            Err(Stopped::Failed(e)) => self.unanswered(on_node, e.to_string()),
        }
    }

    /// EC2 could not say: unknown, unless the node has shown the address gone for longer than
    /// EC2's consistency bound.
    fn unanswered(&self, on_node: Option<bool>, ec2: String) -> Verdict {
        match self.node_gone_since {
            Some(since) if on_node == Some(false) && since.elapsed() >= CONSISTENCY_BOUND => {
                Verdict::LostOnNode {
                    for_s: since.elapsed().as_secs(),
                    ec2,
                }
            }
            _ => Verdict::Unknown(ec2),
        }
    }
}

/// The holder tag names this association, or is written (a claim that could not tag, or an
/// address claimed by an older eipool). Best effort.
async fn repair_holder_tag(ctx: &Context, me: &Identity, a: &Address, budget: &Budget) {
    let Some(tag) = HolderTag::to_write(a, me, std::time::SystemTime::now()) else {
        return;
    };
    if let Err(e) = budget
        .retry("tag holder", || ctx.ec2.tag_holder(&a.allocation_id, &tag))
        .await
    {
        warn!(allocation_id = %a.allocation_id, error = %e, "could not tag the address with its holder");
    }
}

//! Eventual consistency: EC2's Describe* may answer from before a recent mutation
//! (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>); moto never does.
//!
//! After a mutation of an address, DescribeAddresses for that address answers from the snapshot
//! taken just before the mutation, for the configured window; a listing answers from a cached
//! earlier answer of the same query while a mutation is that recent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::upstream::Upstream;
use super::xml;

#[derive(Debug)]
struct Snapshot {
    body: Bytes,
    taken: Instant,
}

impl Snapshot {
    fn now(body: Bytes) -> Self {
        Snapshot {
            body,
            taken: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// Per allocation id: the DescribeAddresses answer from just before its last mutation.
    before_mutation: HashMap<String, Snapshot>,
    /// Per listing query: the last answer moto gave.
    listings: HashMap<String, Snapshot>,
    last_mutation: Option<Instant>,
}

/// What the proxy remembers of earlier answers, to serve stale ones.
#[derive(Debug, Default)]
pub(super) struct Staleness(Mutex<Memory>);

/// The key of a query: its parameters in order.
pub(super) fn query_key(params: &HashMap<String, String>) -> String {
    let mut sorted: Vec<_> = params.iter().collect();
    sorted.sort();
    format!("{sorted:?}")
}

impl Staleness {
    /// Before a mutation of an address: remember how it looked, for stale reads after it.
    pub(super) async fn before_mutation(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        action: &str,
        params: &HashMap<String, String>,
    ) {
        let snap = match (
            action,
            params.get("AllocationId"),
            params.get("AssociationId"),
        ) {
            ("AssociateAddress", Some(alloc), _) => upstream
                .query(headers, "DescribeAddresses", &[("AllocationId.1", alloc)])
                .await
                .map(|b| (alloc.clone(), b)),
            ("DisassociateAddress", _, Some(assoc)) => upstream
                .query(
                    headers,
                    "DescribeAddresses",
                    &[
                        ("Filter.1.Name", "association-id"),
                        ("Filter.1.Value.1", assoc),
                    ],
                )
                .await
                .and_then(|b| Some((xml::field(&b, "allocationId")?.to_string(), b))),
            _ => None,
        };
        let mut memory = self.0.lock().unwrap();
        memory.last_mutation = Some(Instant::now());
        if let Some((alloc, body)) = snap {
            memory
                .before_mutation
                .insert(alloc, Snapshot::now(Bytes::from(body)));
        }
    }

    /// A stale answer for a DescribeAddresses, if this read falls in a mutation's window.
    pub(super) fn answer(
        &self,
        key: &str,
        params: &HashMap<String, String>,
        window: Duration,
    ) -> Option<Bytes> {
        let memory = self.0.lock().unwrap();
        let by_id = params.len() == 3 && params.contains_key("AllocationId.1");
        if by_id {
            let snap = memory.before_mutation.get(&params["AllocationId.1"])?;
            return (snap.taken.elapsed() < window).then(|| snap.body.clone());
        }
        let recent_mutation = memory.last_mutation.is_some_and(|t| t.elapsed() < window);
        let cached = memory.listings.get(key)?;
        (recent_mutation && cached.taken.elapsed() < window).then(|| cached.body.clone())
    }

    /// Remember moto's answer to a listing, to serve it stale after a mutation.
    pub(super) fn remember(&self, key: String, body: Bytes) {
        self.0
            .lock()
            .unwrap()
            .listings
            .insert(key, Snapshot::now(body));
    }
}

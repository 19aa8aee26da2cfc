//! EC2's request-rate limits, as AWS documents them
//! (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>): "each API is
//! evaluated individually" — every action has a bucket of its own, sized by its class
//! (mutating, non-mutating, CreateTags); running one action's bucket dry never throttles another.

use std::collections::HashMap;
use std::time::Instant;

use super::ChaosConfig;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Capacity (and the initial fill).
    pub burst: f64,
    /// Refill rate.
    pub per_second: f64,
}

/// AWS's default EC2 bucket for mutating actions (AssociateAddress, DisassociateAddress, …).
pub const AWS_MUTATING: Bucket = Bucket {
    burst: 50.0,
    per_second: 5.0,
};
/// AWS's default EC2 bucket for non-mutating actions (Describe*).
pub const AWS_NON_MUTATING: Bucket = Bucket {
    burst: 100.0,
    per_second: 20.0,
};
/// AWS's default EC2 bucket for CreateTags.
pub const AWS_CREATE_TAGS: Bucket = Bucket {
    burst: 100.0,
    per_second: 10.0,
};

/// Whether EC2 counts `action` against the mutating bucket.
pub(super) fn is_mutating(action: &str) -> bool {
    !(action.starts_with("Describe") || action.starts_with("Get") || action.starts_with("List"))
}

#[derive(Debug)]
struct TokenBucket {
    spec: Bucket,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(spec: Bucket) -> Self {
        TokenBucket {
            spec,
            tokens: spec.burst,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.at).as_secs_f64() * self.spec.per_second)
            .min(self.spec.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The proxy's buckets, one per action, each full when the action is first called; an action
/// whose class has no bucket configured is never throttled.
#[derive(Debug)]
pub(super) struct Buckets {
    mutating: Option<Bucket>,
    non_mutating: Option<Bucket>,
    create_tags: Option<Bucket>,
    by_action: HashMap<String, TokenBucket>,
}

impl Buckets {
    pub(super) fn new(config: &ChaosConfig) -> Self {
        Buckets {
            mutating: config.mutating,
            non_mutating: config.non_mutating,
            create_tags: config.create_tags,
            by_action: HashMap::new(),
        }
    }

    /// The size of `action`'s bucket, by its class.
    fn spec(&self, action: &str) -> Option<Bucket> {
        if action == "CreateTags" && self.create_tags.is_some() {
            self.create_tags
        } else if is_mutating(action) {
            self.mutating
        } else {
            self.non_mutating
        }
    }

    /// The refill rate of `action`'s bucket; `None` when it is never throttled.
    pub(super) fn refill(&self, action: &str) -> Option<f64> {
        self.spec(action).map(|b| b.per_second)
    }

    /// Take a token from `action`'s own bucket; false when it is empty.
    pub(super) fn admit(&mut self, action: &str) -> bool {
        let Some(spec) = self.spec(action) else {
            return true;
        };
        self.by_action
            .entry(action.to_string())
            .or_insert_with(|| TokenBucket::new(spec))
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let mut b = TokenBucket::new(Bucket {
            burst: 3.0,
            per_second: 0.001,
        });
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[test]
    fn describe_calls_are_not_mutating() {
        assert!(!is_mutating("DescribeAddresses"));
        assert!(is_mutating("AssociateAddress"));
        assert!(is_mutating("DisassociateAddress"));
    }

    #[test]
    fn create_tags_draws_from_its_own_bucket_when_it_has_one() {
        let slow = Bucket {
            burst: 1.0,
            per_second: 0.001,
        };
        let mut b = Buckets::new(&ChaosConfig {
            mutating: Some(slow),
            create_tags: Some(slow),
            ..ChaosConfig::default()
        });
        assert!(b.admit("AssociateAddress"));
        assert!(!b.admit("AssociateAddress"));
        assert!(b.admit("CreateTags"), "CreateTags has its own bucket");
        assert!(!b.admit("CreateTags"));
        assert!(
            b.admit("DescribeAddresses"),
            "no Describe bucket: never throttled"
        );
    }

    #[test]
    fn each_action_has_a_bucket_of_its_own() {
        let one = Bucket {
            burst: 1.0,
            per_second: 0.001,
        };
        let mut b = Buckets::new(&ChaosConfig {
            mutating: Some(one),
            non_mutating: Some(one),
            ..ChaosConfig::default()
        });
        assert!(b.admit("AssociateAddress"));
        assert!(!b.admit("AssociateAddress"));
        assert!(b.admit("DisassociateAddress"), "another mutating action");
        assert!(b.admit("DescribeAddresses"));
        assert!(!b.admit("DescribeAddresses"));
        assert!(
            b.admit("DescribeNetworkInterfaces"),
            "another Describe action"
        );
    }
}

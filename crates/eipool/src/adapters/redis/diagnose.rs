//! What `doctor` asks Redis: what it is (one node or a cluster, and who serves the pool's slot),
//! and whether every command eipool's scripts run works in the pool's slot and in the region's
//! pace slot (credentials, ACL, scripting, a writable primary).

use super::failures::Topology;
use super::scripts::PROBE;
use super::{Redis, RedisError};

/// What the server at `--redis-url` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One node, with its role (`master`, or `slave` for a replica).
    Single {
        /// What ROLE answered.
        role: String,
    },
    /// A cluster.
    Cluster {
        /// How many primaries serve slots.
        primaries: usize,
        /// The pool's hash slot.
        slot: u16,
        /// `host:port` of the primary serving it.
        serving: String,
    },
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Single { role } if role == "master" => write!(f, "one node (a primary)"),
            Shape::Single { role } => write!(f, "one node ({role})"),
            Shape::Cluster {
                primaries,
                slot,
                serving,
            } => write!(
                f,
                "a cluster of {primaries} primaries; the pool's slot {slot} is served by {serving}"
            ),
        }
    }
}

/// The primaries in a CLUSTER SLOTS answer, and the one serving `slot`.
fn primaries(slots: &redis::Value, slot: u16) -> (usize, Option<String>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut serving = None;
    let redis::Value::Array(ranges) = slots else {
        return (0, None);
    };
    for range in ranges {
        let redis::Value::Array(r) = range else {
            continue;
        };
        let (
            Some(redis::Value::Int(lo)),
            Some(redis::Value::Int(hi)),
            Some(redis::Value::Array(node)),
        ) = (r.first(), r.get(1), r.get(2))
        else {
            continue;
        };
        let host = match node.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(redis::Value::Int(port)) = node.get(1) else {
            continue;
        };
        let at = format!("{host}:{port}");
        if (*lo..=*hi).contains(&i64::from(slot)) {
            serving = Some(at.clone());
        }
        seen.insert(at);
    }
    (seen.len(), serving)
}

impl Redis {
    /// Connect (TLS, credentials) and say what Redis is.
    pub(crate) async fn shape(&self) -> Result<Shape, RedisError> {
        let topology = self.conn().await?.topology();
        match topology {
            Topology::Single => {
                let answer: Vec<redis::Value> = self
                    .bounded(|mut c| async move { redis::cmd("ROLE").query_async(&mut c).await })
                    .await?;
                let role = match answer.first() {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(redis::Value::SimpleString(s)) => s.clone(),
                    _ => "unknown role".into(),
                };
                Ok(Shape::Single { role })
            }
            Topology::Cluster => {
                let key = self.key("doctor");
                let slot: u16 = self
                    .bounded(|mut c| async move {
                        redis::cmd("CLUSTER")
                            .arg("KEYSLOT")
                            .arg(&key)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                let slots: redis::Value = self
                    .bounded(|mut c| async move {
                        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await
                    })
                    .await?;
                let (primaries, serving) = primaries(&slots, slot);
                Ok(Shape::Cluster {
                    primaries,
                    slot,
                    serving: serving.unwrap_or_else(|| "no node (an uncovered slot)".into()),
                })
            }
        }
    }

    /// Run every command eipool runs on the pool's keys ([`super::commands::COMMANDS`], in one
    /// script: Redis checks a script's calls against the ACL as it checks the user's own), on
    /// probe keys in the pool's slot (`pace: false`) or the region's pace slot (`pace: true`);
    /// the keys are deleted again. Connecting and PING run the rest.
    pub(crate) async fn probe(&self, pace: bool) -> Result<(), RedisError> {
        let keys = ["doctor", "doctor-h", "doctor-z"].map(|k| {
            if pace {
                self.pace_key(k)
            } else {
                self.key(k)
            }
        });
        let mut inv = PROBE.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        let answer: String = self.eval(inv).await?;
        if answer != "ok" {
            return Err(super::failures::refused(
                &format!("the {} command", answer.to_uppercase()),
                "refused inside a script",
            ));
        }
        self.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value::{Array, BulkString, Int};

    #[test]
    fn cluster_slots_name_the_primaries_and_who_serves_a_slot() {
        let node = |port: i64| {
            Array(vec![
                BulkString(b"10.0.0.1".to_vec()),
                Int(port),
                BulkString(b"id".to_vec()),
            ])
        };
        let slots = Array(vec![
            Array(vec![Int(0), Int(5460), node(7000), node(7003)]),
            Array(vec![Int(5461), Int(10922), node(7001), node(7004)]),
            Array(vec![Int(10923), Int(16383), node(7002), node(7005)]),
        ]);
        assert_eq!(primaries(&slots, 0), (3, Some("10.0.0.1:7000".into())));
        assert_eq!(primaries(&slots, 10922), (3, Some("10.0.0.1:7001".into())));
        assert_eq!(primaries(&slots, 16383), (3, Some("10.0.0.1:7002".into())));
        assert_eq!(primaries(&Array(vec![]), 1), (0, None));
    }
}

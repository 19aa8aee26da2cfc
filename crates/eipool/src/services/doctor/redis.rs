//! doctor's Redis lines: the connection (reachability, TLS trust, credentials) and what Redis
//! is, then every command eipool runs in the pool's slot and in the region's pace slot (ACL,
//! scripting, a writable primary). Each failure says which of these it is and what to fix.

use std::time::Instant;

use super::{line, Check, Verdict};
use crate::adapters::redis::{Redis, RedisError};
use crate::support::budget::Budget;

/// What a failed Redis line says: a misconfiguration's own message (it names the fix), or for
/// an unreachable Redis what claims do meanwhile.
fn failure(e: &RedisError) -> String {
    match e {
        RedisError::Misconfigured(_) => format!("{e}. Claims stop with exit 2 until it is fixed"),
        _ => format!(
            "{e}. Check --redis-url and that Redis is up and reachable from here; meanwhile claims fall back to EC2 alone (or wait, with --require-leases)"
        ),
    }
}

/// The Redis lines, in order; later lines are skipped when the connection fails.
pub(super) async fn checks(redis: &Redis, budget: &Budget) -> Vec<Check> {
    let started = Instant::now();
    let shape = match budget.bounded(redis.shape()).await {
        Ok(Ok(shape)) => shape,
        Ok(Err(e)) => return vec![line("Redis connection", Verdict::Fail, failure(&e))],
        Err(_) => {
            return vec![line(
                "Redis connection",
                Verdict::Fail,
                "no answer before --timeout",
            )]
        }
    };
    let mut out = vec![line(
        "Redis connection",
        Verdict::Ok,
        format!(
            "{}: {shape}, first answer after {:.1} ms",
            redis.target_shown(),
            started.elapsed().as_secs_f64() * 1e3
        ),
    )];
    for (name, pace) in [
        ("Redis commands (pool's slot)", false),
        ("Redis commands (region's pace slot)", true),
    ] {
        out.push(match budget.bounded(redis.probe(pace)).await {
            Ok(Ok(())) => line(
                name,
                Verdict::Ok,
                "scripts (EVALSHA, SCRIPT LOAD) and every command eipool runs work, as writes on a primary",
            ),
            Ok(Err(e)) => line(name, Verdict::Fail, failure(&e)),
            Err(_) => line(name, Verdict::Fail, "no answer before --timeout"),
        });
    }
    out
}

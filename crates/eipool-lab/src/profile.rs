//! Where a herd's time went: read the debug logs (JSON lines) that `bench --trace` keeps for
//! every eipool claimer and say, per phase, how long claimers spent in it. This is how the herd
//! is profiled: who waits on what.
//!
//! Each log starts with a `{"spawned_ms": …}` line the bench writes (when the process was
//! started), followed by the claimer's own `--log-format json --log eipool=debug` output.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::bench::quantile;

/// One claimer's time, in seconds from its process start.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClaimerTime {
    /// Until the claim began (process start, identity from IMDS).
    pub started: Option<f64>,
    /// Until it had a listing of the pool in hand.
    pub listed: Option<f64>,
    /// Until it had its address.
    pub claimed: Option<f64>,
    /// Whether it listed the pool itself (rather than using the herd's listing).
    pub listed_itself: bool,
    /// Time spent waiting for a slot of the herd's shared rate, by class.
    pub paced: BTreeMap<String, f64>,
    /// Time spent inside EC2 calls, by action.
    pub in_ec2: BTreeMap<String, f64>,
    /// EC2 calls that did not answer "ok", by action.
    pub failed_calls: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
struct Line {
    timestamp: String,
    #[serde(default)]
    fields: Fields,
}

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    message: String,
    action: Option<String>,
    outcome: Option<String>,
    elapsed_ms: Option<u64>,
    class: Option<String>,
    wait_ms: Option<u64>,
    shared: Option<bool>,
}

/// Read one claimer's log.
pub fn read_claimer(text: &str) -> Result<ClaimerTime> {
    let mut lines = text.lines();
    let first = lines.next().context("empty claimer log")?;
    let spawned: serde_json::Value = serde_json::from_str(first).context("spawn line")?;
    let spawned_ms = spawned["spawned_ms"]
        .as_u64()
        .context("the first line has no spawned_ms")?;
    let mut t = ClaimerTime::default();
    // Lines that are not JSON (a panic message, say) are not the claimer's trace.
    for line in lines.filter_map(|l| serde_json::from_str::<Line>(l).ok()) {
        let at = humantime::parse_rfc3339_weak(&line.timestamp)
            .with_context(|| format!("timestamp {:?}", line.timestamp))?;
        let since = unix_ms(at).saturating_sub(spawned_ms) as f64 / 1e3;
        let f = line.fields;
        match f.message.as_str() {
            "claiming" => t.started = Some(since),
            "listed the pool" => {
                t.listed.get_or_insert(since);
                t.listed_itself |= f.shared == Some(false);
            }
            "claimed" => t.claimed = Some(since),
            "ec2 call" => {
                let action = f.action.unwrap_or_default();
                *t.in_ec2.entry(action.clone()).or_default() +=
                    f.elapsed_ms.unwrap_or(0) as f64 / 1e3;
                if f.outcome.as_deref() != Some("ok") {
                    *t.failed_calls.entry(action).or_default() += 1;
                }
            }
            m if m.starts_with("waited for our slot") => {
                *t.paced.entry(f.class.unwrap_or_default()).or_default() +=
                    f.wait_ms.unwrap_or(0) as f64 / 1e3;
            }
            _ => {}
        }
    }
    Ok(t)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Read every claimer log in `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<ClaimerTime>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path)?;
            out.push(read_claimer(&text).with_context(|| format!("{}", path.display()))?);
        }
    }
    Ok(out)
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (quantile(&v, 0.5), quantile(&v, 1.0))
}

/// One row per key of `map` (pace class, EC2 action) across claimers; a claimer without the key
/// spent no time there.
fn per_key(
    claimers: &[ClaimerTime],
    map: impl Fn(&ClaimerTime) -> &BTreeMap<String, f64>,
    label: impl Fn(&str) -> String,
) -> Vec<(String, Vec<f64>)> {
    let keys: std::collections::BTreeSet<&String> =
        claimers.iter().flat_map(|c| map(c).keys()).collect();
    keys.into_iter()
        .map(|k| {
            let v = claimers
                .iter()
                .map(|c| map(c).get(k).copied().unwrap_or(0.0))
                .collect();
            (label(k), v)
        })
        .collect()
}

/// The profile as a Markdown table: per phase, the median and the worst claimer.
pub fn markdown(claimers: &[ClaimerTime]) -> String {
    let mut rows: Vec<(String, Vec<f64>)> = vec![
        (
            "process start → claim begins (identity)".into(),
            claimers.iter().filter_map(|c| c.started).collect(),
        ),
        (
            "process start → listing in hand".into(),
            claimers.iter().filter_map(|c| c.listed).collect(),
        ),
        (
            "process start → address in hand".into(),
            claimers.iter().filter_map(|c| c.claimed).collect(),
        ),
    ];
    rows.extend(per_key(
        claimers,
        |c| &c.paced,
        |class| format!("waiting for a slot of the herd's {class} rate"),
    ));
    rows.extend(per_key(
        claimers,
        |c| &c.in_ec2,
        |action| format!("inside {action} calls"),
    ));
    let mut s = String::from("| per claimer | p50 s | max s |\n|---|---|---|\n");
    for (what, v) in rows {
        let (p50, max) = p50_max(v);
        s.push_str(&format!("| {what} | {p50:.2} | {max:.2} |\n"));
    }
    let mut failed: BTreeMap<&String, usize> = BTreeMap::new();
    for c in claimers {
        for (a, n) in &c.failed_calls {
            *failed.entry(a).or_default() += n;
        }
    }
    s.push_str(&format!(
        "\n{} of {} claimers listed the pool themselves; EC2 calls that failed (then retried): {}\n",
        claimers.iter().filter(|c| c.listed_itself).count(),
        claimers.len(),
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of `eipool --log-format json` lines, abridged to the fields read here.
    const LOG: &str = r#"{"spawned_ms":1795606428724}
{"timestamp":"2026-11-25T11:33:48.894434Z","level":"INFO","fields":{"message":"claiming"}}
{"timestamp":"2026-11-25T11:33:49.000000Z","level":"DEBUG","fields":{"message":"waited for our slot of the herd's EC2 rate","class":"describe","wait_ms":250}}
{"timestamp":"2026-11-25T11:33:52.279598Z","level":"DEBUG","fields":{"message":"ec2 call","action":"DescribeAddresses","outcome":"ok","elapsed_ms":3365}}
{"timestamp":"2026-11-25T11:33:52.320964Z","level":"INFO","fields":{"message":"listed the pool","shared":false}}
{"timestamp":"2026-11-25T11:33:57.348648Z","level":"DEBUG","fields":{"message":"ec2 call","action":"AssociateAddress","outcome":"transient","elapsed_ms":5002}}
thread 'main' panicked at nothing: not JSON, skipped
{"timestamp":"2026-11-25T11:34:00.000000Z","level":"DEBUG","fields":{"message":"waited for our slot of the herd's EC2 rate","class":"mutating","wait_ms":1500}}
{"timestamp":"2026-11-25T11:34:02.000000Z","level":"DEBUG","fields":{"message":"ec2 call","action":"AssociateAddress","outcome":"ok","elapsed_ms":100}}
{"timestamp":"2026-11-25T11:34:03.724000Z","level":"INFO","fields":{"message":"claimed"}}
"#;

    #[test]
    fn phases_are_measured_from_the_process_start() {
        let t = read_claimer(LOG).unwrap();
        assert_eq!(t.started, Some(0.170));
        assert_eq!(t.listed, Some(3.596));
        assert_eq!(t.claimed, Some(15.0));
        assert!(t.listed_itself);
        assert_eq!(t.paced["describe"], 0.25);
        assert_eq!(t.paced["mutating"], 1.5);
        assert!((t.in_ec2["AssociateAddress"] - 5.102).abs() < 1e-9);
        assert_eq!(t.in_ec2["DescribeAddresses"], 3.365);
        assert_eq!(t.failed_calls["AssociateAddress"], 1);
        assert!(!t.failed_calls.contains_key("DescribeAddresses"));
    }

    #[test]
    fn the_table_shows_median_and_worst_and_who_listed() {
        let a = read_claimer(LOG).unwrap();
        let mut b = a.clone();
        b.listed_itself = false;
        b.claimed = Some(5.0);
        let mut c = b.clone();
        c.claimed = Some(9.0);
        let md = markdown(&[a, b, c]);
        assert!(
            md.contains("| process start → address in hand | 9.00 | 15.00 |"),
            "{md}"
        );
        assert!(
            md.contains("1 of 3 claimers listed the pool themselves"),
            "{md}"
        );
        assert!(md.contains("AssociateAddress 3"), "{md}");
    }

    #[test]
    fn a_log_without_its_spawn_line_is_an_error() {
        assert!(read_claimer("").is_err());
        assert!(read_claimer("{\"timestamp\":\"x\"}").is_err());
    }
}

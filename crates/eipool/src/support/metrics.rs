//! Prometheus metrics (prometheus-client), one set per process. The agent serves all of them on
//! `/metrics`; the exporter only those it keeps (EC2 and Redis calls, the pool's gauges), so
//! no agent-only series (`eipool_ready 0`, …) comes from a process that holds no address. Every
//! metric is listed in the README.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `action`, `outcome` of an EC2 call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    /// EC2 action, e.g. `AssociateAddress`.
    pub action: String,
    /// `ok`, `throttled`, `transient`, `unauthorized`, `already_associated`, `not_found`, `rejected`, `configuration`.
    pub outcome: String,
}

/// One label: `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    /// How a claim ended: `claimed`, `reused`, `exhausted`, `temporary`, `permission`, `usage`, `interrupted`, `internal`.
    pub outcome: String,
}

/// `pool`, `state` of the pool gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    /// The pool's name.
    pub pool: String,
    /// `free`, `assigned`, `claiming`, `foreign`.
    pub state: String,
}

/// Which process serves `/metrics`, and so which series it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// `eipool agent`: every series.
    ByAgent,
    /// `eipool exporter`: EC2 and Redis calls, the pool's gauges.
    ByExporter,
}

/// Every metric eipool exports.
pub(crate) struct Metrics {
    /// Every metric (the agent's `/metrics`).
    registry: Registry,
    /// The ones the exporter keeps (the same metrics, registered twice).
    exporter: Registry,
    /// `eipool_ec2_calls_total{action,outcome}`.
    pub ec2_calls: Family<CallLabels, Counter>,
    /// `eipool_claim_duration_seconds`.
    pub claim_duration: Histogram,
    /// `eipool_claims_total{outcome}`.
    pub claims: Family<OutcomeLabel, Counter>,
    /// `eipool_drift_total`.
    pub drift: Counter,
    /// `eipool_redis_errors_total`.
    pub redis_errors: Counter,
    /// `eipool_ready`: 1 while the agent holds a validated address.
    pub ready: Gauge,
    /// `eipool_verify_failures_total`: verifications that could not tell (EC2 unreachable, slow).
    pub verify_failures: Counter,
    /// `eipool_last_verified_age_seconds`: since the agent last saw its address on its interface.
    pub last_verified_age: Gauge,
    /// `eipool_pool_addresses{state}` (exporter).
    pub pool_addresses: Family<StateLabel, Gauge>,
    /// `eipool_line_place`: the agent's place in the pool's waiting line (0 = next), -1 when not waiting.
    pub line_place: Gauge,
    /// `eipool_pool_waiting{pool}` (exporter): servers waiting in the pool's line.
    pub pool_waiting: Family<PoolLabel, Gauge>,
    /// `eipool_line_wait_seconds`: from finding the pool exhausted to holding a freed address.
    pub line_wait: Histogram,
}

/// One label: `pool`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabel {
    /// The pool's name.
    pub pool: String,
}

/// Every way a claim ends (`eipool_claims_total{outcome}`), exported at 0 from the start: a series
/// Prometheus first sees at 1 counts no increase, so without them `increase()` and `rate()` (the
/// dashboard, the claim alerts) would miss the one claim most agents ever make.
const CLAIM_OUTCOMES: [&str; 9] = [
    "claimed",
    "reused",
    "exhausted",
    "temporary",
    "permission",
    "usage",
    "interrupted",
    "internal",
    "waited",
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub(crate) fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("eipool");
        let mut exporter = Registry::with_prefix("eipool");
        let ec2_calls = Family::<CallLabels, Counter>::default();
        for r in [&mut registry, &mut exporter] {
            r.register(
                "ec2_calls",
                "EC2 API calls by action and outcome (throttled = RequestLimitExceeded)",
                ec2_calls.clone(),
            );
        }
        let claim_duration = Histogram::new([
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]);
        registry.register(
            "claim_duration_seconds",
            "Time from start of a claim to its end, any outcome",
            claim_duration.clone(),
        );
        let claims = Family::<OutcomeLabel, Counter>::default();
        for outcome in CLAIM_OUTCOMES {
            drop(claims.get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            }));
        }
        registry.register("claims", "Claims by how they ended", claims.clone());
        let drift = Counter::default();
        registry.register(
            "drift",
            "Times the agent found its address moved or disassociated",
            drift.clone(),
        );
        let redis_errors = Counter::default();
        for r in [&mut registry, &mut exporter] {
            r.register(
                "redis_errors",
                "Redis round trips that failed or timed out",
                redis_errors.clone(),
            );
        }
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the agent holds a validated address of the pool, else 0",
            ready.clone(),
        );
        let verify_failures = Counter::default();
        registry.register(
            "verify_failures",
            "Times the agent could not tell whether it still holds its address (IMDS and EC2 did not answer); the address is kept",
            verify_failures.clone(),
        );
        let last_verified_age = Gauge::default();
        registry.register(
            "last_verified_age_seconds",
            "Seconds since the agent last saw its address on its interface (IMDS or EC2)",
            last_verified_age.clone(),
        );
        let pool_addresses = Family::<StateLabel, Gauge>::default();
        for r in [&mut registry, &mut exporter] {
            r.register(
                "pool_addresses",
                "Addresses of the pool by state (exporter, or agent --pool-metrics)",
                pool_addresses.clone(),
            );
        }
        let line_place = Gauge::default();
        line_place.set(-1);
        registry.register(
            "line_place",
            "The agent's place in the pool's waiting line (0 = next to get a freed address), -1 when not waiting",
            line_place.clone(),
        );
        let pool_waiting = Family::<PoolLabel, Gauge>::default();
        for r in [&mut registry, &mut exporter] {
            r.register(
                "pool_waiting",
                "Servers waiting in the pool's line for a freed address (exporter, or agent --pool-metrics)",
                pool_waiting.clone(),
            );
        }
        let line_wait = Histogram::new([
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
        ]);
        registry.register(
            "line_wait_seconds",
            "Time the agent waited in the pool's line, from finding the pool exhausted to holding a freed address (its claim then counts as outcome=\"waited\")",
            line_wait.clone(),
        );
        Metrics {
            registry,
            exporter,
            line_place,
            line_wait,
            pool_waiting,
            ec2_calls,
            claim_duration,
            claims,
            drift,
            redis_errors,
            ready,
            verify_failures,
            last_verified_age,
            pool_addresses,
        }
    }

    /// Count one EC2 call. An action's `throttled` series exists (at 0) from its first call, so
    /// that `rate()` sees its throttles after that one.
    pub(crate) fn ec2_call(&self, action: &str, outcome: &str) {
        drop(self.ec2_calls.get_or_create(&CallLabels {
            action: action.to_string(),
            outcome: "throttled".to_string(),
        }));
        self.ec2_calls
            .get_or_create(&CallLabels {
                action: action.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Count one finished claim.
    pub(crate) fn claim_finished(&self, outcome: &str, seconds: f64) {
        self.claims
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.claim_duration.observe(seconds);
    }

    /// A claim won after waiting `seconds` in the pool's line: `eipool_line_wait_seconds` (the
    /// claim itself counts once, as `outcome="waited"`, in [`Metrics::claim_finished`]).
    pub(crate) fn waited(&self, seconds: f64) {
        self.line_wait.observe(seconds);
    }

    /// Set `pool`'s gauges.
    pub(crate) fn set_pool(&self, pool: &str, counts: &[(&str, usize)]) {
        for (state, n) in counts {
            self.pool_addresses
                .get_or_create(&StateLabel {
                    pool: pool.to_string(),
                    state: state.to_string(),
                })
                .set(*n as i64);
        }
    }

    /// Set `pool`'s waiting-line gauge.
    pub(crate) fn set_waiting(&self, pool: &str, n: Option<u64>) {
        let label = PoolLabel {
            pool: pool.to_string(),
        };
        match n {
            Some(n) => {
                self.pool_waiting.get_or_create(&label).set(n as i64);
            }
            // Unknown (Redis refused or failed): no series rather than a 0 that reads "no one".
            None => {
                self.pool_waiting.remove(&label);
            }
        }
    }

    /// What `by` serves, in the Prometheus/OpenMetrics text format.
    pub(crate) fn render(&self, by: Served) -> String {
        let registry = match by {
            Served::ByAgent => &self.registry,
            Served::ByExporter => &self.exporter,
        };
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_documented_names() {
        let m = Metrics::new();
        m.ec2_call("AssociateAddress", "ok");
        m.claim_finished("claimed", 0.7);
        m.drift.inc();
        m.set_pool("media", &[("free", 3)]);
        m.set_waiting("media", Some(2));
        let text = m.render(Served::ByAgent);
        for name in [
            "eipool_ec2_calls_total{action=\"AssociateAddress\",outcome=\"ok\"} 1",
            "eipool_claims_total{outcome=\"claimed\"} 1",
            "eipool_claim_duration_seconds_count 1",
            "eipool_drift_total 1",
            "eipool_redis_errors_total 0",
            "eipool_ready 0",
            "eipool_verify_failures_total 0",
            "eipool_last_verified_age_seconds 0",
            "eipool_pool_addresses{pool=\"media\",state=\"free\"} 3",
            "eipool_pool_waiting{pool=\"media\"} 2",
            "eipool_line_place -1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn every_claim_outcome_is_exported_at_zero_before_any_claim() {
        let m = Metrics::new();
        m.ec2_call("DescribeAddresses", "ok");
        let text = m.render(Served::ByAgent);
        // Each outcome the README's metrics table lists for eipool_claims_total.
        let readme = include_str!("../../../../README.md");
        let row = readme
            .lines()
            .find(|l| l.starts_with("| `eipool_claims_total`"))
            .expect("the README's row of eipool_claims_total");
        let documented: Vec<&str> = row.split('`').skip(5).step_by(2).collect();
        assert_eq!(documented, CLAIM_OUTCOMES, "{row}");
        for outcome in CLAIM_OUTCOMES {
            let line = format!("eipool_claims_total{{outcome=\"{outcome}\"}} 0");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        let throttled =
            "eipool_ec2_calls_total{action=\"DescribeAddresses\",outcome=\"throttled\"} 0";
        assert!(text.contains(throttled), "missing {throttled} in\n{text}");
    }

    #[test]
    fn the_exporter_serves_only_what_it_keeps() {
        let m = Metrics::new();
        m.ec2_call("DescribeAddresses", "ok");
        m.set_pool("media", &[("free", 3)]);
        m.set_waiting("media", Some(0));
        let text = m.render(Served::ByExporter);
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            families,
            [
                "eipool_ec2_calls",
                "eipool_redis_errors",
                "eipool_pool_addresses",
                "eipool_pool_waiting"
            ],
            "{text}"
        );
        assert!(
            text.contains("eipool_pool_addresses{pool=\"media\",state=\"free\"} 3"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod docs {
    /// Every metric with a sample (families without samples render nothing).
    fn exported() -> String {
        let m = super::Metrics::new();
        m.ec2_call("DescribeAddresses", "ok");
        m.claim_finished("claimed", 1.0);
        m.set_pool("media", &[("free", 1)]);
        m.set_waiting("media", Some(0));
        m.render(super::Served::ByAgent)
    }

    /// The alerts use only metrics that exist and link only to runbook sections that exist.
    #[test]
    fn alerts_use_real_metrics_and_link_real_runbook_sections() {
        let rules = include_str!("../../../../deploy/prometheus/eipool-rules.yaml");
        let runbook = include_str!("../../../../docs/runbook.md");
        let exported = exported();
        for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("eipool_") {
                let base = name.trim_end_matches("_bucket");
                assert!(
                    exported.contains(&format!("eipool_{base}")),
                    "alert uses unknown metric eipool_{name}"
                );
            }
        }
        let anchors: Vec<String> = runbook
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .map(|h| h.to_lowercase().replace(' ', "-"))
            .collect();
        let mut links = 0;
        for line in rules.lines().filter(|l| l.contains("runbook_url")) {
            let anchor = line.rsplit('#').next().unwrap().trim_end_matches('"');
            assert!(
                anchors.iter().any(|a| a == anchor),
                "runbook has no section #{anchor} (has {anchors:?})"
            );
            links += 1;
        }
        assert!(links >= 5, "every alert links its runbook section");
        for needed in [
            "pool-exhausted",
            "drift",
            "redis-down",
            "growing-the-pool",
            "publishing-cidrs",
        ] {
            assert!(
                anchors.iter().any(|a| a == needed),
                "runbook lacks {needed}"
            );
        }
    }

    #[test]
    fn the_readme_documents_every_metric() {
        let readme = include_str!("../../../../README.md");
        let exported = exported();
        for line in exported.lines().filter_map(|l| l.strip_prefix("# HELP ")) {
            let name = line.split_whitespace().next().unwrap();
            let documented = [name.to_string(), format!("{name}_total")]
                .iter()
                .any(|n| readme.contains(&format!("`{n}`")));
            assert!(documented, "README's metrics table lacks {name}");
        }
    }
}

//! The Grafana dashboard (`charts/eipool/dashboards/eipool.json`), tested for real: Debian's
//! `prometheus` scrapes the lab's agents and exporter, labelled as the PodMonitor labels them and
//! with the shipped alert rules loaded, through a herd larger than the pool (EC2 throttling some
//! of its calls), a wait in the pool's line that a freed address ends, and a drift. Then every
//! query of every panel, run over the test's time range as Grafana runs it, must return the
//! series the panel is meant to show: a query that returns nothing, a series without a label its
//! legend names, or a panel without the values listed for it below fails the test.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eipool_lab::servers::{free_port, Guarded};
use serde_json::Value;

use crate::harness::{
    args, eventually, heavy, http_get, json, serving_pool_metrics, workspace, Agent, Lab,
};

/// The namespace label the PodMonitor (or the shipped scrape config) gives every series; the
/// dashboard's `$namespace`.
const NAMESPACE: &str = "media";
/// What the test gives Grafana's `$__rate_interval` (4 scrape intervals or more, as Grafana
/// computes it for a 1 s scrape over a range of minutes).
const RATE_INTERVAL: &str = "30s";

/// What a panel must show beyond "some series": values of a label that must all be there (or
/// each rise above zero at some point of the range), a target (by refId) that must rise above
/// zero, or one that must give numbers (not only NaN).
enum Shows {
    Labels(&'static str, &'static [&'static str]),
    LabelsAboveZero(&'static str, &'static [&'static str]),
    AboveZero(&'static str),
    Numbers(&'static str),
}

/// Every panel of the dashboard, by title, and what it must show after this test's story. A panel
/// not listed here fails the test: say what a new panel is meant to show.
fn expected() -> BTreeMap<&'static str, Vec<Shows>> {
    use Shows::*;
    BTreeMap::from([
        (
            "Addresses by state: $pool",
            vec![Labels(
                "state",
                &["free", "assigned", "claiming", "foreign"],
            )],
        ),
        (
            "Servers waiting for an address",
            vec![AboveZero("A"), AboveZero("B")],
        ),
        (
            "The wait: time in line before a freed address",
            vec![Numbers("A"), Numbers("B"), AboveZero("C")],
        ),
        ("Claim latency", vec![Numbers("A"), Numbers("B")]),
        (
            "Claims by outcome",
            vec![LabelsAboveZero(
                "outcome",
                &["claimed", "exhausted", "waited"],
            )],
        ),
        (
            "Agents holding an address",
            vec![AboveZero("A"), AboveZero("B"), Numbers("C")],
        ),
        ("Drift and reclaims", vec![AboveZero("A"), AboveZero("B")]),
        (
            "EC2 calls by action",
            vec![Labels(
                "action",
                &[
                    "AssociateAddress",
                    "CreateTags",
                    "DescribeAddresses",
                    "DescribeNetworkInterfaces",
                ],
            )],
        ),
        (
            "EC2 throttles by action",
            vec![LabelsAboveZero("action", &["DescribeAddresses"])],
        ),
        ("Redis errors", vec![Numbers("A")]),
        (
            "eipool alerts",
            vec![Labels(
                "alertname",
                &["EipoolDrift", "EipoolPoolExhausted", "EipoolServersWaiting"],
            )],
        ),
    ])
}

/// A running Prometheus on a loopback port, stopped when dropped.
struct Prometheus {
    addr: SocketAddr,
    _server: Guarded,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's `prometheus` scraping `targets` every second with the shipped alert rules, once
    /// it says it is ready.
    async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let rules = workspace().join("deploy/prometheus/eipool-rules.yaml");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: eipool\n    static_configs:\n      - targets: [{}]\n        labels: {{namespace: {NAMESPACE}}}\n",
            rules.canonicalize().unwrap().display(),
            targets.join(", ")
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let mut server = Guarded::spawn(
            "prometheus",
            Path::new("prometheus"),
            &args(&[
                &format!("--config.file={}", config_file.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn",
            ]),
        )
        .expect("start prometheus (Debian package prometheus: run scripts/bootstrap)");
        server
            .wait_for_port(port, Duration::from_secs(30))
            .expect("prometheus listens");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        eventually("prometheus to be ready", Duration::from_secs(30), || async move {
            matches!(http_get(addr, "/-/ready").await, Ok((200, _))).then_some(())
        })
        .await;
        Prometheus {
            addr,
            _server: server,
            _dir: dir,
        }
    }

    /// POST `path` with a form body; the JSON answer's `data`.
    async fn api(&self, path: &str, form: &[(&str, &str)]) -> Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let body = body.join("&");
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        // HTTP/1.0: the answer ends with the connection, never chunked.
        s.write_all(
            format!(
                "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                self.addr,
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (_, json) = raw.split_once("\r\n\r\n").unwrap_or(("", ""));
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("Prometheus answered {path} with no JSON ({e}): {raw}"));
        assert_eq!(v["status"], "success", "{path} {form:?}: {v}");
        v["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// A range query's result matrix over [start, end], one point a second.
    async fn query_range(&self, expr: &str, start: f64, end: f64) -> Vec<Value> {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", "1"),
                ],
            )
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until `expr` returns a sample above zero.
    async fn until_above_zero(&self, what: &str, expr: &str) {
        eventually(what, Duration::from_secs(60), || async {
            self.query(expr)
                .await
                .iter()
                .any(|s| sample(&s["value"]) > 0.0)
                .then_some(())
        })
        .await;
    }
}

/// Whether `agent` says it waits in the pool's line (its place is 0 or more); not while it
/// does not serve `/metrics` yet.
async fn waits(agent: &Agent) -> bool {
    let Ok((200, body)) = http_get(agent.listen, "/metrics").await else {
        return false;
    };
    body.lines()
        .find_map(|l| {
            l.strip_prefix("eipool_line_place ")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .is_some_and(|place| place >= 0.0)
}

/// `application/x-www-form-urlencoded`, as a form posts a value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The number of a `[time, "value"]` pair (NaN when it is not one).
fn sample(pair: &Value) -> f64 {
    pair[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every panel of the dashboard (rows' own panels included), rows left out.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// A target's query as Grafana sends it: the dashboard's variables replaced.
fn as_grafana_sends(expr: &str, pool: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", NAMESPACE)
        .replace("$pool", pool)
}

/// Run every target of every panel over [start, end]; the failures of what each must show.
async fn check_panels(
    prom: &Prometheus,
    dashboard: &Value,
    pool: &str,
    start: f64,
    end: f64,
) -> Vec<String> {
    let mut expected = expected();
    let mut failures = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("").to_string();
        let Some(shows) = expected.remove(title.as_str()) else {
            failures.push(format!(
                "panel {title:?}: not in this test's list (say what it is meant to show)"
            ));
            continue;
        };
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            failures.push(format!("panel {title:?} has no query"));
        }
        let mut results = BTreeMap::new();
        for t in &targets {
            let ref_id = t["refId"].as_str().unwrap_or("?").to_string();
            let expr = as_grafana_sends(t["expr"].as_str().unwrap_or(""), pool);
            let series = prom.query_range(&expr, start, end).await;
            let numbers: Vec<f64> = series
                .iter()
                .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                .map(|v| sample(&v))
                .filter(|v| v.is_finite())
                .collect();
            println!(
                "panel {title:?} {ref_id}: {} series, {} numbers, max {:?}: {expr}",
                series.len(),
                numbers.len(),
                numbers.iter().cloned().reduce(f64::max)
            );
            if series.is_empty() || numbers.is_empty() {
                failures.push(format!(
                    "panel {title:?} query {ref_id} returned nothing: {expr}"
                ));
            }
            // The legend names labels: every series has them.
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for label in legend
                .split("{{")
                .skip(1)
                .filter_map(|l| l.split_once("}}"))
            {
                let label = label.0.trim();
                if let Some(s) = series.iter().find(|s| s["metric"].get(label).is_none()) {
                    failures.push(format!(
                        "panel {title:?} query {ref_id}: a series without the label {label} its legend shows: {}",
                        s["metric"]
                    ));
                }
            }
            results.insert(ref_id, (series, numbers));
        }
        for show in shows {
            match show {
                Shows::Labels(label, want) => {
                    let got: BTreeSet<String> = results
                        .values()
                        .flat_map(|(series, _)| series.iter())
                        .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
                        .collect();
                    for w in want {
                        if !got.contains(*w) {
                            failures.push(format!(
                                "panel {title:?}: no series with {label}={w:?} (has {got:?})"
                            ));
                        }
                    }
                }
                Shows::LabelsAboveZero(label, want) => {
                    for w in want {
                        let above =
                            results
                                .values()
                                .flat_map(|(series, _)| series.iter())
                                .any(|s| {
                                    s["metric"][label] == *w
                                        && s["values"]
                                            .as_array()
                                            .is_some_and(|v| v.iter().any(|p| sample(p) > 0.0))
                                });
                        if !above {
                            failures.push(format!(
                                "panel {title:?}: no series with {label}={w:?} above zero"
                            ));
                        }
                    }
                }
                Shows::AboveZero(ref_id) => {
                    let above = results
                        .get(ref_id)
                        .is_some_and(|(_, n)| n.iter().any(|v| *v > 0.0));
                    if !above {
                        failures.push(format!("panel {title:?} query {ref_id}: never above zero"));
                    }
                }
                Shows::Numbers(ref_id) => {
                    if results.get(ref_id).is_none_or(|(_, n)| n.is_empty()) {
                        failures.push(format!("panel {title:?} query {ref_id}: no number"));
                    }
                }
            }
        }
    }
    for title in expected.keys() {
        failures.push(format!("panel {title:?} is not in the dashboard"));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_shows_its_series_from_a_real_prometheus() {
    let _heavy = heavy().await;
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("charts/eipool/dashboards/eipool.json")).unwrap(),
    )
    .unwrap();
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(6).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 4).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = now();

    // The exporter, as deployed: the pool's gauges and its line, every 5 s.
    let exporter_addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "exporter",
        "--listen",
        &exporter_addr.to_string(),
        "--interval",
        "5s",
    ]));
    let (_exporter, _) = serving_pool_metrics(&lab.env, &a, exporter_addr).await;

    // A herd of six agents for four addresses starts while another tool spends the account's
    // DescribeAddresses budget: every such call is throttled (and retried) until Prometheus
    // scrapes every agent, so it sees each counter before the herd moves it; then a share of
    // them, until the herd has claimed.
    lab.proxy.reconfigure(|c| {
        c.p_throttle = 1.0;
        c.fault_actions = HashSet::from(["DescribeAddresses".to_string()]);
    });
    let mut agents = Vec::new();
    for node in &nodes {
        agents.push(Some(Agent::start(&lab, node, false, dir.path(), &[]).await));
    }
    let mut targets: Vec<SocketAddr> = agents.iter().flatten().map(|a| a.listen).collect();
    targets.push(exporter_addr);
    let prom = Prometheus::start(&targets).await;
    prom.until_above_zero(
        "Prometheus to scrape every agent and the exporter",
        "count(up == 1) == 7 and count(eipool_ready) == 6",
    )
    .await;
    prom.until_above_zero(
        "Prometheus to see the throttles",
        "sum(rate(eipool_ec2_calls_total{outcome=\"throttled\"}[30s]))",
    )
    .await;
    lab.proxy.reconfigure(|c| c.p_throttle = 0.3);

    // Four hold an address, two wait in the pool's line.
    let (ready, waiters) = eventually(
        "four agents holding an address and two waiting",
        Duration::from_secs(90),
        || {
            let agents = &agents;
            async move {
                let mut ready = Vec::new();
                let mut waiting = Vec::new();
                for (i, a) in agents.iter().enumerate() {
                    let Some(a) = a else { continue };
                    if a.ready().await.is_some() {
                        ready.push(i);
                    } else if waits(a).await {
                        waiting.push(i);
                    }
                }
                (ready.len() == 4 && waiting.len() == 2).then_some((ready, waiting))
            }
        },
    )
    .await;
    lab.proxy.reconfigure(|c| c.p_throttle = 0.0);
    println!("holding: agents {ready:?}; waiting: agents {waiters:?}");
    // Prometheus sees the wait: the exporter's line and the waiting agents.
    prom.until_above_zero(
        "Prometheus to see the servers waiting",
        &format!("max(eipool_pool_waiting{{pool=\"{}\"}})", lab.pool),
    )
    .await;
    prom.until_above_zero(
        "Prometheus to see the agents waiting",
        "sum(eipool_line_place >= bool 0) >= 2",
    )
    .await;

    // An agent stops and gives its address back: the longest waiter takes it. Then the pool
    // grows by one, and the other waiter takes that.
    let leaving = agents[ready[0]].take().unwrap();
    let st = leaving.terminate(Duration::from_secs(30)).await;
    assert_eq!(st.code(), Some(0));
    let mut grow = lab.with_redis(&[]);
    grow.extend(args(&["pool", "grow", "--count", "1"]));
    let grown = json(&lab.run(&grow).await);
    assert_eq!(
        grown["allocated"].as_array().map(Vec::len),
        Some(1),
        "{grown}"
    );
    for &w in &waiters {
        let agent = agents[w].as_ref().unwrap();
        eventually(
            "a waiter to hold a freed address",
            Duration::from_secs(30),
            || agent.ready(),
        )
        .await;
    }
    prom.until_above_zero(
        "Prometheus to see the claims won after a wait",
        "sum(eipool_claims_total{outcome=\"waited\"}) >= 2",
    )
    .await;

    // Drift: someone disassociates an agent's address by hand; the agent takes it back.
    let drifting = agents[ready[1]].as_ref().unwrap();
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.eni.as_deref() == Some(drifting.node.eni.as_str()))
        .expect("the agent's address")
        .clone();
    lab.ec2
        .disassociate(held.association_id.as_deref().unwrap())
        .await
        .unwrap();
    eventually(
        "the agent to count the drift and take its address back",
        Duration::from_secs(30),
        || async {
            (drifting.metric("eipool_drift_total").await == 1.0 && drifting.ready().await.is_some())
                .then_some(())
        },
    )
    .await;
    prom.until_above_zero(
        "Prometheus to see the drift",
        "sum(increase(eipool_drift_total[30s]))",
    )
    .await;
    prom.until_above_zero(
        "Prometheus to see the reclaim",
        "sum(increase(eipool_claims_total{outcome=~\"claimed|reused\"}[30s]) and on (instance) (increase(eipool_drift_total[30s]) > 0))",
    )
    .await;
    prom.until_above_zero(
        "the drift alert to fire",
        "count(ALERTS{alertname=\"EipoolDrift\"})",
    )
    .await;

    // Every panel, over the whole story (its last points a little ahead: a range query evaluates
    // at start + k s, and the story's last samples came after the last such point before now).
    let end = now() + 2.0;
    let failures = check_panels(&prom, &dashboard, &lab.pool, start, end).await;
    if let Ok(png) = std::env::var("EIPOOL_DASHBOARD_PICTURE") {
        picture(&prom, &dashboard, &lab.pool, end - start, Path::new(&png));
    }
    assert!(
        failures.is_empty(),
        "the dashboard's panels:\n  {}",
        failures.join("\n  ")
    );
}

/// With `EIPOOL_DASHBOARD_PICTURE=FILE.png` (not in the test command: it needs Debian's
/// chromium): Prometheus's graph page with the first query of each of the dashboard's main
/// panels over the story, photographed by headless chromium (docs/monitoring.md's picture).
fn picture(prom: &Prometheus, dashboard: &Value, pool: &str, seconds: f64, png: &Path) {
    let shown = [
        "Addresses by state: $pool",
        "Servers waiting for an address",
        "Claims by outcome",
        "Claim latency",
        "EC2 calls by action",
        "Drift and reclaims",
    ];
    let range = format!("{}s", seconds.ceil() as u64 + 10);
    let mut query = Vec::new();
    for (i, title) in shown.iter().enumerate() {
        let panel = panels(dashboard)
            .into_iter()
            .find(|p| p["title"] == *title)
            .unwrap_or_else(|| panic!("no panel {title:?}"));
        let expr = as_grafana_sends(panel["targets"][0]["expr"].as_str().unwrap(), pool);
        query.push(format!(
            "g{i}.expr={}&g{i}.tab=0&g{i}.stacked=0&g{i}.show_exemplars=0&g{i}.range_input={range}",
            form_encode(&expr)
        ));
    }
    let url = format!("http://{}/graph?{}", prom.addr, query.join("&"));
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1200,4850",
            "--virtual-time-budget=20000",
            &format!("--screenshot={}", png.display()),
            &url,
        ])
        .output()
        .expect("run chromium (Debian package chromium)");
    assert!(
        out.status.success() && png.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("picture of the dashboard's queries: {}", png.display());
}

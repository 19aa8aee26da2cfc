//! The herd benchmark: eipool against the reference global spin lock and the lock-free
//! variants, each herd of real claimer processes going through the EC2 chaos proxy with AWS's
//! default throttling buckets, 100 ± 50 ms latency and a 1 s eventual-consistency window.
//! Every run gets a fresh moto region (a fresh account), a fresh Redis and a fresh proxy (full
//! buckets), so runs don't bleed into each other. The account is eipool's alone, except in the
//! shared-account rows ([`Sharing`]): two clusters (two Redis) claiming from one pool, or another
//! caller taking a share of AssociateAddress's bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::baseline::Strategy;
use crate::chaos::{Background, ChaosConfig, ChaosProxy, AWS_MUTATING};
use crate::check;
use crate::claimer::{LabEnv, Outcome};
use crate::fixture::Ec2Lab;
use crate::imds::{ImdsStub, NodeMeta};
use crate::servers::{Moto, RedisServer};

/// The round trip added by the proxy's latency.
pub const ROUND_TRIP_S: f64 = 0.1;

/// Who claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// The product: `eipool claim`, unchanged, as deployed (identity from IMDSv2).
    Eipool,
    /// The product with identity flags (`--network-interface-id`, as off-node and the demo):
    /// one DescribeNetworkInterfaces to learn the private IP, validation by DescribeAddresses.
    EipoolFlags,
    /// A baseline from the lab.
    Baseline(Strategy),
    /// The product as deployed (IMDSv2), in an account it shares.
    Shared(Sharing),
}

/// Who else draws from the account's EC2 buckets while the herd claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Two clusters, each with its own Redis, claim from one pool at once (a blue/green
    /// upgrade, a migration): every other claimer is the second cluster's.
    TwoClusters,
    /// Another caller in the account (Terraform, a script, another controller) takes this
    /// many percent of AssociateAddress's bucket, from before the herd starts.
    Caller(u8),
}

impl Sharing {
    /// The share of AssociateAddress's refill left to the herd.
    pub fn left(&self) -> f64 {
        match self {
            Sharing::TwoClusters => 1.0,
            Sharing::Caller(pct) => 1.0 - f64::from(*pct) / 100.0,
        }
    }
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Contender; 5] = [
        Contender::Baseline(Strategy::GlobalSpinLock),
        Contender::Baseline(Strategy::UnlockedSteal),
        Contender::Baseline(Strategy::CasOnly),
        Contender::Eipool,
        Contender::EipoolFlags,
    ];

    /// Every run in a shared account, in table order.
    pub const SHARED: [Contender; 2] = [
        Contender::Shared(Sharing::TwoClusters),
        Contender::Shared(Sharing::Caller(50)),
    ];

    /// Whether this is the product (either identity mode, alone or sharing the account).
    pub fn is_eipool(&self) -> bool {
        matches!(
            self,
            Contender::Eipool | Contender::EipoolFlags | Contender::Shared(_)
        )
    }

    /// Whether it takes its identity from IMDSv2 (one stub per node), as deployed.
    fn uses_imds(&self) -> bool {
        matches!(self, Contender::Eipool | Contender::Shared(_))
    }

    /// The name in tables.
    pub fn name(&self) -> &'static str {
        match self {
            Contender::Eipool => "eipool",
            Contender::EipoolFlags => "eipool-flags",
            Contender::Baseline(Strategy::GlobalSpinLock) => "global-spin-lock",
            Contender::Baseline(Strategy::UnlockedSteal) => "unlocked-steal",
            Contender::Baseline(Strategy::CasOnly) => "cas-only",
            Contender::Shared(Sharing::TwoClusters) => "eipool-two-clusters",
            Contender::Shared(Sharing::Caller(50)) => "eipool-beside-a-caller",
            Contender::Shared(Sharing::Caller(_)) => "eipool-beside-a-caller-n",
        }
    }
}

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The contender's name.
    pub strategy: String,
    /// Claimer processes started at once.
    pub claimers: usize,
    /// Addresses in the pool.
    pub pool_size: usize,
    /// From the first start to the last exit.
    pub makespan_s: f64,
    /// Time until a claimer has its address (successes only).
    pub p50_s: f64,
    /// See `p50_s`.
    pub p95_s: f64,
    /// See `p50_s`.
    pub p99_s: f64,
    /// EC2 calls (all actions) per successful claim.
    pub ec2_calls_per_claim: f64,
    /// EC2 calls per successful claim, by action.
    pub ec2_calls_per_claim_by_action: BTreeMap<String, f64>,
    /// `RequestLimitExceeded` answers.
    pub throttled: u64,
    /// Successful claimers whose address another success also reported.
    pub double_assignments: usize,
    /// Pool addresses associated at the end that no success reported.
    pub leaked: usize,
    /// The floor EC2's mutating bucket puts on the makespan (at the share of its refill left
    /// to the herd).
    pub floor_s: f64,
    /// Calls the other caller in the account got through (its throttled ones are not counted
    /// above).
    pub other_callers_calls: u64,
    /// Claimers that exited 0.
    pub successes: usize,
    /// Claimers that exited 69.
    pub exhausted: usize,
    /// Claimers that ended any other way.
    pub failed: usize,
    /// Time-to-address of each success, sorted (for the CDF).
    #[serde(skip)]
    pub times: Vec<f64>,
}

/// `max(0, N − burst) / refill + one round trip`: every claim needs one AssociateAddress.
pub fn floor_s(associations: usize) -> f64 {
    floor_sharing(associations, 1.0)
}

/// [`floor_s`] when the herd has only `left` (0 to 1] of the bucket's refill: another caller
/// takes the rest.
pub fn floor_sharing(associations: usize, left: f64) -> f64 {
    (associations as f64 - AWS_MUTATING.burst).max(0.0) / (AWS_MUTATING.per_second * left)
        + ROUND_TRIP_S
}

/// The least one claim can take through the proxy: two round trips, one to learn a free address
/// (a listing), one to associate it.
pub const ROUND_TRIP_FLOOR_S: f64 = 2.0 * ROUND_TRIP_S;

/// The `q` quantile of `sorted` samples (nearest rank); NaN when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Run one herd and measure it.
pub async fn run_case(
    moto: &Moto,
    bins: &Bins,
    who: Contender,
    claimers: usize,
    pool_size: usize,
    region: &str,
    trace: Option<&Path>,
) -> Result<Row> {
    let ec2 = Ec2Lab::in_region(&moto.endpoint, region);
    let nodes = ec2.nodes(claimers).await?;
    let pool = format!("bench-{}-{claimers}-{pool_size}", who.name());
    ec2.allocate(Some(&pool), pool_size).await?;
    // Two clusters: two Redis, every other claimer in the second.
    let clusters = match who {
        Contender::Shared(Sharing::TwoClusters) => 2,
        _ => 1,
    };
    let redis = (0..clusters)
        .map(|_| RedisServer::start())
        .collect::<Result<Vec<_>>>()?;
    let background = match who {
        Contender::Shared(Sharing::Caller(pct)) => Some(Background {
            action: "AssociateAddress".into(),
            share: f64::from(pct) / 100.0,
        }),
        _ => None,
    };
    let proxy = ChaosProxy::start(
        &moto.endpoint,
        ChaosConfig {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            stale_window: Duration::from_secs(1),
            aws_semantics: true,
            background,
            ..ChaosConfig::default()
        }
        .aws_throttling(),
    )
    .await?;
    let mut env = LabEnv::new(&bins.eipool, &proxy.endpoint);
    env.region = region.to_string();

    // The product runs as deployed: identity from IMDSv2 (one stub per node), which also gives
    // the private IP, so it makes no DescribeNetworkInterfaces call; in its flags row it takes
    // the interface by flag. Baselines take the interface by flag and make no identity call.
    let mut stubs = Vec::new();
    if who.uses_imds() {
        for (i, n) in nodes.iter().enumerate() {
            let node = NodeMeta {
                instance_id: &n.instance_id,
                mac: &format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
                eni: &n.eni,
                local_ipv4: &n.private_ip,
            };
            stubs.push(ImdsStub::start(node, &ec2).await?);
        }
    }

    let trace_dir = match trace {
        Some(t) if who.is_eipool() => {
            let d = t.join(format!("{}-{claimers}-{pool_size}", who.name()));
            // Logs of an earlier run of this case would mix with this one's.
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
            Some(d)
        }
        _ => None,
    };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(claimers);
    for (i, n) in nodes.iter().enumerate() {
        let mut env = env.clone();
        let (program, args): (&Path, Vec<String>) = match who {
            Contender::Eipool | Contender::EipoolFlags | Contender::Shared(_) => {
                if let Some(stub) = stubs.get(i) {
                    env.imds_endpoint = stub.endpoint.clone();
                }
                let mut args: Vec<String> = if trace_dir.is_some() {
                    ["--log-format", "json", "--log", "eipool=debug"]
                        .map(String::from)
                        .to_vec()
                } else {
                    Vec::new()
                };
                if who == Contender::EipoolFlags {
                    args.extend(["--network-interface-id".into(), n.eni.clone()]);
                }
                args.extend([
                    "--pool".into(),
                    pool.clone(),
                    "--redis-url".into(),
                    redis[i % clusters].url(),
                    "claim".into(),
                    "--timeout".into(),
                    "600s".into(),
                ]);
                (&bins.eipool, args)
            }
            Contender::Baseline(s) => (
                &bins.lab,
                vec![
                    "baseline".into(),
                    "--strategy".into(),
                    clap::ValueEnum::to_possible_value(&s)
                        .unwrap()
                        .get_name()
                        .to_string(),
                    "--pool".into(),
                    pool.clone(),
                    "--redis-url".into(),
                    redis[0].url(),
                    "--network-interface-id".into(),
                    n.eni.clone(),
                    "--timeout".into(),
                    "600s".into(),
                ],
            ),
        };
        let child = env
            .command_of(program, &args)
            .spawn()
            .context("spawn claimer")?;
        let spawned_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let eni = n.eni.clone();
        let log = trace_dir
            .as_ref()
            .map(|d| d.join(format!("claimer-{i:03}.jsonl")));
        handles.push(tokio::spawn(async move {
            let out = child.wait_with_output().await;
            if let (Some(log), Ok(out)) = (log, &out) {
                let spawn = format!("{{\"spawned_ms\":{spawned_ms}}}\n");
                let _ = std::fs::write(log, [spawn.as_bytes(), &out.stderr].concat());
            }
            (eni, args, out)
        }));
    }
    let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(claimers);
    for h in handles {
        let (eni, args, out) = h.await?;
        outcomes.push((eni, Outcome::from_output(&args, out?)));
    }
    let makespan = started.elapsed().as_secs_f64();
    let other_callers_calls = proxy.background().admitted;

    let state = ec2.pool_state(&pool).await?;
    let successes: Vec<_> = outcomes
        .iter()
        .filter_map(|(e, o)| o.report().map(|r| (e.clone(), r)))
        .collect();
    let mut per_alloc: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, r) in &successes {
        *per_alloc.entry(r.allocation_id.as_str()).or_default() += 1;
    }
    let double_assignments = per_alloc.values().map(|k| k.saturating_sub(1)).sum();
    let leaked = check::no_leak(&successes, &state, &Default::default()).len();
    let mut times: Vec<f64> = successes
        .iter()
        .map(|(_, r)| r.elapsed_ms as f64 / 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let stats = proxy.stats();
    let wins = successes.len().max(1) as f64;
    let mut by_action: BTreeMap<String, f64> = BTreeMap::new();
    for ((action, _), n) in &stats.0 {
        *by_action.entry(action.clone()).or_default() += *n as f64 / wins;
    }
    let exhausted = outcomes.iter().filter(|(_, o)| o.code == Some(69)).count();
    let failed = outcomes.len() - successes.len() - exhausted;
    if failed > 0 {
        if let Some((_, o)) = outcomes
            .iter()
            .find(|(_, o)| !matches!(o.code, Some(0) | Some(69)))
        {
            eprintln!(
                "  {} N={claimers}: {failed} claimers failed, e.g.: {}",
                who.name(),
                o.error_line()
            );
        }
    }
    Ok(Row {
        strategy: who.name().into(),
        claimers,
        pool_size,
        makespan_s: makespan,
        p50_s: quantile(&times, 0.5),
        p95_s: quantile(&times, 0.95),
        p99_s: quantile(&times, 0.99),
        ec2_calls_per_claim: by_action.values().sum(),
        ec2_calls_per_claim_by_action: by_action,
        throttled: stats.outcome("throttled"),
        double_assignments,
        leaked,
        floor_s: floor_sharing(
            claimers.min(pool_size),
            match who {
                Contender::Shared(s) => s.left(),
                _ => 1.0,
            },
        ),
        other_callers_calls,
        successes: successes.len(),
        exhausted,
        failed,
        times,
    })
}

/// Where the claimer binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `eipool`.
    pub eipool: PathBuf,
    /// `eipool-lab` (for the baselines).
    pub lab: PathBuf,
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| strategy | claimers | pool | ok | 69 | failed | makespan s | floor s | p50 s | p95 s | p99 s | EC2 calls/claim | throttled | double assignments | leaked |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.strategy, r.claimers, r.pool_size, r.successes, r.exhausted, r.failed, r.makespan_s, r.floor_s, r.p50_s, r.p95_s, r.p99_s,
            r.ec2_calls_per_claim, r.throttled, r.double_assignments, r.leaked
        ));
    }
    s
}

/// Time-to-address of the small herds against the round-trip floor, as Markdown.
pub fn small_herds(rows: &[Row]) -> String {
    let mut s = String::from(
        "| strategy | claimers | round-trip floor s | p50 s | p99 s | p50 ÷ floor | p99 ÷ floor |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.claimers <= 10) {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |\n",
            r.strategy,
            r.claimers,
            ROUND_TRIP_FLOOR_S,
            r.p50_s,
            r.p99_s,
            r.p50_s / ROUND_TRIP_FLOOR_S,
            r.p99_s / ROUND_TRIP_FLOOR_S
        ));
    }
    s
}

/// EC2 calls per claim by action, and the makespan against the floor, for the product's two
/// identity modes (IMDSv2 as deployed, and flags), as Markdown.
pub fn calls_by_action(rows: &[Row]) -> String {
    const ACTIONS: [&str; 5] = [
        "DescribeAddresses",
        "DescribeNetworkInterfaces",
        "AssociateAddress",
        "CreateTags",
        "DisassociateAddress",
    ];
    let mut s = String::from("| mode | claimers | pool | calls/claim |");
    for a in ACTIONS {
        s.push_str(&format!(" {a} |"));
    }
    s.push_str(" other | makespan ÷ floor |\n|---|---|---|---|");
    s.push_str(&"---|".repeat(ACTIONS.len() + 2));
    s.push('\n');
    for r in rows
        .iter()
        .filter(|r| r.strategy == "eipool" || r.strategy == "eipool-flags")
    {
        let mode = if r.strategy == "eipool" {
            "IMDSv2"
        } else {
            "flags"
        };
        s.push_str(&format!(
            "| {mode} | {} | {} | {:.2} |",
            r.claimers, r.pool_size, r.ec2_calls_per_claim
        ));
        for a in ACTIONS {
            let n = r
                .ec2_calls_per_claim_by_action
                .get(a)
                .copied()
                .unwrap_or(0.0);
            s.push_str(&format!(" {n:.2} |"));
        }
        let other: f64 = r
            .ec2_calls_per_claim_by_action
            .iter()
            .filter(|(a, _)| !ACTIONS.contains(&a.as_str()))
            .fold(0.0, |sum, (_, n)| sum + n);
        s.push_str(&format!(
            " {other:.2} | {:.2} |\n",
            r.makespan_s / r.floor_s
        ));
    }
    s
}

/// The shared-account rows against their floor (at the share of AssociateAddress's refill left
/// to the herd), as Markdown.
pub fn shared_account(rows: &[Row]) -> String {
    let mut s = String::from(
        "| strategy | claimers | pool | ok | 69 | failed | makespan s | floor s | makespan ÷ floor | EC2 calls/claim | throttled | other caller's calls |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| {
        Contender::SHARED
            .iter()
            .any(|c| c.name() == r.strategy.as_str())
    }) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} |\n",
            r.strategy,
            r.claimers,
            r.pool_size,
            r.successes,
            r.exhausted,
            r.failed,
            r.makespan_s,
            r.floor_s,
            r.makespan_s / r.floor_s,
            r.ec2_calls_per_claim,
            r.throttled,
            r.other_callers_calls
        ));
    }
    s
}

/// What must hold in every run, quick or full: eipool never double-assigns, leaks or fails
/// otherwise than by exhaustion; the unprotected variant shows the bug at N ≥ 50 (proof the
/// benchmark can see it).
pub fn safety_violations(rows: &[Row]) -> Vec<String> {
    let mut v = Vec::new();
    for r in rows {
        let eipool = r.strategy.starts_with("eipool");
        if eipool && (r.double_assignments > 0 || r.leaked > 0 || r.failed > 0) {
            v.push(format!(
                "{} at N={} pool={}: {} double assignments, {} leaked, {} failed",
                r.strategy, r.claimers, r.pool_size, r.double_assignments, r.leaked, r.failed
            ));
        }
        if eipool && r.successes != r.claimers.min(r.pool_size) {
            v.push(format!(
                "{} at N={} pool={}: {} successes, expected {}",
                r.strategy,
                r.claimers,
                r.pool_size,
                r.successes,
                r.claimers.min(r.pool_size)
            ));
        }
    }
    let steal_seen = rows
        .iter()
        .filter(|r| r.strategy == "unlocked-steal" && r.claimers >= 50)
        .any(|r| r.double_assignments > 0);
    if rows
        .iter()
        .any(|r| r.strategy == "unlocked-steal" && r.claimers >= 50)
        && !steal_seen
    {
        v.push("unlocked-steal showed no double assignment at N >= 50: the benchmark cannot see the bug".into());
    }
    v
}

/// The CDF of time-to-address per strategy at `claimers`, as SVG.
pub fn plot_cdf(rows: &[Row], claimers: usize, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.claimers == claimers && r.pool_size == claimers)
        .collect();
    let x_max = rows
        .iter()
        .flat_map(|r| r.times.last().copied())
        .fold(1.0, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Time until a claimer has its address, N = {claimers}"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..x_max, 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the herd started")
        .y_desc("fraction of claimers with an address")
        .draw()?;
    let colors = [RED, MAGENTA, BLUE, GREEN];
    for (i, r) in rows.iter().enumerate() {
        let n = r.claimers as f64;
        let pts: Vec<(f64, f64)> = r
            .times
            .iter()
            .enumerate()
            .map(|(k, t)| (*t, (k + 1) as f64 / n))
            .collect();
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(r.strategy.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The full run's cases, (claimers, pool size): N = 1, 10, 50, 200 and one pool of N/2;
/// `quick` (CI) stops at N = 50 with pools of N.
pub fn cases(quick: bool) -> Vec<(usize, usize)> {
    let mut cases = vec![(1, 1), (10, 10), (50, 50)];
    if !quick {
        cases.extend([(200, 200), (50, 25)]);
    }
    cases
}

/// The shared-account runs, (who, claimers, pool size): two clusters of 60 on a pool of 100, and
/// a herd of 100 while another caller takes half of AssociateAddress's bucket; `quick` (CI,
/// safety columns only): 12 + 12 on 20, and 20 beside the caller.
pub fn shared_cases(quick: bool) -> Vec<(Contender, usize, usize)> {
    let [two, caller] = Contender::SHARED;
    if quick {
        vec![(two, 24, 20), (caller, 20, 20)]
    } else {
        vec![(two, 120, 100), (caller, 100, 100)]
    }
}

/// Regions moto serves, one per run so each run starts from an empty account.
pub const REGIONS: [&str; 28] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "sa-east-1",
    "ap-northeast-3",
    "ap-east-1",
    "ap-south-2",
    "ap-southeast-3",
    "eu-south-1",
    "eu-central-2",
    "me-south-1",
    "af-south-1",
    "me-central-1",
    "il-central-1",
    "eu-south-2",
    "ap-southeast-4",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_of_the_full_bench_has_a_region_of_its_own() {
        let runs = cases(false).len() * Contender::ALL.len() + shared_cases(false).len();
        assert!(
            runs <= REGIONS.len(),
            "{runs} runs, {} regions",
            REGIONS.len()
        );
        let distinct: std::collections::BTreeSet<_> = REGIONS.iter().collect();
        assert_eq!(distinct.len(), REGIONS.len());
    }

    #[test]
    fn the_floor_is_the_mutating_bucket() {
        assert_eq!(floor_s(10), ROUND_TRIP_S);
        assert_eq!(floor_s(50), ROUND_TRIP_S);
        assert!((floor_s(200) - (30.0 + ROUND_TRIP_S)).abs() < 1e-9);
        // Beside a caller taking half the bucket, the herd's floor is at half the rate.
        let half = Sharing::Caller(50).left();
        assert!((floor_sharing(100, half) - (20.0 + ROUND_TRIP_S)).abs() < 1e-9);
        assert_eq!(Sharing::TwoClusters.left(), 1.0);
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}

//! `eipool-lab`: the demo (and, later, the benchmark) of eipool, against real moto and redis-server.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use eipool_lab::claimer::LabEnv;
use eipool_lab::fixture::Ec2Lab;
use eipool_lab::servers::{Moto, RedisServer};

/// Test and demo tooling for eipool (not shipped).
#[derive(Debug, Parser)]
#[command(name = "eipool-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start moto and Redis, make a VPC with NODES instances and a POOL-address pool, run NODES
    /// concurrent `eipool claim`s, show who got what, stop everything
    Demo {
        /// Instances, each running one claimer at the same moment
        #[arg(long, default_value_t = 20, env = "EIPOOL_DEMO_NODES")]
        nodes: usize,
        /// Elastic IPs in the pool
        #[arg(long, default_value_t = 12, env = "EIPOOL_DEMO_POOL_SIZE")]
        pool_size: usize,
        /// The eipool binary [default: next to this one]
        #[arg(long, env = "EIPOOL_BIN")]
        eipool: Option<PathBuf>,
    },
    /// The herd benchmark: eipool vs the reference global spin lock, unlocked-steal and cas-only,
    /// through AWS-like EC2 (throttling, 100±50 ms latency, 1 s stale). Writes a Markdown table
    /// to stdout, target/bench/herd.json and target/bench/herd.svg
    Bench {
        /// N = 1, 10 and 50 only, pools of N (CI). Either mode fails when a safety column is wrong
        #[arg(long)]
        quick: bool,
        /// Where to write herd.json and herd.svg
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Only this case, as CLAIMERS:POOL (e.g. 200:200), to re-run one row
        #[arg(long, value_name = "N:POOL")]
        only: Option<String>,
        /// Only these strategies (global-spin-lock, unlocked-steal, cas-only, eipool,
        /// eipool-flags; in a shared account: eipool-two-clusters, eipool-beside-a-caller)
        #[arg(long, value_delimiter = ',')]
        strategy: Vec<String>,
        /// The eipool binary [default: next to this one]
        #[arg(long, env = "EIPOOL_BIN")]
        eipool: Option<PathBuf>,
        /// Keep each eipool claimer's debug log (JSON lines) under OUT/trace/ and print where
        /// the herd's time went
        #[arg(long)]
        trace: bool,
        /// Only node mode's row: `eipool node` start → the Node's startup taint removed, at
        /// N=1 and in a herd of 20 (N=1 only with --quick)
        #[arg(long)]
        node_mode: bool,
    },
    /// The fleet soak: agents holding their addresses through Redis flushed, an EC2 brownout,
    /// terminated nodes, a stolen and a disassociated address. Prints a table; fails when an
    /// address was lost by mistake, drift was false, or a recovery did not happen
    Soak {
        /// 20 agents for 60 s (CI)
        #[arg(long)]
        quick: bool,
        /// Agents [default: 50; 20 with --quick]
        #[arg(long)]
        agents: Option<usize>,
        /// How long, once every agent holds an address [default: 3m; 60s with --quick]
        #[arg(long, value_parser = humantime::parse_duration)]
        length: Option<std::time::Duration>,
        /// The agents' --interval
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// The eipool binary [default: next to this one]
        #[arg(long, env = "EIPOOL_BIN")]
        eipool: Option<PathBuf>,
    },
    /// One claimer of a baseline strategy (used by bench; not for production)
    Baseline {
        /// The strategy
        #[arg(long, value_enum)]
        strategy: eipool_lab::baseline::Strategy,
        /// Pool name
        #[arg(long)]
        pool: String,
        /// This claimer's interface
        #[arg(long)]
        network_interface_id: String,
        /// Redis (global-spin-lock only)
        #[arg(long)]
        redis_url: Option<String>,
        /// Give up after this many seconds
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Demo {
            nodes,
            pool_size,
            eipool,
        } => rt
            .block_on(demo(nodes, pool_size, eipool))
            .map(|_| std::process::ExitCode::SUCCESS),
        Command::Bench {
            quick,
            out,
            eipool,
            only,
            strategy,
            trace,
            node_mode,
        } => rt
            .block_on(bench(
                node_mode,
                quick,
                &out,
                eipool,
                only.as_deref(),
                &strategy,
                trace,
            ))
            .map(|_| std::process::ExitCode::SUCCESS),
        Command::Soak {
            quick,
            agents,
            length,
            interval,
            eipool,
        } => {
            let shape = eipool_lab::soak::Shape {
                agents: agents.unwrap_or(if quick { 20 } else { 50 }),
                length: length.unwrap_or(std::time::Duration::from_secs(if quick {
                    60
                } else {
                    180
                })),
                interval,
            };
            let eipool = match eipool {
                Some(e) => e,
                None => sibling_eipool()?,
            };
            let report = rt.block_on(eipool_lab::soak::run(&eipool, shape))?;
            println!("{}", report.markdown(shape));
            let v = report.violations();
            if v.is_empty() {
                Ok(std::process::ExitCode::SUCCESS)
            } else {
                eprintln!("soak failed: {}", v.join("; "));
                Ok(std::process::ExitCode::FAILURE)
            }
        }
        Command::Baseline {
            strategy,
            pool,
            network_interface_id,
            redis_url,
            timeout,
        } => rt.block_on(eipool_lab::baseline::run(
            strategy,
            &pool,
            &network_interface_id,
            redis_url.as_deref(),
            timeout,
        )),
    }
}

async fn bench(
    node_mode: bool,
    quick: bool,
    out: &std::path::Path,
    eipool: Option<PathBuf>,
    only: Option<&str>,
    strategies: &[String],
    trace: bool,
) -> Result<()> {
    use eipool_lab::bench::{self, Bins, Contender, REGIONS};
    let bins = Bins {
        eipool: match eipool {
            Some(p) => p,
            None => sibling_eipool()?,
        },
        lab: std::env::current_exe()?,
    };
    let mut cases = bench::cases(quick);
    let mut only_case = None;
    if let Some(o) = only {
        let (n, p) = o
            .split_once(':')
            .context("--only takes CLAIMERS:POOL, e.g. 200:200")?;
        let case = (
            n.parse().context("--only: claimers")?,
            p.parse().context("--only: pool")?,
        );
        cases = vec![case];
        only_case = Some(case);
    }
    let mut runs: Vec<(Contender, usize, usize)> = cases
        .iter()
        .flat_map(|&(n, size)| Contender::ALL.map(|who| (who, n, size)))
        .collect();
    runs.extend(
        bench::shared_cases(quick)
            .into_iter()
            .filter(|&(_, n, size)| only_case.is_none_or(|c| c == (n, size))),
    );
    let moto = Moto::start().context("starting moto")?;
    if node_mode {
        return node_rows(&moto, &bins.eipool, quick).await;
    }
    let mut rows = Vec::new();
    let mut profiles = Vec::new();
    let mut region = REGIONS.iter();
    for (who, n, size) in runs {
        if !strategies.is_empty() && !strategies.iter().any(|s| s == who.name()) {
            continue;
        }
        let r = region.next().context("more runs than moto regions")?;
        eprintln!("bench: {} with N={n}, pool={size} ...", who.name());
        let trace_dir = trace.then(|| out.join("trace"));
        let row = bench::run_case(&moto, &bins, who, n, size, r, trace_dir.as_deref()).await?;
        if let (Some(dir), true) = (&trace_dir, who.is_eipool()) {
            let logs = dir.join(format!("{}-{n}-{size}", who.name()));
            let claimers = eipool_lab::profile::read_dir(&logs)?;
            profiles.push(format!(
                "Where the time went: {}, N={n}, pool={size} (logs in {})\n\n{}",
                who.name(),
                logs.display(),
                eipool_lab::profile::markdown(&claimers)
            ));
        }
        eprintln!(
            "  makespan {:.1} s ({:.2}x the floor), {} ok, {} exhausted, {} failed, {:.2} EC2 calls per claim, {} throttled",
            row.makespan_s,
            row.makespan_s / row.floor_s,
            row.successes,
            row.exhausted,
            row.failed,
            row.ec2_calls_per_claim,
            row.throttled
        );
        rows.push(row);
    }
    let floors: Vec<String> = cases
        .iter()
        .map(|&(n, s)| format!("N={n} pool={s}: {:.1} s", bench::floor_s(n.min(s))))
        .collect();
    println!("{}", bench::markdown(&rows));
    println!(
        "Time to address of the small herds against the round-trip floor (a listing and an association, {:.1} s through the proxy):\n\n{}",
        bench::ROUND_TRIP_FLOOR_S,
        bench::small_herds(&rows)
    );
    println!(
        "Floor from EC2's mutating bucket (burst 50, 5/s), max(0, N - 50) / 5 + one round trip: {}",
        floors.join("; ")
    );
    println!(
        "\nEC2 calls per claim by action (each action in its own bucket, as AWS throttles), for eipool's two identity modes:\n\n{}",
        bench::calls_by_action(&rows)
    );
    println!(
        "\nIn a shared account (two clusters with a Redis each on one pool; another caller taking half of AssociateAddress's bucket, the floor then at half its rate):\n\n{}",
        bench::shared_account(&rows)
    );
    for p in &profiles {
        println!("\n{p}");
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("herd.json"), serde_json::to_string_pretty(&rows)?)?;
    let plot_n = rows.iter().map(|r| r.claimers).max().unwrap_or(0);
    bench::plot_cdf(&rows, plot_n, &out.join("herd.svg"))?;
    eprintln!(
        "wrote {} and {}",
        out.join("herd.json").display(),
        out.join("herd.svg").display()
    );
    let violations = bench::safety_violations(&rows);
    if !violations.is_empty() {
        bail!("safety columns are wrong:\n{}", violations.join("\n"));
    }
    if only.is_none() && strategies.is_empty() {
        node_rows(&moto, &bins.eipool, quick).await?;
    }
    Ok(())
}

/// Node mode's row: node start → taint removed, at N=1 and in a herd.
async fn node_rows(moto: &Moto, eipool: &std::path::Path, quick: bool) -> Result<()> {
    use eipool_lab::node_bench::{self, NODE_REGIONS};
    let mut lines = Vec::new();
    for (n, region) in node_bench::node_cases(quick).into_iter().zip(NODE_REGIONS) {
        eprintln!("bench: node mode with N={n} ...");
        lines.push(node_bench::run(moto, eipool, n, region).await?.markdown());
    }
    println!(
        "\nNode mode (`eipool node` start → the Node's startup taint removed, seconds; one address per node):\n\n| row | N | p50 | p99 | max |\n|---|---|---|---|---|\n{}",
        lines.join("\n")
    );
    Ok(())
}

fn sibling_eipool() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("eipool");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build -p eipool) or pass --eipool",
            bin.display()
        );
    }
    Ok(bin)
}

async fn demo(n_nodes: usize, pool_size: usize, eipool: Option<PathBuf>) -> Result<()> {
    let eipool = match eipool {
        Some(p) => p,
        None => sibling_eipool()?,
    };
    println!("Starting moto (EC2 emulator) and redis-server on loopback...");
    let moto = Moto::start().context("starting moto")?;
    let redis = RedisServer::start().context("starting redis-server")?;
    println!("  moto  {}\n  redis {}", moto.endpoint, redis.url());

    let ec2 = Ec2Lab::new(&moto.endpoint);
    let pool = "demo";
    let nodes = ec2.nodes(n_nodes).await?;
    let eips = ec2.allocate(Some(pool), pool_size).await?;
    ec2.allocate(None, 2).await?; // untagged: must stay untouched
    println!(
        "Made a VPC with {} instances and pool {pool:?} of {} Elastic IPs (plus 2 untagged ones).",
        nodes.len(),
        eips.len()
    );

    println!(
        "Running {} `eipool claim` processes at once...\n",
        nodes.len()
    );
    let env = LabEnv::new(&eipool, &moto.endpoint);
    let started = Instant::now();
    let runs: Vec<_> = nodes
        .iter()
        .map(|n| {
            let args: Vec<String> = [
                "--pool",
                pool,
                "--redis-url",
                &redis.url(),
                "--instance-id",
                &n.instance_id,
                "claim",
                "--timeout",
                "60s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let env = env.clone();
            tokio::spawn(async move { env.run(&args).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in runs {
        outcomes.push(r.await?);
    }
    let makespan = started.elapsed();

    println!(
        "{:<21} {:<23} {:<16} {:>6}  result",
        "instance", "interface", "public ip", "ms"
    );
    let (mut won, mut exhausted, mut other) = (0, 0, 0);
    for (node, o) in nodes.iter().zip(&outcomes) {
        match (o.code, o.report()) {
            (Some(0), Some(r)) => {
                won += 1;
                println!(
                    "{:<21} {:<23} {:<16} {:>6}  got {}",
                    node.instance_id, node.eni, r.public_ip, r.elapsed_ms, r.allocation_id
                );
            }
            (Some(69), _) => {
                exhausted += 1;
                println!(
                    "{:<21} {:<23} {:<16} {:>6}  exit 69: pool exhausted",
                    node.instance_id, node.eni, "-", ""
                );
            }
            _ => {
                other += 1;
                println!(
                    "{:<21} {:<23} {:<16} {:>6}  exit {:?}: {}",
                    node.instance_id,
                    node.eni,
                    "-",
                    "",
                    o.code,
                    o.error_line()
                );
            }
        }
    }

    let state = ec2.pool_state(pool).await?;
    let associated = state
        .values()
        .filter(|e| e.association_id.is_some())
        .count();
    let distinct: std::collections::BTreeSet<_> = outcomes
        .iter()
        .filter_map(|o| o.report())
        .map(|r| r.allocation_id)
        .collect();
    println!(
        "\n{won} claimed, {exhausted} told the pool is exhausted, {other} other, in {:.1} s.\nEC2 now shows {associated} of {} pool addresses associated; {} distinct addresses were reported.",
        makespan.as_secs_f64(),
        state.len(),
        distinct.len()
    );
    if let Some(o) = outcomes.iter().find(|o| o.code == Some(69)) {
        println!("What an exhausted claimer said:\n  {}", o.error_line());
    }
    let status_args: Vec<String> = ["--pool", pool, "--redis-url", &redis.url(), "status"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let status = env.run(&status_args).await;
    println!(
        "\nThe pool as an operator sees it (`eipool --pool {pool} status`):\n{}",
        status.stdout.trim_end()
    );
    println!("\nStopping moto and redis-server.");
    drop(redis);
    drop(moto);
    if other > 0 || distinct.len() != won || associated != won || status.code != Some(0) {
        bail!("the demo saw something wrong (see above)");
    }
    Ok(())
}

//! The fleet soak: agents (the real binary, as shipped: `--release-on-exit`, identity from
//! IMDSv2) holding their addresses for minutes through AWS-like EC2, while the lab flushes
//! Redis, browns EC2 out, terminates two nodes, steals one address with a plain
//! AssociateAddress and disassociates another by hand. It reports what matters over a node's
//! life: addresses lost by mistake (must be 0), false drift (0), recoveries and their time, and
//! what steady state costs in EC2 calls per agent-hour.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::process::Child;

use crate::chaos::{ChaosConfig, ChaosProxy, Stats};
use crate::claimer::LabEnv;
use crate::fixture::{Ec2Lab, Node};
use crate::imds::{ImdsStub, NodeMeta};
use crate::servers::{free_port, http_get, Moto, RedisServer};

/// How big and how long.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Agents, one per node.
    pub agents: usize,
    /// How long the soak runs once every agent holds an address.
    pub length: Duration,
    /// The agents' `--interval`.
    pub interval: Duration,
}

struct Agent {
    node: Node,
    listen: SocketAddr,
    env_file: PathBuf,
    /// Its stderr (its log), for the report of a failure.
    log: PathBuf,
    child: Child,
    first_ip: String,
    _imds: ImdsStub,
}

impl Agent {
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.listen, path).await.ok()
    }

    async fn ready(&self) -> bool {
        self.get("/readyz").await.is_some_and(|(c, _)| c == 200)
    }

    /// Poll until it is ready; fail at once if it exits, or after `within`, with its log's end.
    async fn until_ready(&mut self, within: Duration) -> Result<()> {
        let until = Instant::now() + within;
        while !self.ready().await {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}) before it was ready{}", self.log_tail());
            }
            if Instant::now() > until {
                bail!("not ready within {within:?}{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// The last lines of its log, introduced for an error message.
    fn log_tail(&self) -> String {
        format!(
            "; the end of its log ({}):\n{}",
            self.log.display(),
            crate::servers::log_tail(&self.log)
        )
    }

    async fn drift(&self) -> f64 {
        let Some((_, body)) = self.get("/metrics").await else {
            return f64::NAN;
        };
        body.lines()
            .find_map(|l| l.strip_prefix("eipool_drift_total")?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn ip(&self) -> Option<String> {
        std::fs::read_to_string(&self.env_file)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("EIPOOL_PUBLIC_IP=").map(str::to_string))
    }
}

/// What the soak found.
#[derive(Debug)]
pub struct Report {
    /// Agents that were started.
    pub agents: usize,
    /// Addresses that moved or went away without a fault aimed at them.
    pub lost_by_mistake: usize,
    /// Drift counted beyond the two addresses taken on purpose.
    pub false_drift: f64,
    /// Recoveries: what happened and how long until the agent held an address again.
    pub recoveries: Vec<(String, Duration)>,
    /// EC2 calls per agent-hour while nothing happened.
    pub steady_calls_per_agent_hour: f64,
    /// Agents that did not exit 0 on SIGTERM.
    pub bad_exits: usize,
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self, shape: Shape) -> String {
        let mut s = format!(
            "| agents | length | lost by mistake | false drift | EC2 calls per agent-hour (steady) | bad exits |\n|---|---|---|---|---|---|\n| {} | {:.0} s | {} | {} | {:.2} | {} |\n\n",
            self.agents,
            shape.length.as_secs_f64(),
            self.lost_by_mistake,
            self.false_drift,
            self.steady_calls_per_agent_hour,
            self.bad_exits
        );
        for (what, took) in &self.recoveries {
            s.push_str(&format!("- {what}: {:.1} s\n", took.as_secs_f64()));
        }
        s
    }

    /// What must hold: nothing lost by mistake, no false drift, every recovery done, clean exits.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.lost_by_mistake > 0 {
            v.push(format!(
                "{} addresses lost by mistake",
                self.lost_by_mistake
            ));
        }
        if self.false_drift != 0.0 {
            v.push(format!("{} false drift", self.false_drift));
        }
        if self.recoveries.len() != 2 {
            v.push(format!("{} of 2 recoveries", self.recoveries.len()));
        }
        if self.bad_exits > 0 {
            v.push(format!(
                "{} agents did not exit 0 on SIGTERM",
                self.bad_exits
            ));
        }
        v
    }
}

/// EC2 calls of every action so far.
fn calls(stats: &Stats) -> u64 {
    stats.0.values().sum()
}

/// Run the soak with the `eipool` binary at `eipool`.
pub async fn run(eipool: &Path, shape: Shape) -> Result<Report> {
    let moto = Moto::start()?;
    let redis = RedisServer::start()?;
    let ec2 = Ec2Lab::new(&moto.endpoint);
    let proxy = ChaosProxy::start(
        &moto.endpoint,
        ChaosConfig {
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(25),
            aws_semantics: true,
            ..ChaosConfig::default()
        }
        .aws_throttling(),
    )
    .await?;
    let aws = Ec2Lab::new(&proxy.endpoint);
    let nodes = ec2.nodes(shape.agents + 1).await?;
    let outsider = nodes[shape.agents].clone();
    let pool = "soak";
    ec2.allocate(Some(pool), shape.agents + 4).await?;
    let env = LabEnv::new(eipool, &proxy.endpoint);
    // The agents' env files and logs; kept when the soak fails (its errors name the logs).
    let dir = tempfile::Builder::new()
        .prefix("eipool-soak-")
        .tempdir()?
        .keep();
    let dir = dir.as_path();

    let started = Instant::now();
    let mut agents = Vec::new();
    for (i, node) in nodes[..shape.agents].iter().enumerate() {
        agents.push(start_agent(&env, &ec2, &redis, pool, node, i, dir, shape.interval).await?);
    }
    for a in &mut agents {
        a.until_ready(Duration::from_secs(120))
            .await
            .with_context(|| format!("the agent on {} at the start", a.node.eni))?;
        a.first_ip = a.ip().context("env file")?;
    }
    eprintln!(
        "soak: {} agents hold their addresses after {:.1} s",
        agents.len(),
        started.elapsed().as_secs_f64()
    );

    let quiet = shape.length / 5;
    let mut steady_calls = 0;
    let mut steady_time = Duration::ZERO;
    let mut steady = |from: &Stats, took: Duration, now: &Stats| {
        steady_calls += calls(now) - calls(from);
        steady_time += took;
        for (k, n) in &now.0 {
            let before = from.0.get(k).copied().unwrap_or(0);
            if *n > before {
                eprintln!("soak: steady state: {} {} x{}", k.0, k.1, n - before);
            }
        }
    };
    // Quiet first.
    let (from, t) = (proxy.stats(), Instant::now());
    tokio::time::sleep(quiet).await;
    steady(&from, t.elapsed(), &proxy.stats());

    // Redis loses everything.
    redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?
        .send_packed_command(&redis::cmd("FLUSHALL"))
        .await?;
    eprintln!("soak: Redis flushed");
    // EC2 browns out for three intervals.
    proxy.reconfigure(|c| c.p_5xx = 1.0);
    tokio::time::sleep(shape.interval * 3).await;
    proxy.reconfigure(|c| c.p_5xx = 0.0);
    eprintln!("soak: EC2 answered 5xx for {:?}", shape.interval * 3);
    // Two nodes are terminated (their agents die with them).
    for a in agents.iter_mut().skip(2).take(2) {
        let _ = a.child.start_kill();
        aws.client
            .terminate_instances()
            .instance_ids(&a.node.instance_id)
            .send()
            .await?;
    }
    eprintln!("soak: terminated 2 nodes");

    // One address stolen with a plain AssociateAddress.
    let mut recoveries = Vec::new();
    let state = ec2.pool_state(pool).await?;
    let victim = &agents[0];
    let stolen = state
        .values()
        .find(|e| e.eni.as_deref() == Some(victim.node.eni.as_str()))
        .context("victim's address")?
        .clone();
    let t = Instant::now();
    ec2.associate_external(&stolen.allocation_id, &outsider.eni)
        .await?;
    wait_for(Duration::from_secs(120), || async {
        victim.ip().is_some_and(|ip| ip != victim.first_ip) && victim.ready().await
    })
    .await
    .with_context(|| {
        format!(
            "the agent whose address was stolen never held a new one{}",
            victim.log_tail()
        )
    })?;
    recoveries.push((
        "address stolen → the agent holds a new one".to_string(),
        t.elapsed(),
    ));
    // One disassociated by hand.
    let victim = &agents[1];
    let held = ec2
        .pool_state(pool)
        .await?
        .into_values()
        .find(|e| e.eni.as_deref() == Some(victim.node.eni.as_str()))
        .context("second victim's address")?;
    let t = Instant::now();
    ec2.disassociate(held.association_id.as_deref().unwrap_or_default())
        .await?;
    wait_for(Duration::from_secs(120), || async {
        ec2.pool_state(pool).await.ok().is_some_and(|s| {
            s[&held.allocation_id].eni.as_deref() == Some(victim.node.eni.as_str())
                && s[&held.allocation_id].association_id != held.association_id
        })
    })
    .await
    .with_context(|| {
        format!(
            "the agent whose address was disassociated never took it back{}",
            victim.log_tail()
        )
    })?;
    // Its claim is done (validated, recorded) once it is ready again.
    wait_for(Duration::from_secs(60), || victim.ready())
        .await
        .with_context(|| {
            format!(
                "the agent that took its address back never became ready{}",
                victim.log_tail()
            )
        })?;
    recoveries.push((
        "address disassociated → the agent takes the same one back".to_string(),
        t.elapsed(),
    ));

    // Quiet again.
    let (from, t) = (proxy.stats(), Instant::now());
    tokio::time::sleep(quiet).await;
    steady(&from, t.elapsed(), &proxy.stats());

    // What happened to everyone else.
    let state = ec2.pool_state(pool).await?;
    let mut lost_by_mistake = 0;
    let mut drift = 0.0;
    for a in agents.iter().skip(4).chain(agents.iter().take(2).skip(1)) {
        let held_now = state
            .values()
            .find(|e| e.eni.as_deref() == Some(a.node.eni.as_str()))
            .map(|e| e.public_ip.clone());
        if held_now.as_deref() != Some(a.first_ip.as_str()) {
            eprintln!(
                "soak: {} held {} and now {held_now:?}{}",
                a.node.eni,
                a.first_ip,
                a.log_tail()
            );
            lost_by_mistake += 1;
        }
    }
    let mut drifted = Vec::new();
    for a in agents.iter().take(2).chain(agents.iter().skip(4)) {
        let d = a.drift().await;
        drift += d;
        if d != 0.0 {
            drifted.push((a, d));
        }
    }
    let false_drift = drift - 2.0;
    if false_drift != 0.0 {
        // Only the two victims should have drifted, once each: say who did.
        for (a, d) in drifted {
            eprintln!("soak: {} drifted {d} times{}", a.node.eni, a.log_tail());
        }
    }
    // SIGTERM: release, exit 0.
    let mut bad_exits = 0;
    let alive = |i: &usize| !(2..4).contains(i); // 2 and 3 died with their nodes
    for (_, a) in agents.iter_mut().enumerate().filter(|(i, _)| alive(i)) {
        if let Some(pid) = a.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
    }
    for (_, a) in agents.iter_mut().enumerate().filter(|(i, _)| alive(i)) {
        match tokio::time::timeout(Duration::from_secs(60), a.child.wait()).await {
            Ok(Ok(s)) if s.code() == Some(0) => {}
            other => {
                eprintln!("soak: {} ended {other:?}{}", a.node.eni, a.log_tail());
                bad_exits += 1;
            }
        }
    }
    let agent_hours = (agents.len() - 2) as f64 * steady_time.as_secs_f64() / 3600.0;
    eprintln!(
        "soak: {steady_calls} EC2 calls in {:.0} s of steady state:\n{}",
        steady_time.as_secs_f64(),
        proxy.stats().table()
    );
    let report = Report {
        agents: agents.len(),
        lost_by_mistake,
        false_drift,
        recoveries,
        steady_calls_per_agent_hour: steady_calls as f64 / agent_hours,
        bad_exits,
    };
    if report.violations().is_empty() {
        drop(agents);
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("soak: the agents' logs are in {}", dir.display());
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn start_agent(
    env: &LabEnv,
    ec2: &Ec2Lab,
    redis: &RedisServer,
    pool: &str,
    node: &Node,
    i: usize,
    dir: &Path,
    interval: Duration,
) -> Result<Agent> {
    let imds = ImdsStub::start(
        NodeMeta {
            instance_id: &node.instance_id,
            mac: &format!("02:00:00:01:{:02x}:{:02x}", i / 256, i % 256),
            eni: &node.eni,
            local_ipv4: &node.private_ip,
        },
        ec2,
    )
    .await?;
    let mut env = env.clone();
    env.imds_endpoint = imds.endpoint.clone();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let env_file = dir.join(format!("agent-{i}.env"));
    let log = dir.join(format!("agent-{i}.log"));
    let args: Vec<String> = [
        "--pool",
        pool,
        "--redis-url",
        &redis.url(),
        "agent",
        "--interval",
        &humantime::format_duration(interval).to_string(),
        "--listen",
        &listen.to_string(),
        "--release-on-exit",
        "--output",
        env_file.to_str().context("path")?,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = env.command(&args);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    Ok(Agent {
        node: node.clone(),
        listen,
        env_file,
        log,
        child: cmd.spawn()?,
        first_ip: String::new(),
        _imds: imds,
    })
}

/// Poll `probe` every 200 ms until true, or fail after `within`.
async fn wait_for<F, Fut>(within: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    while !probe().await {
        if Instant::now() > until {
            bail!("not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

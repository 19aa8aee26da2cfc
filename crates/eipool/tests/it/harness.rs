//! The shared harness: one moto for the whole test process (each test gets its own pool name and
//! its own VPC, so tests don't see each other), one redis-server per test, the `eipool` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eipool_lab::chaos::{ChaosConfig, ChaosProxy, Stats};
use eipool_lab::claimer::{ClaimReport, LabEnv, Outcome};
use eipool_lab::fixture::{Ec2Lab, Node};
use eipool_lab::imds::{ImdsStub, NodeMeta};
use eipool_lab::servers::free_port;
use eipool_lab::servers::{Moto, RedisServer};
use tokio::process::Child;

static MOTO: OnceLock<Moto> = OnceLock::new();
static POOLS: AtomicUsize = AtomicUsize::new(0);
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Herds of claimer processes take turns: two at once on two cores would measure the machine,
/// not eipool. Hold the guard for the whole test.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// moto, started on first use and stopped when the test process exits.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| Moto::start().expect("start moto (run scripts/bootstrap first)"))
}

/// One test's world: a fresh pool name, its own Redis, clients on moto, and the binary. The
/// binary reaches moto through a proxy that behaves as EC2 does where moto does not
/// (`ChaosConfig::aws_semantics`); so does `aws`, for what the test itself does to EC2 that
/// AWS would follow up (terminating an instance). `ec2` talks to moto directly, to set up and
/// to look.
pub struct Lab {
    pub ec2: Ec2Lab,
    pub aws: Ec2Lab,
    pub env: LabEnv,
    pub pool: String,
    pub redis: RedisServer,
    pub proxy: ChaosProxy,
}

impl Lab {
    pub async fn new() -> Lab {
        let moto = moto();
        let pool = format!(
            "it{}-{}",
            std::process::id(),
            POOLS.fetch_add(1, Ordering::SeqCst)
        );
        let proxy = ChaosProxy::start(&moto.endpoint, ChaosConfig::aws_like_moto())
            .await
            .expect("start the EC2 proxy");
        Lab {
            ec2: Ec2Lab::new(&moto.endpoint),
            aws: Ec2Lab::new(&proxy.endpoint),
            env: LabEnv::new(
                std::path::Path::new(env!("CARGO_BIN_EXE_eipool")),
                &proxy.endpoint,
            ),
            pool,
            redis: RedisServer::start().expect("start redis-server (run scripts/bootstrap first)"),
            proxy,
        }
    }

    /// `--pool P --redis-url R` and then `rest`.
    pub fn with_redis(&self, rest: &[&str]) -> Vec<String> {
        let mut a = args(&["--pool", &self.pool, "--redis-url", &self.redis.url()]);
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    }

    /// `eipool --pool P --redis-url R --network-interface-id ENI claim EXTRA…`
    pub fn claim_args(&self, node: &Node, extra: &[&str]) -> Vec<String> {
        self.claim_args_via(&self.redis.url(), node, extra)
    }

    /// The same, with Redis at `redis_url` (e.g. behind a fault proxy).
    pub fn claim_args_via(&self, redis_url: &str, node: &Node, extra: &[&str]) -> Vec<String> {
        claim_command(&self.pool, redis_url, &[], node, extra)
    }

    pub async fn claim(&self, node: &Node, extra: &[&str]) -> Outcome {
        self.env.run(&self.claim_args(node, extra)).await
    }

    /// `eipool --pool P --redis-url R --network-interface-id ENI release EXTRA…`
    pub fn release_args(&self, node: &Node, extra: &[&str]) -> Vec<String> {
        let mut a = self.with_redis(&["--network-interface-id", &node.eni, "release"]);
        a.extend(args(extra));
        a
    }

    /// Run [`Lab::release_args`] to the end.
    pub async fn release(&self, node: &Node, extra: &[&str]) -> Outcome {
        self.env.run(&self.release_args(node, extra)).await
    }

    /// `node`'s own IMDSv2 (the lab's stub, answering from EC2's current state), and an
    /// environment whose binary asks it. The stub stops when dropped.
    pub async fn node_imds(&self, node: &Node) -> (LabEnv, ImdsStub) {
        let stub = ImdsStub::start(
            NodeMeta {
                instance_id: &node.instance_id,
                mac: &format!("02:00:00:00:{}", &node.eni[4..9]),
                eni: &node.eni,
                local_ipv4: &node.private_ip,
            },
            &self.ec2,
        )
        .await
        .expect("start the IMDSv2 stub");
        let mut env = self.env.clone();
        env.imds_endpoint = stub.endpoint.clone();
        (env, stub)
    }

    /// Run `eipool ARGS` against this lab and wait for it.
    pub async fn run(&self, a: &[String]) -> Outcome {
        self.env.run(a).await
    }

    /// The key of `what` (e.g. `iface:<eni>/<ip>`) in this lab's pool, as eipool names it.
    pub fn key(&self, what: &str) -> String {
        eipool::redis::key(&self.pool, what)
    }

    /// The key of the herd's pace of `class` calls (`describe`, `mutating`) in the lab's region.
    pub fn pace_key(&self, class: &str) -> String {
        redis_as(&self.redis.url(), &self.pool, "lab").pace_key(class)
    }

    /// Reserve the herd's `class` pace (`describe`, `mutating`) as if other claimers had taken
    /// its slots: the virtual time of its next ticket set `ahead_ms` past Redis's clock (a pace's
    /// burst tolerance plus how long the next claimer must wait), its rate at its ceiling. The
    /// state's fields as `plan::PaceState` names them: first, next, an, av, r, pn, ap, rc, tc,
    /// cut.
    pub async fn reserve_pace(&self, class: &str, ahead_ms: u64) {
        let rate = match class {
            "mutating" => eipool::decisions::MUTATING_PACE,
            _ => eipool::decisions::DESCRIBE_PACE,
        };
        let mut conn = self.redis_conn().await;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let now = secs * 1_000 + micros / 1_000;
        let (first, r) = (now * 1_000, rate.per_second);
        let state = format!(
            "{first} {first} {first} {} {r} {first} {now} {r} {now} {first}",
            now + ahead_ms
        );
        let _: () = redis::cmd("SET")
            .arg(self.pace_key(class))
            .arg(state)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// How many tickets the herd's `class` pace has handed out since its state began (its
    /// `next` less its `first`); 0 when it has none.
    pub async fn pace_tickets(&self, class: &str) -> u64 {
        let state: Option<String> = redis::cmd("GET")
            .arg(self.pace_key(class))
            .query_async(&mut self.redis_conn().await)
            .await
            .unwrap();
        let fields: Vec<f64> = state
            .unwrap_or_default()
            .split(' ')
            .filter_map(|f| f.parse().ok())
            .collect();
        match fields[..] {
            [first, next, ..] => (next - first) as u64,
            _ => 0,
        }
    }

    /// A connection to this lab's Redis, for tests that set up or inspect keys.
    pub async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis_conn(&self.redis.url()).await
    }
}

/// The ACL rule docs/redis.md gives for eipool's user (`ACL SETUSER eipool on >PASSWORD …`).
pub fn documented_acl_rule() -> String {
    let doc = std::fs::read_to_string(workspace().join("docs/redis.md")).unwrap();
    let line = doc
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER eipool on >"))
        .expect("docs/redis.md gives the ACL for eipool's Redis user");
    line.split_once(" >")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(_, rule)| rule.trim().to_string())
        .unwrap()
}

/// Make `user` (password `pw`) on the lab's Redis with exactly `rule`, and return the URL that
/// logs in as it.
pub fn acl_user(lab: &Lab, user: &str, pw: &str, rule: &str) -> String {
    let url = lab.redis.url();
    let mut setuser = vec!["ACL", "SETUSER", user, "reset", "on"];
    let pass = format!(">{pw}");
    setuser.push(&pass);
    setuser.extend(rule.split_whitespace());
    eipool_lab::redis_setups::command(&url, &setuser).unwrap();
    url.replacen("redis://", &format!("redis://{user}:{pw}@"), 1)
}

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The JSON a successful command printed on stdout.
pub fn json(o: &Outcome) -> serde_json::Value {
    assert_eq!(o.code, Some(0), "{o}");
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {o}"))
}

/// `eipool --pool POOL --redis-url URL GLOBAL… --network-interface-id ENI claim EXTRA…`, with a
/// generous `--timeout` unless `extra` gives one: a herd on a loaded 2-core machine is slow, and
/// the deadline is not under test.
pub fn claim_command(
    pool: &str,
    redis_url: &str,
    global: &[&str],
    node: &Node,
    extra: &[&str],
) -> Vec<String> {
    let mut a = args(&["--pool", pool, "--redis-url", redis_url]);
    a.extend(args(global));
    a.extend(args(&["--network-interface-id", &node.eni, "claim"]));
    if !extra.contains(&"--timeout") {
        a.extend(args(&["--timeout", "120s"]));
    }
    a.extend(args(extra));
    a
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Run one claimer per `(eni, args)`, all at once; wait for all.
pub async fn herd(
    env: &LabEnv,
    runs: Vec<(String, Vec<String>)>,
) -> (Vec<(String, Outcome)>, Duration) {
    mixed_herd(
        runs.into_iter()
            .map(|(eni, a)| (eni, env.clone(), a))
            .collect(),
    )
    .await
}

/// Run one claimer per `(eni, env, args)` (each its own binary, e.g. two versions), all at
/// once; wait for all.
pub async fn mixed_herd(
    runs: Vec<(String, LabEnv, Vec<String>)>,
) -> (Vec<(String, Outcome)>, Duration) {
    let started = Instant::now();
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(eni, env, a)| tokio::spawn(async move { (eni, env.run(&a).await) }))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("claimer task panicked"));
    }
    (out, started.elapsed())
}

/// The successes of a herd, as (interface, report).
pub fn successes(outcomes: &[(String, Outcome)]) -> Vec<(String, ClaimReport)> {
    outcomes
        .iter()
        .filter_map(|(eni, o)| o.report().map(|r| (eni.clone(), r)))
        .collect()
}

/// How many outcomes exited with `code`.
pub fn exits(outcomes: &[(String, Outcome)], code: i32) -> usize {
    outcomes
        .iter()
        .filter(|(_, o)| o.code == Some(code))
        .count()
}

/// Print what a scenario injected and what it observed.
pub fn report(
    scenario: &str,
    injected: &str,
    outcomes: &[(String, Outcome)],
    stats: Option<&Stats>,
    took: Duration,
) {
    let mut codes = std::collections::BTreeMap::new();
    for (_, o) in outcomes {
        *codes
            .entry(o.code.map_or("signal".to_string(), |c| c.to_string()))
            .or_insert(0) += 1;
    }
    let mut ms: Vec<u64> = successes(outcomes)
        .iter()
        .map(|(_, r)| r.elapsed_ms)
        .collect();
    ms.sort_unstable();
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let retries = stats.map(|s| {
        s.outcome("throttled") + s.outcome("5xx") + s.outcome("reset") + s.outcome("response_lost")
    });
    println!(
        "--- scenario: {scenario}\n  injected: {injected}\n  observed: exits {codes:?}; time-to-address p50 {} ms, max {} ms; herd took {:.1} s{}\n{}",
        pct(0.5),
        pct(1.0),
        took.as_secs_f64(),
        retries.map(|r| format!("; failed EC2 answers (each retried) {r}")).unwrap_or_default(),
        stats.map(|s| s.table()).unwrap_or_default()
    );
}

/// The last error line of every claimer that neither succeeded nor was told the pool is exhausted.
pub fn failures(outcomes: &[(String, Outcome)]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|(_, o)| !matches!(o.code, Some(0) | Some(69)))
        .map(|(eni, o)| format!("{eni}: exit {:?}: {}", o.code, o.error_line()))
        .collect()
}

pub use eipool_lab::servers::http_get;

/// The library's handle on `pool`'s shared state in `redis_url` (leases, markers, the listing),
/// as a claimer with token `owner` holds it (for tests that set up or inspect Redis directly).
pub fn redis_as(redis_url: &str, pool: &str, owner: &str) -> eipool::redis::Redis {
    eipool::redis::Redis::new(
        eipool::redis::RedisTarget::parse(redis_url, &Default::default()).unwrap(),
        pool,
        eipool_lab::fixture::REGION,
        owner.into(),
        eipool::redis::Timing {
            lease: Duration::from_secs(10),
            marker_ttl: Duration::from_secs(60),
            op_timeout: Duration::from_secs(2),
        },
    )
}

/// A connection to the Redis at `url`, for tests that set up or inspect keys (named by
/// [`Lab::key`] or `eipool::redis::key`, never by hand).
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Poll `probe` every 50 ms until it returns Some, or panic with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running agent and where to reach it.
pub struct Agent {
    pub child: Child,
    pub listen: SocketAddr,
    pub env_file: PathBuf,
    pub node: Node,
    _imds: Option<ImdsStub>,
}

impl Agent {
    /// Start `eipool agent` for `node` (identity from IMDSv2 when `imds`, else by flag), every
    /// `--interval 1s` unless `extra` says otherwise.
    pub async fn start(lab: &Lab, node: &Node, imds: bool, dir: &Path, extra: &[&str]) -> Agent {
        Agent::start_with_redis(lab, &lab.redis.url(), node, imds, dir, extra).await
    }

    /// The same, with Redis at `redis` (e.g. a hostile one).
    pub async fn start_with_redis(
        lab: &Lab,
        redis: &str,
        node: &Node,
        imds: bool,
        dir: &Path,
        extra: &[&str],
    ) -> Agent {
        let env_file = dir.join(format!("{}.env", node.eni));
        let (env, stub) = if imds {
            let (env, stub) = lab.node_imds(node).await;
            (env, Some(stub))
        } else {
            (lab.env.clone(), None)
        };
        let mut global = vec!["--pool", &lab.pool, "--redis-url", redis];
        if !imds {
            global.extend(["--network-interface-id", &node.eni]);
        }
        Agent::spawn(&env, &global, node, env_file, extra, stub)
    }

    /// `eipool agent` for one private IP of `node`'s interface (identity by flag, through
    /// `lab.env`'s EC2), its env file `<eni>-<ip>.env` in `dir`.
    pub fn start_for_private_ip(lab: &Lab, node: &Node, ip: &str, dir: &Path) -> Agent {
        let redis = lab.redis.url();
        let global = [
            "--pool",
            &lab.pool,
            "--redis-url",
            &redis,
            "--network-interface-id",
            &node.eni,
            "--private-ip",
            ip,
        ];
        let env_file = dir.join(format!("{}-{ip}.env", node.eni));
        Agent::spawn(&lab.env, &global, node, env_file, &[], None)
    }

    fn spawn(
        env: &LabEnv,
        global: &[&str],
        node: &Node,
        env_file: PathBuf,
        extra: &[&str],
        imds: Option<ImdsStub>,
    ) -> Agent {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let listen_s = listen.to_string();
        let mut a = global.to_vec();
        a.push("agent");
        if !extra.contains(&"--interval") {
            a.extend(["--interval", "1s"]);
        }
        a.extend([
            "--listen",
            &listen_s,
            "--release-on-exit",
            "--output",
            env_file.to_str().unwrap(),
            "--timeout",
            "60s",
        ]);
        a.extend_from_slice(extra);
        let child = env.command(&args(&a)).spawn().unwrap();
        Agent {
            child,
            listen,
            env_file,
            node: node.clone(),
            _imds: imds,
        }
    }

    /// `/readyz`'s body when it answers 200.
    pub async fn ready(&self) -> Option<String> {
        self.readyz(200).await
    }

    /// `/readyz`'s body when it answers `want`.
    pub async fn readyz(&self, want: u16) -> Option<String> {
        http_get(self.listen, "/readyz")
            .await
            .ok()
            .filter(|(c, _)| *c == want)
            .map(|(_, b)| b)
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.listen, "/metrics").await.unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGTERM, as the kubelet stops the pod; its exit status within `within`.
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the agent runs").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the agent exits after SIGTERM")
            .unwrap()
    }

    /// The address the env file names.
    pub fn public_ip(&self) -> String {
        std::fs::read_to_string(&self.env_file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("EIPOOL_PUBLIC_IP=").map(str::to_string))
            .unwrap()
    }
}

/// Start `eipool ARGS` (a process serving `/metrics` on `addr`) and wait until it shows the pool's
/// gauges. Returns the process (killed on drop) and that first `/metrics` body.
pub async fn serving_pool_metrics(
    env: &LabEnv,
    args: &[String],
    addr: SocketAddr,
) -> (Child, String) {
    let child = env.command(args).spawn().unwrap();
    let body = eventually(
        "the pool's gauges on /metrics",
        Duration::from_secs(30),
        || async move {
            let (code, body) = http_get(addr, "/metrics").await.ok()?;
            (code == 200 && body.contains("eipool_pool_addresses{")).then_some(body)
        },
    )
    .await;
    (child, body)
}

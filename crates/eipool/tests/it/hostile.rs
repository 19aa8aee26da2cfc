//! Hostile servers (issue #22): a "Redis", an "IMDS" and an "EC2" on loopback that answer
//! garbage, wrong types, a gigabyte's header, truncated or enormous bodies, nothing, or a byte at
//! a time. Each claim ends by its deadline with a documented exit code (never a panic), and its
//! last line names the party at fault.

use std::time::{Duration, Instant};

use eipool_lab::claimer::Outcome;
use eipool_lab::hostile::{Hostile, Misbehaviour};

use eipool_lab::chaos::{ChaosConfig, ChaosProxy};

use crate::harness::{args, eventually, moto, Agent, Lab};

/// The claim's budget in these scenarios, and how long past it a claim may take to exit.
const TIMEOUT: Duration = Duration::from_secs(6);
const SLACK: Duration = Duration::from_secs(4);

/// An HTTP/1.1 answer with `status`, a content length and `body`.
fn http(status: &str, length: usize, body: &[u8]) -> Vec<u8> {
    let mut v =
        format!("HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {length}\r\n\r\n")
            .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Check what a user sees of a claim against one misbehaving party; its row of the table.
fn scenario(party: &str, how: &Misbehaviour, out: Outcome, took: Duration) -> String {
    let shown = format!(
        "{party} {}: exit {:?} after {:.1} s",
        how.name,
        out.code,
        took.as_secs_f64()
    );
    // A documented outcome: bad setup (2), a failure that lasted (75), refused (77), or an
    // answer eipool cannot place (70, naming it), never a panic.
    assert!(
        matches!(out.code, Some(2) | Some(70) | Some(75) | Some(77)),
        "{shown}: {out}"
    );
    assert!(took <= TIMEOUT + SLACK, "{shown}: past the deadline: {out}");
    let line = out.error_line().to_lowercase();
    let names = match party {
        "Redis" => line.contains("redis"),
        "IMDS" => line.contains("imds"),
        _ => line.contains("ec2"),
    };
    assert!(names, "{shown}: the last line must name {party}: {out}");
    format!(
        "  {shown} — {}",
        out.error_line().chars().take(140).collect::<String>()
    )
}

fn budget() -> Vec<String> {
    args(&["--timeout", "6s", "--call-timeout", "1s"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_redis_ends_the_claim_by_its_deadline_naming_redis() {
    let lab = Lab::new().await;
    let node = lab.ec2.nodes(1).await.unwrap().remove(0);
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let mut rows = Vec::new();
    for how in [
        Misbehaviour::answer("garbage", &b"!!not redis\r\n"[..]),
        Misbehaviour::answer("wrong types", &b"*3\r\n:1\r\n:2\r\n:3\r\n"[..]),
        Misbehaviour::answer_then_hold("a 1 GB bulk header", &b"$1000000000\r\nabc"[..]),
        Misbehaviour::silent(),
        Misbehaviour::slow_loris(&b"+OK\r\n+OK\r\n"[..]),
    ] {
        let redis = Hostile::start(how.clone()).await.unwrap();
        let a = lab.claim_args_via(
            &redis.url("redis"),
            &node,
            &[
                "--require-leases",
                "--timeout",
                "6s",
                "--call-timeout",
                "1s",
            ],
        );
        let started = Instant::now();
        let out = lab.env.run(&a).await;
        rows.push(scenario("Redis", &how, out, started.elapsed()));
    }
    println!(
        "--- hostile Redis (claim --require-leases)\n{}",
        rows.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_imds_ends_the_claim_by_its_deadline_naming_imds() {
    let lab = Lab::new().await;
    let mut rows = Vec::new();
    for how in [
        Misbehaviour::answer("garbage", http("200 OK", 9, b"\x00\x01\xffjunk!!")),
        Misbehaviour::answer("10 MB", http("200 OK", 10 << 20, &vec![b'a'; 10 << 20])),
        Misbehaviour::answer("truncated", http("200 OK", 1000, b"i-0123")),
        Misbehaviour::silent(),
        Misbehaviour::slow_loris(http("200 OK", 20, b"i-0123456789abcdef01")),
    ] {
        let imds = Hostile::start(how.clone()).await.unwrap();
        let mut env = lab.env.clone();
        env.imds_endpoint = imds.url("http");
        let mut a = args(&["--pool", &lab.pool, "claim"]);
        a.extend(budget());
        let started = Instant::now();
        let out = env.run(&a).await;
        rows.push(scenario("IMDS", &how, out, started.elapsed()));
    }
    println!(
        "--- hostile IMDS (claim, identity from IMDSv2)\n{}",
        rows.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_ec2_ends_the_claim_by_its_deadline_naming_ec2() {
    let lab = Lab::new().await;
    let error = b"<Response><Errors><Error><Code>Banana.Split</Code><Message>what</Message></Error></Errors><RequestID>x</RequestID></Response>";
    let mut rows = Vec::new();
    for how in [
        Misbehaviour::answer("malformed XML", http("200 OK", 14, b"<Describe<<<</")),
        Misbehaviour::answer(
            "an unknown error code in a 200",
            http("200 OK", error.len(), error),
        ),
        Misbehaviour::answer(
            "truncated",
            http("200 OK", 4000, b"<DescribeAddressesResponse>"),
        ),
        Misbehaviour::answer("not HTTP", &b"\x16\x03\x01garbage\r\n\r\n"[..]),
        Misbehaviour::silent(),
        Misbehaviour::slow_loris(http("200 OK", 30, b"<DescribeAddressesResponse/>  ")),
    ] {
        let ec2 = Hostile::start(how.clone()).await.unwrap();
        let mut env = lab.env.clone();
        env.ec2_endpoint = ec2.url("http");
        let mut a = args(&[
            "--pool",
            &lab.pool,
            "--network-interface-id",
            "eni-0123456789abcdef0",
            "claim",
        ]);
        a.extend(budget());
        let started = Instant::now();
        let out = env.run(&a).await;
        rows.push(scenario("EC2", &how, out, started.elapsed()));
    }
    println!("--- hostile EC2 (claim)\n{}", rows.join("\n"));
}

/// The agent's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An agent whose Redis talks garbage from the start and whose EC2 then answers 5xx, then
/// nothing: it claims on EC2 alone, keeps its address, stays ready, and stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_its_address_and_its_memory_while_its_parties_misbehave() {
    let mut lab = Lab::new().await;
    let proxy = ChaosProxy::start(&moto().endpoint, ChaosConfig::aws_like_moto())
        .await
        .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    let node = lab.ec2.nodes(1).await.unwrap().remove(0);
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let redis = Hostile::start(Misbehaviour::answer(
        "garbage",
        &b"-ERR \x00\xff\r\n$-7\r\n"[..],
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut agent =
        Agent::start_with_redis(&lab, &redis.url("redis"), &node, false, dir.path(), &[]).await;
    eventually(
        "the agent to hold an address",
        Duration::from_secs(60),
        || agent.ready(),
    )
    .await;
    let held = agent.public_ip();
    let pid = agent.child.id().unwrap();
    let mut peak = rss_kib(pid);
    type Fault = fn(&mut ChaosConfig);
    let phases: [(&str, Fault); 2] = [
        ("5xx", |c| c.p_5xx = 1.0),
        ("no answer", |c| c.latency = Duration::from_secs(3600)),
    ];
    for (name, fault) in phases {
        proxy.reconfigure(fault);
        // Five of its 1 s intervals: the length of the fault is what is under test.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_kib(pid));
        }
        proxy.reconfigure(|c| *c = ChaosConfig::aws_like_moto());
        println!(
            "  EC2 {name} for 5 intervals, Redis garbage throughout: peak RSS {} KiB",
            peak
        );
    }
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent exited"
    );
    assert!(
        agent.ready().await.is_some(),
        "the agent stopped being ready"
    );
    assert_eq!(agent.public_ip(), held, "the address changed");
    assert_eq!(agent.metric("eipool_drift_total").await, 0.0);
    assert!(
        agent.metric("eipool_verify_failures_total").await > 0.0,
        "the agent never asked EC2 during the faults"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state
            .values()
            .any(|e| e.public_ip == held && e.eni.as_deref() == Some(node.eni.as_str())),
        "EC2 no longer shows {held} on {}: {state:?}",
        node.eni
    );
    assert!(peak > 0 && peak < 50 * 1024, "peak RSS {peak} KiB");
}

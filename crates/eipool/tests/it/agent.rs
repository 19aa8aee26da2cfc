//! The agent over a node's life, as shipped: the real binary with `--release-on-exit`, identity
//! from IMDSv2 (the lab's stub answers from EC2's current state) or by flag. It keeps its
//! address through an EC2 brownout, notices drift (readyz, reclaim, or exit 3 with
//! `--on-drift exit`), releases on exit, and a lost address reaches a real media server (coturn).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use eipool_lab::chaos::{ChaosConfig, ChaosProxy};
use eipool_lab::servers::free_port;

use crate::harness::{args, eventually, http_get, moto, Agent, Lab};

/// Three agents asking the node (IMDSv2) and three asking EC2 (identity by flag), through 3×
/// `--interval` each of EC2 answering 5xx, throttling everything, and not answering at all:
/// every agent keeps running, keeps its address and stays ready; none counts drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_their_addresses_through_an_ec2_brownout() {
    let _turn = crate::harness::heavy().await;
    let mut lab = Lab::new().await;
    let proxy = ChaosProxy::start(&moto().endpoint, ChaosConfig::aws_like_moto())
        .await
        .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    let nodes = lab.ec2.nodes(6).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 6).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        agents.push(Agent::start(&lab, n, i < 3, dir.path(), &[]).await);
    }
    for a in &agents {
        eventually(
            "every agent to hold an address",
            Duration::from_secs(60),
            || a.ready(),
        )
        .await;
    }
    let before = lab.ec2.pool_state(&lab.pool).await.unwrap();

    let interval = Duration::from_secs(1);
    type Fault = fn(&mut ChaosConfig);
    let phases: [(&str, Fault); 3] = [
        ("5xx", |c| c.p_5xx = 1.0),
        ("throttled", |c| c.p_throttle = 1.0),
        ("paused", |c| c.latency = Duration::from_secs(3600)),
    ];
    for (name, fault) in phases {
        proxy.reconfigure(fault);
        tokio::time::sleep(interval * 3).await; // the fault's length is what is under test
        proxy.reconfigure(|c| *c = ChaosConfig::aws_like_moto());
        println!("  EC2 {name} for 3 intervals");
    }
    println!("--- EC2 brownout, agents: {}", proxy.stats().table());

    assert_eq!(
        lab.ec2.pool_state(&lab.pool).await.unwrap(),
        before,
        "an address moved"
    );
    for a in &mut agents {
        assert!(
            a.child.try_wait().unwrap().is_none(),
            "{} exited",
            a.node.eni
        );
        assert!(
            a.ready().await.is_some(),
            "{} stopped being ready",
            a.node.eni
        );
        assert_eq!(a.metric("eipool_drift_total").await, 0.0, "{}", a.node.eni);
    }
    // The agents asking EC2 saw the brownout (and kept their address anyway).
    for a in &agents[3..] {
        assert!(
            a.metric("eipool_verify_failures_total").await > 0.0,
            "{} never noticed the brownout",
            a.node.eni
        );
    }
    for a in &agents[..3] {
        assert_eq!(
            a.metric("eipool_verify_failures_total").await,
            0.0,
            "{} asked EC2 although the node answered",
            a.node.eni
        );
    }
}

/// The media container as the shipped manifest runs it: its start command and livenessProbe,
/// read from deploy/base/media-server.yaml, with coturn as the media server and this test as
/// the kubelet (it runs the probe every `periodSeconds`, counts a check that takes longer than
/// `timeoutSeconds` as failed, and restarts the container after `failureThreshold` failed
/// checks in a row).
struct Media {
    start: String,
    probe: String,
    period: Duration,
    timeout: Duration,
    threshold: u64,
    failed: u64,
    turn_port: u16,
    child: Option<std::process::Child>,
    restarts: usize,
}

impl Media {
    fn new(env_dir: &Path, state_dir: &Path, work: &Path) -> Media {
        let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(
                crate::harness::workspace().join("deploy/base/media-server.yaml"),
            )
            .unwrap(),
        )
        .unwrap();
        let media = manifest["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "media")
            .unwrap();
        let paths = |s: &str| {
            s.replace("/run/eipool", env_dir.to_str().unwrap())
                .replace("/run/media", state_dir.to_str().unwrap())
        };
        let shipped = media["args"][0].as_str().unwrap();
        let (eipool_steps, _their_server) = shipped.split_once("exec ").unwrap();
        let turn_port = free_port().unwrap();
        let start = paths(&format!(
            "{eipool_steps}exec turnserver -n --no-auth --no-cli --no-tls --no-dtls \
             --listening-ip 127.0.0.1 --listening-port {turn_port} --relay-ip 127.0.0.1 \
             --min-port 61000 --max-port 61100 --external-ip \"$EIPOOL_PUBLIC_IP/127.0.0.1\" \
             --userdb {w}/turndb --pidfile {w}/turn.pid --log-file stdout --simple-log",
            w = work.display()
        ));
        let probe = paths(
            media["livenessProbe"]["exec"]["command"][2]
                .as_str()
                .unwrap(),
        );
        let live = &media["livenessProbe"];
        let period = Duration::from_secs(live["periodSeconds"].as_u64().unwrap_or(10));
        // Kubernetes' defaults where the manifest says nothing.
        let timeout = Duration::from_secs(live["timeoutSeconds"].as_u64().unwrap_or(1));
        let threshold = live["failureThreshold"].as_u64().unwrap_or(3);
        Media {
            start,
            probe,
            period,
            timeout,
            threshold,
            failed: 0,
            turn_port,
            child: None,
            restarts: 0,
        }
    }

    fn run(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.restarts += 1;
        }
        self.child = Some(
            std::process::Command::new("sh")
                .args(["-c", &self.start])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    /// One kubelet round: run the livenessProbe; restart after `failureThreshold` failures in a
    /// row.
    fn probe(&mut self) {
        self.probe_after(Duration::ZERO);
    }

    /// A round on a loaded node: the check starts `delay` late (its shell forked slowly), and a
    /// check that does not end within `timeoutSeconds` fails.
    fn probe_after(&mut self, delay: Duration) {
        let mut check = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("sleep {}; {}", delay.as_secs_f64(), self.probe),
            ])
            .spawn()
            .unwrap();
        let until = Instant::now() + self.timeout;
        let ok = loop {
            if let Some(st) = check.try_wait().unwrap() {
                break st.success();
            }
            if Instant::now() >= until {
                let _ = check.kill();
                let _ = check.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.failed = if ok { 0 } else { self.failed + 1 };
        if self.failed >= self.threshold {
            self.failed = 0;
            self.run();
        }
    }

    /// The relayed address coturn hands out (TURN Allocate, no auth): what it announces.
    fn announced(&self) -> Option<Ipv4Addr> {
        turn_relayed_address(self.turn_port)
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TURN Allocate request (RFC 5766) to 127.0.0.1:`port` without credentials; the
/// XOR-RELAYED-ADDRESS of the answer.
fn turn_relayed_address(port: u16) -> Option<Ipv4Addr> {
    const COOKIE: u32 = 0x2112_A442;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut msg = Vec::with_capacity(28);
    msg.extend(0x0003u16.to_be_bytes()); // Allocate request
    msg.extend(8u16.to_be_bytes());
    msg.extend(COOKIE.to_be_bytes());
    msg.extend(rand::random::<[u8; 12]>());
    msg.extend(0x0019u16.to_be_bytes()); // REQUESTED-TRANSPORT
    msg.extend(4u16.to_be_bytes());
    msg.extend([17, 0, 0, 0]); // UDP
    sock.send_to(&msg, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let buf = &buf[..n];
    if n < 20 || u16::from_be_bytes([buf[0], buf[1]]) != 0x0103 {
        return None;
    }
    let mut at = 20;
    while at + 4 <= n {
        let kind = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        let value = buf.get(at + 4..at + 4 + len)?;
        if kind == 0x0016 && len >= 8 {
            let x = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ COOKIE;
            return Some(Ipv4Addr::from(x));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Run the kubelet's probe rounds until coturn announces `want` (or `within` passes); the time
/// it took.
async fn announced_within(media: &mut Media, want: Ipv4Addr, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if media.announced() == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "coturn still announces {:?}, not {want}, after {within:?}",
            media.announced()
        );
        tokio::time::sleep(media.period).await;
        media.probe();
    }
}

/// The address moved to another node: the agent takes a new one and rewrites the env file; the
/// shipped livenessProbe fails and the media container restarts on the new address. The
/// address disassociated only: the agent takes the same one back, and the media server is not
/// restarted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_reaches_a_real_media_server() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (env_dir, state_dir) = (dir.path().join("eipool"), dir.path().join("media"));
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    let agent = Agent::start(&lab, &nodes[0], true, &env_dir, &[]).await;
    eventually(
        "the agent to hold an address",
        Duration::from_secs(60),
        || agent.ready(),
    )
    .await;
    // The shipped manifest names /run/eipool/env; here the agent writes <eni>.env: link it.
    std::os::unix::fs::symlink(&agent.env_file, env_dir.join("env")).unwrap();

    let mut media = Media::new(&env_dir, &state_dir, dir.path());
    media.run();
    let first: Ipv4Addr = agent.public_ip().parse().unwrap();
    announced_within(&mut media, first, Duration::from_secs(10)).await;

    // Disassociated by hand: the agent takes the same address back; no restart.
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.public_ip == first.to_string())
        .unwrap()
        .clone();
    lab.ec2
        .disassociate(held.association_id.as_deref().unwrap())
        .await
        .unwrap();
    eventually(
        "the agent to take the address back",
        Duration::from_secs(30),
        || async {
            let s = lab.ec2.pool_state(&lab.pool).await.ok()?;
            let now = &s[&held.allocation_id];
            (now.eni.as_deref() == Some(nodes[0].eni.as_str())
                && now.association_id != held.association_id)
                .then_some(())
        },
    )
    .await;
    for _ in 0..3 {
        tokio::time::sleep(media.period).await;
        media.probe();
    }
    assert_eq!(
        agent.public_ip(),
        first.to_string(),
        "the env file still names it"
    );
    assert_eq!(
        media.restarts, 0,
        "the media server was restarted for nothing"
    );
    assert_eq!(media.announced(), Some(first));

    // One check slower than its timeout (a loaded node): no restart, the server keeps its calls.
    media.probe_after(media.timeout + Duration::from_secs(1));
    tokio::time::sleep(media.period).await;
    media.probe();
    assert_eq!(
        media.restarts, 0,
        "one slow liveness check restarted the media server"
    );

    // Moved to another node (a plain AssociateAddress steals): a new address, and the media
    // server restarts on it.
    let moved_at = Instant::now();
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    let second: Ipv4Addr = eventually(
        "the env file to name a new address",
        Duration::from_secs(30),
        || async {
            let ip: Ipv4Addr = agent.public_ip().parse().ok()?;
            (ip != first).then_some(ip)
        },
    )
    .await;
    // The bound: the agent's --interval (1 s here) + a claim (1-2 s, more on a loaded machine) +
    // failureThreshold liveness periods of the shipped manifest (2 x 5 s) + coturn's start;
    // asserted with room: 45 s.
    announced_within(&mut media, second, Duration::from_secs(45)).await;
    println!(
        "--- drift to coturn: address moved → coturn announces the new one {:.1} s later ({} restart); disassociated only → same address, no restart",
        moved_at.elapsed().as_secs_f64(),
        media.restarts
    );
    assert_eq!(media.restarts, 1);
}

/// The agent looks its interface up (one DescribeNetworkInterfaces, identity by flag) in its
/// turn of the herd's pace of that action, as a claim does: a herd of agents starting at once must not
/// spend EC2's describe budget before the pace can spread them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_identity_lookup_waits_for_its_slot_of_the_herds_pace() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    // Other claimers have reserved the herd's DescribeNetworkInterfaces turns for the next five
    // seconds: the pace's theoretical arrival time is its burst tolerance (39 × 1/15 s = 2.6 s)
    // plus 5 s ahead.
    lab.reserve_pace("describe-interfaces", 2_600 + 5_000).await;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let _agent = Agent::start(&lab, &nodes[0], false, dir.path(), &[]).await;
    eventually(
        "the agent's interface lookup",
        Duration::from_secs(30),
        || async { (lab.proxy.stats().calls("DescribeNetworkInterfaces") > 0).then_some(()) },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "the agent looked its interface up after {took:?}, before its slot (5 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_notices_drift_fails_readyz_reclaims_and_releases_on_exit() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&lab, &nodes[0], false, dir.path(), &[]).await;
    let pid = agent.child.id().unwrap().to_string();
    eventually("the agent to be ready", Duration::from_secs(30), || {
        agent.ready()
    })
    .await;
    let first_ip = agent.public_ip();
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.eni.as_deref() == Some(nodes[0].eni.as_str()))
        .unwrap()
        .clone();
    assert_eq!(held.public_ip, first_ip);

    // The other address goes to another node, then someone steals the agent's address by hand.
    let other = lab.claim(&nodes[1], &[]).await.report().expect("claim");
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[2].eni)
        .await
        .unwrap();
    let why = eventually(
        "/readyz to fail after the theft",
        Duration::from_secs(5),
        || agent.readyz(503),
    )
    .await;
    assert!(why.contains("drift"), "{why}");
    let (_, metrics) = http_get(agent.listen, "/metrics").await.unwrap();
    assert!(metrics.contains("eipool_drift_total 1"), "{metrics}");

    // Nothing is free: it stays unready. Free one, and it reclaims that one.
    let mut r = lab.with_redis(&[]);
    r.extend(args(&["--network-interface-id", &nodes[1].eni, "release"]));
    assert_eq!(lab.run(&r).await.code, Some(0));
    eventually("the agent to reclaim", Duration::from_secs(30), || {
        agent.ready()
    })
    .await;
    let second_ip = agent.public_ip();
    assert_eq!(
        second_ip, other.public_ip,
        "the env file names the new address"
    );
    assert_ne!(second_ip, first_ip);
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&other.allocation_id].eni.as_deref(),
        Some(nodes[0].eni.as_str())
    );
    assert_eq!(
        state[&held.allocation_id].eni.as_deref(),
        Some(nodes[2].eni.as_str()),
        "the thief's address is left alone"
    );

    // SIGTERM: releases, exits 0.
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), agent.child.wait_with_output())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state[&other.allocation_id].association_id.is_none(),
        "released on exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_with_on_drift_exit_exits_3_when_its_address_is_taken() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let listen_s = listen.to_string();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "--network-interface-id",
        &nodes[0].eni,
        "agent",
        "--interval",
        "1s",
        "--listen",
        &listen_s,
        "--on-drift",
        "exit",
    ]));
    let agent = lab.env.command(&a).spawn().unwrap();
    eventually(
        "the agent to be ready",
        Duration::from_secs(30),
        || async move {
            http_get(listen, "/readyz")
                .await
                .ok()
                .filter(|(c, _)| *c == 200)
        },
    )
    .await;
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let alloc = state.keys().next().unwrap().clone();
    lab.ec2
        .associate_external(&alloc, &nodes[1].eni)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), agent.wait_with_output())
        .await
        .expect("exits within two intervals")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("drift"));
}

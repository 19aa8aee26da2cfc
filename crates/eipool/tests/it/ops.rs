//! Operating the pool: release, the agent and drift, status and CIDRs, grow/shrink, gc, doctor.

use std::time::Duration;

use eipool_lab::claimer::ClaimReport;
use eipool_lab::servers::free_port;

use crate::harness::{args, eventually, http_get, serving_pool_metrics, Agent, Lab};

async fn run(lab: &Lab, a: &[String]) -> eipool_lab::claimer::Outcome {
    lab.env.run(a).await
}

fn json(o: &eipool_lab::claimer::Outcome) -> serde_json::Value {
    assert_eq!(o.code, Some(0), "{o}");
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {o}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_then_claim_again_and_release_twice_is_fine() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let first = lab.claim(&nodes[0], &[]).await.report().expect("claim");

    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "--network-interface-id",
        &nodes[0].eni,
        "release",
        "--association-id",
        &first.association_id,
    ]));
    let r = json(&run(&lab, &a).await);
    assert_eq!(
        r["released"][0]["allocation_id"],
        first.allocation_id.as_str(),
        "{r}"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state[&first.allocation_id].association_id.is_none(),
        "still associated: {state:?}"
    );

    // Twice is fine: nothing held, exit 0, nothing released.
    let r = json(&run(&lab, &a).await);
    assert_eq!(r["released"].as_array().map(Vec::len), Some(0), "{r}");

    // The freed address is claimable at once (Redis forgot it was assigned), by anyone.
    let second: ClaimReport = lab
        .claim(&nodes[1], &[])
        .await
        .report()
        .expect("claim after release");
    assert_eq!(second.allocation_id, first.allocation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_leaves_a_newer_association_alone() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let held = lab.claim(&nodes[0], &[]).await.report().expect("claim");
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "--network-interface-id",
        &nodes[0].eni,
        "release",
        "--association-id",
        "eipassoc-0123456789abcdef0",
    ]));
    let r = json(&run(&lab, &a).await);
    assert_eq!(r["released"].as_array().map(Vec::len), Some(0), "{r}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&held.allocation_id].association_id.as_deref(),
        Some(held.association_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_describe_addresses_and_min_free_alerts() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    let eips = lab.ec2.allocate(Some(&lab.pool), 4).await.unwrap();
    let mine = lab.claim(&nodes[0], &[]).await.report().expect("claim");
    let foreign = eips
        .iter()
        .find(|e| e.allocation_id != mine.allocation_id)
        .unwrap();
    lab.ec2
        .associate_external(&foreign.allocation_id, &nodes[1].eni)
        .await
        .unwrap();

    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--output", "json"]));
    let st = json(&run(&lab, &a).await);
    let ec2 = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(st["total"], ec2.len());
    assert_eq!(st["counts"]["free"], 2, "{st}");
    assert_eq!(st["counts"]["assigned"], 1, "{st}");
    assert_eq!(st["counts"]["foreign"], 1, "{st}");
    for row in st["addresses"].as_array().unwrap() {
        let e = &ec2[row["allocation_id"].as_str().unwrap()];
        assert_eq!(row["public_ip"], e.public_ip.as_str());
        assert_eq!(
            row["network_interface_id"].as_str(),
            e.eni.as_deref(),
            "{row}"
        );
        assert_eq!(row["private_ip"].as_str(), e.private_ip.as_deref(), "{row}");
        let want = if e.association_id.is_none() {
            "free"
        } else if e.allocation_id == mine.allocation_id {
            "assigned"
        } else {
            "foreign"
        };
        assert_eq!(row["state"], want, "{row}");
    }
    let assigned = st["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "assigned")
        .unwrap();
    assert_eq!(
        assigned["instance_id"],
        nodes[0].instance_id.as_str(),
        "instance looked up by interface"
    );
    assert!(
        assigned["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{assigned}"
    );

    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--min-free", "3"]));
    let o = run(&lab, &a).await;
    assert_eq!(o.code, Some(1), "2 free < 3: {o}");
    assert!(o.error_line().contains("2 free"), "{}", o.error_line());
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--min-free", "2"]));
    assert_eq!(run(&lab, &a).await.code, Some(0));

    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--cidrs"]));
    let o = run(&lab, &a).await;
    assert_eq!(o.code, Some(0), "{o}");
    let blocks: Vec<(u32, u32)> = o
        .stdout
        .lines()
        .map(|l| {
            let (ip, len) = l
                .split_once('/')
                .unwrap_or_else(|| panic!("not a CIDR: {l}"));
            let start = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap());
            (
                start,
                start + ((1u64 << (32 - len.parse::<u32>().unwrap())) - 1) as u32,
            )
        })
        .collect();
    for e in ec2.values() {
        let ip = u32::from(e.public_ip.parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(
            blocks.iter().filter(|(s, t)| *s <= ip && ip <= *t).count(),
            1,
            "{} covered once by {}",
            e.public_ip,
            o.stdout
        );
    }
    let covered: u64 = blocks.iter().map(|(s, t)| u64::from(t - s) + 1).sum();
    assert_eq!(
        covered,
        ec2.len() as u64,
        "the blocks cover exactly the pool: {}",
        o.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_grow_is_idempotent_with_a_token_and_shrink_never_releases_a_used_address() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "pool",
        "grow",
        "--count",
        "3",
        "--idempotency-token",
        "change-42",
    ]));
    let g = json(&run(&lab, &a).await);
    assert_eq!(g["allocated"].as_array().map(Vec::len), Some(3), "{g}");
    let again = json(&run(&lab, &a).await);
    assert_eq!(
        again["allocated"].as_array().map(Vec::len),
        Some(0),
        "a re-run allocates nothing: {again}"
    );
    assert_eq!(
        again["already"].as_array().map(Vec::len),
        Some(3),
        "{again}"
    );
    assert_eq!(lab.ec2.pool_state(&lab.pool).await.unwrap().len(), 3);

    let used = lab.claim(&nodes[0], &[]).await.report().expect("claim");
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["pool", "shrink", "--count", "5"]));
    let s = json(&run(&lab, &a).await);
    assert_eq!(
        s["released"].as_array().map(Vec::len),
        Some(2),
        "only the free ones: {s}"
    );
    let left = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        vec![used.allocation_id.clone()],
        "the used one stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_frees_exactly_the_address_of_a_terminated_instance() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    let mut reports = Vec::new();
    for n in &nodes {
        reports.push(lab.claim(n, &[]).await.report().expect("claim"));
    }
    lab.ec2
        .client
        .terminate_instances()
        .instance_ids(&nodes[1].instance_id)
        .send()
        .await
        .unwrap();
    let before = lab.ec2.pool_state(&lab.pool).await.unwrap();

    let mut a = lab.with_redis(&[]);
    a.push("gc".into());
    let dry = run(&lab, &a).await;
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(
        dry.stdout
            .contains(&format!("would free {}", reports[1].public_ip)),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("terminated"), "{}", dry.stdout);
    assert_eq!(
        dry.stdout.matches("would free").count(),
        1,
        "{}",
        dry.stdout
    );
    assert_eq!(
        lab.ec2.pool_state(&lab.pool).await.unwrap(),
        before,
        "a dry run changed EC2"
    );

    a.push("--apply".into());
    let applied = run(&lab, &a).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let after = lab.ec2.pool_state(&lab.pool).await.unwrap();
    for (i, r) in reports.iter().enumerate() {
        let assoc = after[&r.allocation_id].association_id.clone();
        if i == 1 {
            assert!(
                assoc.is_none(),
                "the terminated instance's address is free: {applied}"
            );
        } else {
            assert_eq!(
                assoc.as_deref(),
                Some(r.association_id.as_str()),
                "a running instance's address was touched"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_with_no_pool_and_redis_down_says_exactly_what_is_wrong() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.redis.stop();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["--network-interface-id", &nodes[0].eni, "doctor"]));
    let o = run(&lab, &a).await;
    assert_eq!(o.code, Some(1), "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(has("[ ok ] AWS credentials", ""), "{}", o.stdout);
    assert!(has("[ ok ] identity", &nodes[0].eni), "{}", o.stdout);
    assert!(
        has("[ ok ] permission ec2:AssociateAddress", "")
            || has("[skip] permission ec2:AssociateAddress", ""),
        "{}",
        o.stdout
    );
    assert!(has("[FAIL] Redis", "Redis is unavailable"), "{}", o.stdout);
    assert!(has("[FAIL] pool", "has no addresses"), "{}", o.stdout);
    assert!(has("[skip] IMDSv2", "not needed"), "{}", o.stdout);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("[FAIL]")).count(),
        2,
        "exactly two problems: {}",
        o.stdout
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
    assert_eq!(run(&lab, &r).await.code, Some(0));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reads_the_association_from_the_env_file() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("eipool.env");
    let held = lab
        .claim(&nodes[0], &["--output", env_file.to_str().unwrap()])
        .await
        .report()
        .expect("claim");
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "--network-interface-id",
        &nodes[0].eni,
        "release",
        "--env-file",
        env_file.to_str().unwrap(),
    ]));
    let r = json(&run(&lab, &a).await);
    assert_eq!(
        r["released"][0]["association_id"],
        held.association_id.as_str(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_the_pool_gauges() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    lab.claim(&nodes[0], &[]).await.report().expect("claim");
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let listen_s = listen.to_string();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&[
        "exporter",
        "--listen",
        &listen_s,
        "--interval",
        "5s",
    ]));
    let (_exporter, metrics) = serving_pool_metrics(&lab.env, &a, listen).await;
    assert!(
        metrics.contains(&format!(
            "eipool_pool_addresses{{pool=\"{}\",state=\"free\"}} 2",
            lab.pool
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "eipool_pool_addresses{{pool=\"{}\",state=\"assigned\"}} 1",
            lab.pool
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "eipool_pool_addresses{{pool=\"{}\",state=\"foreign\"}} 0",
            lab.pool
        )),
        "{metrics}"
    );
    let (code, _) = http_get(listen, "/readyz").await.unwrap();
    assert_eq!(code, 200);
}

//! The pool's waiting line (#24): agents that find the pool exhausted wait in the order they
//! came, and each freed address — by `release`, an agent's release on exit, `gc --apply`,
//! `pool grow` — reaches the longest waiter at once, not at its next `--interval`.

use std::time::{Duration, Instant};

use eipool_lab::fixture::Node;
use redis::AsyncCommands;

use crate::harness::{args, eventually, heavy, json, Agent, Lab};

/// How many wait in the lab pool's line (Redis's own view).
async fn line_len(lab: &Lab) -> u64 {
    let mut c = lab.redis_conn().await;
    c.zcard(lab.key("line")).await.unwrap()
}

/// Which of `waiters` (still waiting) is ready first; returns its index.
async fn first_ready(waiters: &[Option<Agent>], within: Duration) -> usize {
    eventually("a waiter to become ready", within, || async {
        for (i, w) in waiters.iter().enumerate() {
            if let Some(w) = w {
                if w.ready().await.is_some() {
                    return Some(i);
                }
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pools_waiters_get_freed_addresses_in_order_within_a_second_or_so() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(9).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 4).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Four holders, one per way of freeing an address.
    lab.claim(&nodes[0], &[]).await.report().expect("claim 0");
    let mut exiting = Agent::start(&lab, &nodes[1], false, dir.path(), &[]).await;
    eventually(
        "the holding agent to be ready",
        Duration::from_secs(30),
        || exiting.ready(),
    )
    .await;
    lab.claim(&nodes[2], &[]).await.report().expect("claim 2");
    lab.claim(&nodes[3], &[]).await.report().expect("claim 3");

    // Five waiters, one after another; a minute's --interval, so only a wake-up is fast.
    let mut waiters = join_the_line(&lab, &nodes[4..9], dir.path()).await;
    for w in waiters.iter().flatten() {
        assert!(w.ready().await.is_none(), "a waiter is not ready");
    }

    // The second waiter dies mid-wait: the others drop it from the line.
    let mut ghost = waiters[1].take().unwrap();
    ghost.child.kill().await.unwrap();
    let dropped = Instant::now();
    eventually(
        "the dead waiter to leave the line",
        Duration::from_secs(10),
        || async { (line_len(&lab).await == 4).then_some(()) },
    )
    .await;
    println!(
        "a killed waiter left the line after {:?}",
        dropped.elapsed()
    );

    // Free one address at a time, four ways; each goes to the longest waiter.
    let expected_order = [0, 2, 3, 4];
    let mut latencies = Vec::new();
    for (k, want) in expected_order.into_iter().enumerate() {
        let (how, freed_at) = match k {
            0 => {
                let r = lab.release(&nodes[0], &[]).await;
                assert_eq!(r.code, Some(0), "{r}");
                ("release", Instant::now())
            }
            1 => {
                let pid = exiting.child.id().unwrap().to_string();
                std::process::Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap();
                let st = tokio::time::timeout(Duration::from_secs(30), exiting.child.wait())
                    .await
                    .expect("the agent exits")
                    .unwrap();
                assert_eq!(st.code(), Some(0));
                ("an agent's release on exit", Instant::now())
            }
            2 => {
                lab.ec2
                    .client
                    .terminate_instances()
                    .instance_ids(&nodes[2].instance_id)
                    .send()
                    .await
                    .unwrap();
                let mut a = lab.with_redis(&[]);
                a.extend(args(&["gc", "--apply"]));
                let g = lab.run(&a).await;
                assert_eq!(g.code, Some(0), "{g}");
                ("gc --apply", Instant::now())
            }
            _ => {
                let mut a = lab.with_redis(&[]);
                a.extend(args(&["pool", "grow", "--count", "1"]));
                let g = json(&lab.run(&a).await);
                assert_eq!(g["allocated"].as_array().map(Vec::len), Some(1), "{g}");
                ("pool grow", Instant::now())
            }
        };
        let got = first_ready(&waiters, Duration::from_secs(30)).await;
        let took = freed_at.elapsed();
        println!("freed by {how}: waiter {got} ready after {took:?}");
        assert_eq!(got, want, "freed by {how}: the longest waiter gets it");
        latencies.push(took);
        // It holds it on EC2, and the others still wait.
        let w = waiters[got].take().unwrap();
        // Its wait is measured: one claim won after waiting, at least as long as it waited.
        assert_eq!(
            w.metric("eipool_claims_total{outcome=\"waited\"}").await,
            1.0
        );
        assert_eq!(w.metric("eipool_line_wait_seconds_count").await, 1.0);
        let waited = w.metric("eipool_line_wait_seconds_sum").await;
        assert!(
            waited >= took.as_secs_f64(),
            "waited {waited} s, freed {took:?} ago"
        );
        let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
        assert!(
            state
                .values()
                .any(|e| e.eni.as_deref() == Some(w.node.eni.as_str())),
            "EC2 shows waiter {got}'s address"
        );
        for (i, o) in waiters.iter().enumerate() {
            if let Some(o) = o {
                assert!(o.ready().await.is_none(), "waiter {i} is still waiting");
            }
        }
        drop(w);
    }
    latencies.sort();
    println!("wake-up to ready, freed by each way: {latencies:?}");
    // Woken, not polled: far below the 60 s interval. The figures themselves are printed above
    // (speed is measured, not asserted: the margin absorbs a noisy machine).
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(20)),
        "each freed address reaches its waiter at once, not at the 60 s interval: {latencies:?}"
    );
    assert_eq!(line_len(&lab).await, 0, "the line is empty");
}

/// Time to ready, as a media operator feels it: agent process start → the media container's
/// exec, the kubelet's part simulated as the shipped startupProbe runs it (every `period`, the
/// first check one period after start: the media container starts at the first check that
/// finds `/readyz` 200). Measured, not asserted: the figures go to the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_from_agent_start_to_media_exec_at_1_and_in_a_herd_of_20() {
    let _heavy = crate::harness::heavy().await;
    for n in [1usize, 20] {
        let lab = Lab::new().await;
        let nodes = lab.ec2.nodes(n).await.unwrap();
        lab.ec2.allocate(Some(&lab.pool), n).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut agents = Vec::new();
        for node in &nodes {
            agents.push((
                Instant::now(),
                Agent::start(&lab, node, false, dir.path(), &[]).await,
            ));
        }
        // Every agent's /readyz, polled in rounds (each round ~ tens of ms at N=20): the time a
        // round first sees it 200.
        let mut seen: Vec<Option<Duration>> = vec![None; n];
        let until = Instant::now() + Duration::from_secs(60);
        while seen.iter().any(Option::is_none) {
            assert!(
                Instant::now() < until,
                "every agent ready within 60 s: {seen:?}"
            );
            for (i, (t0, a)) in agents.iter().enumerate() {
                if seen[i].is_none() && a.ready().await.is_some() {
                    seen[i] = Some(t0.elapsed());
                    // The env file the media container sources is there when /readyz says so.
                    assert!(!a.public_ip().is_empty());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready: Vec<Duration> = seen.into_iter().flatten().collect();
        let exec = |period: f64| -> Vec<f64> {
            let mut v: Vec<f64> = ready
                .iter()
                .map(|r| (r.as_secs_f64() / period).ceil().max(1.0) * period)
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let q = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
        let mut r: Vec<f64> = ready.iter().map(Duration::as_secs_f64).collect();
        r.sort_by(f64::total_cmp);
        println!(
            "N={n}: agent start → /readyz 200: p50 {:.2} s, max {:.2} s (polled in rounds)",
            q(&r, 0.5),
            q(&r, 1.0)
        );
        for period in [2.0, 1.0] {
            let e = exec(period);
            println!(
                "N={n}: agent start → media exec, startupProbe every {period} s: p50 {:.2} s, max {:.2} s",
                q(&e, 0.5),
                q(&e, 1.0)
            );
        }
        let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
        assert_eq!(
            state.values().filter(|e| e.eni.is_some()).count(),
            n,
            "every agent holds one address"
        );
    }
}

/// The line survives Redis restarting empty: the waiters rejoin with their tickets, and the next
/// freed address still goes to the longest waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_survives_redis_restarting_empty() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    lab.claim(&nodes[0], &[]).await.report().expect("claim 0");
    let mut waiters = join_the_line(&lab, &nodes[1..3], dir.path()).await;
    let mut c = lab.redis_conn().await;
    let before: Vec<(String, f64)> = c.zrange_withscores(lab.key("line"), 0, -1).await.unwrap();
    lab.redis.restart_empty().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = crate::harness::redis_conn(&lab.redis.url()).await;
        let now: Vec<(String, f64)> = c
            .zrange_withscores(lab.key("line"), 0, -1)
            .await
            .unwrap_or_default();
        if now == before {
            break;
        }
        if Instant::now() > until {
            let w = waiters[0].take().unwrap();
            let mut child = w.child;
            child.start_kill().unwrap();
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "waiters not back in the line: {now:?} vs {before:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = lab.release(&nodes[0], &[]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let freed_at = Instant::now();
    let got = first_ready(&waiters, Duration::from_secs(30)).await;
    println!(
        "after an empty Redis restart: waiter {got} ready {:?} after the release",
        freed_at.elapsed()
    );
    assert_eq!(got, 0, "the longest waiter gets it");
    assert!(waiters[1].as_ref().unwrap().ready().await.is_none());
}

/// An agent per node, one after another, each with a minute's `--interval` (so only a wake-up
/// is fast), each in the pool's line before the next starts: the line's order is theirs.
async fn join_the_line(lab: &Lab, nodes: &[Node], dir: &std::path::Path) -> Vec<Option<Agent>> {
    let mut waiters = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let w = Agent::start(lab, n, false, dir, &["--interval", "60s"]).await;
        eventually(
            "the waiter to join the line",
            Duration::from_secs(30),
            || async { (line_len(lab).await == i as u64 + 1).then_some(()) },
        )
        .await;
        waiters.push(Some(w));
    }
    waiters
}

/// `claim --wait` (an initContainer, or a script) waits in the same line as the agents: a freed
/// address reaches the longest waiter at once; a waiter whose --timeout runs out leaves the line
/// with exit 69; one stopped by SIGTERM leaves it too. Without --wait a claim still exits 69 at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_wait_takes_its_turn_in_the_line_and_leaves_it_however_it_ends() {
    // Timing matters (a waiter starved of CPU for 3 s counts as a ghost): no herd alongside.
    let _turn = heavy().await;
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(5).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    lab.claim(&nodes[0], &[]).await.report().expect("claim 0");
    let o = lab.claim(&nodes[1], &[]).await;
    assert_eq!(o.code, Some(69), "without --wait: exhausted at once: {o}");
    assert_eq!(
        line_len(&lab).await,
        0,
        "a claim without --wait never joins"
    );

    // Two waiters, one after the other, and one with too short a timeout to be served.
    let spawn = |node: &Node, timeout: &str| {
        lab.env
            .command(&lab.claim_args(node, &["--wait", "--timeout", timeout]))
            .spawn()
            .expect("spawn eipool claim --wait")
    };
    let first = spawn(&nodes[1], "120s");
    eventually("the first to join", Duration::from_secs(30), || async {
        (line_len(&lab).await == 1).then_some(())
    })
    .await;
    let second = spawn(&nodes[2], "120s");
    eventually("the second to join", Duration::from_secs(30), || async {
        (line_len(&lab).await == 2).then_some(())
    })
    .await;
    let started = Instant::now();
    let (short, ()) = tokio::join!(
        lab.claim(&nodes[3], &["--wait", "--timeout", "8s"]),
        eventually("the third to join", Duration::from_secs(8), || async {
            (line_len(&lab).await == 3).then_some(())
        }),
    );
    assert_eq!(short.code, Some(69), "its wait ran out: exhausted: {short}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "within its --timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(
        line_len(&lab).await,
        2,
        "the timed-out waiter left the line"
    );

    let r = lab.release(&nodes[0], &[]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let freed_at = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(30), first.wait_with_output())
        .await
        .expect("the first waiter ends")
        .unwrap();
    let first = eipool_lab::claimer::Outcome::from_output(&[], out);
    println!(
        "claim --wait: the first waiter claimed {:?} after the release",
        freed_at.elapsed()
    );
    let got = first.report().unwrap_or_else(|| panic!("{first}"));
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&got.allocation_id].eni.as_deref(),
        Some(nodes[1].eni.as_str()),
        "EC2 shows the first waiter's address"
    );
    assert_eq!(line_len(&lab).await, 1, "the second still waits");

    // SIGTERM: the second stops waiting, leaves the line, claims nothing.
    let pid = second.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), second.wait_with_output())
        .await
        .expect("the second waiter stops")
        .unwrap();
    let second = eipool_lab::claimer::Outcome::from_output(&[], out);
    assert!(second.report().is_none(), "{second}");
    assert_eq!(second.code, Some(130), "interrupted: {second}");
    assert_eq!(line_len(&lab).await, 0, "the line is empty");
}

/// First come, first served, also against newcomers: an address that comes free while a server
/// waits (here by hand, so the line is not woken) is left to it by a new agent and by a new
/// `claim --wait`, which join the line behind it; once it is gone, the next in line takes the
/// address. The waiter ahead is a line entry whose heartbeat never ages, so no scheduling
/// hiccup of a loaded machine can make it a ghost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomers_that_would_wait_leave_a_free_address_to_those_already_waiting() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let held = lab.claim(&nodes[0], &[]).await.report().expect("claim 0");
    let mut c = lab.redis_conn().await;
    let _: () = c.zadd(lab.key("line"), "waiting-server", 0).await.unwrap();
    let _: () = c
        .hset(lab.key("line:beats"), "waiting-server", i64::MAX / 2)
        .await
        .unwrap();

    lab.ec2
        .client
        .disassociate_address()
        .association_id(&held.association_id)
        .send()
        .await
        .unwrap();
    let free = || async {
        let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
        state[&held.allocation_id].eni.clone()
    };
    assert_eq!(free().await, None, "the address is free on EC2");

    let newcomer = Agent::start(&lab, &nodes[1], false, dir.path(), &["--interval", "60s"]).await;
    eventually(
        "the new agent to join the line",
        Duration::from_secs(30),
        || async { (line_len(&lab).await == 2).then_some(()) },
    )
    .await;
    let o = lab.claim(&nodes[2], &["--wait", "--timeout", "8s"]).await;
    assert_eq!(o.code, Some(69), "a new claim --wait waits behind: {o}");
    assert_eq!(free().await, None, "no newcomer took the address");
    assert!(newcomer.ready().await.is_none());

    // The server ahead leaves: the next in line, the agent, takes the address.
    let _: () = c.zrem(lab.key("line"), "waiting-server").await.unwrap();
    eventually("the agent to be served", Duration::from_secs(30), || {
        newcomer.ready()
    })
    .await;
    assert_eq!(free().await.as_deref(), Some(nodes[1].eni.as_str()));
}

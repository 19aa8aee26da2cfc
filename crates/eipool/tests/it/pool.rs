//! The pool as operators see and change it: `status` (JSON, `--min-free`, `--cidrs`), `pool
//! grow`/`shrink`, `gc`, the exporter's gauges, and the operations commands when EC2 is down.

use std::time::{Duration, Instant};

use eipool_lab::chaos::{Bucket, ChaosConfig, ChaosProxy};
use eipool_lab::servers::free_port;

use crate::harness::{args, http_get, json, moto, serving_pool_metrics, Lab};

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
    let st = json(&lab.run(&a).await);
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
    let o = lab.run(&a).await;
    assert_eq!(o.code, Some(1), "2 free < 3: {o}");
    assert!(o.error_line().contains("2 free"), "{}", o.error_line());
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--min-free", "2"]));
    assert_eq!(lab.run(&a).await.code, Some(0));

    let mut a = lab.with_redis(&[]);
    a.extend(args(&["status", "--cidrs"]));
    let o = lab.run(&a).await;
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
async fn status_with_redis_down_says_so_rather_than_no_redis_url() {
    let lab = Lab::new().await;
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let down = format!("redis://default:pw-1@127.0.0.1:{}", free_port().unwrap());
    let o = lab
        .env
        .run(&args(&[
            "--pool",
            &lab.pool,
            "--redis-url",
            &down,
            "status",
        ]))
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stdout.contains("Redis at redis://default:***@127.0.0.1:")
            && o.stdout.contains("did not answer")
            && !o.stdout.contains("no --redis-url"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pool_never_yields_an_empty_allow_list() {
    let lab = Lab::new().await;
    let misspelled = format!("{}-typo", lab.pool);
    for rest in [vec!["status", "--cidrs"], vec!["status", "--min-free", "0"]] {
        let mut a = args(&["--pool", &misspelled]);
        a.extend(rest.iter().map(|s| s.to_string()));
        let o = lab.env.run(&a).await;
        assert_eq!(o.code, Some(69), "{o}");
        assert!(o.stdout.trim().is_empty(), "printed an allow-list: {o}");
        assert!(o.error_line().contains("has no addresses"), "{o}");
    }
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
    let g = json(&lab.run(&a).await);
    assert_eq!(g["allocated"].as_array().map(Vec::len), Some(3), "{g}");
    let again = json(&lab.run(&a).await);
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
    let s = json(&lab.run(&a).await);
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
    let dry = lab.run(&a).await;
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
    let applied = lab.run(&a).await;
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

/// A pool address someone associated by hand to an interface no instance is attached to (one
/// they keep for later, a NAT gateway's): gc cannot see who uses it, and eipool did not put it
/// there (no `eipool:holder` tag). `gc --apply` leaves it associated and says why and what to do,
/// in text and JSON (issue 35: it was freed as "not attached to any instance").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_frees_an_address_associated_by_hand_to_an_unattached_interface() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eip = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);
    let subnet = lab
        .ec2
        .client
        .describe_network_interfaces()
        .network_interface_ids(&nodes[0].eni)
        .send()
        .await
        .unwrap()
        .network_interfaces()[0]
        .subnet_id()
        .unwrap()
        .to_string();
    let kept = lab
        .ec2
        .client
        .create_network_interface()
        .subnet_id(subnet)
        .send()
        .await
        .unwrap()
        .network_interface()
        .and_then(|n| n.network_interface_id())
        .unwrap()
        .to_string();
    let assoc = lab
        .ec2
        .associate_external(&eip.allocation_id, &kept)
        .await
        .unwrap();

    let mut a = lab.with_redis(&["gc", "--apply"]);
    let o = lab.run(&a).await;
    assert_eq!(o.code, Some(0), "{o}");
    let after = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        after[&eip.allocation_id].association_id.as_deref(),
        Some(assoc.as_str()),
        "gc freed an address eipool did not put there: {o}"
    );
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("left alone {}", eip.public_ip)))
        .unwrap_or_else(|| panic!("not reported: {o}"));
    for says in ["not attached to any instance", "eipool:holder", &assoc] {
        assert!(line.contains(says), "{says}: {line}");
    }
    assert!(!o.stdout.contains("freed"), "{o}");

    a.extend(args(&["--output", "json"]));
    let j = json(&lab.run(&a).await);
    assert_eq!(j["leaks"].as_array().map(Vec::len), Some(0), "{j}");
    assert_eq!(
        j["left_alone"][0]["allocation_id"].as_str(),
        Some(eip.allocation_id.as_str()),
        "{j}"
    );
    assert!(
        j["left_alone"][0]["hint"]
            .as_str()
            .is_some_and(|h| h.contains(&assoc)),
        "{j}"
    );
}

/// `pool grow` that fails part way (EC2 throttles the third AllocateAddress) still wakes the
/// pool's line for the two it allocated: a waiting server takes one at once, not at its next
/// `--interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_grow_that_fails_part_way_wakes_the_line_for_what_it_allocated() {
    let mut lab = Lab::new().await;
    // moto loads its EC2 backend on the first call (seconds): not within grow's call timeout.
    assert!(lab.ec2.pool_state(&lab.pool).await.unwrap().is_empty());
    // Two AllocateAddress calls, then EC2 throttles.
    lab.proxy = ChaosProxy::start(
        &moto().endpoint,
        ChaosConfig {
            mutating: Some(Bucket {
                burst: 2.0,
                per_second: 0.001,
            }),
            aws_semantics: true,
            ..ChaosConfig::default()
        },
    )
    .await
    .unwrap();
    lab.env.ec2_endpoint = lab.proxy.endpoint.clone();
    let o = lab
        .run(&lab.with_redis(&["pool", "grow", "--count", "3"]))
        .await;
    assert_eq!(o.code, Some(75), "{o}");
    assert!(o.error_line().contains("allocated 2 of 3"), "{o}");
    assert_eq!(lab.ec2.pool_state(&lab.pool).await.unwrap().len(), 2);
    let mut conn = lab.redis_conn().await;
    let freed: Option<u64> = redis::cmd("GET")
        .arg(lab.key("line:freed"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(freed, Some(2), "the line was not woken for them: {o}");
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
    let (exporter, metrics) = serving_pool_metrics(&lab.env, &a, listen).await;
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
    // Only what the exporter keeps: none of an agent's series (it holds no address).
    for agents in [
        "eipool_ready",
        "eipool_claims_total",
        "eipool_drift_total",
        "eipool_line_place",
        "eipool_last_verified_age_seconds",
    ] {
        assert!(!metrics.contains(agents), "{agents} in {metrics}");
    }
    assert!(metrics.contains("eipool_ec2_calls_total{"), "{metrics}");
    let (code, _) = http_get(listen, "/readyz").await.unwrap();
    assert_eq!(code, 200);

    // SIGTERM: it stops, and says so without claiming to release what it never held.
    std::process::Command::new("kill")
        .args(["-TERM", &exporter.id().unwrap().to_string()])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), exporter.wait_with_output())
        .await
        .expect("stops at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("shutting down") && !stderr.contains("releasing"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_commands_take_a_timeout_and_say_little_when_ec2_is_down() {
    let lab = Lab::new().await;
    let mut env = lab.env.clone();
    env.ec2_endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    for cmd in [
        vec!["status", "--min-free", "1", "--timeout", "3s"],
        vec!["gc", "--timeout", "3s"],
        vec!["pool", "shrink", "--count", "1", "--timeout", "3s"],
    ] {
        let started = Instant::now();
        let o = env.run(&lab.with_redis(&cmd)).await;
        let took = started.elapsed();
        assert_eq!(o.code, Some(75), "{o}");
        assert!(
            took < Duration::from_secs(20),
            "{cmd:?} ignored --timeout 3s: {took:?}"
        );
        assert!(o.stderr.lines().count() <= 3, "{cmd:?} said too much: {o}");
        assert!(
            o.error_line().contains("raise --timeout") || o.error_line().contains("timeout"),
            "{o}"
        );
    }
}

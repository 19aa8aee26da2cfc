//! The Redis setups production users run, as real servers: a Redis Cluster with replicas (herds
//! whose pools land on each primary, and a primary killed mid-herd), TLS with a private CA and
//! mutual TLS, ACL users. A Redis that answers but can never work (credentials, ACL, a replica,
//! TLS trust) is exit 2 at once, never a silent claim without leases; `doctor` names each; no
//! password given in the URL is ever printed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eipool_lab::chaos::{ChaosConfig, ChaosProxy};
use eipool_lab::check;
use eipool_lab::claimer::Outcome;
use eipool_lab::fixture::Node;
use eipool_lab::redis_setups::{self, Certs, RedisCluster};
use eipool_lab::servers::RedisServer;

use crate::harness::{
    args, claim_command, eventually, failures, heavy, herd, moto, successes, Lab,
};

/// A claim that must take its Redis lease, with `global` flags (e.g. TLS files).
fn claim_args(pool: &str, url: &str, node: &Node, global: &[&str]) -> Vec<String> {
    claim_command(pool, url, global, node, &["--require-leases"])
}

/// I1 no sharing, I3 no leak, one address each, against EC2 now.
async fn assert_distinct(lab: &Lab, pool: &str, outcomes: &[(String, Outcome)]) {
    let wins = successes(outcomes);
    let state = lab.ec2.pool_state(pool).await.unwrap();
    let enis: Vec<String> = outcomes.iter().map(|(e, _)| e.clone()).collect();
    let mut v = check::no_sharing(&wins, &state);
    v.extend(check::no_leak(&wins, &state, &BTreeSet::new()));
    v.extend(check::one_each(&enis, &state));
    assert!(v.is_empty(), "invariants violated:\n{}", v.join("\n"));
}

/// How many of the pool's addresses are associated now.
async fn associated(lab: &Lab) -> usize {
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    state
        .values()
        .filter(|e| e.association_id.is_some())
        .count()
}

/// Run `eipool` claiming for `node` through Redis at `url`, with `global` flags, to the end.
async fn claim(lab: &Lab, url: &str, node: &Node, global: &[&str]) -> Outcome {
    lab.env.run(&claim_args(&lab.pool, url, node, global)).await
}

/// `eipool doctor --role node` through Redis at `url`, to the end.
async fn doctor(lab: &Lab, url: &str) -> Outcome {
    let a = [
        "--pool",
        &lab.pool,
        "--redis-url",
        url,
        "doctor",
        "--role",
        "node",
    ];
    lab.env.run(&args(&a)).await
}

/// Microseconds since the epoch now (fencing numbers are at least Redis's clock in µs).
/// The clock in the fencing numbers' unit, 100 µs.
fn now_fence_units() -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        / 100) as u64
}

/// Fencing numbers stay below this, so that the previous release, which prints them with Lua's
/// `..`, writes lease values it can read back.
const FENCE_CEILING: u64 = 100_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herds_on_a_cluster_hold_their_leases_on_the_primary_of_their_pools_slot() {
    let _turn = heavy().await;
    let lab = Lab::new().await;
    let cluster = RedisCluster::start(3, 1).expect("start a Redis Cluster (run scripts/bootstrap)");
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "three primaries");
    for (i, &primary) in primaries.iter().enumerate() {
        // A pool whose keys land on this primary; the URL names another node (as a configuration
        // endpoint would), so a single-node client would be answered MOVED.
        let pool = cluster
            .pool_served_by(primary, &format!("{}-c{i}", lab.pool))
            .unwrap();
        let entry = *primaries.iter().find(|&&p| p != primary).unwrap();
        let url = format!("redis://127.0.0.1:{entry}");
        let nodes = lab.ec2.nodes(6).await.unwrap();
        lab.ec2.allocate(Some(&pool), 6).await.unwrap();
        let before = now_fence_units();
        let runs = nodes
            .iter()
            .map(|n| (n.eni.clone(), claim_args(&pool, &url, n, &[])))
            .collect();
        let (outcomes, _) = herd(&lab.env, runs).await;
        assert_eq!(successes(&outcomes).len(), 6, "{:#?}", failures(&outcomes));
        for (_, o) in &outcomes {
            assert!(!o.stderr.contains("MOVED"), "{o}");
        }
        assert_distinct(&lab, &pool, &outcomes).await;
        // The leases and records live on the primary of the pool's slot, and only there.
        let holders = eipool::redis::key(&pool, "holders");
        assert_eq!(cluster.hlen_on(primary, &holders).unwrap(), 6);
        let fence = cluster
            .get_on(primary, &eipool::redis::key(&pool, "fence"))
            .unwrap()
            .expect("the fence key is on the pool's primary")
            .expect("a fence was handed out");
        assert!(
            (before..FENCE_CEILING).contains(&fence.parse::<u64>().unwrap()),
            "fencing numbers start at Redis's clock in 100 µs: {fence} < {before}"
        );
        let moved = cluster
            .get_on(entry, &eipool::redis::key(&pool, "fence"))
            .unwrap();
        assert!(
            moved
                .as_ref()
                .is_err_and(|e| e.to_uppercase().contains("MOVED")),
            "another primary answers MOVED for the pool's slot: {moved:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_herd_fails_over_and_every_claim_stays_distinct() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    // EC2 at AWS's latency, so that the herd is still claiming when its Redis primary dies.
    let proxy = ChaosProxy::start(
        &moto().endpoint,
        ChaosConfig {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            aws_semantics: true,
            ..ChaosConfig::default()
        },
    )
    .await
    .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    let mut cluster = RedisCluster::start(3, 1).expect("start a Redis Cluster");
    let primary = cluster.primaries()[0];
    let pool = cluster.pool_served_by(primary, &lab.pool).unwrap();
    let url = cluster.url();
    let n = 24;
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&pool), n).await.unwrap();
    let runs = nodes
        .iter()
        .map(|n| (n.eni.clone(), claim_args(&pool, &url, n, &[])))
        .collect();
    let env = lab.env.clone();
    let running = tokio::spawn(async move { herd(&env, runs).await });
    // Kill the pool's primary once the herd has started recording its leases and records on it.
    let holders = eipool::redis::key(&pool, "holders");
    eventually(
        "a first claim recorded on the primary",
        Duration::from_secs(60),
        || {
            let n = cluster.hlen_on(primary, &holders).unwrap_or(0);
            async move { (n >= 1).then_some(()) }
        },
    )
    .await;
    let recorded = cluster.hlen_on(primary, &holders).unwrap();
    cluster.kill(primary);
    let (outcomes, took) = running.await.unwrap();
    println!(
        "--- primary {primary} killed after {recorded} of {n} claims: {} claimed in {:.1} s; failures {:#?}",
        successes(&outcomes).len(),
        took.as_secs_f64(),
        failures(&outcomes)
    );
    assert!(
        (recorded as usize) < n,
        "the primary died mid-herd, not after it"
    );
    assert_eq!(
        successes(&outcomes).len(),
        n,
        "I4: {:#?}",
        failures(&outcomes)
    );
    assert_distinct(&lab, &pool, &outcomes).await;
    // The replica took over: three primaries again, the killed one not among them.
    let now = eventually("a replica promoted", Duration::from_secs(30), || {
        let now = cluster.primaries();
        async move { (now.len() == 3).then_some(now) }
    })
    .await;
    assert!(!now.contains(&primary), "{now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_over_tls_with_a_private_ca_and_with_mutual_tls() {
    let lab = Lab::new().await;
    let certs = Certs::generate().expect("openssl");
    let ca = certs.ca.display().to_string();
    let (cert, key) = (
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string(),
    );
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();

    // Server-side TLS, our CA: works, and the claim's records are on that server.
    let tls = redis_setups::tls_server(&certs, false).unwrap();
    let o = claim(&lab, &tls.url(), &nodes[0], &["--redis-ca-file", &ca]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let hlen = std::process::Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            &ca,
            "-h",
            "127.0.0.1",
            "-p",
            &tls.port.to_string(),
        ])
        .args(["HLEN", &lab.key("holders")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hlen.stdout).trim(), "1");

    // Mutual TLS: with our client certificate it works; without one Redis refuses us, and that
    // is exit 2 at once with what to give.
    let mtls = redis_setups::tls_server(&certs, true).unwrap();
    let with = [
        "--redis-ca-file",
        &ca,
        "--redis-client-cert",
        &cert,
        "--redis-client-key",
        &key,
    ];
    let o = claim(&lab, &mtls.url(), &nodes[1], &with).await;
    assert_eq!(o.code, Some(0), "{o}");
    let started = Instant::now();
    let o = claim(&lab, &mtls.url(), &nodes[2], &["--redis-ca-file", &ca]).await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.error_line().contains("--redis-client-cert"), "{o}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it waited for its deadline: {o}"
    );

    // The wrong CA: exit 2 with the reason.
    let o = claim(
        &lab,
        &tls.url(),
        &nodes[2],
        &["--redis-ca-file", &certs.other_ca.display().to_string()],
    )
    .await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line().contains("not trusted") && o.error_line().contains("--redis-ca-file"),
        "{o}"
    );
    // TLS to a plain port gets no handshake answer, which could also be a slow network: a
    // temporary failure, with the hint.
    let plain = lab.redis.url().replace("redis://", "rediss://");
    let quick = [
        "--require-leases",
        "--timeout",
        "5s",
        "--call-timeout",
        "1s",
        "--lease",
        "4s",
    ];
    let mut a = args(&["--pool", &lab.pool, "--redis-url", &plain]);
    a.extend(args(&["--network-interface-id", &nodes[2].eni, "claim"]));
    a.extend(args(&quick));
    let o = lab.env.run(&a).await;
    assert_eq!(o.code, Some(75), "{o}");
    assert!(o.stderr.contains("use redis://"), "{o}");

    // Nothing was left associated by the refused claims.
    assert_eq!(associated(&lab).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_the_right_one_works_the_wrong_ones_exit_2_at_once_and_doctor_names_each() {
    let lab = Lab::new().await;
    let url = lab.redis.url();
    let rule = crate::harness::documented_acl_rule();
    let mut setuser = vec!["ACL", "SETUSER", "eipool", "on", ">right-pw-1"];
    setuser.extend(rule.split_whitespace());
    redis_setups::command(&url, &setuser).unwrap();
    redis_setups::command(
        &url,
        &[
            "ACL",
            "SETUSER",
            "noscript",
            "on",
            ">right-pw-1",
            "~eipool:*",
            "+@all",
            "-evalsha",
            "-eval",
            "-script",
        ],
    )
    .unwrap();
    let replica = RedisServer::start_with(
        &args(&["--replicaof", "127.0.0.1", &lab.redis.port.to_string()]),
        false,
    )
    .unwrap();
    let at = |user: &str, pw: &str| format!("redis://{user}:{pw}@127.0.0.1:{}", lab.redis.port);

    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let o = claim(&lab, &at("eipool", "right-pw-1"), &nodes[0], &[]).await;
    assert_eq!(o.code, Some(0), "the README's ACL is enough: {o}");

    for (url, says) in [
        (at("eipool", "wrong-pw-2"), "refused the credentials"),
        (at("noscript", "right-pw-1"), "lacks a permission"),
        (replica.url(), "read-only replica"),
    ] {
        let started = Instant::now();
        let o = claim(&lab, &url, &nodes[1], &[]).await;
        assert_eq!(o.code, Some(2), "{o}");
        assert!(o.error_line().contains(says), "{says}: {o}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "it waited for its deadline: {o}"
        );
        if says == "lacks a permission" {
            assert!(
                o.error_line().contains(&rule),
                "the fix is the README's rule: {o}"
            );
        }
        let doctor = doctor(&lab, &url).await;
        let redis_fail: Vec<&str> = doctor
            .stdout
            .lines()
            .filter(|l| l.starts_with("[FAIL] Redis"))
            .collect();
        assert!(
            redis_fail.iter().any(|l| l.contains(says)),
            "doctor names it ({says}): {doctor}"
        );
    }
    let doctor = doctor(&lab, &at("eipool", "right-pw-1")).await;
    let redis_lines: Vec<&str> = doctor
        .stdout
        .lines()
        .filter(|l| l.contains("] Redis"))
        .collect();
    assert_eq!(redis_lines.len(), 3, "{doctor}");
    assert!(
        redis_lines.iter().all(|l| l.starts_with("[ ok ]")),
        "{doctor}"
    );
    assert!(redis_lines[0].contains("one node (a primary)"), "{doctor}");

    // Nothing of the refused claims is left in EC2.
    assert_eq!(associated(&lab).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_never_printed() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let secret = "Sup3r-s3cret";
    let dead = eipool_lab::servers::free_port().unwrap();
    let cases = [
        // Refused credentials, a password with a raw '#', a wrong scheme, a Redis that is down.
        format!("redis://default:{secret}@127.0.0.1:{}", lab.redis.port),
        format!("redis://default:{secret}#x@127.0.0.1:{}", lab.redis.port),
        format!("http://default:{secret}@127.0.0.1:{}", lab.redis.port),
        format!("redis://default:{secret}@127.0.0.1:{dead}"),
    ];
    for url in &cases {
        for rest in [
            args(&[
                "--network-interface-id",
                &nodes[0].eni,
                "claim",
                "--timeout",
                "5s",
                "--call-timeout",
                "1s",
                "--lease",
                "4s",
            ]),
            args(&[
                "--log",
                "debug",
                "--log-format",
                "json",
                "--network-interface-id",
                &nodes[0].eni,
                "claim",
                "--require-leases",
                "--timeout",
                "3s",
                "--call-timeout",
                "1s",
                "--lease",
                "3s",
            ]),
            args(&["doctor", "--timeout", "10s"]),
            args(&["--log", "debug", "status"]),
        ] {
            let mut a = args(&["--pool", &lab.pool, "--redis-url", url]);
            a.extend(rest);
            let out = lab.env.command(&a).output().await.unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "the password was printed by {:?}",
                a.iter()
                    .map(|s| s.replace(secret, "<secret>"))
                    .collect::<Vec<_>>()
            );
        }
    }
    // The raw '#' gets the hint to percent-encode.
    let mut a = args(&["--pool", &lab.pool, "--redis-url", &cases[1]]);
    a.extend(args(&["--network-interface-id", &nodes[0].eni, "claim"]));
    let out = lab.env.command(&a).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("%23"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_numbers_keep_growing_across_an_empty_restart_and_a_lagging_replica() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(4).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 4).await.unwrap();
    let fence_key = lab.key("fence");
    let fence = |url: String, key: String| -> u64 {
        match redis_setups::command(&url, &["GET", &key]).unwrap() {
            redis::Value::BulkString(b) => String::from_utf8(b).unwrap().parse().unwrap(),
            other => panic!("no fence: {other:?}"),
        }
    };
    let o = lab.claim(&nodes[0], &["--require-leases"]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let first = fence(lab.redis.url(), fence_key.clone());

    // Redis restarts empty: the next fence is still larger.
    lab.redis.restart_empty().unwrap();
    let o = lab.claim(&nodes[1], &["--require-leases"]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let second = fence(lab.redis.url(), fence_key.clone());
    assert!(second > first, "{second} after {first}");

    // A promoted replica that missed the last acquisitions (its counter at 24): still larger.
    redis_setups::command(&lab.redis.url(), &["SET", &fence_key, "24"]).unwrap();
    let o = lab.claim(&nodes[2], &["--require-leases"]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let third = fence(lab.redis.url(), fence_key.clone());
    assert!(third > second, "{third} after {second}");
    assert!(third < FENCE_CEILING, "{third}");

    // A fence counted in microseconds (an unreleased build): the next one is below the ceiling
    // again, so the previous release can still renew the leases it takes.
    redis_setups::command(&lab.redis.url(), &["SET", &fence_key, "1780000000000000"]).unwrap();
    let o = lab.claim(&nodes[3], &["--require-leases"]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let fourth = fence(lab.redis.url(), fence_key);
    assert!(fourth < FENCE_CEILING, "{fourth}");
}

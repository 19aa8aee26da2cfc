//! EC2 is the truth: a Redis hint never outvotes it, a claim never displaces an address already
//! on its private IP (AWS would disassociate it; the lab's proxy does, as AWS documents), the
//! pool view survives Redis losing its data, and the herd's pace is the account's, not the pool's.
//! Every claimer is the real binary; every check reads EC2's state.

use std::collections::BTreeSet;
use std::time::Duration;

use eipool_lab::chaos::{Bucket, ChaosConfig, ChaosProxy, AWS_MUTATING};
use eipool_lab::check;
use eipool_lab::claimer::Outcome;
use eipool_lab::fixture::Node;
use eipool_lab::imds::{ImdsStub, NodeMeta};
use eipool_lab::servers::free_port;

use crate::harness::{args, eventually, heavy, herd, moto, serving_pool_metrics, successes, Lab};

/// How each path frees the address `node` holds.
#[derive(Debug, Clone, Copy)]
enum Path {
    ReleaseWithoutRedis,
    GcApply,
    RollbackOfAnUndeliverableClaim,
    DisassociatedByHand,
    InstanceTerminated,
}

/// Claim the one address of a fresh pool for `nodes[0]`, free it by `path`, then claim for
/// `nodes[1]`: it must get that address (exit 0), not be told the pool is exhausted because a
/// Redis marker says it was just assigned.
async fn freed_then_claimed(path: Path) {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    let eip = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);

    match path {
        Path::RollbackOfAnUndeliverableClaim => {
            // --output is refused up front unless it can be written; make it a directory once
            // the claim is past that check (it holds its interface's lease), while EC2 answers
            // slowly: the claim wins the address, cannot write, and must give it back.
            lab.proxy
                .reconfigure(|c| c.latency = Duration::from_millis(500));
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("eipool.env");
            let claim = tokio::spawn({
                let (env, a) = (
                    lab.env.clone(),
                    lab.claim_args(&nodes[0], &["--output", out.to_str().unwrap()]),
                );
                async move { env.run(&a).await }
            });
            let lease = lab.key(&format!(
                "iface-lease:{}/{}",
                nodes[0].eni, nodes[0].private_ip
            ));
            let conn = lab.redis_conn().await;
            eventually("the claim to start", Duration::from_secs(30), || {
                let (mut conn, lease) = (conn.clone(), lease.clone());
                async move {
                    let held: bool = redis::cmd("EXISTS")
                        .arg(&lease)
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    held.then_some(())
                }
            })
            .await;
            std::fs::create_dir(&out).unwrap();
            let o = claim.await.unwrap();
            lab.proxy.reconfigure(|c| c.latency = Duration::ZERO);
            assert_eq!(o.code, Some(2), "{o}");
            assert!(o.error_line().contains("cannot write the env file"), "{o}");
        }
        _ => {
            let first = lab.claim(&nodes[0], &[]).await;
            assert_eq!(
                first.report().map(|r| r.allocation_id),
                Some(eip.allocation_id.clone()),
                "{first}"
            );
        }
    }
    match path {
        Path::ReleaseWithoutRedis => {
            let o = lab
                .env
                .run(&args(&[
                    "--pool",
                    &lab.pool,
                    "--network-interface-id",
                    &nodes[0].eni,
                    "release",
                ]))
                .await;
            assert_eq!(o.code, Some(0), "{o}");
        }
        Path::GcApply => {
            // Stopping keeps the association (AWS and the proxy agree); gc frees it.
            lab.aws
                .client
                .stop_instances()
                .instance_ids(&nodes[0].instance_id)
                .send()
                .await
                .unwrap();
            let o = lab.env.run(&lab.with_redis(&["gc", "--apply"])).await;
            assert!(o.stdout.contains("freed"), "{o}");
        }
        Path::RollbackOfAnUndeliverableClaim => {}
        Path::DisassociatedByHand => {
            let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
            let assoc = state[&eip.allocation_id].association_id.clone().unwrap();
            lab.ec2.disassociate(&assoc).await.unwrap();
        }
        Path::InstanceTerminated => {
            // Through the proxy: AWS disassociates the addresses of the primary interface.
            lab.aws
                .client
                .terminate_instances()
                .instance_ids(&nodes[0].instance_id)
                .send()
                .await
                .unwrap();
        }
    }
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state[&eip.allocation_id].association_id.is_none(),
        "{path:?} did not free it: {state:?}"
    );

    let o = lab.claim(&nodes[1], &["--timeout", "60s"]).await;
    let r = o
        .report()
        .unwrap_or_else(|| panic!("after {path:?} the free address was not claimable: {o}"));
    assert_eq!(r.allocation_id, eip.allocation_id, "{path:?}: {o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&eip.allocation_id].eni.as_deref(),
        Some(nodes[1].eni.as_str()),
        "{path:?}"
    );
    println!(
        "--- freed by {path:?}: claimed again in {} ms",
        r.elapsed_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_released_without_redis_is_claimable_at_once() {
    freed_then_claimed(Path::ReleaseWithoutRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gc_freed_is_claimable_at_once() {
    freed_then_claimed(Path::GcApply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_given_back_by_a_rolled_back_claim_is_claimable_at_once() {
    freed_then_claimed(Path::RollbackOfAnUndeliverableClaim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_disassociated_by_hand_is_claimable_at_once() {
    freed_then_claimed(Path::DisassociatedByHand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_of_a_terminated_instance_is_claimable_at_once() {
    freed_then_claimed(Path::InstanceTerminated).await;
}

/// A herd where the first `doubled` nodes each get two claimers at once (a restarted
/// initContainer racing the old one, a claim and an agent, …), with displacement as AWS does it.
async fn same_interface_herd(redis: bool) {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let (n, doubled) = (16, 8);
    // EC2 answering in 0.1–0.9 s spreads the two claims of an interface in time, so that one
    // can associate after the other validated: the window the interface lease closes.
    lab.proxy = ChaosProxy::start(
        &moto().endpoint,
        ChaosConfig {
            latency: Duration::from_millis(500),
            jitter: Duration::from_millis(400),
            aws_semantics: true,
            ..ChaosConfig::default()
        },
    )
    .await
    .unwrap();
    lab.env.ec2_endpoint = lab.proxy.endpoint.clone();
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), n + 8).await.unwrap();
    let redis_url = lab.redis.url();
    let mut runs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let copies = if i < doubled { 2 } else { 1 };
        for _ in 0..copies {
            let mut a = vec!["--pool", &lab.pool, "--network-interface-id", &node.eni];
            if redis {
                a.extend(["--redis-url", &redis_url]);
            }
            a.extend(["claim", "--timeout", "90s"]);
            runs.push((node.eni.clone(), args(&a)));
        }
    }
    let (outcomes, took) = herd(&lab.env, runs).await;
    let stats = lab.proxy.stats();
    crate::harness::report(
        &format!(
            "{n} interfaces, {doubled} of them claimed twice at once, {}",
            if redis { "with Redis" } else { "without Redis" }
        ),
        "AWS semantics: an association replaces the Elastic IP already on the private IP",
        &outcomes,
        Some(&stats),
        took,
    );
    let failures: Vec<&Outcome> = outcomes
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.code != Some(0))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    let wins = successes(&outcomes);
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let enis: Vec<String> = nodes.iter().map(|n| n.eni.clone()).collect();
    // Without Redis nothing serializes two claims of one interface: one may validate its
    // address, report it, and lose it to the other's association right after. What still
    // holds: no address goes to two interfaces, each interface ends with exactly one, nothing
    // leaks, and single-claimed interfaces hold what they reported.
    let lost: Vec<&(String, eipool_lab::claimer::ClaimReport)> = wins
        .iter()
        .filter(|(eni, r)| state[&r.allocation_id].eni.as_deref() != Some(eni.as_str()))
        .collect();
    let doubled_enis: BTreeSet<&str> = nodes[..doubled].iter().map(|n| n.eni.as_str()).collect();
    let kept: Vec<_> = if redis {
        wins.clone()
    } else {
        println!(
            "  without Redis, {} of {} claims of doubled interfaces reported an address the other claim then displaced",
            lost.len(),
            2 * doubled
        );
        assert!(
            lost.iter()
                .all(|(eni, _)| doubled_enis.contains(eni.as_str())),
            "a single claim of its interface lost its address: {lost:#?}"
        );
        wins.iter().filter(|w| !lost.contains(w)).cloned().collect()
    };
    let mut v = check::no_sharing(&kept, &state);
    v.extend(check::one_each(&enis, &state));
    v.extend(check::no_leak(&kept, &state, &BTreeSet::new()));
    if redis {
        assert!(
            lost.is_empty(),
            "with the interface lease no claim may lose its address: {lost:#?}"
        );
    }
    assert!(v.is_empty(), "invariants violated:\n{}", v.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_for_one_interface_with_redis_never_report_an_address_they_do_not_hold() {
    same_interface_herd(true).await;
}

/// Without Redis (a second fault on top of the same-interface race): no address to two
/// interfaces, one address per interface, no leak; a claim may report an address the other
/// claim of its interface displaced right after (counted, not hidden; its agent would see the
/// drift).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_for_one_interface_without_redis_end_with_one_address_each_and_no_leak() {
    same_interface_herd(false).await;
}

/// Someone's hand-attached Elastic IP (outside the pool) on the node's private IP: the claim
/// refuses, naming it, and it stays where it is. Both ways of knowing who we are: the interface
/// by flag (EC2 describes what it holds) and IMDSv2 (the node says, EC2 tells an Elastic IP
/// from an ephemeral address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_elastic_ip_on_the_private_ip_is_never_displaced() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    let imds = ImdsStub::start(
        NodeMeta {
            instance_id: &nodes[1].instance_id,
            mac: "02:00:00:00:00:02",
            eni: &nodes[1].eni,
            local_ipv4: &nodes[1].private_ip,
        },
        &lab.ec2,
    )
    .await
    .unwrap();
    for (node, by_imds) in [(&nodes[0], false), (&nodes[1], true)] {
        let foreign = lab.ec2.allocate(None, 1).await.unwrap().remove(0);
        lab.ec2
            .associate_external_at(&foreign.allocation_id, &node.eni, &node.private_ip)
            .await
            .unwrap();
        let o = if by_imds {
            let mut env = lab.env.clone();
            env.imds_endpoint = imds.endpoint.clone();
            env.run(&lab.with_redis(&["claim", "--timeout", "30s"]))
                .await
        } else {
            lab.claim(node, &["--timeout", "30s"]).await
        };
        assert_eq!(o.code, Some(2), "{o}");
        assert!(
            o.error_line().contains(&foreign.public_ip)
                && o.error_line().contains("never displaces"),
            "the message names the address it would have displaced: {o}"
        );
        let now = lab.ec2.addresses_on(&node.eni).await.unwrap();
        assert_eq!(
            now.iter()
                .map(|e| e.allocation_id.as_str())
                .collect::<Vec<_>>(),
            vec![foreign.allocation_id.as_str()],
            "the foreign address is still the only one on {}",
            node.eni
        );
    }
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "nothing of the pool was associated: {state:?}"
    );
}

/// After a herd, Redis loses everything: the pool view still comes from EC2 (the holder tags),
/// so nothing in use shows as foreign, and gc wants to free nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_status_and_the_exporter_show_no_foreign_address() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let n = 12;
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), n + 3).await.unwrap();
    let runs = nodes
        .iter()
        .map(|node| (node.eni.clone(), lab.claim_args(node, &[])))
        .collect();
    let (outcomes, _) = herd(&lab.env, runs).await;
    assert_eq!(successes(&outcomes).len(), n, "{outcomes:#?}");

    lab.redis.restart_empty().unwrap();

    let o = lab
        .env
        .run(&lab.with_redis(&["status", "--output", "json"]))
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    let st: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(st["counts"]["foreign"], 0, "{st}");
    assert_eq!(st["counts"]["assigned"], n, "{st}");
    assert_eq!(st["counts"]["free"], 3, "{st}");

    let listen: std::net::SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let listen_s = listen.to_string();
    let exporter = lab.with_redis(&["exporter", "--listen", &listen_s, "--interval", "5s"]);
    let (_exporter, metrics) = serving_pool_metrics(&lab.env, &exporter, listen).await;
    assert!(
        metrics.contains(&format!(
            "eipool_pool_addresses{{pool=\"{}\",state=\"foreign\"}} 0",
            lab.pool
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "eipool_pool_addresses{{pool=\"{}\",state=\"assigned\"}} {n}",
            lab.pool
        )),
        "{metrics}"
    );

    let before = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let o = lab.env.run(&lab.with_redis(&["gc", "--apply"])).await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.contains("nothing to collect"), "{o}");
    assert_eq!(lab.ec2.pool_state(&lab.pool).await.unwrap(), before);
}

/// Two pools' herds in one Redis, at once, through EC2's default mutating bucket (50, then 5/s
/// for the whole account and region): the herds pace themselves together, so EC2 throttles none
/// of their AssociateAddress calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_in_one_redis_stay_under_the_accounts_bucket_together() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let per_pool = 45;
    let nodes = lab.ec2.nodes(2 * per_pool).await.unwrap();
    let other = format!("{}-second", lab.pool);
    lab.ec2.allocate(Some(&lab.pool), per_pool).await.unwrap();
    lab.ec2.allocate(Some(&other), per_pool).await.unwrap();
    let proxy = ChaosProxy::start(
        &moto().endpoint,
        ChaosConfig {
            mutating: Some(AWS_MUTATING),
            create_tags: Some(Bucket {
                burst: 1000.0,
                per_second: 1000.0,
            }),
            aws_semantics: true,
            ..ChaosConfig::default()
        },
    )
    .await
    .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    let redis = lab.redis.url();
    let runs: Vec<(String, Vec<String>)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node): (usize, &Node)| {
            let pool = if i % 2 == 0 { &lab.pool } else { &other };
            (
                node.eni.clone(),
                args(&[
                    "--pool",
                    pool,
                    "--redis-url",
                    &redis,
                    "--network-interface-id",
                    &node.eni,
                    "claim",
                    "--timeout",
                    "120s",
                ]),
            )
        })
        .collect();
    let (outcomes, took) = herd(&lab.env, runs).await;
    let stats = proxy.stats();
    crate::harness::report(
        "two pools' herds of 45 at once, one Redis",
        "EC2's mutating bucket (50, then 5/s) shared by both",
        &outcomes,
        Some(&stats),
        took,
    );
    assert_eq!(successes(&outcomes).len(), 2 * per_pool);
    assert_eq!(
        stats.get("AssociateAddress", "throttled"),
        0,
        "the two herds together went over the account's bucket:\n{}",
        stats.table()
    );
}

/// While another claim holds the interface's lease in Redis, a claim for that interface waits
/// (associating nothing), then goes on once the lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_another_claim_of_its_interface() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let mut conn = lab.redis_conn().await;
    let key = lab.key(&format!(
        "iface-lease:{}/{}",
        nodes[0].eni, nodes[0].private_ip
    ));
    let held_for_ms = 3_000;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-claim")
        .arg("PX")
        .arg(held_for_ms)
        .query_async(&mut conn)
        .await
        .unwrap();
    let claim = tokio::spawn({
        let (env, a) = (lab.env.clone(), lab.claim_args(&nodes[0], &[]));
        async move { env.run(&a).await }
    });
    // As long as the other claim's lease is there, nothing is associated to the interface.
    // (EC2 is read first: if the other lease is still there after, it was there before.)
    eventually(
        "the other claim's lease to end",
        Duration::from_secs(30),
        || {
            let (mut conn, key) = (conn.clone(), key.clone());
            let (ec2, eni) = (&lab.ec2, &nodes[0].eni);
            async move {
                let held = ec2.addresses_on(eni).await.unwrap();
                let owner: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if owner.as_deref() != Some("another-claim") {
                    return Some(());
                }
                assert!(
                    held.is_empty(),
                    "associated while another claim held the interface: {held:?}"
                );
                None
            }
        },
    )
    .await;
    let o = claim.await.unwrap();
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert!(
        o.stderr
            .contains("another claim for this interface is running"),
        "{o}"
    );
    assert!(r.elapsed_ms >= held_for_ms / 2, "did not wait: {o}");
}

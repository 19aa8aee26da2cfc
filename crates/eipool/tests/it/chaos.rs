//! The claim under faults: AWS-like throttling, latency and eventual consistency in front of
//! moto (the chaos proxy), lost answers and 5xx, killed and paused claimers, Redis restarted,
//! black-holed and slow. Each scenario prints what it injected and what it observed, and checks
//! the invariants against EC2's final state: I1 no sharing, I2 no theft, I3 no leak, I4 liveness.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eipool_lab::chaos::{Bucket, ChaosConfig, ChaosProxy, Stats, AWS_MUTATING, AWS_NON_MUTATING};
use eipool_lab::check;
use eipool_lab::claimer::ClaimReport;
use eipool_lab::fixture::{Eip, Node};
use eipool_lab::tcp_fault::{Mode, TcpFault};
use rand::Rng;

use crate::harness::{eventually, exits, failures, heavy, herd, moto, report, successes, Lab};

/// Addresses the claimers must never touch: untagged, another pool's, and one of the pool's own
/// associated by hand to a bystander interface.
struct Bystanders {
    before: Vec<Eip>,
    external: BTreeSet<String>,
}

async fn bystanders(lab: &Lab, bystander: &Node) -> Bystanders {
    let mut ids: Vec<String> = Vec::new();
    for e in lab.ec2.allocate(None, 2).await.unwrap() {
        ids.push(e.allocation_id);
    }
    for e in lab
        .ec2
        .allocate(Some(&format!("{}-other", lab.pool)), 2)
        .await
        .unwrap()
    {
        ids.push(e.allocation_id);
    }
    let held = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);
    lab.ec2
        .associate_external(&held.allocation_id, &bystander.eni)
        .await
        .unwrap();
    ids.push(held.allocation_id.clone());
    Bystanders {
        before: lab.ec2.addresses(&ids).await.unwrap(),
        external: BTreeSet::from([held.allocation_id]),
    }
}

/// I1–I3 against EC2 now; panics listing every violation.
async fn assert_safe(lab: &Lab, wins: &[(String, ClaimReport)], by: &Bystanders) {
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let ids: Vec<String> = by.before.iter().map(|e| e.allocation_id.clone()).collect();
    let after = lab.ec2.addresses(&ids).await.unwrap();
    let mut v = check::no_sharing(wins, &state);
    v.extend(check::untouched(&by.before, &after));
    v.extend(check::no_leak(wins, &state, &by.external));
    assert!(v.is_empty(), "invariants violated:\n{}", v.join("\n"));
}

fn aws_like() -> ChaosConfig {
    ChaosConfig {
        latency: Duration::from_millis(100),
        jitter: Duration::from_millis(50),
        stale_window: Duration::from_secs(1),
        ..ChaosConfig::default()
    }
    .aws_throttling()
}

/// A proxy with `config`, behaving as EC2 does where moto does not, for the claimers of `lab`.
async fn proxied(lab: &mut Lab, mut config: ChaosConfig) -> ChaosProxy {
    config.aws_semantics = true;
    let proxy = ChaosProxy::start(&moto().endpoint, config).await.unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    proxy
}

fn runs(lab: &Lab, redis_url: &str, nodes: &[Node], extra: &[&str]) -> Vec<(String, Vec<String>)> {
    nodes
        .iter()
        .map(|n| (n.eni.clone(), lab.claim_args_via(redis_url, n, extra)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_of_100_for_60_through_throttling_latency_and_stale_describes() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(101).await.unwrap();
    let by = bystanders(&lab, &nodes[100]).await;
    lab.ec2.allocate(Some(&lab.pool), 60).await.unwrap();
    // The herd paces itself under AWS's default buckets and is never throttled there (see the
    // benchmark). Here other callers in the account have drained most of the bursts, so the
    // herd's own burst is throttled and must back off.
    let mut config = aws_like();
    config.mutating = Some(Bucket {
        burst: 10.0,
        ..AWS_MUTATING
    });
    config.non_mutating = Some(Bucket {
        burst: 20.0,
        ..AWS_NON_MUTATING
    });
    let proxy = proxied(&mut lab, config).await;

    let (outcomes, took) = herd(&lab.env, runs(&lab, &lab.redis.url(), &nodes[..100], &[])).await;
    let stats = proxy.stats();
    report(
        "herd of 100 for 60",
        "AWS throttling with bursts mostly drained by other callers (10+5/s mutating, 20+20/s describe), 100±50 ms latency, 1 s stale describes",
        &outcomes,
        Some(&stats),
        took,
    );
    let wins = successes(&outcomes);
    assert_eq!(wins.len(), 60, "I4: every free address is claimed");
    assert_eq!(
        exits(&outcomes, 69),
        40,
        "the rest are told the pool is exhausted"
    );
    assert_safe(&lab, &wins, &by).await;
    assert!(
        stats.outcome("throttled") > 0,
        "the scenario must actually throttle: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimers_killed_mid_flow_and_rerun_leave_nothing_shared_or_leaked() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(31).await.unwrap();
    let by = bystanders(&lab, &nodes[30]).await;
    lab.ec2.allocate(Some(&lab.pool), 40).await.unwrap();
    let proxy = proxied(&mut lab, aws_like()).await;
    let nodes = &nodes[..30];

    // Start 30, SIGKILL 10 of them at random moments in their first 1.5 s.
    let started = Instant::now();
    let mut children = Vec::new();
    for n in nodes {
        let child = lab.env.command(&lab.claim_args(n, &[])).spawn().unwrap();
        children.push((n.clone(), child));
    }
    let victims: BTreeSet<usize> = rand::seq::index::sample(&mut rand::rng(), nodes.len(), 10)
        .into_iter()
        .collect();
    let mut kills = Vec::new();
    for &i in &victims {
        let at = Duration::from_millis(rand::rng().random_range(0..1_500));
        kills.push((i, at));
    }
    kills.sort_by_key(|(_, at)| *at);
    for (i, at) in &kills {
        tokio::time::sleep_until((started + *at).into()).await;
        let _ = children[*i].1.start_kill();
    }
    let mut outcomes = Vec::new();
    let mut killed_mid_flow = 0;
    for (i, (n, child)) in children.into_iter().enumerate() {
        let out = child.wait_with_output().await.unwrap();
        if victims.contains(&i) {
            killed_mid_flow += usize::from(out.status.code().is_none());
            continue;
        }
        outcomes.push((
            n.eni.clone(),
            eipool_lab::claimer::Outcome::from_output(&[], out),
        ));
    }
    // Re-run the killed ones, as Kubernetes restarts an initContainer.
    let reruns: Vec<Node> = victims.iter().map(|&i| nodes[i].clone()).collect();
    let (rerun_outcomes, _) = herd(&lab.env, runs(&lab, &lab.redis.url(), &reruns, &[])).await;
    let adopted = successes(&rerun_outcomes)
        .iter()
        .filter(|(_, r)| r.reused)
        .count();
    outcomes.extend(rerun_outcomes);
    let stats = proxy.stats();
    report(
        "SIGKILL 10 of 30 mid-flow, then re-run them",
        &format!(
            "AWS-like EC2; kills at {:?}",
            kills
                .iter()
                .map(|(_, at)| at.as_millis())
                .collect::<Vec<_>>()
        ),
        &outcomes,
        Some(&stats),
        started.elapsed(),
    );
    println!("  {killed_mid_flow} of 10 died before finishing; {adopted} re-runs adopted an address their killed run had associated");

    let wins = successes(&outcomes);
    assert_eq!(
        wins.len(),
        30,
        "I4: 40 addresses for 30 claimers; all finish after re-runs"
    );
    assert_safe(&lab, &wins, &by).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_paused_past_its_lease_never_ends_up_sharing_or_leaking() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(4).await.unwrap();
    let by = bystanders(&lab, &nodes[3]).await;
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    // Slow EC2 so that the claimer is caught holding its lease.
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            latency: Duration::from_millis(400),
            stale_window: Duration::from_secs(1),
            ..ChaosConfig::default()
        },
    )
    .await;
    let lease = ["--lease", "5s", "--call-timeout", "1500ms"];

    let paused = lab
        .env
        .command(&lab.claim_args(&nodes[0], &lease))
        .spawn()
        .unwrap();
    let pid = paused.id().unwrap().to_string();
    // The claim it holds in Redis: its key, and its value (owner and fence).
    let conn = lab.redis_conn().await;
    let pattern = lab.key("claim:*");
    let (key, held) = eventually(
        "the claimer to take a lease",
        Duration::from_secs(30),
        || {
            let (mut conn, pattern) = (conn.clone(), pattern.clone());
            async move {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                let key = keys.into_iter().next()?;
                let value: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                Some((key, value?))
            }
        },
    )
    .await;
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    let stopped_at = Instant::now();

    // Others proceed while it sleeps past its lease.
    let (mut outcomes, _) =
        herd(&lab.env, runs(&lab, &lab.redis.url(), &nodes[1..3], &lease)).await;
    // Until its lease (5 s) is over: Redis no longer holds its lease.
    eventually(
        "the paused claimer's lease to run out",
        Duration::from_secs(30),
        || {
            let (mut conn, key, held) = (conn.clone(), key.clone(), held.clone());
            async move {
                let now: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (now.as_deref() != Some(held.as_str())).then_some(())
            }
        },
    )
    .await;
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    let out = paused.wait_with_output().await.unwrap();
    outcomes.push((
        nodes[0].eni.clone(),
        eipool_lab::claimer::Outcome::from_output(&[], out),
    ));
    report(
        "SIGSTOP a claimer holding a claim until its lease (5 s) ran out",
        "400 ms EC2 latency, 1 s stale describes",
        &outcomes,
        Some(&proxy.stats()),
        stopped_at.elapsed(),
    );

    let wins = successes(&outcomes);
    assert_eq!(
        wins.len(),
        2,
        "both addresses end up claimed: {outcomes:#?}"
    );
    assert_eq!(exits(&outcomes, 69), 1, "{outcomes:#?}");
    assert_safe(&lab, &wins, &by).await;
}

/// One of the Redis fault scenarios: 40 claimers for 30 addresses through AWS-like EC2 while
/// `fault` happens to Redis.
async fn redis_fault_scenario(name: &str, fault: impl AsyncFnOnce(&mut Lab, &TcpFault)) {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(41).await.unwrap();
    let by = bystanders(&lab, &nodes[40]).await;
    lab.ec2.allocate(Some(&lab.pool), 30).await.unwrap();
    let proxy = proxied(&mut lab, aws_like()).await;
    let tcp = TcpFault::start(([127, 0, 0, 1], lab.redis.port).into())
        .await
        .unwrap();

    let env = lab.env.clone();
    let herd_runs = runs(&lab, &tcp.redis_url(), &nodes[..40], &["--timeout", "90s"]);
    let running = tokio::spawn(async move { herd(&env, herd_runs).await });
    fault(&mut lab, &tcp).await;
    let (outcomes, took) = running.await.unwrap();
    report(
        name,
        "AWS-like EC2 (as the herd scenario)",
        &outcomes,
        Some(&proxy.stats()),
        took,
    );

    let wins = successes(&outcomes);
    assert_eq!(wins.len(), 30, "I4: every free address is claimed");
    assert_eq!(
        exits(&outcomes, 69),
        10,
        "{:#?}",
        outcomes
            .iter()
            .filter(|(_, o)| o.code != Some(0) && o.code != Some(69))
            .collect::<Vec<_>>()
    );
    assert_safe(&lab, &wins, &by).await;
}

/// Wait until EC2 shows at least `n` pool addresses associated (the herd is under way).
async fn until_associated(lab: &Lab, n: usize) {
    eventually("the herd to get going", Duration::from_secs(60), || async {
        let state = lab.ec2.pool_state(&lab.pool).await.ok()?;
        (state
            .values()
            .filter(|e| e.association_id.is_some())
            .count()
            >= n)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_herd() {
    redis_fault_scenario(
        "Redis restarted empty mid-herd",
        async |lab: &mut Lab, _tcp: &TcpFault| {
            until_associated(lab, 6).await;
            lab.redis.restart_empty().unwrap();
            println!("  restarted Redis (empty) once 6 addresses were associated");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_black_holed_mid_herd() {
    redis_fault_scenario(
        "Redis black-holed mid-herd",
        async |lab: &mut Lab, tcp: &TcpFault| {
            until_associated(lab, 6).await;
            tcp.set(Mode::BlackHole);
            println!("  black-holed Redis once 6 addresses were associated");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slower_than_its_timeout() {
    redis_fault_scenario(
        "Redis slower than its timeout",
        async |_lab: &mut Lab, tcp: &TcpFault| {
            tcp.set(Mode::Slow(Duration::from_millis(1_500)));
            println!("  every Redis round trip delayed 1.5 s (eipool's Redis timeout is 1 s)");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associate_applied_but_answer_lost_is_kept_or_given_back_never_leaked() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(13).await.unwrap();
    let by = bystanders(&lab, &nodes[12]).await;
    lab.ec2.allocate(Some(&lab.pool), 12).await.unwrap();
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            p_lose_response: 0.5,
            // Twelve throws of 0.5 once all kept their answer (1 run in 4096): the first is lost
            // anyway, so the scenario always has a lost answer.
            lose_first: 1,
            fault_actions: ["AssociateAddress".to_string()].into(),
            stale_window: Duration::from_secs(1),
            ..ChaosConfig::default()
        },
    )
    .await;
    let (outcomes, took) = herd(
        &lab.env,
        runs(&lab, &lab.redis.url(), &nodes[..12], &["--timeout", "90s"]),
    )
    .await;
    let stats = proxy.stats();
    report(
        "AssociateAddress applied but its answer lost (50%)",
        "answer dropped after moto applied it; 1 s stale describes",
        &outcomes,
        Some(&stats),
        took,
    );
    assert!(
        stats.get("AssociateAddress", "response_lost") > 0,
        "nothing was lost: {stats:?}"
    );
    let wins = successes(&outcomes);
    assert_eq!(
        wins.len(),
        12,
        "I4: everyone gets an address: {:#?}",
        failures(&outcomes)
    );
    assert_safe(&lab, &wins, &by).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_cut_mid_herd() {
    redis_fault_scenario("Redis connections cut mid-herd", async |lab: &mut Lab, tcp: &TcpFault| {
        until_associated(lab, 6).await;
        tcp.set(Mode::Cut);
        println!("  cut every Redis connection (and refused new ones) once 6 addresses were associated");
    })
    .await;
}

/// 20 claimers for 20 addresses through EC2 faulting as `config` says: everyone must still get an
/// address before the deadline, safely. `outcome` is the proxy's name for the injected answer.
async fn ec2_fault_scenario(name: &str, injected: &str, config: ChaosConfig, outcome: &str) {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(21).await.unwrap();
    let by = bystanders(&lab, &nodes[20]).await;
    lab.ec2.allocate(Some(&lab.pool), 20).await.unwrap();
    let proxy = proxied(&mut lab, config).await;
    let (outcomes, took) = herd(
        &lab.env,
        runs(&lab, &lab.redis.url(), &nodes[..20], &["--timeout", "60s"]),
    )
    .await;
    let stats: Stats = proxy.stats();
    report(name, injected, &outcomes, Some(&stats), took);
    assert!(
        stats.outcome(outcome) > 0,
        "nothing was injected: {stats:?}"
    );
    let wins = successes(&outcomes);
    assert_eq!(
        wins.len(),
        20,
        "I4: everyone succeeds before the deadline: {:#?}",
        failures(&outcomes)
    );
    assert_safe(&lab, &wins, &by).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_of_ec2_calls_failing_with_5xx_still_lets_everyone_claim_in_time() {
    let config = ChaosConfig {
        p_5xx: 0.2,
        ..ChaosConfig::default()
    };
    ec2_fault_scenario(
        "20% of EC2 calls answered 5xx",
        "InternalError (HTTP 500) on 20% of all calls",
        config,
        "5xx",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_on_a_sixth_of_ec2_calls_still_lets_everyone_claim_in_time() {
    let config = ChaosConfig {
        p_reset: 0.15,
        ..ChaosConfig::default()
    };
    ec2_fault_scenario(
        "15% of EC2 connections reset",
        "connection closed without an answer, nothing forwarded",
        config,
        "reset",
    )
    .await;
}

/// Poll `probe` until it holds, or panic with `what` after `within` (the proxy's counts).
async fn until(what: &str, within: Duration, probe: impl Fn() -> bool) {
    eventually(what, within, || {
        let held = probe();
        async move { held.then_some(()) }
    })
    .await
}

/// A re-run told by Redis it was taking an address finds it `AlreadyAssociated` (someone else's),
/// and before it can see who holds it, the holder lets go: EC2 then shows it free for good. The
/// claim stops looking for itself as the holder after EC2's consistency bound and claims an
/// address, instead of polling EC2 until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lets_go_before_the_claim_looks_does_not_hold_the_claim_up() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    let eips = lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let first = &eips[0].allocation_id;
    let other = lab
        .ec2
        .associate_external(first, &nodes[1].eni)
        .await
        .unwrap();
    // Every EC2 call takes a second: the holder lets go between the answer and the first look.
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            latency: Duration::from_secs(1),
            ..ChaosConfig::default()
        },
    )
    .await;
    // A crashed run of ours was taking it.
    let me = &nodes[0];
    let _: () = redis::cmd("SET")
        .arg(lab.key(&format!("iface:{}/{}", me.eni, me.private_ip)))
        .arg(first)
        .arg("EX")
        .arg(60)
        .query_async(&mut lab.redis_conn().await)
        .await
        .unwrap();
    let (env, _imds) = lab.node_imds(me).await;
    let claim = {
        let args = lab.with_redis(&["claim", "--timeout", "40s"]);
        tokio::spawn(async move { env.run(&args).await })
    };
    until(
        "AlreadyAssociated for the first address",
        Duration::from_secs(30),
        || proxy.stats().get("AssociateAddress", "error") > 0,
    )
    .await;
    lab.ec2.disassociate(&other).await.unwrap();
    let o = claim.await.unwrap();
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert_eq!(r.network_interface_id, me.eni, "{o}");
}

/// A claim whose AssociateAddress answers are all lost runs out of time; the first look at what
/// it may have associated is throttled. It looks again, and takes the address off its interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_look_does_not_leave_a_maybe_made_association_behind() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            p_lose_response: 1.0,
            fault_actions: ["AssociateAddress".to_string()].into(),
            ..ChaosConfig::default()
        },
    )
    .await;
    let me = nodes[0].clone();
    let claim = {
        let args = lab.claim_args(&me, &["--timeout", "10s"]);
        let env = lab.env.clone();
        tokio::spawn(async move { env.run(&args).await })
    };
    // The association is made, its answer lost: from now on every AssociateAddress and every
    // DescribeAddresses is throttled, so the claim retries until its deadline, then looks.
    until(
        "an AssociateAddress answer lost",
        Duration::from_secs(30),
        || proxy.stats().get("AssociateAddress", "response_lost") > 0,
    )
    .await;
    proxy.reconfigure(|c| {
        c.p_lose_response = 0.0;
        c.p_throttle = 1.0;
        c.fault_actions = ["AssociateAddress", "DescribeAddresses"]
            .map(String::from)
            .into();
    });
    // Its first look is throttled; EC2 answers again after that.
    until(
        "the look after the deadline",
        Duration::from_secs(30),
        || proxy.stats().get("DescribeAddresses", "throttled") > 0,
    )
    .await;
    proxy.reconfigure(|c| c.p_throttle = 0.0);
    let o = claim.await.unwrap();
    assert_eq!(o.code, Some(75), "{o}");
    let held = lab.ec2.addresses_on(&me.eni).await.unwrap();
    assert!(held.is_empty(), "left on the interface: {held:?}\n{o}");
}

/// A claim looking at what its private IP holds while the node's IMDS hangs still stops at once
/// on SIGTERM (exit 130), rather than when IMDS's own timeouts run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_claim_waiting_on_a_wedged_imds() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let (env, imds) = lab.node_imds(&nodes[0]).await;
    imds.wedge_public_addresses(true);
    let child = env
        .command(&lab.with_redis(&["claim", "--timeout", "60s"]))
        .spawn()
        .unwrap();
    until(
        "the claim asking IMDS what its private IP holds",
        Duration::from_secs(30),
        || imds.public_requests() > 0,
    )
    .await;
    let signalled = Instant::now();
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let took = signalled.elapsed();
    let o = eipool_lab::claimer::Outcome::from_output(&[], out);
    assert_eq!(o.code, Some(130), "{o}");
    // IMDS's own read timeout is 2 s; a signal must not wait for it.
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?} to stop it: {o}"
    );
}

/// EC2's answer to AssociateAddress names one association; by the time validation looks, the
/// address sits on our private IP under another (re-associated by hand). The report, the env
/// file and the holder tag all name the association EC2 shows, so `release --env-file` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reported_association_is_the_one_validation_saw() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eip = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);
    // Every call takes a second: room to re-associate between the answer and the first look.
    let _proxy = proxied(
        &mut lab,
        ChaosConfig {
            latency: Duration::from_secs(1),
            ..ChaosConfig::default()
        },
    )
    .await;
    let me = nodes[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let claim = {
        let args = lab.claim_args(&me, &["--output", env_file.to_str().unwrap()]);
        let env = lab.env.clone();
        tokio::spawn(async move { env.run(&args).await })
    };
    let ec2 = &lab.ec2;
    let first = crate::harness::eventually(
        "the claim's association",
        Duration::from_secs(30),
        || async {
            ec2.addresses(std::slice::from_ref(&eip.allocation_id))
                .await
                .ok()?
                .remove(0)
                .association_id
        },
    )
    .await;
    ec2.disassociate(&first).await.unwrap();
    let second = ec2
        .associate_external_at(&eip.allocation_id, &me.eni, &me.private_ip)
        .await
        .unwrap();
    let o = claim.await.unwrap();
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert_ne!(first, second);
    assert_eq!(r.association_id, second, "{o}");
    let written = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        written.contains(&format!("EIPOOL_ASSOCIATION_ID={second}")),
        "{written}"
    );
    // The env file's association is the one release finds.
    let o = lab
        .release(&me, &["--env-file", env_file.to_str().unwrap()])
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    let held = ec2.addresses_on(&me.eni).await.unwrap();
    assert!(
        held.is_empty(),
        "release --env-file skipped it: {held:?}\n{o}"
    );
}

/// SIGSTOP the claim `pid` once it holds `me`'s interface lease and waits for its turn in the
/// herd's AssociateAddress pace (`waiting` says at which step), then wait until that lease ran
/// out in Redis.
async fn pause_past_its_interface_lease(lab: &Lab, pid: &str, me: &Node, waiting: &str) {
    let key = lab.key(&format!("iface-lease:{}/{}", me.eni, me.private_ip));
    let conn = lab.redis_conn().await;
    let held = || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            let n: u64 = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 1
        }
    };
    eventually(waiting, Duration::from_secs(30), || async {
        (lab.pace_tickets("mutating").await == 1 && held().await).then_some(())
    })
    .await;
    std::process::Command::new("kill")
        .args(["-STOP", pid])
        .status()
        .unwrap();
    eventually(
        "the paused claim's interface lease to run out",
        Duration::from_secs(30),
        || async { (!held().await).then_some(()) },
    )
    .await;
}

/// The model's counterexample (docs/model.md, "What it found"), in the lab: a claim paused past
/// its interface lease while it waits for its AssociateAddress slot; meanwhile a re-run of the
/// same interface takes the lapsed lease, claims and reports an address. Resumed, the paused
/// claim must not associate another address to the private IP (AWS's replace rule would take
/// the re-run's away): it finds the interface lease lost, takes it again and adopts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_paused_past_its_interface_lease_never_displaces_the_reruns_address() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let lease = ["--lease", "5s", "--call-timeout", "1500ms"];
    // The herd's AssociateAddress slots are taken for the next 4 s (the next ticket's virtual
    // time = now + the pace's burst tolerance, 44 × 200 ms, + 4 s): the first claim waits there
    // for its turn, holding its interface lease.
    lab.reserve_pace("mutating", 8_800 + 4_000).await;
    let paused = lab
        .env
        .command(&lab.claim_args(&nodes[0], &lease))
        .spawn()
        .unwrap();
    let pid = paused.id().unwrap().to_string();
    pause_past_its_interface_lease(
        &lab,
        &pid,
        &nodes[0],
        "the first claim to hold its interface lease, waiting for its turn to associate",
    )
    .await;

    // The re-run claims and reports an address.
    let rerun = lab.claim(&nodes[0], &lease).await;
    let theirs = rerun.report().unwrap_or_else(|| panic!("re-run: {rerun}"));

    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    let out = paused.wait_with_output().await.unwrap();
    let resumed = eipool_lab::claimer::Outcome::from_output(&[], out);
    println!("--- resumed: {}", resumed.stderr);

    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let on_node: Vec<&String> = state
        .iter()
        .filter(|(_, e)| e.eni.as_deref() == Some(nodes[0].eni.as_str()))
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        on_node,
        vec![&theirs.allocation_id],
        "the re-run's address stays on the interface, alone: {state:#?}"
    );
    let ours = resumed
        .report()
        .unwrap_or_else(|| panic!("resumed: {resumed}"));
    assert_eq!(
        ours.allocation_id, theirs.allocation_id,
        "it adopts: {resumed}"
    );
}

/// The same pause, after the association: a claim whose AssociateAddress applied but whose
/// answers are all lost stays in doubt (it waits for its next AssociateAddress slot) and is
/// paused past its interface lease. A re-run of the same interface finds that association on its
/// private IP, adopts it and reports it. Then the paused claim is told to stop: it looks for
/// ours and sees that very association, but no longer holds the interface lease, so it must
/// warn and leave it (`MayGiveBack`), not give back the re-run's reported address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stopped_in_doubt_after_its_interface_lease_ran_out_leaves_the_reruns_address() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let me = &nodes[0];
    // The paused claim's own EC2: each AssociateAddress applies, its answer is lost.
    let lossy = ChaosProxy::start(
        &moto().endpoint,
        ChaosConfig {
            p_lose_response: 1.0,
            fault_actions: ["AssociateAddress".to_string()].into(),
            ..ChaosConfig::aws_like_moto()
        },
    )
    .await
    .unwrap();
    let mut env = lab.env.clone();
    env.ec2_endpoint = lossy.endpoint.clone();
    let lease = ["--lease", "5s", "--call-timeout", "1500ms"];
    let paused = env
        .command(&lab.claim_args(me, &[&lease[..], &["--timeout", "120s"]].concat()))
        .spawn()
        .unwrap();
    let pid = paused.id().unwrap().to_string();
    let ec2 = &lab.ec2;
    eventually(
        "the first claim's AssociateAddress applied, its answer lost",
        Duration::from_secs(30),
        || async {
            if lossy.stats().get("AssociateAddress", "response_lost") == 0 {
                return None;
            }
            ec2.addresses_on(&me.eni).await.ok()?.pop()
        },
    )
    .await;
    // In doubt, it retries AssociateAddress in the herd's pace: hold its next slot far off (the
    // pace's burst tolerance, 44 × 200 ms, + 50 s) so that it waits there, in doubt.
    lab.reserve_pace("mutating", 8_800 + 50_000).await;
    pause_past_its_interface_lease(
        &lab,
        &pid,
        me,
        "the first claim, in doubt, waiting for its next AssociateAddress slot",
    )
    .await;
    // What the paused claim left on its private IP: a retry in doubt that took its slot before
    // the pace was held off (a loaded machine) associated again, under a new association id.
    let applied = ec2
        .addresses_on(&me.eni)
        .await
        .unwrap()
        .pop()
        .expect("the paused claim's association on its private IP");

    // The re-run (EC2 answering it) adopts the association on its private IP and reports it.
    let rerun = lab.claim(me, &lease).await;
    let theirs = rerun.report().unwrap_or_else(|| panic!("re-run: {rerun}"));
    assert_eq!(
        (&theirs.allocation_id, Some(&theirs.association_id)),
        (&applied.allocation_id, applied.association_id.as_ref()),
        "the re-run adopts the paused claim's association: {rerun}"
    );

    // Stopped while paused: it resumes to the signal.
    for signal in ["-TERM", "-CONT"] {
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
    }
    let out = paused.wait_with_output().await.unwrap();
    let stopped = eipool_lab::claimer::Outcome::from_output(&[], out);
    println!(
        "  AssociateAddress answers lost to the paused claim: {}",
        lossy.stats().get("AssociateAddress", "response_lost")
    );
    println!("--- stopped: {}", stopped.stderr);

    let on_node = lab.ec2.addresses_on(&me.eni).await.unwrap();
    let on_node: Vec<(&str, Option<&str>)> = on_node
        .iter()
        .map(|e| (e.allocation_id.as_str(), e.association_id.as_deref()))
        .collect();
    assert_eq!(
        on_node,
        vec![(
            theirs.allocation_id.as_str(),
            Some(theirs.association_id.as_str())
        )],
        "the re-run's reported association stays on the interface, alone\nstopped: {stopped}"
    );
    assert!(
        stopped
            .stderr
            .contains("the interface lease ran out while this claim was stopping"),
        "the stopped claim says it left the address: {stopped}"
    );
    assert_eq!(stopped.code, Some(130), "{stopped}");
}

/// A herd that reaches its deadline while waiting for its AssociateAddress slots sent no
/// AssociateAddress: nothing of it can be on any interface, so it stops without looking
/// (issue 35: each claim made about five unpaced DescribeAddresses, a burst on EC2's describe
/// bucket exactly when a herd gives up at once). It gives its leases back and exits 75.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_out_of_time_before_associating_spend_no_describe_calls_on_cleanup() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    // The herd's AssociateAddress turns are taken for the next minute (the next ticket's virtual
    // time = now + the pace's burst tolerance, 44 × 200 ms, + 60 s): the claims wait there for
    // their turn, an interface lease each, until the end.
    lab.reserve_pace("mutating", 8_800 + 60_000).await;
    let runs: Vec<(String, Vec<String>)> = nodes
        .iter()
        .map(|n| (n.eni.clone(), lab.claim_args(n, &["--timeout", "20s"])))
        .collect();
    let env = lab.env.clone();
    let claims = tokio::spawn(async move { herd(&env, runs).await });
    let conn = lab.redis_conn().await;
    let keys = |pattern: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("KEYS")
                .arg(&pattern)
                .query_async::<Vec<String>>(&mut conn)
                .await
                .unwrap_or_default()
        }
    };
    let (leases, iface_leases) = (lab.key("claim:*"), lab.key("iface-lease:*"));
    let n = nodes.len();
    eventually(
        "every claim to wait for its turn to associate, holding its interface lease",
        Duration::from_secs(30),
        || async {
            (lab.pace_tickets("mutating").await == n as u64
                && keys(iface_leases.clone()).await.len() == n)
                .then_some(())
        },
    )
    .await;
    let before = lab.proxy.stats();
    let (outcomes, _) = claims.await.unwrap();
    let after = lab.proxy.stats();
    for (eni, o) in &outcomes {
        assert_eq!(o.code, Some(75), "{eni}: {o}");
    }
    assert_eq!(after.calls("AssociateAddress"), 0, "{}", after.table());
    assert_eq!(
        after.calls("DescribeAddresses"),
        before.calls("DescribeAddresses"),
        "describe calls after the claims stopped waiting:\n{}",
        after.table()
    );
    let left = [keys(leases).await, keys(iface_leases).await].concat();
    assert!(left.is_empty(), "leases left: {left:?}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "{state:?}"
    );
}

/// AWS replaces the Elastic IP on a private IP that another association targets: a claim whose
/// fresh association is replaced before validation sees it finds the address free again
/// (`GiveBack::Displaced`). That address came free: the pool's line learns it (`line:freed`),
/// as from every other path that gives one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_association_displaced_during_validation_wakes_the_pools_line() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let ours = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);
    let theirs = lab.ec2.allocate(None, 1).await.unwrap().remove(0);
    // Describes by allocation id answer from before the claim's association for 4 s: time to
    // replace it before validation can see it.
    let _proxy = proxied(
        &mut lab,
        ChaosConfig {
            stale_window: Duration::from_secs(4),
            ..ChaosConfig::default()
        },
    )
    .await;
    let me = nodes[0].clone();
    let claim = {
        let args = lab.claim_args(&me, &[]);
        let env = lab.env.clone();
        tokio::spawn(async move { env.run(&args).await })
    };
    let ec2 = &lab.ec2;
    eventually(
        "the claim's association",
        Duration::from_secs(30),
        || async {
            ec2.addresses(std::slice::from_ref(&ours.allocation_id))
                .await
                .ok()?
                .remove(0)
                .association_id
        },
    )
    .await;
    // Someone associates another Elastic IP to the same private IP, as AWS does it (through the
    // lab's proxy): ours is disassociated.
    lab.aws
        .associate_external_at(&theirs.allocation_id, &me.eni, &me.private_ip)
        .await
        .unwrap();
    let o = claim.await.unwrap();
    assert!(
        o.stderr.contains("our association was replaced"),
        "validation did not see the replacement: {o}"
    );
    assert_ne!(
        o.report().map(|r| r.allocation_id),
        Some(ours.allocation_id.clone()),
        "reported a replaced address: {o}"
    );
    let mut conn = lab.redis_conn().await;
    let freed: Option<u64> = redis::cmd("GET")
        .arg(lab.key("line:freed"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(freed >= Some(1), "the line was not woken: {freed:?}\n{o}");
}

/// Another cluster (its own Redis) took every address of the pool a moment after this herd
/// listed it, and EC2's AssociateAddress bucket is nearly empty (one call every 2 s gets
/// through). The claim starts from its herd's listing, which shows the pool free: the first
/// address it tries is taken by someone its Redis does not know of, so it lists the pool
/// itself at once rather than trying the rest blind, one throttled call each (which took past
/// its deadline: exit 75). Its own listing shows every address taken: the pool is exhausted,
/// and it says so (69), throttled as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_another_cluster_filled_is_told_exhausted_while_ec2_throttles() {
    let mut lab = Lab::new().await;
    let size = 8;
    let nodes = lab.ec2.nodes(size + 1).await.unwrap();
    let eips = lab.ec2.allocate(Some(&lab.pool), size).await.unwrap();
    // The herd's listing, made before the other cluster took the addresses.
    let stale: Vec<eipool::model::Address> = eips
        .iter()
        .map(|e| eipool::model::Address {
            allocation_id: e.allocation_id.parse().unwrap(),
            public_ip: e.public_ip.parse().unwrap(),
            association: None,
            pool: Some(lab.pool.clone()),
            holder: None,
        })
        .collect();
    for (e, other) in eips.iter().zip(&nodes[1..]) {
        lab.ec2
            .associate_external(&e.allocation_id, &other.eni)
            .await
            .unwrap();
    }
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            mutating: Some(Bucket {
                burst: 1.0,
                per_second: 0.5,
            }),
            ..ChaosConfig::default()
        },
    )
    .await;
    crate::harness::redis_as(&lab.redis.url(), &lab.pool, "herd")
        .share_listing(Some(&stale), Duration::from_secs(5))
        .await
        .unwrap();

    let o = lab.claim(&nodes[0], &["--timeout", "10s"]).await;
    let stats = proxy.stats();
    println!("{o}\n{}", stats.table());
    assert_eq!(o.code, Some(69), "{o}");
    assert!(o.stderr.contains("exhausted"), "{o}");
    assert_eq!(
        stats.get("AssociateAddress", "error"),
        1,
        "{}",
        stats.table()
    );
    assert!(lab
        .ec2
        .addresses_on(&nodes[0].eni)
        .await
        .unwrap()
        .is_empty());
}

/// The pool's one address was busy for a moment (another claimer's lease in Redis), then free,
/// but EC2 throttles every AssociateAddress until the deadline. The pass that found it busy is
/// not the last word: the claim ends in a temporary failure (75), never "all 1 taken, grow the
/// pool" (69), which would have an operator allocate addresses customers must allow-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_address_throttled_until_the_deadline_is_not_told_exhausted() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eip = lab
        .ec2
        .allocate(Some(&lab.pool), 1)
        .await
        .unwrap()
        .remove(0);
    let _: () = redis::cmd("SET")
        .arg(lab.key(&format!("claim:{}", eip.allocation_id)))
        .arg("another-claimer|1")
        .arg("PX")
        .arg(3_000)
        .query_async(&mut lab.redis_conn().await)
        .await
        .unwrap();
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            mutating: Some(Bucket {
                burst: 0.0,
                per_second: 0.0,
            }),
            ..ChaosConfig::default()
        },
    )
    .await;
    let o = lab.claim(&nodes[0], &["--timeout", "15s"]).await;
    let stats = proxy.stats();
    println!("{o}\n{}", stats.table());
    assert!(
        stats.get("AssociateAddress", "throttled") > 0,
        "the address was never tried: {}",
        stats.table()
    );
    assert_eq!(o.code, Some(75), "{o}");
    assert!(!o.stderr.contains("exhausted"), "{o}");
    assert!(lab
        .ec2
        .addresses_on(&nodes[0].eni)
        .await
        .unwrap()
        .is_empty());
}

/// EC2 throttles each action in a bucket of its own: another caller (the VPC CNI) drawing hard
/// on DescribeNetworkInterfaces throttles the herd's interface lookups, and those throttles slow
/// the herd's pace of that action, told to the whole herd through Redis, but never its pace of
/// DescribeAddresses (listings, validation), which EC2 was not throttling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_interface_lookup_slows_that_actions_pace_not_the_listings() {
    let mut lab = Lab::new().await;
    let n = 8;
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), n).await.unwrap();
    let proxy = proxied(
        &mut lab,
        ChaosConfig {
            p_throttle: 0.6,
            fault_actions: ["DescribeNetworkInterfaces".to_string()].into(),
            ..ChaosConfig::default()
        },
    )
    .await;
    let (outcomes, _) = herd(&lab.env, runs(&lab, &lab.redis.url(), &nodes, &[])).await;
    let stats = proxy.stats();
    println!("{}", stats.table());
    assert_eq!(successes(&outcomes).len(), n, "{outcomes:#?}");
    assert!(
        stats.get("DescribeNetworkInterfaces", "throttled") > 0,
        "{}",
        stats.table()
    );
    let logs: Vec<&str> = outcomes.iter().map(|(_, o)| o.stderr.as_str()).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("DescribeNetworkInterfaces pace slows")
                || l.contains("pace slows") && l.contains("class=\"describe-interfaces\"")),
        "no throttled lookup slowed the herd's DescribeNetworkInterfaces pace:\n{}",
        logs.join("\n")
    );
    assert!(
        !logs
            .iter()
            .flat_map(|l| l.lines())
            .any(|l| l.contains("pace slows") && l.contains("class=\"describe\"")),
        "a DescribeNetworkInterfaces throttle slowed the pace of DescribeAddresses:\n{}",
        logs.join("\n")
    );
}

/// A herd through an AssociateAddress bucket another caller has mostly drained (burst 5, then
/// 2/s): EC2 throttles the herd's calls, and each throttled call slows the herd's shared pace
/// in Redis (multiplicative decrease), for every claimer at once; every claim still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_throttling_slows_the_herds_shared_pace() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let n = 24;
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), n).await.unwrap();
    let mut config = aws_like();
    config.mutating = Some(Bucket {
        burst: 5.0,
        per_second: 2.0,
    });
    let proxy = proxied(&mut lab, config).await;
    let (outcomes, took) = herd(&lab.env, runs(&lab, &lab.redis.url(), &nodes, &[])).await;
    let stats = proxy.stats();
    report(
        "herd of 24 beside a caller that drained the AssociateAddress bucket",
        "AssociateAddress bucket 5, then 2/s",
        &outcomes,
        Some(&stats),
        took,
    );
    assert_eq!(successes(&outcomes).len(), n, "{outcomes:#?}");
    assert!(
        stats.get("AssociateAddress", "throttled") > 0,
        "{}",
        stats.table()
    );
    // The pace's state (`plan::PaceState`: first next an av r …): its rate was cut.
    let state: String = redis::cmd("GET")
        .arg(lab.pace_key("mutating"))
        .query_async(&mut lab.redis_conn().await)
        .await
        .unwrap();
    let fields: Vec<f64> = state.split(' ').map(|f| f.parse().unwrap()).collect();
    let (rate, cut_to) = (fields[4], fields[7]);
    assert!(cut_to < 5.0, "the pace was never cut: {state}");
    assert!(rate <= 5.0, "{state}");
    // Every claimer asked the pace before each AssociateAddress, and told it when throttled:
    // as many tickets as calls.
    let tickets = fields[1] - fields[0];
    assert!(
        tickets >= stats.calls("AssociateAddress") as f64,
        "{tickets} tickets for {} calls",
        stats.calls("AssociateAddress")
    );
}

/// Without Redis there is no herd's pace: each process paces itself, and adapts alone. Another
/// caller has just drained the AssociateAddress bucket (burst 1, then one call every 5 s): the
/// claim's call is throttled, its own pace slows (and says so), and it still gets its address
/// once the bucket refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_throttled_claim_slows_its_own_pace() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let elsewhere = lab.ec2.allocate(None, 1).await.unwrap().remove(0);
    let mut config = aws_like();
    config.mutating = Some(Bucket {
        burst: 1.0,
        per_second: 0.2,
    });
    let proxy = proxied(&mut lab, config).await;
    // The other caller's AssociateAddress takes the bucket's one call.
    eipool_lab::fixture::Ec2Lab::new(&proxy.endpoint)
        .associate_external(&elsewhere.allocation_id, &nodes[1].eni)
        .await
        .unwrap();

    let o = lab
        .env
        .run(&crate::harness::args(&[
            "--pool",
            &lab.pool,
            "--network-interface-id",
            &nodes[0].eni,
            "claim",
            "--timeout",
            "60s",
        ]))
        .await;
    let stats = proxy.stats();
    println!("{o}\n{}", stats.table());
    o.report().unwrap_or_else(|| panic!("{o}"));
    assert!(
        stats.get("AssociateAddress", "throttled") > 0,
        "{}",
        stats.table()
    );
    assert!(o.stderr.contains("this process's pace slows"), "{o}");
}

//! `eipool claim`, as a user and a herd of media servers see it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eipool_lab::check;
use eipool_lab::claimer::Outcome;
use eipool_lab::fixture::Node;
use eipool_lab::imds::{ImdsStub, NodeMeta};

use crate::harness::{args, exits, failures, heavy, herd, successes, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_then_a_rerun_adopts_it_and_changes_nothing() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();

    let first = lab.claim(&nodes[0], &[]).await;
    let r = first.report().unwrap_or_else(|| panic!("{first}"));
    assert!(!r.reused, "{first}");
    assert_eq!(r.network_interface_id, nodes[0].eni);
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = &state[&r.allocation_id];
    assert_eq!(held.eni.as_deref(), Some(nodes[0].eni.as_str()));
    assert_eq!(
        held.private_ip.as_deref(),
        Some(nodes[0].private_ip.as_str())
    );
    assert_eq!(
        held.association_id.as_deref(),
        Some(r.association_id.as_str())
    );
    assert_eq!(held.public_ip, r.public_ip);

    let again = lab.claim(&nodes[0], &[]).await;
    let r2 = again.report().unwrap_or_else(|| panic!("{again}"));
    assert!(r2.reused, "a re-run must adopt: {again}");
    assert_eq!(r2.allocation_id, r.allocation_id);
    assert_eq!(r2.association_id, r.association_id);
    assert_eq!(
        lab.ec2.pool_state(&lab.pool).await.unwrap(),
        state,
        "a re-run changed EC2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_other_pool_and_externally_held_addresses_are_never_touched() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(4).await.unwrap();
    let pool = lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let untagged = lab.ec2.allocate(None, 2).await.unwrap();
    let other = lab
        .ec2
        .allocate(Some(&format!("{}-other", lab.pool)), 2)
        .await
        .unwrap();
    // One pool address is held by an interface outside eipool's knowledge.
    lab.ec2
        .associate_external(&pool[0].allocation_id, &nodes[3].eni)
        .await
        .unwrap();

    let protected_ids: Vec<String> = untagged
        .iter()
        .chain(&other)
        .map(|e| e.allocation_id.clone())
        .chain([pool[0].allocation_id.clone()])
        .collect();
    let before = lab.ec2.addresses(&protected_ids).await.unwrap();

    let a = lab.claim(&nodes[0], &[]).await;
    let b = lab.claim(&nodes[1], &[]).await;
    let ra = a.report().unwrap_or_else(|| panic!("{a}"));
    assert_eq!(
        ra.allocation_id, pool[1].allocation_id,
        "the only free pool address"
    );
    assert_eq!(b.code, Some(69), "nothing left for the second claimer: {b}");

    let after = lab.ec2.addresses(&protected_ids).await.unwrap();
    let violations = check::untouched(&before, &after);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_exits_69_long_before_the_deadline_and_says_how_to_grow() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    for n in &nodes[..2] {
        let o = lab.claim(n, &[]).await;
        assert_eq!(o.code, Some(0), "{o}");
    }
    let started = Instant::now();
    let o = lab.claim(&nodes[2], &["--timeout", "60s"]).await;
    let took = started.elapsed();
    assert_eq!(o.code, Some(69), "{o}");
    assert!(
        took < Duration::from_secs(30),
        "exhaustion must not wait for the deadline (took {took:?})"
    );
    let msg = o.error_line();
    assert!(
        msg.contains(&lab.pool) && msg.contains("all 2 of its addresses"),
        "{msg}"
    );
    assert!(msg.contains("eipool:pool="), "says how to grow: {msg}");
    assert!(
        o.stdout.trim().is_empty(),
        "nothing on stdout when failing: {o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_exits_69_and_says_so() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let o = lab.claim(&nodes[0], &[]).await;
    assert_eq!(o.code, Some(69), "{o}");
    assert!(
        o.error_line().contains("has no addresses"),
        "{}",
        o.error_line()
    );
}

/// The issue's herd: 40 concurrent claimers, 25 addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_40_for_25_addresses_gets_25_distinct_addresses_and_15_exhausted() {
    let _turn = heavy().await;
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(40).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 25).await.unwrap();

    let runs = nodes
        .iter()
        .map(|n| (n.eni.clone(), lab.claim_args(n, &[])))
        .collect();
    let (outcomes, _) = herd(&lab.env, runs).await;

    assert!(
        failures(&outcomes).is_empty(),
        "unexpected outcomes: {:#?}",
        failures(&outcomes)
    );
    let successes = successes(&outcomes);
    let exhausted = exits(&outcomes, 69);
    assert_eq!(successes.len(), 25, "successes");
    assert_eq!(exhausted, 15, "exhausted");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let mut violations = check::no_sharing(&successes, &state);
    violations.extend(check::no_leak(&successes, &state, &BTreeSet::new()));
    assert!(violations.is_empty(), "{violations:#?}");
    let distinct: BTreeSet<_> = successes.iter().map(|(_, r)| r.public_ip.clone()).collect();
    assert_eq!(distinct.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_from_imdsv2_when_no_interface_or_instance_is_given() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let imds = ImdsStub::start(
        NodeMeta {
            instance_id: &nodes[0].instance_id,
            mac: "02:00:00:00:00:01",
            eni: &nodes[0].eni,
            local_ipv4: &nodes[0].private_ip,
        },
        &lab.ec2,
    )
    .await
    .unwrap();
    let mut env = lab.env.clone();
    env.imds_endpoint = imds.endpoint.clone();

    let o = env
        .run(&args(&[
            "--pool",
            &lab.pool,
            "--redis-url",
            &lab.redis.url(),
            "claim",
            "--timeout",
            "60s",
        ]))
        .await;
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert_eq!(r.network_interface_id, nodes[0].eni);
    assert!(
        imds.token_requests() >= 1,
        "IMDSv2 needs a session token first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_from_an_instance_id_uses_its_primary_interface() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let o = lab
        .env
        .run(&args(&[
            "--pool",
            &lab.pool,
            "--instance-id",
            &nodes[1].instance_id,
            "claim",
        ]))
        .await;
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert_eq!(r.network_interface_id, nodes[1].eni);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_writes_an_env_file_the_media_server_can_source() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eipool.env");
    let o = lab
        .claim(&nodes[0], &["--output", path.to_str().unwrap()])
        .await;
    let r = o.report().unwrap_or_else(|| panic!("{o}"));

    // Source it in a real shell, as the media container does.
    let sourced = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#". "$1" && printf '%s %s %s %s' "$EIPOOL_PUBLIC_IP" "$EIPOOL_ALLOCATION_ID" "$EIPOOL_ASSOCIATION_ID" "$EIPOOL_NETWORK_INTERFACE_ID""#)
        .arg("sh")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sourced.stdout),
        format!(
            "{} {} {} {}",
            r.public_ip, r.allocation_id, r.association_id, r.network_interface_id
        )
    );
}

/// `eipool ARGS` with its stdout closed before it writes anything (the reader went away).
async fn with_stdout_closed(lab: &Lab, args: &[String]) -> Outcome {
    let mut child = lab.env.command(args).spawn().unwrap();
    drop(child.stdout.take());
    Outcome::from_output(args, child.wait_with_output().await.unwrap())
}

/// A claim whose report nobody can read (stdout closed) must not keep an address nobody will
/// use: it gives it back and exits 74. With `--output`, the env file delivered the report: it
/// keeps the address, warns and exits 0. An address the interface held before is kept.
/// (Issue 35: it exited 70, "a bug", holding the address.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_report_cannot_be_delivered_gives_the_address_back() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    let on = |state: &std::collections::BTreeMap<String, eipool_lab::fixture::Eip>, n: &Node| {
        state
            .values()
            .filter(|e| e.eni.as_deref() == Some(n.eni.as_str()))
            .count()
    };

    let o = with_stdout_closed(&lab, &lab.claim_args(&nodes[0], &[])).await;
    assert_eq!(o.code, Some(74), "{o}");
    assert!(o.error_line().contains("given back"), "{o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        on(&state, &nodes[0]),
        0,
        "kept an address nobody learnt: {o}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eipool.env");
    let o = with_stdout_closed(
        &lab,
        &lab.claim_args(&nodes[1], &["--output", path.to_str().unwrap()]),
    )
    .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stderr.contains("the env file has the report"), "{o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.eni.as_deref() == Some(nodes[1].eni.as_str()))
        .unwrap_or_else(|| panic!("gave back what --output delivered: {o}"));
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains(&format!("EIPOOL_PUBLIC_IP={}", held.public_ip)),
        "{written}"
    );

    let before = lab.claim(&nodes[2], &[]).await.report().expect("claim");
    let o = with_stdout_closed(&lab, &lab.claim_args(&nodes[2], &[])).await;
    assert_eq!(o.code, Some(74), "{o}");
    assert!(o.error_line().contains("kept"), "{o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&before.allocation_id].association_id.as_deref(),
        Some(before.association_id.as_str()),
        "gave back what the interface held before: {o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_output_is_refused_before_anything_is_claimed() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let o = lab
        .claim(&nodes[0], &["--output", "/nonexistent-dir/eipool.env"])
        .await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.error_line().contains("--output"), "{}", o.error_line());
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "claimed anyway: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_exit_2_and_name_the_flag() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let redis = lab.redis.url();
    let eni = nodes[0].eni.as_str();
    // (arguments, what the message must name)
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            args(&[
                "--pool",
                &lab.pool,
                "--network-interface-id",
                "eni-0123456789abcdef0",
                "claim",
            ]),
            "--network-interface-id",
        ),
        (
            args(&[
                "--pool",
                &lab.pool,
                "--instance-id",
                "i-0123456789abcdef0",
                "claim",
            ]),
            "--instance-id",
        ),
        (
            args(&[
                "--pool",
                &lab.pool,
                "--network-interface-id",
                eni,
                "--redis-url",
                "localhost:6379",
                "claim",
            ]),
            "--redis-url",
        ),
        (
            args(&[
                "--pool",
                "",
                "--network-interface-id",
                eni,
                "--redis-url",
                &redis,
                "claim",
            ]),
            "--pool",
        ),
        (args(&["--network-interface-id", eni, "claim"]), "--pool"),
        (
            args(&[
                "--pool",
                &lab.pool,
                "--network-interface-id",
                eni,
                "claim",
                "--timeout",
                "forever",
            ]),
            "--timeout",
        ),
        (
            args(&[
                "--pool",
                &lab.pool,
                "--network-interface-id",
                eni,
                "--private-ip",
                "10.9.9.9",
                "claim",
            ]),
            "--private-ip",
        ),
    ];
    for (a, flag) in cases {
        let o = lab.env.run(&a).await;
        assert_eq!(o.code, Some(2), "{o}");
        assert!(o.stderr.contains(flag), "message does not name {flag}: {o}");
    }
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "a refused command claimed: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_claim_still_succeeds_on_ec2_alone_unless_leases_are_required() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    lab.redis.stop(); // the URL now points at a closed port

    let o = lab.claim(&nodes[0], &[]).await;
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert!(o.stderr.contains("Redis unavailable"), "warns: {o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&r.allocation_id].eni.as_deref(),
        Some(nodes[0].eni.as_str())
    );

    let started = Instant::now();
    let o = lab
        .claim(&nodes[1], &["--require-leases", "--timeout", "6s"])
        .await;
    assert_eq!(o.code, Some(75), "{o}");
    assert!(o.error_line().contains("Redis"), "{}", o.error_line());
    // The timeout as given, not the part of it left before cleanup (4.8s).
    assert!(
        o.error_line().contains("within --timeout 6s"),
        "{}",
        o.error_line()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "overran its 6 s deadline: {:?}",
        started.elapsed()
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state
            .values()
            .filter(|e| e.association_id.is_some())
            .count(),
        1,
        "the claimer requiring leases took something: {state:?}"
    );
}

/// Put a listing in the pool's shared slot, as if another claimer had just made it.
async fn share_listing(lab: &Lab, listing: &[eipool::model::Address]) {
    let redis = crate::harness::redis_as(&lab.redis.url(), &lab.pool, "another-claimer");
    redis
        .share_listing(Some(listing), Duration::from_secs(60))
        .await
        .unwrap();
}

/// How `eip` would show in a listing, associated with `eni` (or free).
fn listed(lab: &Lab, eip: &eipool_lab::fixture::Eip, eni: Option<&Node>) -> eipool::model::Address {
    use eipool::model::{Address, AllocationId, Association, AssociationId, EniId};
    Address {
        allocation_id: eip.allocation_id.parse::<AllocationId>().unwrap(),
        public_ip: eip.public_ip.parse().unwrap(),
        association: eni.map(|n| Association {
            id: format!("eipassoc-5a1e{}", &n.eni[4..])
                .parse::<AssociationId>()
                .unwrap(),
            network_interface_id: Some(n.eni.parse::<EniId>().unwrap()),
            private_ip: Some(n.private_ip.parse().unwrap()),
            instance_id: None,
        }),
        pool: Some(lab.pool.clone()),
        holder: None,
    }
}

/// The herd's shared listing is a hint for choosing candidates. A claimer never reports an
/// address as its own, and never says the pool is exhausted, on the strength of one: it lists the
/// pool itself first. Nor does it take an address from one that is not tagged with the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_shared_listing_never_makes_a_claimer_adopt_or_give_up() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(4).await.unwrap();
    let eips = lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();

    // A listing that says node 0 already holds eips[0]; EC2 says it is free.
    share_listing(
        &lab,
        &[
            listed(&lab, &eips[0], Some(&nodes[0])),
            listed(&lab, &eips[1], None),
            listed(&lab, &eips[2], None),
        ],
    )
    .await;
    let o = lab.claim(&nodes[0], &[]).await;
    let r = o.report().unwrap_or_else(|| panic!("{o}"));
    assert!(!r.reused, "adopted on a shared listing's word: {o}");
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&r.allocation_id].eni.as_deref(),
        Some(nodes[0].eni.as_str()),
        "reported an address EC2 does not show on the interface: {o}"
    );

    // A listing that says every pool address is held elsewhere (EC2 has two free), and offers an
    // address outside the pool as free.
    let outsider = lab.ec2.allocate(None, 1).await.unwrap().remove(0);
    let mut all_taken: Vec<_> = eips
        .iter()
        .map(|e| listed(&lab, e, Some(&nodes[3])))
        .collect();
    let mut not_ours = listed(&lab, &outsider, None);
    not_ours.pool = None;
    all_taken.push(not_ours);
    share_listing(&lab, &all_taken).await;
    let o = lab.claim(&nodes[1], &[]).await;
    assert_eq!(o.code, Some(0), "gave up on a shared listing's word: {o}");
    let outsider_now = lab
        .ec2
        .addresses(std::slice::from_ref(&outsider.allocation_id))
        .await
        .unwrap();
    assert!(
        outsider_now.iter().all(|e| e.association_id.is_none()),
        "took an address outside the pool from a shared listing: {outsider_now:?}"
    );

    // A listing of an empty pool; EC2 has one free.
    share_listing(&lab, &[]).await;
    let o = lab.claim(&nodes[2], &[]).await;
    assert_eq!(o.code, Some(0), "gave up on a shared listing's word: {o}");

    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let holders: BTreeSet<_> = state.values().filter_map(|e| e.eni.clone()).collect();
    let want: BTreeSet<_> = nodes[..3].iter().map(|n| n.eni.clone()).collect();
    assert_eq!(holders, want, "{state:#?}");
}

/// A herd shares one listing of the pool instead of each claimer listing it: the describe calls
/// are about one validation per claimer, not a listing and a validation each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_lists_the_pool_about_once() {
    let _turn = heavy().await;
    let mut lab = Lab::new().await;
    let n = 30;
    let nodes = lab.ec2.nodes(n).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), n).await.unwrap();
    // A proxy with every fault off, just to count the calls.
    let proxy = eipool_lab::chaos::ChaosProxy::start(
        &crate::harness::moto().endpoint,
        eipool_lab::chaos::ChaosConfig::aws_like_moto(),
    )
    .await
    .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();

    let runs = nodes
        .iter()
        .map(|node| (node.eni.clone(), lab.claim_args(node, &[])))
        .collect();
    let (outcomes, _) = herd(&lab.env, runs).await;
    let failures = crate::harness::failures(&outcomes);
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(crate::harness::exits(&outcomes, 0), n);

    let stats = proxy.stats();
    let describes = stats.calls("DescribeAddresses") as usize;
    // Each claimer validates once (nothing is stale here); a listing per claimer would double it.
    assert!(
        describes < n + n / 2,
        "{describes} DescribeAddresses for {n} claimers:\n{}",
        stats.table()
    );
    println!(
        "--- a herd of {n} lists the pool about once: {describes} DescribeAddresses in all\n{}",
        stats.table()
    );
}

/// Flag mode (`--network-interface-id`) looks its interface up once: the identity's
/// DescribeNetworkInterfaces also tells what our private IP holds, when no claim of this
/// interface can have changed that since (the interface lease is held in Redis and Redis recalls
/// no intent). A re-run that Redis recalls, or a claim without Redis, looks again before
/// associating (AWS would replace an address already there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_mode_describes_its_interface_once_unless_it_may_have_changed_since() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 3).await.unwrap();
    let proxy = &lab.proxy;
    let calls = |action: &'static str| {
        let stats = proxy.stats();
        move || proxy.stats().calls(action) - stats.calls(action)
    };

    let (describes, all) = (calls("DescribeNetworkInterfaces"), lab.proxy.stats());
    let o = lab.claim(&nodes[0], &[]).await;
    o.report().unwrap_or_else(|| panic!("{o}"));
    let stats = lab.proxy.stats();
    let total: u64 = stats.0.values().sum::<u64>() - all.0.values().sum::<u64>();
    println!(
        "--- one flag-mode claim: {total} EC2 calls\n{}",
        stats.table()
    );
    assert_eq!(describes(), 1, "{}", stats.table());
    // The interface, a listing, AssociateAddress, one validation, the holder tag (in a herd the
    // listing is shared: about 4 per claim, the benchmark's flag-mode row).
    assert!(
        total <= 5,
        "{total} EC2 calls for one claim:\n{}",
        stats.table()
    );

    // Redis recalls what this interface was taking (a re-run after a crash): look again.
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let free = state.iter().find(|(_, e)| e.eni.is_none()).unwrap().0;
    let mut conn = lab.redis_conn().await;
    let intent = eipool::redis::key(
        &lab.pool,
        &format!("iface:{}/{}", nodes[1].eni, nodes[1].private_ip),
    );
    let _: () = redis::cmd("SET")
        .arg(&intent)
        .arg(free)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let describes = calls("DescribeNetworkInterfaces");
    let o = lab.claim(&nodes[1], &[]).await;
    o.report().unwrap_or_else(|| panic!("{o}"));
    assert_eq!(describes(), 2, "a recalled intent must look again: {o}");

    // Without Redis, claims of one interface are not serialized: look again.
    let describes = calls("DescribeNetworkInterfaces");
    let no_redis = args(&[
        "--pool",
        &lab.pool,
        "--network-interface-id",
        &nodes[2].eni,
        "claim",
    ]);
    let o = lab.env.run(&no_redis).await;
    o.report().unwrap_or_else(|| panic!("{o}"));
    assert_eq!(
        describes(),
        2,
        "without Redis the claim must look again: {o}"
    );
}

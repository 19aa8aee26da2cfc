//! A rolling upgrade, as an operator runs one during a scale-out: the previous release's `eipool`
//! (built from git by `scripts/previous-release`) and this one claim from one pool through one
//! Redis at the same time, and release each other's addresses. What each version does with the
//! other's Redis records is the table in ARCHITECTURE.md ("Across versions").

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use eipool_lab::check;
use eipool_lab::claimer::{LabEnv, Outcome};
use eipool_lab::fixture::Node;

use crate::harness::{failures, heavy, mixed_herd, report, successes, workspace, Lab};

/// The previous release's binary: `EIPOOL_PREVIOUS_BIN` (the test command builds it first), or
/// built here by the same script (minutes, once; cached under `target/previous/`).
fn previous_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("EIPOOL_PREVIOUS_BIN") {
            return PathBuf::from(p);
        }
        let out = std::process::Command::new(workspace().join("scripts/previous-release"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/previous-release");
        assert!(out.status.success(), "scripts/previous-release failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The lab's environment, running the previous release's binary.
fn previous(lab: &Lab) -> LabEnv {
    LabEnv {
        eipool: previous_binary().clone(),
        ..lab.env.clone()
    }
}

/// Which version claims for `node`: every other one is the previous release.
fn version_of(i: usize) -> &'static str {
    if i % 2 == 0 {
        "previous"
    } else {
        "current"
    }
}

/// `eipool release` for `node`, by `env`'s binary.
async fn release(env: &LabEnv, lab: &Lab, node: &Node) -> Outcome {
    env.run(&lab.with_redis(&["--network-interface-id", &node.eni, "release"]))
        .await
}

/// The rollout: 30 claimers, alternating previous and current, for 20 addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_herd_of_30_for_20_gets_20_distinct_addresses_and_10_exhausted() {
    let old = previous_binary();
    let _turn = heavy().await;
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(30).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 20).await.unwrap();
    let prev = previous(&lab);
    let runs = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let env = if version_of(i) == "previous" {
                prev.clone()
            } else {
                lab.env.clone()
            };
            (n.eni.clone(), env, lab.claim_args(n, &[]))
        })
        .collect();
    let (outcomes, took) = mixed_herd(runs).await;
    report(
        "rolling upgrade",
        &format!(
            "30 claimers alternating {} and this build, 20 addresses, one Redis",
            old.display()
        ),
        &outcomes,
        None,
        took,
    );
    for version in ["previous", "current"] {
        let mine: Vec<_> = outcomes
            .iter()
            .enumerate()
            .filter(|(i, _)| version_of(*i) == version)
            .map(|(_, o)| o.1.code)
            .collect();
        println!("  {version}: exits {mine:?}");
    }

    assert!(failures(&outcomes).is_empty(), "{:#?}", failures(&outcomes));
    let won = successes(&outcomes);
    let exhausted = outcomes.iter().filter(|(_, o)| o.code == Some(69)).count();
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let mut violations = check::no_sharing(&won, &state);
    violations.extend(check::no_leak(&won, &state, &BTreeSet::new()));
    assert!(violations.is_empty(), "{violations:#?}");
    let associated = state.values().filter(|e| e.eni.is_some()).count();
    assert_eq!(
        (won.len(), exhausted, associated),
        (20, 10, 20),
        "every address claimed, and 69 only beyond the pool's size"
    );
}

/// Addresses go back and forth: each version releases what the other claimed, and the other
/// claims it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_releases_what_the_other_claimed_and_the_other_reclaims_it() {
    previous_binary();
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(3).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let (prev, cur) = (previous(&lab), lab.env.clone());
    let claim = |env: &LabEnv, node: &Node| {
        let (env, a) = (env.clone(), lab.claim_args(node, &[]));
        async move { env.run(&a).await }
    };
    let holder = |state: &std::collections::BTreeMap<String, eipool_lab::fixture::Eip>,
                  alloc: &str| state[alloc].eni.clone();

    let a = claim(&prev, &nodes[0]).await;
    let ra = a.report().unwrap_or_else(|| panic!("previous: {a}"));
    let b = claim(&cur, &nodes[1]).await;
    let rb = b.report().unwrap_or_else(|| panic!("current: {b}"));
    assert_ne!(ra.allocation_id, rb.allocation_id);
    let full = claim(&cur, &nodes[2]).await;
    assert_eq!(full.code, Some(69), "the pool is full: {full}");
    let full = claim(&prev, &nodes[2]).await;
    assert_eq!(full.code, Some(69), "the pool is full: {full}");

    // This version releases the previous one's claim; the previous one claims it at once.
    let o = release(&cur, &lab, &nodes[0]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let c = claim(&prev, &nodes[2]).await;
    let rc = c
        .report()
        .unwrap_or_else(|| panic!("previous after a release: {c}"));
    assert_eq!(rc.allocation_id, ra.allocation_id);

    // The previous one releases this version's claim; this version claims it at once.
    let o = release(&prev, &lab, &nodes[1]).await;
    assert_eq!(o.code, Some(0), "{o}");
    let d = claim(&cur, &nodes[0]).await;
    let rd = d
        .report()
        .unwrap_or_else(|| panic!("current after a release: {d}"));
    assert_eq!(rd.allocation_id, rb.allocation_id);

    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        holder(&state, &ra.allocation_id).as_deref(),
        Some(nodes[2].eni.as_str())
    );
    assert_eq!(
        holder(&state, &rb.allocation_id).as_deref(),
        Some(nodes[0].eni.as_str())
    );
}

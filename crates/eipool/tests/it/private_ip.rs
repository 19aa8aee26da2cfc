//! `--private-ip` under EC2's semantics, which moto lacks (it records every association on the
//! primary private IP): through the lab's EC2 proxy in AWS-semantics mode
//! (`eipool_lab::chaos`, `private_ips.rs`), one interface with three private IPs and a pool of
//! three. Every claim ends with its own address on its own private IP, as EC2 (the proxy) shows
//! it; `release --private-ip` gives back only its own; `status` and `gc` see each holder; an agent
//! per private IP keeps its address through another private IP's drift.

use std::collections::BTreeSet;
use std::time::Duration;

use eipool_lab::chaos::{ChaosConfig, ChaosProxy};
use eipool_lab::claimer::ClaimReport;
use eipool_lab::fixture::{Ec2Lab, Eip, Node};
use eipool_lab::imds::{ImdsStub, NodeMeta};

use crate::harness::{eventually, failures, herd, json, moto, successes, Agent, Lab};

/// A lab whose claimers reach EC2 through the AWS-semantics proxy; one node whose interface has
/// three private IPs (the primary first); a pool of `pool` addresses.
struct PrivateIpLab {
    lab: Lab,
    node: Node,
    ips: Vec<String>,
    /// EC2 as the proxy shows it (what EC2 would say).
    ec2: Ec2Lab,
    _proxy: ChaosProxy,
}

async fn private_ip_lab(pool: usize) -> PrivateIpLab {
    let mut lab = Lab::new().await;
    let node = lab.ec2.nodes(1).await.unwrap().remove(0);
    let ips = lab.ec2.add_private_ips(&node.eni, 2).await.unwrap();
    assert_eq!(ips.len(), 3, "{ips:?}");
    lab.ec2.allocate(Some(&lab.pool), pool).await.unwrap();
    let proxy = ChaosProxy::start(&moto().endpoint, ChaosConfig::aws_like_moto())
        .await
        .unwrap();
    lab.env.ec2_endpoint = proxy.endpoint.clone();
    PrivateIpLab {
        ec2: Ec2Lab::new(&proxy.endpoint),
        lab,
        node,
        ips,
        _proxy: proxy,
    }
}

impl PrivateIpLab {
    /// Each report's address is on the interface, on the private IP the report names, as EC2
    /// shows it; no two reports share an address; nothing else of the pool is associated.
    async fn assert_each_on_its_own_ip(&self, reports: &[ClaimReport]) {
        let on = self.ec2.addresses_on(&self.node.eni).await.unwrap();
        for r in reports {
            let e = on
                .iter()
                .find(|e| e.allocation_id == r.allocation_id)
                .unwrap_or_else(|| panic!("reported {r:?}, but EC2 shows {on:?}"));
            assert_eq!(
                e.private_ip.as_deref(),
                Some(r.private_ip.as_str()),
                "{on:?}"
            );
            assert_eq!(e.association_id.as_deref(), Some(r.association_id.as_str()));
        }
        let distinct: BTreeSet<&str> = reports.iter().map(|r| r.allocation_id.as_str()).collect();
        assert_eq!(distinct.len(), reports.len(), "shared: {reports:?}");
        let ips: BTreeSet<&str> = on.iter().filter_map(|e| e.private_ip.as_deref()).collect();
        assert_eq!(
            ips.len(),
            on.len(),
            "two addresses on one private IP: {on:?}"
        );
        let state = self.lab.ec2.pool_state(&self.lab.pool).await.unwrap();
        let associated = state
            .values()
            .filter(|e| e.association_id.is_some())
            .count();
        assert_eq!(associated, reports.len(), "leaked: {state:?}");
    }

    fn claim_args(&self, ip: &str) -> Vec<String> {
        self.lab.claim_args(&self.node, &["--private-ip", ip])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_claims_one_after_another_get_three_addresses_each_on_its_own_private_ip() {
    let t = private_ip_lab(3).await;
    let mut reports = Vec::new();
    for ip in &t.ips {
        let o = t.lab.run(&t.claim_args(ip)).await;
        let r = o
            .report()
            .unwrap_or_else(|| panic!("--private-ip {ip}: {o}"));
        assert_eq!(&r.private_ip, ip, "{o}");
        assert!(!r.reused, "nothing was held before: {o}");
        reports.push(r);
    }
    t.assert_each_on_its_own_ip(&reports).await;

    // Again for each: idempotent, the same address, reused.
    for (ip, first) in t.ips.iter().zip(&reports) {
        let o = t.lab.run(&t.claim_args(ip)).await;
        let again = o.report().unwrap_or_else(|| panic!("again {ip}: {o}"));
        assert_eq!(again.allocation_id, first.allocation_id, "{o}");
        assert!(again.reused, "{o}");
    }
    t.assert_each_on_its_own_ip(&reports).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_claims_at_once_from_imds_get_three_addresses_each_on_its_own_private_ip() {
    let t = private_ip_lab(3).await;
    // The node's IMDSv2 reads the node's addresses through the proxy: as EC2 maps them.
    let imds = ImdsStub::start(
        NodeMeta {
            instance_id: &t.node.instance_id,
            mac: &format!("02:00:00:00:{}", &t.node.eni[4..9]),
            eni: &t.node.eni,
            local_ipv4: &t.node.private_ip,
        },
        &t.ec2,
    )
    .await
    .unwrap();
    let mut env = t.lab.env.clone();
    env.imds_endpoint = imds.endpoint.clone();
    let runs = t
        .ips
        .iter()
        .map(|ip| {
            let a = t
                .lab
                .with_redis(&["claim", "--private-ip", ip, "--timeout", "120s"]);
            (ip.clone(), a)
        })
        .collect();
    let (outcomes, _) = herd(&env, runs).await;
    assert!(failures(&outcomes).is_empty(), "{:#?}", failures(&outcomes));
    let reports: Vec<ClaimReport> = successes(&outcomes)
        .into_iter()
        .map(|(ip, r)| {
            assert_eq!(r.private_ip, ip, "{r:?}");
            r
        })
        .collect();
    assert_eq!(reports.len(), 3, "{outcomes:#?}");
    t.assert_each_on_its_own_ip(&reports).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_with_a_private_ip_gives_back_only_its_own_and_status_and_gc_see_each_holder() {
    let t = private_ip_lab(3).await;
    let mut reports = Vec::new();
    for ip in &t.ips {
        let o = t.lab.run(&t.claim_args(ip)).await;
        reports.push(o.report().unwrap_or_else(|| panic!("{ip}: {o}")));
    }

    // status: each address assigned, on its own private IP.
    let st = json(
        &t.lab
            .run(&t.lab.with_redis(&["status", "--output", "json"]))
            .await,
    );
    assert_eq!(st["counts"]["assigned"], 3, "{st}");
    for r in &reports {
        let row = st["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["allocation_id"] == r.allocation_id.as_str())
            .unwrap_or_else(|| panic!("{st}"));
        assert_eq!(row["private_ip"], r.private_ip.as_str(), "{row}");
        assert_eq!(row["state"], "assigned", "{row}");
    }
    // gc: the node is running, every holder alive: nothing to free.
    let o = t.lab.run(&t.lab.with_redis(&["gc", "--apply"])).await;
    assert_eq!(o.code, Some(0), "{o}");
    t.assert_each_on_its_own_ip(&reports).await;

    // release --private-ip of the middle one: only that address goes.
    let middle = &reports[1];
    let o = t
        .lab
        .release(&t.node, &["--private-ip", &middle.private_ip])
        .await;
    let r = json(&o);
    let released: Vec<&str> = r["released"]
        .as_array()
        .unwrap_or_else(|| panic!("{o}"))
        .iter()
        .filter_map(|x| x["allocation_id"].as_str())
        .collect();
    assert_eq!(released, vec![middle.allocation_id.as_str()], "{o}");
    let kept = [reports[0].clone(), reports[2].clone()];
    t.assert_each_on_its_own_ip(&kept).await;

    // The freed private IP claims again, and gets an address of its own.
    let o = t.lab.run(&t.claim_args(&middle.private_ip)).await;
    let again = o.report().unwrap_or_else(|| panic!("{o}"));
    t.assert_each_on_its_own_ip(&[kept[0].clone(), again, kept[1].clone()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_per_private_ip_keeps_its_address_through_another_private_ips_drift() {
    let t = private_ip_lab(3).await;
    let dir = tempfile::tempdir().unwrap();
    let agents: Vec<Agent> = t
        .ips
        .iter()
        .map(|ip| Agent::start_for_private_ip(&t.lab, &t.node, ip, dir.path()))
        .collect();
    for a in &agents {
        eventually("each agent to be ready", Duration::from_secs(60), || {
            a.ready()
        })
        .await;
    }
    let held = t.ec2.addresses_on(&t.node.eni).await.unwrap();
    let on_ip = |ip: &str| -> Eip {
        held.iter()
            .find(|e| e.private_ip.as_deref() == Some(ip))
            .unwrap_or_else(|| panic!("nothing on {ip}: {held:?}"))
            .clone()
    };
    for (a, ip) in agents.iter().zip(&t.ips) {
        assert_eq!(a.public_ip(), on_ip(ip).public_ip, "the env file of {ip}");
    }

    // The last private IP's address is disassociated by hand: its agent notices and claims
    // again; the others keep theirs and count no drift.
    let lost = on_ip(&t.ips[2]);
    t.ec2
        .disassociate(lost.association_id.as_deref().unwrap())
        .await
        .unwrap();
    eventually(
        "the drifted agent to hold an address on its private IP again",
        Duration::from_secs(30),
        || async {
            let now = t.ec2.addresses_on(&t.node.eni).await.ok()?;
            now.iter()
                .any(|e| e.private_ip.as_deref() == Some(t.ips[2].as_str()))
                .then_some(())
        },
    )
    .await;
    eventually(
        "the drifted agent to be ready",
        Duration::from_secs(30),
        || agents[2].ready(),
    )
    .await;
    assert!(agents[2].metric("eipool_drift_total").await >= 1.0);
    for (a, ip) in agents.iter().zip(&t.ips).take(2) {
        assert!(a.ready().await.is_some(), "{ip} stays ready");
        assert_eq!(a.metric("eipool_drift_total").await, 0.0, "{ip}");
        assert_eq!(a.public_ip(), on_ip(ip).public_ip, "{ip} keeps its address");
    }
    let now = t.ec2.addresses_on(&t.node.eni).await.unwrap();
    let ips: BTreeSet<&str> = now.iter().filter_map(|e| e.private_ip.as_deref()).collect();
    assert_eq!(ips.len(), 3, "one address per private IP: {now:?}");
}

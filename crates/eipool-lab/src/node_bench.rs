//! Node mode's row of the benchmark: node start → taint removed. N `eipool node` processes
//! (one per node, identity from IMDSv2, the real kube-rs client) start at once against moto
//! through the AWS-like chaos proxy (the herd benchmark's: throttling, 100 ± 50 ms latency, 1 s
//! stale), a fresh Redis, and the lab's Kubernetes API emulator holding one tainted Node each.
//! Each node's time is from its process's spawn to the emulator storing the patch that removed
//! its startup taint.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::bench::quantile;
use crate::chaos::{ChaosConfig, ChaosProxy};
use crate::claimer::LabEnv;
use crate::fixture::Ec2Lab;
use crate::imds::{ImdsStub, NodeMeta};
use crate::kube_api::KubeApi;
use crate::servers::{Moto, RedisServer};

const TAINT: &str = "eipool.io/unassigned";

/// One measured herd.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// Nodes started at once (one address each).
    pub nodes: usize,
    /// Seconds from each node pod's start to its taint's removal, sorted.
    pub untainted_s: Vec<f64>,
}

impl NodeRow {
    /// `| N | p50 | p99 | max |` in seconds.
    pub fn markdown(&self) -> String {
        let q = |p| quantile(&self.untainted_s, p);
        format!(
            "| node mode: node start → taint removed | {} | {:.2} | {:.2} | {:.2} |",
            self.nodes,
            q(0.5),
            q(0.99),
            q(1.0)
        )
    }
}

/// Start `nodes` node pods at once, one address each, in moto `region`; measure each.
pub async fn run(moto: &Moto, eipool: &Path, nodes: usize, region: &str) -> Result<NodeRow> {
    let ec2 = Ec2Lab::in_region(&moto.endpoint, region);
    let lab_nodes = ec2.nodes(nodes).await?;
    let pool = format!("bench-node-{nodes}");
    ec2.allocate(Some(&pool), nodes).await?;
    let redis = RedisServer::start()?;
    let proxy = ChaosProxy::start(
        &moto.endpoint,
        ChaosConfig {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            stale_window: Duration::from_secs(1),
            aws_semantics: true,
            ..ChaosConfig::default()
        }
        .aws_throttling(),
    )
    .await?;
    let api = KubeApi::start().await?;
    api.grant(
        "bench",
        "system:serviceaccount:kube-system:eipool-node",
        &["get", "patch"],
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = api.kubeconfig(dir.path(), "bench");
    let mut env = LabEnv::new(eipool, &proxy.endpoint);
    env.region = region.to_string();
    let mut stubs = Vec::new();
    let mut names = Vec::new();
    for (i, n) in lab_nodes.iter().enumerate() {
        let name = format!("node-{i}");
        api.add_node(&name, &[], &[(TAINT, "NoSchedule")]);
        names.push(name);
        let meta = NodeMeta {
            instance_id: &n.instance_id,
            mac: &format!("02:00:00:01:{:02x}:{:02x}", i / 256, i % 256),
            eni: &n.eni,
            local_ipv4: &n.private_ip,
        };
        stubs.push(ImdsStub::start(meta, &ec2).await?);
    }
    let mut children = Vec::new();
    let mut started = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let listen = format!("127.0.0.1:{}", crate::servers::free_port()?);
        let mut env = env.clone();
        env.imds_endpoint = stubs[i].endpoint.clone();
        let args: Vec<String> = [
            "--pool",
            &pool,
            "--redis-url",
            &redis.url(),
            "node",
            "--node-name",
            name,
            "--kubeconfig",
            kubeconfig.to_str().unwrap_or_default(),
            "--output",
            dir.path()
                .join(format!("{name}.env"))
                .to_str()
                .unwrap_or_default(),
            "--listen",
            &listen,
            "--interval",
            "60s",
        ]
        .map(String::from)
        .to_vec();
        let mut cmd = env.command(&args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        started.push(Instant::now());
        children.push(cmd.spawn()?);
    }
    let until = Instant::now() + Duration::from_secs(300);
    let mut untainted: Vec<Option<f64>> = vec![None; nodes];
    while untainted.iter().any(Option::is_none) {
        if Instant::now() > until {
            bail!("not every Node was untainted within 300 s: {untainted:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for e in api.log() {
            if e.verb != "patch" || e.dry_run || e.status != 200 {
                continue;
            }
            if let Some(i) = names.iter().position(|n| *n == e.node) {
                if untainted[i].is_none() && !e.taint_keys().iter().any(|t| t == TAINT) {
                    untainted[i] = Some(e.at.duration_since(started[i]).as_secs_f64());
                }
            }
        }
    }
    for mut c in children {
        let _ = c.kill().await;
    }
    let mut untainted_s: Vec<f64> = untainted.into_iter().flatten().collect();
    untainted_s.sort_by(f64::total_cmp);
    Ok(NodeRow { nodes, untainted_s })
}

/// The moto regions of node mode's rows (fresh accounts, none of the herd rows' `REGIONS`).
pub const NODE_REGIONS: [&str; 2] = ["ca-west-1", "ap-southeast-5"];

/// The herds of node mode's row: N=1 and a herd (N=1 only with `quick`).
pub fn node_cases(quick: bool) -> Vec<usize> {
    if quick {
        vec![1]
    } else {
        vec![1, 20]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rows_have_regions_of_their_own() {
        assert!(node_cases(false).len() <= NODE_REGIONS.len());
        for r in NODE_REGIONS {
            assert!(!crate::bench::REGIONS.contains(&r), "{r}");
        }
    }
}

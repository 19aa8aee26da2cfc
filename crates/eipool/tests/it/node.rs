//! Node mode (#38): `eipool node` as a DaemonSet pod runs it — the real binary, identity from
//! IMDSv2 (the lab's stub, answering from EC2's state), the real kube-rs client pointed by a
//! kubeconfig at the lab's emulation of the Kubernetes Node API (`eipool_lab::kube_api`: no API
//! server can run here). Each Node starts with the startup taint, as Karpenter's
//! `startupTaints` makes it; the emulator's witness records, at each patch it stores, whether EC2
//! (moto) shows the Node's labelled address on that node's interface.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;

use eipool_lab::claimer::Outcome;
use eipool_lab::fixture::{Ec2Lab, Node};
use eipool_lab::imds::ImdsStub;
use eipool_lab::kube_api::{Entry, KubeApi};
use eipool_lab::servers::free_port;
use redis::AsyncCommands;
use tokio::process::Child;

use crate::harness::{
    acl_user, args, documented_acl_rule, eventually, heavy, json, workspace, Lab,
};

const TAINT: &str = "eipool.io/unassigned";
const LABEL: &str = "eipool.io/public-ip";
/// The token of a service account with the shipped ClusterRole: get and patch on nodes.
const TOKEN: &str = "eipool-node-token";

/// The Node name of a lab node.
fn node_name(n: &Node) -> String {
    format!("ip-{}.ec2.internal", n.private_ip.replace('.', "-"))
}

/// The emulated API server, with a Node per lab node (carrying the startup taint), the shipped
/// RBAC granted to [`TOKEN`], and a witness that looks at EC2 as each patch is stored.
async fn cluster(lab: &Lab, nodes: &[Node]) -> KubeApi {
    let api = KubeApi::start()
        .await
        .expect("start the Kubernetes API emulator");
    for n in nodes {
        api.add_node(
            &node_name(n),
            &[("kubernetes.io/os", "linux")],
            &[(TAINT, "NoSchedule")],
        );
    }
    api.grant(
        TOKEN,
        "system:serviceaccount:kube-system:eipool-node",
        &["get", "patch"],
    );
    let enis: Arc<HashMap<String, String>> = Arc::new(
        nodes
            .iter()
            .map(|n| (node_name(n), n.eni.clone()))
            .collect(),
    );
    let ec2: Ec2Lab = lab.ec2.clone();
    api.set_witness(Arc::new(move |name, node| {
        let (enis, ec2) = (enis.clone(), ec2.clone());
        Box::pin(async move {
            let Some(ip) = node["metadata"]["labels"][LABEL].as_str() else {
                return "no label".to_string();
            };
            let on = ec2.addresses_on(&enis[&name]).await.unwrap();
            if on.iter().any(|e| e.public_ip == ip) {
                "associated".to_string()
            } else {
                format!("not associated: EC2 shows {on:?} on the node's interface")
            }
        })
    }));
    api
}

/// A lab with its nodes, an API server that knows the first of them, and a kubeconfig of the
/// shipped service account's token in a temporary directory (where the pods write too).
struct Scene {
    lab: Lab,
    nodes: Vec<Node>,
    api: KubeApi,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// `nodes` lab nodes, `addresses` in the pool, the first `known` nodes registered as Nodes.
async fn scene(nodes: usize, addresses: usize, known: usize) -> Scene {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(nodes).await.unwrap();
    if addresses > 0 {
        lab.ec2.allocate(Some(&lab.pool), addresses).await.unwrap();
    }
    let api = cluster(&lab, &nodes[..known]).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), TOKEN);
    Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    }
}

/// A running `eipool node` and what it writes.
struct NodePod {
    child: Child,
    name: String,
    env_file: PathBuf,
    log: PathBuf,
    listen: std::net::SocketAddr,
    _imds: ImdsStub,
}

impl NodePod {
    /// Start `eipool node` for `node` as the DaemonSet runs it (identity from IMDSv2), with the
    /// kubeconfig `kubeconfig`, its env file and log in `dir`; `--interval 1s` unless `extra`
    /// says otherwise.
    async fn start(
        lab: &Lab,
        node: &Node,
        kubeconfig: &Path,
        dir: &Path,
        extra: &[&str],
    ) -> NodePod {
        Self::start_via(lab, &lab.redis.url(), node, kubeconfig, dir, extra).await
    }

    /// The same, with Redis at `redis_url` (e.g. as a user with an ACL).
    async fn start_via(
        lab: &Lab,
        redis_url: &str,
        node: &Node,
        kubeconfig: &Path,
        dir: &Path,
        extra: &[&str],
    ) -> NodePod {
        let (env, stub) = lab.node_imds(node).await;
        let name = node_name(node);
        let env_file = dir.join(format!("{}.env", node.eni));
        let log = dir.join(format!("{}-{}.log", node.eni, free_port().unwrap()));
        let listen: std::net::SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let mut a = args(&["--pool", &lab.pool, "--redis-url", redis_url]);
        a.extend(args(&[
            "node",
            "--node-name",
            &name,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--output",
            env_file.to_str().unwrap(),
            "--listen",
            &listen.to_string(),
            "--timeout",
            "60s",
        ]));
        if !extra.contains(&"--interval") {
            a.extend(args(&["--interval", "1s"]));
        }
        a.extend(args(extra));
        let child = env
            .command(&a)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        NodePod {
            child,
            name,
            env_file,
            log,
            listen,
            _imds: stub,
        }
    }

    /// The address the env file on the host names.
    fn public_ip(&self) -> Option<String> {
        std::fs::read_to_string(&self.env_file)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("EIPOOL_PUBLIC_IP=").map(str::to_string))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet stops the pod; its exit code.
    async fn stop(self) -> Option<i32> {
        self.signal("TERM").await
    }

    /// Send `signal` (`TERM`, or `KILL` as the OOM killer or a lost node does); the exit code
    /// (none when the signal killed it).
    async fn signal(mut self, signal: &str) -> Option<i32> {
        let pid = self.child.id().expect("still running").to_string();
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let st = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the node pod stops on SIG{signal}"))
            .unwrap();
        st.code()
    }
}

/// The Node `name` has no startup taint and is labelled.
fn untainted(api: &KubeApi, name: &str) -> bool {
    !api.taints(name).iter().any(|t| t == TAINT) && api.label(name, LABEL).is_some()
}

/// Wait (a minute at most: a claim from start-up) until the Node `name` is untainted and
/// labelled.
async fn until_untainted(api: &KubeApi, name: &str) {
    eventually("the Node untainted", Duration::from_secs(60), || async {
        untainted(api, name).then_some(())
    })
    .await;
}

/// Wait (a minute at most: a start-up) until `n` wait in the lab pool's line.
async fn until_waiting(lab: &Lab, n: usize) {
    eventually(
        "the line to hold the waiting nodes",
        Duration::from_secs(60),
        || async { (line(lab).await.len() == n).then_some(()) },
    )
    .await;
}

/// Every stored patch of `name` that removed the startup taint.
fn untaintings(log: &[Entry], name: &str) -> Vec<Entry> {
    let mut tainted = true;
    let mut out = Vec::new();
    for e in log
        .iter()
        .filter(|e| e.node == name && e.after.is_some() && !e.dry_run)
    {
        let now = e.taint_keys().iter().any(|t| t == TAINT);
        if tainted && !now && e.verb == "patch" {
            out.push(e.clone());
        }
        tainted = now;
    }
    out
}

/// How many wait in the lab pool's line (Redis's own view), and who, head first.
async fn line(lab: &Lab) -> Vec<String> {
    let mut c = lab.redis_conn().await;
    c.zrange(lab.key("line"), 0, -1).await.unwrap()
}

/// A herd of six nodes for three addresses, all started at once: each Node's taint is removed
/// only by a patch that EC2 already backs (the witness, asked as the patch is stored, sees the
/// labelled address on that node's interface), and only for the three that hold one; the three
/// waiting keep the taint and no label, and are untainted in the line's order as addresses are
/// freed (a holding node's instance going away, then `pool grow`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_nodes_is_untainted_only_once_ec2_shows_each_address_and_waiters_in_line_order() {
    let _turn = heavy().await;
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(6, 3, 6).await;
    let mut pods = Vec::new();
    for n in &nodes {
        pods.push(Some(
            NodePod::start(&lab, n, &kubeconfig, dir.path(), &["--interval", "60s"]).await,
        ));
    }
    let holders: Vec<usize> = eventually(
        "three Nodes untainted and three in the line",
        Duration::from_secs(90),
        || async {
            let up: Vec<usize> = (0..6)
                .filter(|i| untainted(&api, &node_name(&nodes[*i])))
                .collect();
            (up.len() == 3 && line(&lab).await.len() == 3).then_some(up)
        },
    )
    .await;
    // The untainted hold an address on EC2, the one their label and env file name.
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    for &i in &holders {
        let p = pods[i].as_ref().unwrap();
        let held = state
            .values()
            .find(|e| e.eni.as_deref() == Some(nodes[i].eni.as_str()))
            .unwrap_or_else(|| panic!("EC2 shows no address on untainted node {i}"));
        assert_eq!(
            api.label(&p.name, LABEL).as_deref(),
            Some(held.public_ip.as_str())
        );
        assert_eq!(p.public_ip().as_deref(), Some(held.public_ip.as_str()));
    }
    // The waiting keep the taint and have no label.
    let order: Vec<usize> = line(&lab)
        .await
        .iter()
        .map(|m| nodes.iter().position(|n| m.starts_with(&n.eni)).unwrap())
        .collect();
    for &i in &order {
        assert!(
            api.taints(&node_name(&nodes[i])).iter().any(|t| t == TAINT),
            "waiting node {i} tainted"
        );
        assert_eq!(
            api.label(&node_name(&nodes[i]), LABEL),
            None,
            "waiting node {i} unlabelled"
        );
    }

    // Free one address at a time; each goes to the line's head, and only its Node is untainted.
    let mut untainted_now: Vec<usize> = holders.clone();
    for (k, &want) in order.iter().enumerate() {
        if k == 0 {
            // A holding node goes away (its pod stopped, its address given back as the
            // instance's end or `eipool gc` does, its Node deleted).
            let gone = holders[0];
            assert_eq!(
                pods[gone].take().unwrap().stop().await,
                Some(0),
                "a node pod exits 0 on SIGTERM"
            );
            let r = lab.release(&nodes[gone], &[]).await;
            assert_eq!(r.code, Some(0), "{r}");
            api.delete_node(&node_name(&nodes[gone]));
        } else {
            let mut a = lab.with_redis(&[]);
            a.extend(args(&["pool", "grow", "--count", "1"]));
            let g = json(&lab.run(&a).await);
            assert_eq!(g["allocated"].as_array().map(Vec::len), Some(1), "{g}");
        }
        let next = eventually(
            "the next Node untainted",
            Duration::from_secs(30),
            || async {
                let up: Vec<usize> = (0..6)
                    .filter(|i| {
                        !untainted_now.contains(i) && untainted(&api, &node_name(&nodes[*i]))
                    })
                    .collect();
                (!up.is_empty()).then_some(up)
            },
        )
        .await;
        assert_eq!(
            next,
            vec![want],
            "freed address {k}: the line's head, alone, is untainted"
        );
        untainted_now.push(want);
    }

    // Never before EC2: every taint removal was stored while EC2 showed the Node's address on
    // its interface; and each Node was untainted once.
    let log = api.log();
    for n in &nodes {
        let u = untaintings(&log, &node_name(n));
        assert_eq!(u.len(), 1, "{} untainted once: {u:?}", n.eni);
        assert_eq!(
            u[0].witness.as_deref(),
            Some("associated"),
            "{}: {u:?}",
            n.eni
        );
    }
    println!(
        "--- node mode herd: 6 nodes, 3 addresses then 2 freed; {} API requests ({} patches)",
        log.len(),
        log.iter().filter(|e| e.verb == "patch").count()
    );
}

/// Drift: the node's address is taken by hand; another free one is claimed, and the env file on
/// the host and the label both name it, without the taint coming back. Then that one is taken
/// too, with nothing free: the loss cannot be reclaimed, so the Node is tainted again
/// (NoSchedule) and its label removed; once an address is free again, it is untainted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_rewrites_the_env_file_and_label_and_a_loss_not_reclaimed_taints_the_node_again() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(3, 2, 1).await;
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    let first = pod.public_ip().unwrap();
    assert_eq!(api.label(&name, LABEL).as_deref(), Some(first.as_str()));
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.public_ip == first)
        .unwrap()
        .clone();
    let other = state
        .values()
        .find(|e| e.public_ip != first)
        .unwrap()
        .clone();

    // Taken by hand: the other address is free, claimed, and published everywhere.
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    eventually(
        "the env file and label name the new address",
        Duration::from_secs(30),
        || async {
            (pod.public_ip().as_deref() == Some(other.public_ip.as_str())
                && api.label(&name, LABEL).as_deref() == Some(other.public_ip.as_str()))
            .then_some(())
        },
    )
    .await;
    assert!(
        !api.taints(&name).iter().any(|t| t == TAINT),
        "reclaimed: no taint"
    );
    let log = api.log();
    let relabelled = log
        .iter()
        .rposition(|e| {
            e.verb == "patch"
                && !e.dry_run
                && e.label(LABEL).as_deref() == Some(other.public_ip.as_str())
        })
        .unwrap();
    let relabel = &log[relabelled];
    assert_eq!(
        relabel.witness.as_deref(),
        Some("associated"),
        "{relabel:?}"
    );
    // The loss was published at once, before the reclaim: tainted, the lost address's label
    // gone (no window in which the Node names another node's address), then untainted by a
    // patch EC2 backs.
    let retaint = log
        .iter()
        .position(|e| {
            e.verb == "patch"
                && !e.dry_run
                && e.after.is_some()
                && e.taint_keys().iter().any(|t| t == TAINT)
        })
        .expect("the loss taints the Node before the reclaim");
    assert_eq!(log[retaint].label(LABEL), None, "{:?}", log[retaint]);
    assert!(
        retaint < relabelled,
        "tainted at the loss, before the reclaim"
    );
    assert!(
        pod.log().contains("the env file is removed"),
        "the lost address's env file went at the loss: {}",
        pod.log()
    );

    // Taken too, nothing free: tainted again, label gone.
    lab.ec2
        .associate_external(&other.allocation_id, &nodes[2].eni)
        .await
        .unwrap();
    let _dump = Dump(&pod);
    eventually(
        "the Node tainted again and unlabelled",
        Duration::from_secs(30),
        || async {
            let node = api.node(&name)?;
            let ours = node["spec"]["taints"]
                .as_array()?
                .iter()
                .find(|t| t["key"] == TAINT)?
                .clone();
            (ours["effect"] == "NoSchedule" && api.label(&name, LABEL).is_none()).then_some(())
        },
    )
    .await;
    // Nothing on the host names the lost address (another node's now) either.
    assert_eq!(
        pod.public_ip(),
        None,
        "the env file after a loss not reclaimed"
    );
    assert!(!pod.env_file.exists());

    // Free again (given back on that interface): the head of the line takes it.
    let r = lab.release(&nodes[2], &[]).await;
    assert_eq!(r.code, Some(0), "{r}");
    eventually(
        "the Node untainted again",
        Duration::from_secs(30),
        || async { untainted(&api, &name).then_some(()) },
    )
    .await;
    let ip = api.label(&name, LABEL).unwrap();
    assert_eq!(pod.public_ip().as_deref(), Some(ip.as_str()));
    let u = untaintings(&api.log(), &name);
    assert_eq!(
        u.len(),
        3,
        "at start, after the reclaim, after the release: {u:?}"
    );
    assert!(
        u.iter().all(|e| e.witness.as_deref() == Some("associated")),
        "{u:?}"
    );
    drop(_dump);
    drop(pod);
}

/// A DaemonSet pod restarted (SIGTERM, a new process) keeps the node's address: it adopts it,
/// makes no AssociateAddress, and leaves the Node as it was (no patch: label and taint are
/// right already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_pod_keeps_the_nodes_address_with_no_second_claim() {
    restarted_keeps_the_address("TERM").await;
}

/// The same after SIGKILL (the OOM killer, a panic under the release profile's abort): nothing
/// ran at exit, and the new process still adopts, with no second claim and no patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pod_killed_and_restarted_keeps_the_nodes_address_with_no_second_claim() {
    restarted_keeps_the_address("KILL").await;
}

async fn restarted_keeps_the_address(signal: &str) {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(1, 3, 1).await;
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    let ip = pod.public_ip().unwrap();
    let associations = lab.proxy.stats().calls("AssociateAddress");
    assert_eq!(associations, 1, "one claim");
    let code = pod.signal(signal).await;
    assert_eq!(code, (signal == "TERM").then_some(0), "SIG{signal}");
    // Stopped: the address stays with the node (no release on exit in node mode).
    let on = lab.ec2.addresses_on(&nodes[0].eni).await.unwrap();
    assert_eq!(
        on.iter().map(|e| e.public_ip.as_str()).collect::<Vec<_>>(),
        [ip.as_str()]
    );
    let patches_before = api
        .log()
        .iter()
        .filter(|e| e.verb == "patch" && !e.dry_run)
        .count();

    let again = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    eventually(
        "the restarted pod to serve /readyz 200",
        Duration::from_secs(60),
        || async {
            let (code, _) = crate::harness::http_get(again.listen, "/readyz")
                .await
                .ok()?;
            (code == 200).then_some(())
        },
    )
    .await;
    assert!(again.log().contains("reused=true"), "{}", again.log());
    assert_eq!(again.public_ip().as_deref(), Some(ip.as_str()));
    assert_eq!(api.label(&name, LABEL).as_deref(), Some(ip.as_str()));
    assert_eq!(
        lab.proxy.stats().calls("AssociateAddress"),
        associations,
        "no second claim"
    );
    assert_eq!(
        api.log()
            .iter()
            .filter(|e| e.verb == "patch" && !e.dry_run)
            .count(),
        patches_before,
        "the Node needed no patch"
    );
    assert_eq!(again.stop().await, Some(0));
}

/// While the address is held, the Node is put back to what the node holds whatever happened to
/// it: re-created with its startup taint (deleted by hand or by a controller, registered again
/// by the kubelet), its label removed by hand, eipool's taint added by hand. No second claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_or_hand_edited_node_is_put_back_while_the_address_is_held() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(1, 2, 1).await;
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _dump = Dump(&pod);
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    let ip = pod.public_ip().unwrap();
    let held = || async {
        (untainted(&api, &name) && api.label(&name, LABEL).as_deref() == Some(ip.as_str()))
            .then_some(())
    };

    api.delete_node(&name);
    api.add_node(
        &name,
        &[("kubernetes.io/os", "linux")],
        &[(TAINT, "NoSchedule")],
    );
    assert!(!untainted(&api, &name));
    eventually(
        "the re-created Node put back",
        Duration::from_secs(30),
        held,
    )
    .await;

    assert!(api.edit(&name, |n| {
        n["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(LABEL);
    }));
    eventually("the removed label put back", Duration::from_secs(30), held).await;

    assert!(api.edit(&name, |n| {
        n["spec"]["taints"] = serde_json::json!([{"key": TAINT, "effect": "NoSchedule"}]);
    }));
    eventually("the added taint removed", Duration::from_secs(30), held).await;

    assert_eq!(
        lab.proxy.stats().calls("AssociateAddress"),
        1,
        "the address stayed: no second claim"
    );
    assert_eq!(pod.public_ip().as_deref(), Some(ip.as_str()));
    assert!(pod.log().contains("put back"), "{}", pod.log());
    drop(_dump);
    assert_eq!(pod.stop().await, Some(0));
}

/// Someone else writes the Node between eipool's read and its patch (the kubelet, a
/// controller): the patch, guarded by the resourceVersion read, meets a 409, and eipool reads
/// again and retries. What the other writer set stays; only eipool's taint goes. (The pool is
/// empty until the node waits in the line, so the conflicts meet the publishing patch, not the
/// start-up check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_on_the_patch_is_retried_on_a_fresh_read_and_keeps_what_others_wrote() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let api = cluster(&lab, &nodes).await;
    let name = node_name(&nodes[0]);
    // Another taint of someone else's, after ours.
    api.add_node(
        &name,
        &[("kubernetes.io/os", "linux")],
        &[(TAINT, "NoSchedule"), ("example.com/other", "NoExecute")],
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), TOKEN);
    let pod = NodePod::start(
        &lab,
        &nodes[0],
        &kubeconfig,
        dir.path(),
        &["--interval", "60s"],
    )
    .await;
    eventually(
        "the node to wait in the line",
        Duration::from_secs(60),
        || async { (line(&lab).await.len() == 1).then_some(()) },
    )
    .await;
    // The next two reads are each followed by someone else's write; then an address comes.
    api.interfere(&name, 2);
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["pool", "grow", "--count", "1"]));
    json(&lab.run(&a).await);
    until_untainted(&api, &name).await;
    let log = api.log();
    let conflicts = log
        .iter()
        .filter(|e| e.verb == "patch" && !e.dry_run && e.status == 409)
        .count();
    assert_eq!(conflicts, 2, "each interfered read led to a 409: {log:#?}");
    let node = api.node(&name).unwrap();
    assert_eq!(api.taints(&name), ["example.com/other"], "{node}");
    assert!(
        node["metadata"]["labels"]["lab.eipool.io/heartbeat"].is_string(),
        "{node}"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    drop(pod);
}

/// Without `patch` on nodes in its ClusterRole, node mode stops before claiming anything, with
/// exit 77 and a message naming the verb, the resource and where to allow it; a Node that does
/// not exist is exit 2 naming --node-name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rbac_rule_is_exit_77_naming_it_before_anything_is_claimed() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let api = cluster(&lab, &nodes).await;
    api.grant(
        "get-only",
        "system:serviceaccount:kube-system:eipool-node",
        &["get"],
    );
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let run = |token: &str, node: &str| {
        let kubeconfig = api.kubeconfig(dir.path(), token);
        let a = lab.with_redis(&[
            "--network-interface-id",
            &nodes[0].eni,
            "node",
            "--node-name",
            node,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--output",
            dir.path().join("n.env").to_str().unwrap(),
            "--listen",
            &listen,
            "--timeout",
            "10s",
        ]);
        let env = lab.env.clone();
        async move { env.run(&a).await }
    };
    let o: Outcome = run("get-only", &node_name(&nodes[0])).await;
    assert_eq!(o.code, Some(77), "{o}");
    let line = o.error_line();
    assert!(
        line.contains("patch nodes")
            && line.contains("verb \"patch\" on resource \"nodes\"")
            && line.contains("eipool-node"),
        "{line}"
    );
    assert!(
        line.contains("cannot patch resource \"nodes\""),
        "the API server's own words: {line}"
    );
    let o = run(TOKEN, "ip-10-9-9-9.ec2.internal").await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line()
            .contains("--node-name ip-10-9-9-9.ec2.internal"),
        "{o}"
    );
    // Nothing was claimed, and the Node was not touched.
    assert!(lab
        .ec2
        .addresses_on(&nodes[0].eni)
        .await
        .unwrap()
        .is_empty());
    assert!(api.taints(&node_name(&nodes[0])).iter().any(|t| t == TAINT));
    assert!(api
        .log()
        .iter()
        .all(|e| e.verb != "patch" || e.dry_run || e.status != 200));
}

/// Prints the node pod's log if the test fails while it is alive.
struct Dump<'a>(&'a NodePod);
impl Drop for Dump<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("NODE POD LOG:\n{}", self.0.log());
        }
    }
}

/// The service account token rotates under a running pod (the kubelet rewrites the projected
/// token's file; the old token stops working later): kube-rs re-reads the file (at least once a
/// minute), so the pod's next patch, after the old token is revoked, goes out with the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_service_account_token_is_read_again_from_its_file() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();
    let api = cluster(&lab, &nodes[..1]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let kubeconfig = api.kubeconfig_with_token_file(dir.path(), &token_file);
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    // The kubelet rotates the token: a new one in the file, both valid for a while.
    api.grant(
        "rotated-token",
        "system:serviceaccount:kube-system:eipool-node",
        &["get", "patch"],
    );
    std::fs::write(&token_file, "rotated-token").unwrap();
    // kube-rs's reload period (a minute) is what is under test: wait it out, then the old
    // token stops working.
    tokio::time::sleep(Duration::from_secs(61)).await;
    api.revoke(TOKEN);
    // Drift makes the pod patch its Node again.
    let first = pod.public_ip().unwrap();
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state.values().find(|e| e.public_ip == first).unwrap();
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    eventually(
        "the label to name the new address",
        Duration::from_secs(30),
        || async {
            let ip = api.label(&name, LABEL)?;
            (ip != first && pod.public_ip().as_deref() == Some(ip.as_str())).then_some(())
        },
    )
    .await;
    assert_eq!(
        api.tokens_seen().last().map(String::as_str),
        Some("rotated-token")
    );
    assert!(
        !api.log().iter().any(|e| e.status == 401),
        "no request went out with the revoked token"
    );
}

/// A node waiting in the pool's line (no address) whose startup taint is removed by hand (an
/// operator "unsticking" nodes, a script), or whose Node is re-created without it: the taint is
/// put back within an interval, as it is while an address is held, not left off until the
/// node's turn comes (media pods would be scheduled onto a node with no address meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_nodes_taint_removed_by_hand_is_put_back_within_an_interval() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(1, 0, 1).await;
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _dump = Dump(&pod);
    let name = pod.name.clone();
    eventually(
        "the node to wait in the line",
        Duration::from_secs(60),
        || async { (line(&lab).await.len() == 1).then_some(()) },
    )
    .await;
    assert!(api.taints(&name).iter().any(|t| t == TAINT));
    assert!(api.edit(&name, |n| {
        n["spec"].as_object_mut().unwrap().remove("taints");
    }));
    // --interval 1s: put back well within 15 intervals.
    eventually(
        "the waiting node's taint put back",
        Duration::from_secs(15),
        || async { api.taints(&name).iter().any(|t| t == TAINT).then_some(()) },
    )
    .await;
    assert_eq!(api.label(&name, LABEL), None);
    assert_eq!(line(&lab).await.len(), 1, "still waiting in the line");
    drop(_dump);
    assert_eq!(pod.stop().await, Some(0));
}

/// A loss whose env file cannot be removed (here something other than a file stands at its
/// path; in production a `/run/eipool` made read-only or re-owned under the pod): the pod stops
/// with exit 2 naming `--output`, but only after tainting and unlabelling its Node, which must
/// not go on naming an address that is another node's now while the pod restarts, and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_whose_env_file_cannot_be_removed_still_taints_the_node_before_exiting() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(2, 1, 1).await;
    let mut pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    let ip = pod.public_ip().unwrap();
    std::fs::remove_file(&pod.env_file).unwrap();
    std::fs::create_dir(&pod.env_file).unwrap();
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state.values().find(|e| e.public_ip == ip).unwrap();
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    let code = tokio::time::timeout(Duration::from_secs(30), pod.child.wait())
        .await
        .expect("the pod stops")
        .unwrap()
        .code();
    assert_eq!(code, Some(2), "{}", pod.log());
    assert!(
        pod.log().contains("cannot remove the env file"),
        "{}",
        pod.log()
    );
    assert!(
        api.taints(&name).iter().any(|t| t == TAINT),
        "the Node tainted again: {:?}\n{}",
        api.node(&name),
        pod.log()
    );
    assert_eq!(
        api.label(&name, LABEL),
        None,
        "the Node no longer names {ip}, which is another node's"
    );
}

/// Someone else removes eipool's taint between eipool's read and its patch (the other pod of a
/// DaemonSet rolling update publishing the same address a moment earlier, an operator): the
/// patch's `remove` no longer applies, which the API server answers 422 before it compares the
/// resourceVersion. That is the conflict it looks like, not a refusal: eipool reads again and
/// publishes, and keeps running (it exited 2, and restarted with backoff, with the Node
/// untainted but unlabelled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_no_longer_applies_after_someone_elses_write_is_read_again_not_fatal() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let api = cluster(&lab, &nodes).await;
    let name = node_name(&nodes[0]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), TOKEN);
    let mut pod = NodePod::start(
        &lab,
        &nodes[0],
        &kubeconfig,
        dir.path(),
        &["--interval", "60s"],
    )
    .await;
    let _dump = Dump(&pod);
    eventually(
        "the node to wait in the line",
        Duration::from_secs(60),
        || async { (line(&lab).await.len() == 1).then_some(()) },
    )
    .await;
    // The next read is followed by someone else's removal of the startup taint.
    api.interfere_with(&name, 1, |n| {
        n["spec"].as_object_mut().unwrap().remove("taints");
    });
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["pool", "grow", "--count", "1"]));
    json(&lab.run(&a).await);
    eventually(
        "the Node labelled and untainted",
        Duration::from_secs(60),
        || async { untainted(&api, &name).then_some(()) },
    )
    .await;
    assert!(
        api.log()
            .iter()
            .any(|e| e.verb == "patch" && e.status == 422),
        "the race met a 422"
    );
    assert_eq!(
        api.label(&name, LABEL),
        pod.public_ip(),
        "the label names the env file's address"
    );
    drop(_dump);
    assert!(
        pod.child.try_wait().unwrap().is_none(),
        "still running: {}",
        pod.log()
    );
    assert_eq!(pod.stop().await, Some(0));
}

/// Two pods for one node, each with its own `--listen` (two installs with different ports; with
/// the same port, as a DaemonSet rolled with maxSurge would have, the second exits 2 on the port
/// before claiming): the second adopts the first's address (no second claim);
/// on a drift both reclaim, and they end on one address, the one EC2 shows on the interface,
/// named by the env file and the label, with no other address left associated; the old pod's
/// exit changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_for_one_node_agree_on_one_address_through_a_drift() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(2, 3, 1).await;
    let old = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _d1 = Dump(&old);
    let name = old.name.clone();
    until_untainted(&api, &name).await;
    let first = old.public_ip().unwrap();
    let new = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _d2 = Dump(&new);
    eventually("the new pod adopts", Duration::from_secs(60), || async {
        new.log().contains("reused=true").then_some(())
    })
    .await;
    assert_eq!(lab.proxy.stats().calls("AssociateAddress"), 1);
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state.values().find(|e| e.public_ip == first).unwrap();
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    let settled = || async {
        let on = lab.ec2.addresses_on(&nodes[0].eni).await.unwrap();
        let [one] = on.as_slice() else { return None };
        let ip = one.public_ip.clone();
        (ip != first
            && new.public_ip().as_deref() == Some(ip.as_str())
            && api.label(&name, LABEL).as_deref() == Some(ip.as_str())
            && untainted(&api, &name))
        .then_some(ip)
    };
    let ip = eventually(
        "one new address, published",
        Duration::from_secs(60),
        settled,
    )
    .await;
    // Stays so for a few intervals (no flapping between the two pods).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(settled().await.as_deref(), Some(ip.as_str()));
    }
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let associated: Vec<_> = state
        .values()
        .filter(|e| e.eni.as_deref() == Some(nodes[0].eni.as_str()))
        .collect();
    assert_eq!(associated.len(), 1, "{state:?}");
    drop(_d1);
    assert_eq!(old.stop().await, Some(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(settled().await.as_deref(), Some(ip.as_str()));
    drop(_d2);
    assert_eq!(new.stop().await, Some(0));
}

/// The node's own view (IMDSv2) shows its address gone while EC2's API is down (5xx, or
/// throttled by a herd): kept as "unknown" for the whole outage, the Node would stay untainted
/// and labelled, and the env file would name an address that is another node's. Past EC2's
/// consistency bound the node's view is taken as the loss it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_seen_by_the_node_while_ec2_is_down_taints_the_node() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(2, 1, 1).await;
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _dump = Dump(&pod);
    let name = pod.name.clone();
    until_untainted(&api, &name).await;
    let ip = pod.public_ip().unwrap();
    lab.proxy.reconfigure(|c| c.p_5xx = 1.0);
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    let held = state.values().find(|e| e.public_ip == ip).unwrap();
    lab.ec2
        .associate_external(&held.allocation_id, &nodes[1].eni)
        .await
        .unwrap();
    // --interval 1s; IMDSv2 shows the change at once (the stub reads EC2's state). 20 s is
    // four times EC2's consistency bound, past any lag of the node's view.
    eventually("the Node tainted", Duration::from_secs(20), || async {
        api.taints(&name).iter().any(|t| t == TAINT).then_some(())
    })
    .await;
    assert_eq!(api.label(&name, LABEL), None);
    assert_eq!(
        pod.public_ip(),
        None,
        "the env file names {ip}, another node's"
    );
}

/// A pod starting where a previous one left an env file and a published Node (its address
/// taken since, while no pod ran), with the pool now full: the env file goes and the Node is
/// tainted and unlabelled before the pod waits in the line; nothing names the old address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_env_file_and_label_from_a_previous_pod_go_when_the_pool_is_full() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let api = cluster(&lab, &nodes).await;
    let name = node_name(&nodes[0]);
    // As a previous pod left it: labelled, untainted.
    api.add_node(
        &name,
        &[("kubernetes.io/os", "linux"), (LABEL, "198.51.100.7")],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), TOKEN);
    let env_file = dir.path().join(format!("{}.env", nodes[0].eni));
    std::fs::write(&env_file, "EIPOOL_PUBLIC_IP=198.51.100.7\n").unwrap();
    let pod = NodePod::start(&lab, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _dump = Dump(&pod);
    eventually(
        "the node to wait in the line",
        Duration::from_secs(60),
        || async { (line(&lab).await.len() == 1).then_some(()) },
    )
    .await;
    assert!(!env_file.exists(), "the stale env file removed");
    assert!(api.taints(&name).iter().any(|t| t == TAINT));
    assert_eq!(api.label(&name, LABEL), None);
    drop(_dump);
    assert_eq!(pod.stop().await, Some(0));
}

/// Node mode as production runs it, as the Redis user docs/redis.md documents (that ACL and no
/// more): two nodes for one address; the second waits in the pool's line, tainted and
/// unlabelled, and is untainted at its turn when the first node is taken out of node mode (its
/// pod stopped, `eipool release` for its interface, as this page says). Nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_documented_acl_user_a_waiting_node_is_served_when_another_releases() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(2, 1, 2).await;
    let url = acl_user(&lab, "eipool", "node-pw-1", &documented_acl_rule());
    let first = NodePod::start_via(&lab, &url, &nodes[0], &kubeconfig, dir.path(), &[]).await;
    let _d1 = Dump(&first);
    until_untainted(&api, &first.name).await;
    let second = NodePod::start_via(&lab, &url, &nodes[1], &kubeconfig, dir.path(), &[]).await;
    let _d2 = Dump(&second);
    until_waiting(&lab, 1).await;
    assert!(api.taints(&second.name).iter().any(|t| t == TAINT));
    assert_eq!(api.label(&second.name, LABEL), None);
    assert_eq!(second.public_ip(), None);

    let ip = first.public_ip().unwrap();
    let logs = [first.log.clone(), second.log.clone()];
    drop(_d1);
    assert_eq!(first.stop().await, Some(0));
    let mut release = args(&["--pool", &lab.pool, "--redis-url", &url]);
    release.extend(args(&["--network-interface-id", &nodes[0].eni, "release"]));
    let r = lab.run(&release).await;
    assert_eq!(r.code, Some(0), "{r}");
    until_untainted(&api, &second.name).await;
    assert_eq!(api.label(&second.name, LABEL).as_deref(), Some(ip.as_str()));
    assert_eq!(second.public_ip().as_deref(), Some(ip.as_str()));
    assert!(line(&lab).await.is_empty(), "served: out of the line");
    let u = untaintings(&api.log(), &second.name);
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].witness.as_deref(), Some("associated"), "{u:?}");
    drop(_d2);
    assert_eq!(second.stop().await, Some(0));
    let logs = logs.map(|l| std::fs::read_to_string(l).unwrap());
    for said in logs.iter().chain([&format!("{}{}", r.stdout, r.stderr)]) {
        assert!(
            !said.contains("NOPERM") && !said.contains("no permissions"),
            "refused under the documented ACL: {said}"
        );
    }
}

/// Node mode beside another caller on the same AWS account. Its own Elastic IP (not the pool's)
/// sits on one node's private IP, associated by hand: that node's pod stops with exit 2 naming
/// it, never displacing it, and its Node stays tainted and unlabelled. Then it takes one of the
/// pool's three addresses for an instance of its own, and three other nodes claim: the nodes
/// never take it back; two are untainted, the third waits in the line, tainted; when the
/// other caller disassociates it by hand (EC2 alone sees it freed, no eipool command runs), the
/// waiting node takes it and is untainted. Every untainting was stored while EC2 showed the
/// Node's address on its interface; the other caller's address is never moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_another_caller_on_the_account_nodes_take_only_what_is_free_and_never_displace() {
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(5, 3, 4).await;
    let (claimers, theirs, bystander) = (&nodes[..3], &nodes[3], &nodes[4]);
    let own = lab.ec2.allocate(None, 1).await.unwrap().remove(0);
    lab.ec2
        .associate_external_at(&own.allocation_id, &theirs.eni, &theirs.private_ip)
        .await
        .unwrap();
    let mut blocked = NodePod::start(&lab, theirs, &kubeconfig, dir.path(), &[]).await;
    let Ok(stopped) = tokio::time::timeout(Duration::from_secs(60), blocked.child.wait()).await
    else {
        let on = lab.ec2.addresses_on(&theirs.eni).await.unwrap();
        panic!(
            "still running; EC2 shows {on:?} on its interface, where the other caller's {} was\n{}",
            own.public_ip,
            blocked.log()
        );
    };
    assert_eq!(stopped.unwrap().code(), Some(2), "{}", blocked.log());
    assert!(
        blocked.log().contains(&own.public_ip) && blocked.log().contains("never displaces"),
        "{}",
        blocked.log()
    );
    assert!(api.taints(&blocked.name).iter().any(|t| t == TAINT));
    assert_eq!(api.label(&blocked.name, LABEL), None);
    assert_eq!(blocked.public_ip(), None);

    // Taken before the nodes claim: taken while one of them validates it, the node's Node would
    // be untainted for an address another caller stole in between (the agent then sees the
    // loss and taints it again: drift, tested elsewhere), which this test's witness forbids.
    let taken = lab
        .ec2
        .pool_state(&lab.pool)
        .await
        .unwrap()
        .into_values()
        .next()
        .unwrap();
    let association = lab
        .ec2
        .associate_external(&taken.allocation_id, &bystander.eni)
        .await
        .unwrap();
    let mut pods = Vec::new();
    for n in claimers {
        pods.push(NodePod::start(&lab, n, &kubeconfig, dir.path(), &[]).await);
    }
    let waiting: usize = eventually(
        "two Nodes untainted and one in the line",
        Duration::from_secs(60),
        || async {
            let up = pods.iter().filter(|p| untainted(&api, &p.name)).count();
            let line = line(&lab).await;
            let [one] = line.as_slice() else { return None };
            (up == 2).then(|| claimers.iter().position(|n| one.starts_with(&n.eni)))?
        },
    )
    .await;
    assert!(api.taints(&pods[waiting].name).iter().any(|t| t == TAINT));
    assert_eq!(api.label(&pods[waiting].name, LABEL), None);
    let on = |n: &Node| {
        let ec2 = lab.ec2.clone();
        let eni = n.eni.clone();
        async move {
            ec2.addresses_on(&eni)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.allocation_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(on(bystander).await, [taken.allocation_id.as_str()]);

    lab.ec2.disassociate(&association).await.unwrap();
    until_untainted(&api, &pods[waiting].name).await;
    assert_eq!(
        api.label(&pods[waiting].name, LABEL).as_deref(),
        Some(taken.public_ip.as_str())
    );
    assert_eq!(
        on(theirs).await,
        [own.allocation_id.as_str()],
        "never displaced"
    );
    let log = api.log();
    for p in &pods {
        let u = untaintings(&log, &p.name);
        assert!(
            !u.is_empty() && u.iter().all(|e| e.witness.as_deref() == Some("associated")),
            "{u:?}"
        );
    }
    assert!(untaintings(&log, &blocked.name).is_empty());
    for p in pods {
        assert_eq!(p.stop().await, Some(0));
    }
}

/// The code spans of docs/node-mode.md, as written (a span broken over two lines read as one).
fn node_mode_doc_spans() -> Vec<String> {
    let doc = std::fs::read_to_string(workspace().join("docs/node-mode.md")).unwrap();
    doc.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// docs/node-mode.md's command lines, as the binary takes them: each `eipool SUB` it shows is a
/// command (`--help` exits 0); each `--flag` is `eipool node`'s (helm's `--set` and the
/// sidecar's `--release-on-exit`, `eipool agent`'s, aside); and one `eipool node` with all of
/// them, at the value the page gives (`--node-taint KEY:NoExecute`: KEY the default taint's) or
/// else the flag's default, gets past its checks to the API server, which knows no such Node
/// (exit 2 naming --node-name): once as flags, once as their `EIPOOL_*` variables with the
/// page's `KUBECONFIG` for `--kubeconfig`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_flag_docs_node_mode_shows_is_taken_by_the_binary() {
    const HELM: &[&str] = &["--set"];
    const SIDECAR: &[&str] = &["--release-on-exit"];
    let Scene {
        lab,
        nodes,
        api,
        dir,
        kubeconfig,
    } = scene(1, 0, 0).await;
    let spans = node_mode_doc_spans();
    let mut cli = eipool::Cli::command();
    cli.build();
    let sub = |name: &str| cli.find_subcommand(name).unwrap().clone();
    let flag_of = |cmd: &clap::Command, long: &str| {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .cloned()
    };

    let commands: Vec<&str> = spans
        .iter()
        .filter_map(|s| s.strip_prefix("eipool "))
        .collect();
    assert!(commands.contains(&"node"), "{commands:?}");
    for c in &commands {
        let o = lab.env.run(&args(&[c, "--help"])).await;
        assert_eq!(o.code, Some(0), "docs/node-mode.md shows `eipool {c}`: {o}");
    }

    // Each flag once, with the value the page gives it, if any.
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for s in spans.iter().filter(|s| s.starts_with("--")) {
        let (f, v) = match s.split_once(' ') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (s.clone(), None),
        };
        match flags.iter_mut().find(|(g, _)| *g == f) {
            Some((_, w)) => *w = w.take().or(v),
            None => flags.push((f, v)),
        }
    }
    let (node, agent) = (sub("node"), sub("agent"));
    let mut line = lab.with_redis(&["node"]);
    let mut vars: Vec<(String, String)> = Vec::new();
    let name = node_name(&nodes[0]);
    let output = dir.path().join("node.env");
    for (f, given) in &flags {
        let long = f.trim_start_matches('-');
        if HELM.contains(&f.as_str()) {
            continue;
        }
        if SIDECAR.contains(&f.as_str()) {
            assert!(flag_of(&agent, long).is_some(), "{f} is not eipool agent's");
            assert!(flag_of(&node, long).is_none(), "{f} is node mode's too");
            continue;
        }
        let a = flag_of(&node, long).unwrap_or_else(|| {
            panic!("docs/node-mode.md shows {f}, which eipool node does not take")
        });
        let default = a
            .get_default_values()
            .first()
            .map(|d| d.to_string_lossy().into_owned());
        let value = match (long, given) {
            ("node-name", _) => name.clone(),
            ("kubeconfig", _) => kubeconfig.to_str().unwrap().to_string(),
            ("output", _) => output.to_str().unwrap().to_string(),
            (_, Some(v)) => {
                let key = default
                    .as_deref()
                    .unwrap_or_default()
                    .split([':', '='])
                    .next();
                v.replace("KEY", key.unwrap_or_default())
            }
            (_, None) => default.unwrap_or_else(|| {
                panic!("docs/node-mode.md shows {f}, with no value nor default: give it one here")
            }),
        };
        line.extend(args(&[f, &value]));
        let var = if long == "kubeconfig" {
            // Outside a pod, the page says, `--kubeconfig` or `KUBECONFIG`.
            assert!(spans.iter().any(|s| s == "KUBECONFIG"));
            "KUBECONFIG".to_string()
        } else {
            let var = a.get_env().unwrap_or_else(|| panic!("{f} has no variable"));
            var.to_string_lossy().into_owned()
        };
        vars.push((var, value));
    }
    for f in [
        "--node-name",
        "--node-label",
        "--node-taint",
        "--kubeconfig",
        "--output",
    ] {
        assert!(
            line.iter().any(|a| a == f),
            "{f} not found in the page: {line:?}"
        );
    }

    let (env, _imds) = lab.node_imds(&nodes[0]).await;
    let by_flags = env.run(&line).await;
    let mut bare = env.command(&lab.with_redis(&["node"]));
    bare.envs(vars.iter().map(|(k, v)| (k, v)));
    let by_vars = Outcome::from_output(&[], bare.output().await.unwrap());
    for (how, o) in [("flags", &by_flags), ("variables", &by_vars)] {
        assert_eq!(o.code, Some(2), "as {how} ({vars:?}): {o}");
        assert!(
            o.error_line().contains(&format!("--node-name {name}")),
            "as {how}, refused before the API server was asked ({vars:?}): {o}"
        );
    }
    let asked = api
        .log()
        .iter()
        .filter(|e| e.node == name && e.status == 404)
        .count();
    assert!(
        asked >= 2,
        "each run asked the API server for its Node: {:?}",
        api.log()
    );
}

//! Least privilege, proven: every command run with credentials limited to the role the docs give
//! it (deploy/iam/node.json, deploy/iam/operator.json) under moto's IAM enforcement. It works
//! with its role; a command outside its role exits 77 naming the action. moto checks actions,
//! not resources or conditions (see `eipool_lab::iam`): the test runs each role in the form
//! moto can evaluate and prints what that form leaves out.

use eipool_lab::claimer::{LabEnv, Outcome};
use eipool_lab::fixture::{Ec2Lab, Node, REGION};
use eipool_lab::iam;
use eipool_lab::servers::{Moto, RedisServer};

use crate::harness::{args, workspace};

struct World {
    moto: Moto,
    redis: RedisServer,
    nodes: Vec<Node>,
    pool: String,
}

impl World {
    fn env(&self, who: &iam::Credentials) -> LabEnv {
        let mut env = LabEnv::new(
            std::path::Path::new(env!("CARGO_BIN_EXE_eipool")),
            &self.moto.endpoint,
        );
        env.credentials = (who.access_key.clone(), who.secret_key.clone());
        env
    }

    async fn run(&self, who: &iam::Credentials, rest: &[&str]) -> Outcome {
        let mut a = vec!["--pool", &self.pool];
        let url = self.redis.url();
        a.extend(["--redis-url", &url]);
        a.extend_from_slice(rest);
        self.env(who).run(&args(&a)).await
    }
}

async fn role_user(endpoint: &str, name: &str, file: &str) -> iam::Credentials {
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace().join(file)).unwrap()).unwrap();
    let (evaluable, dropped) = iam::moto_evaluable(&policy);
    println!("  {file}, as moto can evaluate it; left out:");
    for d in dropped {
        println!("    {d}");
    }
    iam::create_user(endpoint, name, &evaluable).await.unwrap()
}

fn denied(o: &Outcome, action: &str) {
    assert_eq!(o.code, Some(77), "{o}");
    assert!(
        o.error_line().contains(&format!("ec2:{action}")),
        "the message names the action: {o}"
    );
}

fn ok(o: &Outcome) {
    assert_eq!(o.code, Some(0), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_with_its_role_and_nothing_outside_it() {
    // IAM enforcement is moto-wide: this test has its own moto.
    let moto = Moto::start().unwrap();
    let setup = Ec2Lab::new(&moto.endpoint);
    let nodes = setup.nodes(3).await.unwrap();
    let pool = "iam-pool".to_string();
    setup.allocate(Some(&pool), 4).await.unwrap();
    println!("--- least privilege under moto's IAM enforcement");
    let node = role_user(&moto.endpoint, "media-node", "deploy/iam/node.json").await;
    let operator = role_user(&moto.endpoint, "operator", "deploy/iam/operator.json").await;
    let admin = iam::create_user(
        &moto.endpoint,
        "admin",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    .await
    .unwrap();
    iam::enforce(&moto.endpoint).await.unwrap();
    let look =
        Ec2Lab::with_credentials(&moto.endpoint, REGION, &admin.access_key, &admin.secret_key);
    let w = World {
        moto,
        redis: RedisServer::start().unwrap(),
        nodes,
        pool,
    };
    // Enforcement is on: unknown credentials are refused.
    let stranger = iam::Credentials {
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "nope".into(),
    };
    let o = w.run(&stranger, &["status"]).await;
    assert_eq!(
        o.code,
        Some(2),
        "unknown credentials are a configuration error: {o}"
    );

    // The node role: claim, release, status, doctor. Not grow, shrink, gc.
    let eni0 = w.nodes[0].eni.as_str();
    let claim = w
        .run(
            &node,
            &["--network-interface-id", eni0, "claim", "--timeout", "30s"],
        )
        .await;
    ok(&claim);
    let state = look.pool_state(&w.pool).await.unwrap();
    let held = state
        .values()
        .find(|e| e.eni.as_deref() == Some(eni0))
        .expect("claimed");
    ok(&w.run(&node, &["status"]).await);
    ok(&w
        .run(&node, &["--network-interface-id", eni0, "release"])
        .await);
    ok(&w
        .run(&node, &["--network-interface-id", eni0, "claim"])
        .await);
    let doctor = w
        .run(&node, &["--network-interface-id", eni0, "doctor"])
        .await;
    assert!(
        doctor
            .stdout
            .contains("[ ok ] ec2:AllocateAddress should be denied: it is (DryRun)"),
        "{doctor}"
    );
    assert!(
        doctor
            .stdout
            .contains("[ ok ] permission ec2:AssociateAddress: allowed (DryRun)"),
        "{doctor}"
    );
    assert!(!doctor.stdout.contains("[FAIL]"), "{doctor}");
    // A media node with more than its role (here everything): doctor warns, in a sentence that
    // reads right.
    let doctor = w
        .run(&admin, &["--network-interface-id", eni0, "doctor"])
        .await;
    let warning = doctor
        .stdout
        .lines()
        .find(|l| l.starts_with("[warn]") && l.contains("ec2:AllocateAddress"))
        .unwrap_or_else(|| panic!("no warning about ec2:AllocateAddress: {doctor}"));
    println!("  {warning}");
    assert!(
        warning.starts_with("[warn] ec2:AllocateAddress should be denied: it is allowed (DryRun)")
            && warning.contains("deploy/iam/node.json"),
        "{warning}"
    );
    denied(
        &w.run(&node, &["pool", "grow", "--count", "1"]).await,
        "AllocateAddress",
    );
    denied(
        &w.run(&node, &["pool", "shrink", "--count", "1"]).await,
        "ReleaseAddress",
    );
    denied(&w.run(&node, &["gc"]).await, "DescribeInstances");

    // The operator role: status, gc, grow, shrink, doctor --role operator. Not claim.
    let eni1 = w.nodes[1].eni.as_str();
    denied(
        &w.run(
            &operator,
            &["--network-interface-id", eni1, "claim", "--timeout", "30s"],
        )
        .await,
        "AssociateAddress",
    );
    ok(&w.run(&operator, &["status"]).await);
    ok(&w.run(&operator, &["gc"]).await);
    ok(&w.run(&operator, &["pool", "grow", "--count", "1"]).await);
    ok(&w.run(&operator, &["pool", "shrink", "--count", "1"]).await);
    let doctor = w.run(&operator, &["doctor", "--role", "operator"]).await;
    assert!(
        doctor
            .stdout
            .contains("[ ok ] permission ec2:AllocateAddress: allowed (DryRun)"),
        "{doctor}"
    );
    assert!(!doctor.stdout.contains("[FAIL]"), "{doctor}");

    // The node's address is still where its claim put it.
    let state = look.pool_state(&w.pool).await.unwrap();
    assert!(
        state.values().any(|e| e.eni.as_deref() == Some(eni0)),
        "{state:?} (first held {held:?})"
    );
}

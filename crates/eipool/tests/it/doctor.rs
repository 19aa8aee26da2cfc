//! `eipool doctor`: it says exactly what is wrong, and tells the network from the credentials
//! from not being on a node.

use eipool_lab::servers::free_port;

use crate::harness::{args, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_with_no_pool_and_redis_down_says_exactly_what_is_wrong() {
    let mut lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.redis.stop();
    let mut a = lab.with_redis(&[]);
    a.extend(args(&["--network-interface-id", &nodes[0].eni, "doctor"]));
    let o = lab.run(&a).await;
    assert_eq!(o.code, Some(1), "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(has("[ ok ] AWS credentials", ""), "{}", o.stdout);
    assert!(has("[ ok ] identity", &nodes[0].eni), "{}", o.stdout);
    assert!(
        has("[ ok ] permission ec2:AssociateAddress", "")
            || has("[skip] permission ec2:AssociateAddress", ""),
        "{}",
        o.stdout
    );
    assert!(has("[FAIL] Redis", "Redis is unavailable"), "{}", o.stdout);
    assert!(has("[FAIL] pool", "has no addresses"), "{}", o.stdout);
    assert!(has("[skip] IMDSv2", "not needed"), "{}", o.stdout);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("[FAIL]")).count(),
        2,
        "exactly two problems: {}",
        o.stdout
    );
}

fn failed_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("[FAIL]")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_tells_the_network_from_the_credentials_from_not_being_on_a_node() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 2).await.unwrap();

    // EC2 unreachable: the endpoint fails, the credentials are not blamed.
    let mut env = lab.env.clone();
    env.ec2_endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    let o = env
        .run(&lab.with_redis(&[
            "--network-interface-id",
            &nodes[0].eni,
            "doctor",
            "--timeout",
            "5s",
        ]))
        .await;
    assert_eq!(o.code, Some(1), "{o}");
    let failed = failed_lines(&o.stdout);
    assert!(
        failed.iter().any(|l| l.starts_with("[FAIL] EC2 endpoint")),
        "{o}"
    );
    assert!(!failed.iter().any(|l| l.contains("credentials")), "{o}");

    // No credentials at all: the credentials fail, with what to provide.
    let mut cmd =
        lab.env
            .command(&lab.with_redis(&["--network-interface-id", &nodes[0].eni, "doctor"]));
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        failed_lines(&stdout)
            .iter()
            .any(|l| l.starts_with("[FAIL] AWS credentials: none usable") && l.contains("IRSA")),
        "{stdout}"
    );

    // Off a node (no IMDSv2, no interface by flag): the node checks are skipped, not failed.
    let o = lab.env.run(&lab.with_redis(&["doctor"])).await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stdout.contains("[skip] this node: not on an EC2 node"),
        "{o}"
    );
    assert!(failed_lines(&o.stdout).is_empty(), "{o}");
    // The node role's DryRuns carry the pool's tags, and CreateTags of the holder is checked.
    let o = lab
        .env
        .run(&lab.with_redis(&["--network-interface-id", &nodes[0].eni, "doctor"]))
        .await;
    assert!(
        o.stdout
            .contains("[ ok ] permission ec2:CreateTags: allowed (DryRun)"),
        "{o}"
    );
    assert!(
        o.stdout
            .contains("permission ec2:AssociateAddress: allowed (DryRun)"),
        "{o}"
    );
}

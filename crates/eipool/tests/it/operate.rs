//! Operator commands that never mislead, each as a user runs it: `--output` that writes only
//! regular files, a doctor that tells the network from the credentials from "not on a node",
//! `--timeout` on the operations commands, no empty allow-list, env files that may be exported,
//! switches from the environment, `--listen` as operators write it, and logs for machines and
//! people.

use std::time::{Duration, Instant};

use eipool_lab::servers::free_port;

use crate::harness::{args, serving_pool_metrics, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_refuses_symlinks_devices_and_fifos_before_claiming() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("env-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("env-fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, kind) in [
        (link.to_str().unwrap(), "a symlink"),
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/null", "a device"),
    ] {
        let o = lab.claim(&nodes[0], &["--output", path]).await;
        assert_eq!(o.code, Some(2), "{o}");
        assert!(
            o.error_line().contains("--output") && o.error_line().contains(kind),
            "{o}"
        );
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device_like());
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "claimed anyway: {state:?}"
    );
}

/// `is_char_device` without importing the unix extension trait at each use.
trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}
impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_commands_take_a_timeout_and_say_little_when_ec2_is_down() {
    let lab = Lab::new().await;
    let mut env = lab.env.clone();
    env.ec2_endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    for cmd in [
        vec!["status", "--min-free", "1", "--timeout", "3s"],
        vec!["gc", "--timeout", "3s"],
        vec!["pool", "shrink", "--count", "1", "--timeout", "3s"],
    ] {
        let started = Instant::now();
        let o = env.run(&lab.with_redis(&cmd)).await;
        let took = started.elapsed();
        assert_eq!(o.code, Some(75), "{o}");
        assert!(
            took < Duration::from_secs(20),
            "{cmd:?} ignored --timeout 3s: {took:?}"
        );
        assert!(o.stderr.lines().count() <= 3, "{cmd:?} said too much: {o}");
        assert!(
            o.error_line().contains("raise --timeout") || o.error_line().contains("timeout"),
            "{o}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pool_never_yields_an_empty_allow_list() {
    let lab = Lab::new().await;
    let misspelled = format!("{}-typo", lab.pool);
    for rest in [vec!["status", "--cidrs"], vec!["status", "--min-free", "0"]] {
        let mut a = args(&["--pool", &misspelled]);
        a.extend(rest.iter().map(|s| s.to_string()));
        let o = lab.env.run(&a).await;
        assert_eq!(o.code, Some(69), "{o}");
        assert!(o.stdout.trim().is_empty(), "printed an allow-list: {o}");
        assert!(o.error_line().contains("has no addresses"), "{o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reads_an_exported_env_file_and_refuses_a_missing_one() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("eipool.env");
    lab.claim(&nodes[0], &["--output", env_file.to_str().unwrap()])
        .await
        .report()
        .expect("claim");

    // A missing file: an error, nothing released.
    let o = lab
        .env
        .run(&lab.with_redis(&[
            "--network-interface-id",
            &nodes[0].eni,
            "release",
            "--env-file",
            "/nonexistent/eipool.env",
        ]))
        .await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line().contains("--env-file") && o.error_line().contains("Nothing is released"),
        "{o}"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_some()),
        "released anyway: {state:?}"
    );

    // The file's variables exported (as docker --env-file or systemd EnvironmentFile= do).
    let mut cmd =
        lab.env
            .command(&lab.with_redis(&["release", "--env-file", env_file.to_str().unwrap()]));
    for line in std::fs::read_to_string(&env_file).unwrap().lines() {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "not released: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_take_what_operators_write_and_errors_name_the_variable() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eni = nodes[0].eni.as_str();
    let claim = args(&["--pool", &lab.pool, "--network-interface-id", eni, "claim"]);
    // EIPOOL_REQUIRE_LOCK=1 is understood: it then needs a Redis URL.
    let out = lab
        .env
        .command(&claim)
        .env("EIPOOL_REQUIRE_LOCK", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--require-lock needs --redis-url"),
        "{stderr}"
    );
    // A value that is no switch names the variable, not just the flag.
    let out = lab
        .env
        .command(&claim)
        .env("EIPOOL_REQUIRE_LOCK", "perhaps")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("EIPOOL_REQUIRE_LOCK=\"perhaps\""),
        "{stderr}"
    );
    // Durations have floors.
    let mut a = claim.clone();
    a.extend(["--call-timeout".into(), "1ns".into()]);
    let o = lab.env.run(&a).await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains("--call-timeout") && o.stderr.contains("at least 100ms"),
        "{o}"
    );
}

/// An environment for the binary that reaches nothing: for what is refused before any call.
fn offline() -> eipool_lab::claimer::LabEnv {
    eipool_lab::claimer::LabEnv::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_eipool")),
        "http://127.0.0.1:9",
    )
}

/// Run `eipool ARGS` with `vars` set, expecting it to be refused at once.
async fn refused(argv: &[String], vars: &[(&str, &str)]) -> eipool_lab::claimer::Outcome {
    let mut cmd = offline().command(argv);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{argv:?} {vars:?} was not refused: it ran on"))
        .unwrap();
    eipool_lab::claimer::Outcome::from_output(argv, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_duration_exits_2_naming_the_flag_or_its_variable() {
    // (the command, its duration flag, that flag's variable)
    let cases: [(&[&str], &str, &str); 14] = [
        (&["claim"], "--timeout", "EIPOOL_TIMEOUT"),
        (&["claim"], "--lease", "EIPOOL_LEASE"),
        (&["claim"], "--call-timeout", "EIPOOL_CALL_TIMEOUT"),
        (&["agent"], "--timeout", "EIPOOL_TIMEOUT"),
        (&["agent"], "--interval", "EIPOOL_INTERVAL"),
        (&["agent"], "--ec2-check-every", "EIPOOL_EC2_CHECK_EVERY"),
        (&["agent"], "--release-timeout", "EIPOOL_RELEASE_TIMEOUT"),
        (&["exporter"], "--interval", "EIPOOL_INTERVAL"),
        (&["exporter"], "--timeout", "EIPOOL_TIMEOUT"),
        (&["release"], "--timeout", "EIPOOL_RELEASE_TIMEOUT"),
        (&["status"], "--timeout", "EIPOOL_TIMEOUT"),
        (&["gc"], "--timeout", "EIPOOL_TIMEOUT"),
        (
            &["pool", "shrink", "--count", "1"],
            "--timeout",
            "EIPOOL_TIMEOUT",
        ),
        (&["doctor"], "--timeout", "EIPOOL_TIMEOUT"),
    ];
    let absurd = "300000000000y";
    for (command, flag, var) in cases {
        let mut argv = args(&[
            "--pool",
            "p",
            "--network-interface-id",
            "eni-0123456789abcdef0",
        ]);
        argv.extend(args(command));
        let mut by_flag = argv.clone();
        by_flag.extend(args(&[flag, absurd]));
        let o = refused(&by_flag, &[]).await;
        assert_eq!(o.code, Some(2), "{command:?} {flag} {absurd}: {o}");
        assert!(
            o.stderr.contains(flag) && o.stderr.contains("at most"),
            "{command:?}: the message does not name {flag} and its ceiling: {o}"
        );
        let o = refused(&argv, &[(var, absurd)]).await;
        assert_eq!(o.code, Some(2), "{command:?} {var}={absurd}: {o}");
        assert!(
            o.stderr.contains(&format!("{var}=\"{absurd}\"")),
            "{command:?}: the message does not name {var}: {o}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_variable_is_blamed_on_itself_not_on_another_commands_namesake() {
    // `status --output` is EIPOOL_STATUS_OUTPUT; `claim --output` (EIPOOL_OUTPUT) shares its
    // flag's name, and a media pod's environment may well set it.
    let argv = args(&["--pool", "p", "status"]);
    let o = refused(
        &argv,
        &[
            ("EIPOOL_STATUS_OUTPUT", "bogus"),
            ("EIPOOL_OUTPUT", "/run/eipool/env"),
        ],
    )
    .await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains("EIPOOL_STATUS_OUTPUT=\"bogus\"") && !o.stderr.contains("EIPOOL_OUTPUT="),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_a_port_alone_or_a_host_name_and_the_exporter_is_not_ready_as_an_agent() {
    let lab = Lab::new().await;
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    for listen in [
        format!(":{}", free_port().unwrap()),
        format!("localhost:{}", free_port().unwrap()),
    ] {
        let port: u16 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let exporter = lab.with_redis(&["exporter", "--listen", &listen, "--interval", "5s"]);
        let (_exporter, body) = serving_pool_metrics(&lab.env, &exporter, addr).await;
        assert!(
            !body.lines().any(|l| l.trim() == "eipool_ready 1"),
            "the exporter holds no address: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_no_colour_off_a_terminal_say_each_error_once_and_are_all_json_when_asked() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eni = nodes[0].eni.as_str();
    // An empty pool: exit 69 with its message.
    let text = lab.claim(&nodes[0], &[]).await;
    assert_eq!(text.code, Some(69), "{text}");
    assert!(
        !text.stderr.contains('\u{1b}'),
        "colour codes off a terminal: {text}"
    );
    assert_eq!(text.stderr.matches("has no addresses").count(), 1, "{text}");
    let mut a = args(&[
        "--log-format",
        "json",
        "--pool",
        &lab.pool,
        "--redis-url",
        &lab.redis.url(),
    ]);
    a.extend(args(&["--network-interface-id", eni, "claim"]));
    let json = lab.env.run(&a).await;
    assert_eq!(json.code, Some(69), "{json}");
    for line in json.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{json}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert_eq!(json.stderr.matches("has no addresses").count(), 1, "{json}");
}

//! No input makes eipool panic (issue #22): every value-taking flag of every command, generated
//! from clap's own definition (a new flag is covered without editing this file), given hostile
//! values on the command line and through its `EIPOOL_*` variable. A bad value is exit 2 naming
//! exactly that flag or variable; nothing ever exits 101 (a panic) or 70 (a bug). And what
//! operators write: switches and durations from the environment, `--listen` forms, a variable
//! blamed on itself, logs for machines and people.
//!
//! Seeded and bounded: the seed and case count are printed; replay a failure with
//! `PROPTEST_RNG_SEED=<seed>`, set `PROPTEST_CASES` for more or fewer values per flag.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::CommandFactory;
use eipool_lab::claimer::{LabEnv, Outcome};
use eipool_lab::properties::runner;
use eipool_lab::servers::free_port;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::harness::{args, serving_pool_metrics, Lab};

/// One flag that takes a value: the subcommands before it, its long name, its variable.
#[derive(Debug, Clone)]
struct Flag {
    path: Vec<String>,
    long: String,
    env: Option<String>,
}

/// Every value-taking flag of every (sub)command, from clap's definition.
fn flags() -> Vec<Flag> {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Flag>) {
        for a in cmd.get_arguments() {
            let (Some(long), true) = (a.get_long(), a.get_action().takes_values()) else {
                continue;
            };
            if a.is_global_set() && !path.is_empty() {
                continue; // a global flag: tried once, at the top
            }
            out.push(Flag {
                path: path.clone(),
                long: long.to_string(),
                env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
            });
        }
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(&eipool::Cli::command(), &mut Vec::new(), &mut out);
    out
}

/// What a careless user, a broken template or an attacker puts in a value.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("300000000000y".to_string()),
        Just("18446744073709551615".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("0".to_string()),
        Just("1e309".to_string()),
        Just("NaN".to_string()),
        Just("\u{202e}lanretni\u{202c}".to_string()),
        Just("redis://:@[::1".to_string()),
        Just("rediss://u:p@127.0.0.1:99999/0".to_string()),
        Just("http://[zz]:1/".to_string()),
        Just("/dev/null/x".to_string()),
        Just("a\nb".to_string()),
        "[a-z]{1,2}".prop_map(|s| s.repeat(32_768)),
        "\\PC{1,24}",
        "[0-9]{1,30}[a-zµ]{0,3}",
    ]
}

/// The clean lab environment with nothing to reach: EC2 and IMDS on a closed loopback port, and
/// every command bounded, so a value that happens to be valid ends quickly.
fn env() -> LabEnv {
    LabEnv::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_eipool")),
        "http://127.0.0.1:9",
    )
}

/// Run `eipool` with `args` and `vars`, killed after `bound` (a valid value may start a
/// long-running command: the agent, the exporter). `None`: still running then.
async fn run(args: &[String], vars: &[(String, String)], bound: Duration) -> Option<Outcome> {
    let mut cmd = env().command(args);
    cmd.env("EIPOOL_POOL", "inputs")
        .env("EIPOOL_TIMEOUT", "3s")
        .env("EIPOOL_CALL_TIMEOUT", "1s");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(bound, cmd.output()).await.ok()?;
    Some(Outcome::from_output(args, out.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_or_variable_value_panics_and_a_bad_one_is_named() {
    let flags = flags();
    assert!(flags.len() > 20, "clap's definition: {flags:?}");
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4);
    let mut runner = runner("flags and variables", cases);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut tried = 0;
    // What each command says with no hostile value (e.g. that it cannot find this node): an
    // exit 2 with the same words means the value was accepted, not that it was blamed wrongly.
    let mut baseline: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for flag in &flags {
        for _ in 0..cases {
            let value = hostile_value().new_tree(&mut runner).unwrap().current();
            // A global flag rides on `status`, which ends at once without EC2.
            let command = if flag.path.is_empty() {
                vec!["status".to_string()]
            } else {
                flag.path.clone()
            };
            let mut args = command.clone();
            let by_var = tried % 2 == 1 && flag.env.is_some();
            let mut vars = Vec::new();
            if by_var {
                vars.push((flag.env.clone().unwrap(), value.clone()));
            } else {
                args.push(format!("--{}={value}", flag.long));
            }
            tried += 1;
            let Some(out) = run(&args, &vars, Duration::from_secs(10)).await else {
                *tally.entry("still running (valid)".into()).or_default() += 1;
                continue;
            };
            let code = out.code;
            *tally
                .entry(code.map_or("signal".into(), |c| c.to_string()))
                .or_default() += 1;
            let shown: String = value.chars().take(60).collect();
            assert!(
                !matches!(code, None | Some(101) | Some(70)),
                "--{} {shown:?} (by variable: {by_var}): {out}",
                flag.long
            );
            if !baseline.contains_key(&command) {
                let alone = run(&command, &[], Duration::from_secs(10)).await;
                let line = alone
                    .map(|o| o.error_line().to_string())
                    .unwrap_or_default();
                baseline.insert(command.clone(), line);
            }
            let accepted = baseline[&command].as_str();
            let accepted = !accepted.is_empty() && out.error_line() == accepted;
            if code == Some(2) && !accepted {
                let named = if by_var {
                    flag.env.clone().unwrap()
                } else {
                    format!("--{}", flag.long)
                };
                assert!(
                    out.stderr.contains(&named),
                    "exit 2 for {named}={shown:?} must name {named}: {out}"
                );
            }
        }
    }
    println!(
        "  {} flags × {cases} values ({tried} runs); exits: {tally:?}",
        flags.len()
    );
}

#[tokio::test]
async fn a_panic_is_one_line_asking_for_a_report_and_exit_70() {
    let args: Vec<String> = ["claim", "--network-interface-id", "eni-0123456789abcdef0"]
        .map(String::from)
        .to_vec();
    let out = run(
        &args,
        &[("EIPOOL_DEBUG_PANIC".into(), "1".into())],
        Duration::from_secs(30),
    )
    .await
    .expect("a panic ends the process");
    assert_eq!(out.code, Some(70), "{out}");
    let line = out.error_line();
    assert!(
        line.starts_with("eipool: error: internal error")
            && line.contains("`eipool claim`")
            && line.contains("please report it"),
        "{out}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
}

// Flags, variables and logs as operators write them.

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
async fn help_or_version_into_a_closed_pipe_exits_0_quietly() {
    // `eipool claim --help | head -1`: the reader is gone before eipool writes.
    for argv in [
        args(&["claim", "--help"]),
        args(&["--help"]),
        args(&["--version"]),
    ] {
        let mut child = offline()
            .command(&argv)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("help ends")
            .unwrap();
        let o = eipool_lab::claimer::Outcome::from_output(&argv, out);
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stderr.trim().is_empty(), "{o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_take_what_operators_write_and_errors_name_the_variable() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    let eni = nodes[0].eni.as_str();
    let claim = args(&["--pool", &lab.pool, "--network-interface-id", eni, "claim"]);
    // EIPOOL_REQUIRE_LEASES=1 is understood: it then needs a Redis URL.
    let out = lab
        .env
        .command(&claim)
        .env("EIPOOL_REQUIRE_LEASES", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--require-leases needs --redis-url"),
        "{stderr}"
    );
    // A value that is no switch names the variable, not just the flag; the deprecated name's too.
    for var in ["EIPOOL_REQUIRE_LEASES", "EIPOOL_REQUIRE_LOCK"] {
        let out = lab
            .env
            .command(&claim)
            .env(var, "perhaps")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{var}=\"perhaps\"")), "{stderr}");
    }
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

/// `--require-lock` and `EIPOOL_REQUIRE_LOCK`, renamed `--require-leases` and
/// `EIPOOL_REQUIRE_LEASES` (#39: the leases are what it requires, never a "lock"), still work
/// for `claim`, `agent` and `node`, each use warned once naming the new name; the two variables
/// disagreeing is exit 2 naming both; `--help` shows the new name only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deprecated_require_lock_still_works_warns_and_may_not_disagree() {
    let needs_redis = "--require-leases needs --redis-url";
    let flag_warning = "--require-lock is deprecated: use --require-leases";
    let var_warning = "EIPOOL_REQUIRE_LOCK is deprecated: set EIPOOL_REQUIRE_LEASES instead";
    // (command, extra flags, variables, what stderr says, what it must not say)
    let node = ["node", "--node-name", "n1"];
    type Case<'a> = (
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: [Case; 9] = [
        (
            &["claim", "--require-lock"],
            &[],
            &[needs_redis, flag_warning],
            &[var_warning],
        ),
        (
            &["agent", "--require-lock"],
            &[],
            &[needs_redis, flag_warning],
            &[],
        ),
        (
            &node,
            &[("EIPOOL_REQUIRE_LOCK", "yes")],
            &[needs_redis, var_warning],
            &[flag_warning],
        ),
        (
            &["claim"],
            &[("EIPOOL_REQUIRE_LOCK", "1")],
            &[needs_redis, var_warning],
            &[flag_warning],
        ),
        // The new names warn of nothing.
        (
            &["claim", "--require-leases"],
            &[],
            &[needs_redis],
            &["is deprecated:"],
        ),
        (
            &["claim"],
            &[("EIPOOL_REQUIRE_LEASES", "on")],
            &[needs_redis],
            &["is deprecated:"],
        ),
        // Both variables, agreeing: the old one is still warned of.
        (
            &["claim"],
            &[
                ("EIPOOL_REQUIRE_LEASES", "1"),
                ("EIPOOL_REQUIRE_LOCK", "true"),
            ],
            &[needs_redis, var_warning],
            &["disagree"],
        ),
        // Disagreeing: refused before anything else, naming both.
        (
            &["claim"],
            &[("EIPOOL_REQUIRE_LEASES", "0"), ("EIPOOL_REQUIRE_LOCK", "1")],
            &[
                "EIPOOL_REQUIRE_LEASES=\"0\" and EIPOOL_REQUIRE_LOCK=\"1\" disagree",
                "unset EIPOOL_REQUIRE_LOCK",
            ],
            &[needs_redis],
        ),
        // The command line beats both variables, as it beats any variable.
        (
            &["claim", "--require-leases"],
            &[("EIPOOL_REQUIRE_LEASES", "0"), ("EIPOOL_REQUIRE_LOCK", "1")],
            &[needs_redis, var_warning],
            &["disagree"],
        ),
    ];
    for (command, vars, says, not) in cases {
        let argv = args(
            &[
                &["--pool", "p", "--network-interface-id", "eni-0a1b"],
                command,
            ]
            .concat(),
        );
        let o = refused(&argv, vars).await;
        assert_eq!(o.code, Some(2), "{argv:?} {vars:?}: {o}");
        for s in says {
            assert!(
                o.stderr.contains(s),
                "{argv:?} {vars:?} does not say {s:?}: {o}"
            );
        }
        for s in not {
            assert!(!o.stderr.contains(s), "{argv:?} {vars:?} says {s:?}: {o}");
        }
        assert_eq!(
            o.stderr.matches("is deprecated:").count(),
            usize::from(says.iter().any(|s| s.contains("is deprecated:"))),
            "one warning: {o}"
        );
    }
    for command in [
        &["claim", "--help"][..],
        &["agent", "--help"],
        &["node", "--help"],
    ] {
        let o = offline().run(&args(command)).await;
        assert_eq!(o.code, Some(0), "{o}");
        assert!(
            o.stdout.contains("--require-leases") && o.stdout.contains("EIPOOL_REQUIRE_LEASES"),
            "{o}"
        );
        assert!(
            !o.stdout.contains("require-lock") && !o.stdout.contains("REQUIRE_LOCK"),
            "{command:?}: --help shows the deprecated name: {o}"
        );
    }
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
async fn a_bad_log_filter_exits_2_naming_log_or_eipool_log() {
    let argv = args(&["--pool", "p", "status"]);
    let bad = "info,eipool=loud";
    let o = refused(&argv, &[("EIPOOL_LOG", bad)]).await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line().contains(&format!("EIPOOL_LOG=\"{bad}\""))
            && o.error_line().contains("e.g. info"),
        "{o}"
    );
    let mut by_flag = args(&["--log", bad]);
    by_flag.extend(argv);
    let o = refused(&by_flag, &[]).await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains("--log") && !o.stderr.contains("EIPOOL_LOG"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_timeout_longer_than_its_interval_exits_2_naming_both() {
    let argv = args(&[
        "--pool",
        "p",
        "exporter",
        "--interval",
        "10s",
        "--timeout",
        "20s",
    ]);
    let o = refused(&argv, &[]).await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line().contains("--timeout 20s") && o.error_line().contains("--interval 10s"),
        "{o}"
    );
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

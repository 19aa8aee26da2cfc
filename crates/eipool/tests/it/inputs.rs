//! No input makes eipool panic (issue #22): every value-taking flag of every command, generated
//! from clap's own definition (a new flag is covered without editing this file), given hostile
//! values on the command line and through its `EIPOOL_*` variable. A bad value is exit 2 naming
//! exactly that flag or variable; nothing ever exits 101 (a panic) or 70 (a bug).
//!
//! Seeded and bounded: the seed and case count are printed; replay a failure with
//! `PROPTEST_RNG_SEED=<seed>`, set `PROPTEST_CASES` for more or fewer values per flag.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::CommandFactory;
use eipool_lab::claimer::{LabEnv, Outcome};
use eipool_lab::properties::runner;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

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

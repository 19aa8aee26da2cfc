//! Properties over everything atlantis-authz reads (issue #22): what Atlantis passes, policy
//! files, Okta's answers. Whatever they hold: no panic, one `deny:` line last and a non-zero
//! exit unless the policy allows, and a path that resolves into production is never allowed to
//! someone outside the production group.
//!
//! Seeded and bounded: each property prints its seed and case count; rerun one failure with
//! `PROPTEST_RNG_SEED=<seed>`, and set `PROPTEST_CASES` for more (or fewer) cases.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use atlantis_authz::policy::{self, Group};
use atlantis_authz::request::{from_atlantis, ATLANTIS_VARS};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::adversarial::Atlantis;
use crate::atlantis::people;
use crate::okta::Canned;

/// A runner for `cases` cases (unless `PROPTEST_CASES` says otherwise), seeded from
/// `PROPTEST_RNG_SEED` or at random, the seed printed so that a failure can be replayed.
pub(crate) fn runner(name: &str, cases: u32) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => rand::random(),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.failure_persistence = None;
    println!(
        "property {name}: {} cases, seed {seed} (replay: PROPTEST_RNG_SEED={seed})",
        config.cases
    );
    TestRunner::new(config)
}

/// Text a careless user or an attacker might send: printable, control characters, bidi
/// overrides, path syntax, shell syntax, option syntax, long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-z0-9./_-]{0,40}",
        "[\\x00-\\x1f\\x7f]{1,4}[a-z]{0,8}",
        Just("\u{202e}gorp/evil\u{202c}".to_string()),
        Just("--okta-url=http://127.0.0.1:1".to_string()),
        Just("$(echo pass)".to_string()),
        Just("pass\npass".to_string()),
        "[a-z]{1,3}".prop_map(|s| s.repeat(40_000)),
    ]
}

/// A variable's value as the OS hands it over: usually text, sometimes not UTF-8, never a NUL
/// (an environment cannot hold one).
fn os_value() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => hostile_text().prop_map(|s| s.into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ]
    .prop_map(|mut b| {
        b.retain(|&c| c != 0);
        OsString::from_vec(b)
    })
}

#[test]
fn any_atlantis_request_is_decided_or_refused_in_one_line_never_a_panic() {
    let args = proptest::collection::vec(hostile_text(), 0..6);
    let env = proptest::collection::btree_map(
        proptest::sample::select(ATLANTIS_VARS),
        proptest::option::of(os_value()),
        0..ATLANTIS_VARS.len(),
    );
    runner("request", 512)
        .run(&(args, env), |(args, env)| {
            let get = |name: &str| env.get(name).cloned().flatten();
            match from_atlantis(&args, get) {
                Ok(req) => {
                    for v in [&req.user, &req.repo, &req.command] {
                        prop_assert!(!v.chars().any(char::is_control), "{req:?}");
                    }
                }
                Err(refused) => {
                    prop_assert!(!refused.0.contains('\n'), "{refused:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A policy built from real-looking parts with hostile pieces in them, or plain noise.
fn policy_text() -> impl Strategy<Value = String> {
    let glob = prop_oneof![
        Just("live/*/*/prod/**".to_string()),
        Just("live/**".to_string()),
        Just("[".to_string()),
        Just("{a,".to_string()),
        Just("/abs".to_string()),
        Just("../x".to_string()),
        "\\PC{0,12}",
    ];
    let field = prop_oneof![
        Just("groups"),
        Just("paths"),
        Just("repos"),
        Just("commands"),
        Just("projects"),
        Just("bogus"),
    ];
    let structured = (
        proptest::collection::vec((field, glob), 0..5),
        any::<bool>(),
        "\\PC{0,12}",
    )
        .prop_map(|(fields, with_default, name)| {
            let mut s = String::from("rules:\n  - name: ");
            s.push_str(&format!("{name:?}\n"));
            for (f, v) in fields {
                s.push_str(&format!("    {f}: [{v:?}]\n"));
            }
            if with_default {
                s.push_str("default:\n  allow_groups: [everyone]\n");
            }
            s
        });
    prop_oneof![
        3 => structured,
        1 => "\\PC{0,200}",
        1 => proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[test]
fn any_policy_file_parses_or_is_refused_with_its_line_never_a_panic() {
    runner("policy", 512)
        .run(&policy_text(), |text| {
            match policy::parse("p.yaml", &text) {
                Ok(p) => {
                    let _ = p.warnings();
                }
                Err(e) => {
                    let line = e.to_string();
                    prop_assert!(!line.contains('\n'), "{line}");
                    prop_assert!(line.contains("p.yaml"), "{line}");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Resolve a relative path as a file system would (`.`, `..`, empty segments), or `None` when it
/// leaves the repository: the oracle that normalisation is checked against.
fn resolved(path: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    Some(out)
}

#[test]
fn no_path_that_resolves_into_production_is_allowed_to_someone_outside_its_group() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/atlantis-authz-policy.yaml"),
    )
    .unwrap();
    let policy = policy::parse("example", &text).unwrap();
    let engineer = vec![Group {
        id: "00gengineering0000000".into(),
        name: "engineering".into(),
        kind: "OKTA_GROUP".into(),
    }];
    let segment = prop_oneof![
        Just("live"),
        Just("111111111111"),
        Just("us-east-1"),
        Just("prod"),
        Just("staging"),
        Just("vpc"),
        Just("."),
        Just(".."),
        Just(""),
        Just("prod/"),
        Just("Prod"),
    ];
    let path = proptest::collection::vec(segment, 1..9).prop_map(|s| s.join("/"));
    let command = proptest::sample::select(policy::COMMANDS);
    runner("prod path", 2048)
        .run(&(path, command), |(path, command)| {
            let env: BTreeMap<&str, OsString> = [
                ("USER_NAME", "ana".into()),
                ("REPO_REL_PATH", path.clone().into()),
            ]
            .into();
            let args = vec![command.to_string(), "acme/infra-live".into()];
            let Ok(req) = from_atlantis(&args, |n| env.get(n).cloned()) else {
                return Ok(());
            };
            let d = policy::decide(&policy, &req, &engineer);
            let in_prod =
                resolved(&path).is_some_and(|s| s.len() >= 4 && s[0] == "live" && s[3] == "prod");
            let mutating = ["apply", "import", "state"].contains(&command);
            prop_assert!(
                !(d.allowed && in_prod && mutating),
                "{command} on {path:?} (as {:?}) allowed to engineering: {d:?}",
                req.path
            );
            Ok(())
        })
        .unwrap();
}

/// Okta's answer to every request, whatever it is: status, headers and body.
fn okta_answer() -> impl Strategy<Value = Canned> {
    let status = prop_oneof![
        Just(200u16),
        Just(301),
        Just(401),
        Just(404),
        Just(429),
        Just(500),
        100u16..600
    ];
    let header = prop_oneof![
        Just((
            "x-rate-limit-reset".to_string(),
            "18446744073709551615".to_string()
        )),
        Just(("x-rate-limit-reset".to_string(), "-1".to_string())),
        Just((
            "link".to_string(),
            "<http://127.0.0.1:1/x>; rel=\"next\"".to_string()
        )),
        Just(("link".to_string(), "<>; rel=next".to_string())),
        Just(("location".to_string(), "http://127.0.0.1:1/".to_string())),
        Just(("content-type".to_string(), "application/json".to_string())),
    ];
    let body = prop_oneof![
        Just(b"[]".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"[{\"id\":1}]".to_vec()),
        Just(br#"[{"id":"00u1","profile":{"login":"ana@example.com"}}]"#.to_vec()),
        Just(
            br#"[{"id":"00g1","type":"OKTA_GROUP","profile":{"name":"infra-prod-admins"}}]"#
                .to_vec()
        ),
        Just(b"[1,2,".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    (status, proptest::collection::vec(header, 0..3), body).prop_map(|(status, headers, body)| {
        Canned {
            status,
            headers,
            body,
        }
    })
}

/// `ana`, an engineer never in the production group, asks to apply on a production path.
fn ana_applies_to_prod(okta: &crate::okta::FakeOkta, cache: &Path) -> Atlantis {
    Atlantis::new(okta, cache, "ana", "apply", Some(crate::atlantis::PROD))
}

/// Denied, with one `deny:` line last and a verdict's exit code (never a panic's).
fn denied_in_one_line(
    out: &crate::adversarial::Outcome,
    case: &str,
) -> Result<(), proptest::test_runner::TestCaseError> {
    prop_assert!(!out.allowed(), "{case} allowed: {out}");
    prop_assert!(out.last_line().starts_with("deny: "), "{case}: {out}");
    prop_assert!(matches!(out.code, Some(1..=3)), "{case}: {out}");
    Ok(())
}

/// Allowed (`pass` last, exit 0) or denied in one line with a verdict's exit code.
fn decided_in_one_line(
    out: &crate::adversarial::Outcome,
    case: &str,
) -> Result<(), proptest::test_runner::TestCaseError> {
    if out.allowed() {
        return Ok(());
    }
    denied_in_one_line(out, case)
}

#[test]
fn any_okta_answer_denies_in_one_line_without_a_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let okta = rt.block_on(people());
    let cache = tempfile::tempdir().unwrap();
    let tally: std::cell::RefCell<BTreeMap<Option<i32>, usize>> = Default::default();
    runner("okta answers", 48)
        .run(&okta_answer(), |answer| {
            *okta.behaviour.canned.lock().unwrap() = Some(answer.clone());
            // No cache: every case asks Okta.
            let mut call = ana_applies_to_prod(&okta, cache.path());
            call.server("ATLANTIS_AUTHZ_CACHE_TTL", "0s");
            let out = rt.block_on(call.run());
            *tally.borrow_mut().entry(out.code).or_default() += 1;
            denied_in_one_line(&out, &format!("{answer:?}"))
        })
        .unwrap();
    *okta.behaviour.canned.lock().unwrap() = None;
    println!("  exits: {:?}", tally.borrow());
}

#[test]
fn any_value_atlantis_exports_denies_or_decides_in_one_line_without_a_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let okta = rt.block_on(people());
    let cache = tempfile::tempdir().unwrap();
    let vars =
        proptest::collection::btree_map(proptest::sample::select(ATLANTIS_VARS), os_value(), 1..4);
    // Team words as the shell would split them (no shell syntax: that is Atlantis's side).
    let teams = proptest::collection::vec("[-a-zA-Z0-9_./=]{1,12}|\\p{L}{1,6}", 0..4);
    let tally: std::cell::RefCell<BTreeMap<Option<i32>, usize>> = Default::default();
    runner("atlantis variables", 64)
        .run(&(vars, teams), |(vars, teams)| {
            // `ana` is an engineer, never in the production group: nothing may let her apply
            // (unless the variables name someone who is).
            let admins = ["priya", "max", "sam"].map(OsString::from);
            prop_assume!(!vars.get("USER_NAME").is_some_and(|u| admins.contains(u)));
            let mut call = ana_applies_to_prod(&okta, cache.path());
            for (k, v) in vars.clone() {
                call.vars.insert(k, v);
            }
            call.teams = teams.clone();
            let out = rt.block_on(call.run());
            *tally.borrow_mut().entry(out.code).or_default() += 1;
            let case = format!("{vars:?} {teams:?}");
            // An empty REPO_REL_PATH is Atlantis's first, repository-wide check: it allows
            // whoever may apply somewhere in the repository (ana may, outside prod), as each
            // project is checked again. Any other value keeps a path, never one ana may apply.
            if vars.get("REPO_REL_PATH").is_some_and(|p| p.is_empty()) {
                decided_in_one_line(&out, &case)
            } else {
                denied_in_one_line(&out, &case)
            }
        })
        .unwrap();
    println!("  exits: {:?}", tally.borrow());
}

#[tokio::test]
async fn a_panic_denies_in_one_line_with_its_own_exit_code() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut call = Atlantis::new(
        &okta,
        cache.path(),
        "priya",
        "apply",
        Some(crate::atlantis::PROD),
    );
    call.server("ATLANTIS_AUTHZ_DEBUG_PANIC", "1");
    let out = call.run().await;
    assert_eq!(out.code, Some(70), "{out}");
    assert_eq!(
        out.last_line(),
        "deny: atlantis-authz failed unexpectedly (a bug); nothing was allowed"
    );
    assert!(out.output.contains("please report it"), "{out}");
}

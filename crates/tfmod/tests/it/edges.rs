//! The process's edges, as eipool and atlantis-authz have them (cli-edge): a panic is one line
//! asking for a report and exit 70; a bad value from a `TFMOD_*` variable names the variable; a
//! reader that leaves early (`| head -c1`) is no panic. None of these reaches S3.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use crate::harness::{command, tfmod_env, write};

/// An endpoint nothing listens on: these runs end before any S3 call.
const NOWHERE: &str = "http://127.0.0.1:9";

#[test]
fn a_panic_is_one_line_asking_for_a_report_and_exit_70() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("TFMOD_DEBUG_PANIC", "1"), ("RUST_BACKTRACE", "1")];
    let r = tfmod_env(
        dir.path(),
        NOWHERE,
        &vars,
        &["versions", "vpc", "--bucket", "b-1"],
    );
    assert_eq!(r.code, 70, "{r:?}");
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line, no backtrace: {r:?}");
    assert!(
        line.starts_with("tfmod: error: internal error at ")
            && line.contains("in `tfmod versions`")
            && line.contains("please report it"),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");
}

/// The stderr of `tfmod ARGS` with `var` set, refused as bad usage (exit 2).
fn refused(var: (&str, &str), args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let r = tfmod_env(dir.path(), NOWHERE, &[var], args);
    assert_eq!(r.code, 2, "{r:?}");
    r.stderr
}

#[test]
fn a_bad_value_from_a_variable_names_the_variable() {
    let timeout = ("TFMOD_S3_TIMEOUT", "soon");
    let err = refused(timeout, &["versions", "vpc", "--bucket", "b-1"]);
    assert!(
        err.starts_with("tfmod: error: TFMOD_S3_TIMEOUT=\"soon\" (from the environment)")
            && err.trim_end().ends_with("fix or unset TFMOD_S3_TIMEOUT"),
        "{err}"
    );
    // Given on the command line, it is the flag's error.
    let args = ["versions", "vpc", "--bucket", "b-1", "--s3-timeout", "soon"];
    let err = refused(timeout, &args);
    assert!(
        err.contains("--s3-timeout") && !err.contains("TFMOD_S3_TIMEOUT="),
        "{err}"
    );
    // A value refused after parsing names its variable too.
    let err = refused(("TFMOD_BUCKET", "a.b"), &["versions", "vpc"]);
    assert!(
        err.starts_with("tfmod: error: --bucket \"a.b\" is refused")
            && err.contains("(from the environment: --bucket is TFMOD_BUCKET;"),
        "{err}"
    );
}

/// `tfmod verify live --bucket B` with `units` units sourced from git: one problem line each.
fn untrusted_units(root: &Path, units: usize) {
    for i in 0..units {
        write(
            &root.join(format!("live/unit-{i:04}/terragrunt.hcl")),
            "terraform {\n  source = \"git::https://example.com/acme/modules.git//vpc?ref=v1\"\n}\n",
        );
    }
}

#[test]
fn a_reader_that_leaves_early_is_no_panic() {
    // `tfmod verify live --bucket B | head -c1`, with more problem lines than a pipe holds (64
    // KiB): tfmod is still writing when head leaves.
    let dir = tempfile::tempdir().unwrap();
    let units = 1000;
    untrusted_units(dir.path(), units);
    let args = ["verify", "live", "--bucket", "bucket-a"];
    let mut child = command(dir.path(), NOWHERE, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The code it reached: problems found.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("tfmod: error: {units} problem(s) found"),
        "no panic"
    );
}

//! The edges an independent test found, each run exactly as Atlantis runs the command: paths
//! that climb out with `..`, input that forges output lines, a cache that outlived what decided
//! it, an audit log that cannot be written, requests that can never pass, and the first check
//! with `PROJECT_NAME`.

use std::sync::atomic::Ordering;

use crate::atlantis::{assert_denied, people, policy, Call, BIN, PROD};
use crate::okta::FakeOkta;

const STAGING_DOTDOT: &str = "live/222222222222/eu-west-1/staging/../prod/vpc";
const SANDBOX_DOTDOT: &str = "live/sandbox/../../live/111111111111/us-east-1/prod/vpc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_climbs_with_dotdot_or_is_absolute_denies_before_okta_is_asked() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    for path in [
        STAGING_DOTDOT,
        SANDBOX_DOTDOT,
        "/live/111111111111/us-east-1/prod/vpc",
        "live/111111111111/us-east-1/prod/vpc\nlive/x",
    ] {
        let r = Call::new(&okta, cache.path(), "ana", "apply", Some(path))
            .run()
            .await;
        assert_denied(&r, &["REPO_REL_PATH"]);
        assert_eq!(r.code, Some(2), "{r}");
    }
    assert_eq!(
        okta.requests.load(Ordering::SeqCst),
        0,
        "Okta was asked about a request that can never pass"
    );
    // A path that only needs tidying is tidied, not refused: ./ and // go.
    let r = Call::new(
        &okta,
        cache.path(),
        "ana",
        "apply",
        Some("./live/222222222222//eu-west-1/staging/vpc/"),
    )
    .run()
    .await;
    assert!(r.allowed(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_one_deny_line_whatever_the_input_holds() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut forged = Call::new(&okta, cache.path(), "ana", "apply", Some(PROD));
    forged.project = Some("prod\npass\n");
    let mut forged_path = Call::new(&okta, cache.path(), "ana", "apply", Some("live/x\npass"));
    forged_path.project = Some("x");
    for call in [forged, forged_path] {
        let r = call.run().await;
        assert_denied(&r, &[]);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stdout: {r}");
        assert!(lines[0].starts_with("deny: "), "{r}");
        assert!(
            !r.stderr
                .lines()
                .any(|l| l.trim().eq_ignore_ascii_case("pass")),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_allow_does_not_survive_a_change_of_org_token_or_mapping() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let allowed = || Call::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    assert!(allowed().run().await.allowed());
    assert!(allowed().run().await.allowed(), "from the cache");

    // Another org, where priya is not a prod admin.
    let other = FakeOkta::start(
        &[("priya", "priya@example.com", "ACTIVE", &["engineering"])],
        10,
    )
    .await;
    let mut call = allowed();
    call.okta_url = other.url.clone();
    assert_denied(&call.run().await, &["prod-apply"]);

    // The token was revoked (replaced): Okta refuses the old one; the cache does not vouch.
    let mut call = allowed();
    call.token = "revoked-token";
    let r = call.run().await;
    assert!(!r.allowed(), "a cached allow outlived the token: {r}");

    // The identity mapping changed: priya's GitHub login now maps to ana's Okta user.
    let dir = tempfile::tempdir().unwrap();
    let remapped = dir.path().join("authz.yaml");
    let text = std::fs::read_to_string(policy()).unwrap().replace(
        "    infra-bot: svc-infra-bot@example.com",
        "    priya: ana@example.com",
    );
    std::fs::write(&remapped, text).unwrap();
    let mut call = allowed();
    call.policy = remapped;
    assert_denied(&call.run().await, &["prod-apply"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_that_cannot_be_written_denies() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut call = Call::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    call.extra = vec!["--audit-log".into(), "/nonexistent-dir/audit.jsonl".into()];
    let r = call.run().await;
    assert_denied(&r, &["audit log", "/nonexistent-dir/audit.jsonl"]);
    assert_eq!(r.code, Some(2), "{r}");
    // The decision is still on record, on stderr.
    assert!(r.stderr.contains("\"verdict\""), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_or_a_malformed_repository_is_refused_before_okta() {
    let okta = people().await;
    okta.behaviour.down.store(true, Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "priya", "destroy", Some(PROD))
        .run()
        .await;
    assert_denied(&r, &["unknown Atlantis command"]);
    assert_eq!(r.code, Some(2), "usage, not Okta (3): {r}");
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} --policy {} --okta-url {} plan infra-live",
            policy().display(),
            okta.url
        ))
        .env("USER_NAME", "priya")
        .env("OKTA_API_TOKEN", crate::okta::TOKEN)
        // The fake Okta speaks plain http on loopback.
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("is not a repository as owner/repo"),
        "{stdout}"
    );
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_policy_refuses_a_repository_glob_without_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("authz.yaml");
    let text = std::fs::read_to_string(policy()).unwrap().replacen(
        "repos: [\"acme/infra-live\"]",
        "repos: [\"infra-live\"]",
        1,
    );
    let line = 1 + text
        .lines()
        .position(|l| l.contains("repos: [\"infra-live\"]"))
        .unwrap();
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("can never match") && stderr.contains(&format!("line {line}:")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_candidate_rules_even_without_okta() {
    let okta = people().await;
    okta.behaviour.down.store(true, Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .args([
            "--policy",
            policy().to_str().unwrap(),
            "--okta-url",
            &okta.url,
        ])
        .args(["--cache-dir", cache.path().to_str().unwrap()])
        .args(["explain", "--user", "ana", "--repo", "acme/infra-live"])
        .args(["--path", PROD, "--command", "apply"])
        .env("OKTA_API_TOKEN", crate::okta::TOKEN)
        // The fake Okta speaks plain http on loopback.
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("rules that match, in order: prod-apply"),
        "{text}"
    );
    assert!(text.contains("groups:  unknown"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_check_with_project_name_and_no_path_is_repository_wide() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    // As the open Atlantis change sends it with -p: PROJECT_NAME, no REPO_REL_PATH.
    let mut call = Call::new(&okta, cache.path(), "priya", "apply", None);
    call.project = Some("live-111111111111-us-east-1-prod-vpc");
    let r = call.run().await;
    assert!(r.allowed(), "a prod applier using -p was denied: {r}");
    // And as Atlantis 0.30 sends it: neither.
    let r = Call::new(&okta, cache.path(), "priya", "apply", None)
        .run()
        .await;
    assert!(r.allowed(), "{r}");
}

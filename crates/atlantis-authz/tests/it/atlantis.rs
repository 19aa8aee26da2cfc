//! The binary run exactly as Atlantis runs it: `sh -c "<command> <args> <cmd> <owner/repo>
//! <owner/team>…"` with USER_NAME, REPO_REL_PATH, … in the environment. Allowed only when it
//! exits 0 and the last line is `pass`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::okta::{FakeOkta, TOKEN};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_atlantis-authz");
pub(crate) const PROD: &str = "live/111111111111/us-east-1/prod/vpc";
pub(crate) const STAGING: &str = "live/222222222222/eu-west-1/staging/vpc";

pub(crate) fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/atlantis-authz-policy.yaml")
}

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn last_line(&self) -> &str {
        // Atlantis reads stdout and stderr together; the verdict must be last in both orders it
        // could see them, so it must be last on stdout and nothing may follow on stderr.
        self.stdout.trim().lines().last().unwrap_or("")
    }
    pub(crate) fn allowed(&self) -> bool {
        self.code == Some(0) && self.last_line().eq_ignore_ascii_case("pass")
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub(crate) struct Call<'a> {
    pub(crate) okta_url: String,
    pub(crate) policy: PathBuf,
    pub(crate) cache: PathBuf,
    pub(crate) user: &'a str,
    pub(crate) command: &'a str,
    pub(crate) path: Option<&'a str>,
    pub(crate) extra: Vec<String>,
    /// PROJECT_NAME when not derived from the path (`None`: derived when a path is given).
    pub(crate) project: Option<&'a str>,
    /// The Okta API token to run with.
    pub(crate) token: &'a str,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        okta: &FakeOkta,
        cache: &Path,
        user: &'a str,
        command: &'a str,
        path: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            okta_url: okta.url.clone(),
            policy: policy(),
            cache: cache.to_path_buf(),
            user,
            command,
            path,
            extra: Vec::new(),
            project: None,
            token: TOKEN,
        }
    }

    pub(crate) async fn run(&self) -> Run {
        // What Atlantis builds: "$external_cmd $external_args $command $repo $teams".
        let cmdline = format!(
            "{BIN} --policy {} --okta-url {} --cache-dir {} {} {} acme/infra-live acme/sre acme/backend",
            self.policy.display(),
            self.okta_url,
            self.cache.display(),
            self.extra.join(" "),
            self.command
        );
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&cmdline)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OKTA_API_TOKEN", self.token)
            // The fake Okta speaks plain http on loopback.
            .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
            .env("USER_NAME", self.user)
            .env("COMMAND_NAME", self.command)
            .env("BASE_REPO_OWNER", "acme")
            .env("BASE_REPO_NAME", "infra-live")
            .env("PULL_NUM", "42")
            .env("PULL_AUTHOR", self.user);
        if let Some(p) = self.path {
            cmd.env("REPO_REL_PATH", p)
                .env("PROJECT_NAME", p.replace('/', "-"));
        }
        if let Some(p) = self.project {
            cmd.env("PROJECT_NAME", p);
        }
        let out = cmd.output().await.unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub(crate) fn assert_denied(r: &Run, words: &[&str]) {
    assert!(!r.allowed(), "should deny: {r}");
    assert_ne!(r.code, Some(0), "{r}");
    assert!(r.last_line().starts_with("deny: "), "{r}");
    for w in words {
        assert!(
            r.last_line().contains(w),
            "the reason should mention {w:?}: {r}"
        );
    }
    assert!(
        !r.stdout
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("pass")),
        "printed pass while denying: {r}"
    );
}

pub(crate) async fn people() -> FakeOkta {
    FakeOkta::start(
        &[
            (
                "ana",
                "ana@example.com",
                "ACTIVE",
                &["everyone", "engineering"],
            ),
            (
                "priya",
                "priya@example.com",
                "ACTIVE",
                &["everyone", "engineering", "infra-prod-admins"],
            ),
            (
                "sam",
                "sam@example.com",
                "SUSPENDED",
                &["engineering", "infra-prod-admins"],
            ),
            // Many groups: the one that matters is on the last page.
            (
                "max",
                "max@example.com",
                "ACTIVE",
                &["g1", "g2", "g3", "g4", "g5", "g6", "infra-prod-admins"],
            ),
        ],
        2,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_is_allowed_for_engineers() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "ana", "plan", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "{r}");
    // The command-level check (no project yet) too.
    let r = Call::new(&okta, cache.path(), "ana", "plan", None)
        .run()
        .await;
    assert!(r.allowed(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_apply_is_allowed_for_the_prod_group_only() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "ana", "apply", Some(PROD))
        .run()
        .await;
    assert_denied(&r, &["prod-apply", "infra-prod-admins"]);
    assert_eq!(r.code, Some(1));
    let r = Call::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "{r}");
    // Staging is open to engineers.
    let r = Call::new(&okta, cache.path(), "ana", "apply", Some(STAGING))
        .run()
        .await;
    assert!(r.allowed(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_read_across_pages() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "max", "apply", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "the group on page 4 counts: {r}");
    // search + 4 pages of 2 groups
    assert_eq!(okta.requests.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_suspended_users_are_denied() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "mallory", "plan", Some(STAGING))
        .run()
        .await;
    assert_denied(&r, &["no Okta user", "mallory"]);
    let r = Call::new(&okta, cache.path(), "sam", "plan", Some(STAGING))
        .run()
        .await;
    assert_denied(&r, &["SUSPENDED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_down_or_failing_denies() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut call = Call::new(&okta, cache.path(), "priya", "plan", Some(STAGING));
    call.okta_url = "http://127.0.0.1:9".into(); // nothing listens there
    let r = call.run().await;
    assert_denied(&r, &["Okta is unavailable"]);
    assert_eq!(r.code, Some(3));

    okta.behaviour.down.store(true, Ordering::SeqCst);
    let r = Call::new(&okta, cache.path(), "priya", "plan", Some(STAGING))
        .run()
        .await;
    assert_denied(&r, &["503"]);
    assert_eq!(r.code, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_slower_than_the_timeout_denies() {
    let okta = people().await;
    okta.behaviour.delay_ms.store(3_000, Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let mut call = Call::new(&okta, cache.path(), "priya", "plan", Some(STAGING));
    call.extra = vec![
        "--okta-timeout".into(),
        "300ms".into(),
        "--timeout".into(),
        "1s".into(),
    ];
    let started = std::time::Instant::now();
    let r = call.run().await;
    assert_denied(&r, &["did not answer"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "it waited for the slow answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_until_its_reset() {
    let okta = people().await;
    okta.behaviour.rate_limited.store(1, Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let r = Call::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "{r}");
    assert_eq!(
        okta.requests.load(Ordering::SeqCst),
        4,
        "429, then search and one page of groups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_spares_okta_but_never_outlives_its_ttl() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    assert!(
        Call::new(&okta, cache.path(), "priya", "plan", Some(STAGING))
            .run()
            .await
            .allowed()
    );
    let asked = okta.requests.load(Ordering::SeqCst);
    okta.behaviour.down.store(true, Ordering::SeqCst);
    let r = Call::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "served from the cache: {r}");
    assert_eq!(
        okta.requests.load(Ordering::SeqCst),
        asked,
        "Okta was asked again"
    );

    // Age the entry past the TTL: with Okta down, the stale entry must not allow.
    let file = cache.path().join("priya.json");
    let mut entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    entry["fetched_at"] = serde_json::json!(entry["fetched_at"].as_u64().unwrap() - 3_600);
    std::fs::write(&file, entry.to_string()).unwrap();
    let r = Call::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    assert_denied(&r, &["Okta is unavailable"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_denies_with_the_line() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("authz.yaml");
    std::fs::write(&bad, "identity:\n  github_attribute: githubUsername\nrules:\n  - name: x\n    commands: [plan]\n    groups: [engineering]\n    paths: [\"live/[\"]\n").unwrap();
    let mut call = Call::new(&okta, cache.path(), "priya", "plan", Some(STAGING));
    call.policy = bad.clone();
    let r = call.run().await;
    assert_denied(&r, &["broken policy", "line 7"]);
    assert_eq!(r.code, Some(2));

    let check = std::process::Command::new(BIN)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("line 7"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let good = std::process::Command::new(BIN)
        .arg("check-policy")
        .arg(policy())
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_audited() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let log = cache.path().join("audit.jsonl");
    let mut call = Call::new(&okta, cache.path(), "ana", "apply", Some(PROD));
    call.extra = vec!["--audit-log".into(), log.display().to_string()];
    call.run().await;
    call.user = "priya";
    call.run().await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["user"], "ana");
    assert_eq!(lines[0]["verdict"], "deny");
    assert_eq!(lines[0]["rule"], "prod-apply");
    assert_eq!(lines[0]["path"], PROD);
    assert_eq!(lines[0]["pull"], "42");
    assert!(lines[0]["latency_ms"].is_u64());
    assert_eq!(lines[1]["verdict"], "allow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_rule_the_groups_and_the_verdict() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .args([
            "--policy",
            policy().to_str().unwrap(),
            "--okta-url",
            &okta.url,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ])
        .args([
            "explain",
            "--user",
            "ana",
            "--repo",
            "acme/infra-live",
            "--path",
            PROD,
            "--command",
            "apply",
        ])
        .env("OKTA_API_TOKEN", TOKEN)
        // The fake Okta speaks plain http on loopback.
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("groups:  everyone, engineering"), "{text}");
    assert!(text.contains("deciding rule: prod-apply"), "{text}");
    assert!(text.contains("verdict: deny"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_client_credentials_with_a_private_key_jwt() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "openssl genrsa: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} --policy {} --okta-url {} --cache-dir {} plan acme/infra-live",
            policy().display(),
            okta.url,
            dir.path().display()
        ))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OKTA_CLIENT_ID", "0oa-test-client")
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .env("OKTA_PRIVATE_KEY_FILE", &key)
        .env("USER_NAME", "ana")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim().lines().last(),
        Some("pass"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! atlantis-authz attacked the way Atlantis calls it (issue #27). [`Atlantis`] does what
//! Atlantis's team_authz runner does: it joins the command, the `args` of repos.yaml, the
//! Atlantis command, `owner/repo` and `owner/<team>` for each of the user's teams with spaces,
//! unquoted, runs that with `sh -c`, exports every variable Atlantis sets, reads stdout and stderr
//! together from one pipe, and allows only on exit 0 with `pass` as the last line. An attacker's
//! host is a second fake Okta on loopback.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use atlantis_authz::cli::Cli;
use atlantis_authz::request::ATLANTIS_VARS;
use clap::CommandFactory;
use tokio::io::AsyncReadExt;

use crate::atlantis::{people, policy, BIN, PROD, STAGING};
use crate::okta::{group_id, FakeOkta, TOKEN};

/// One team_authz call as Atlantis makes it.
pub(crate) struct Atlantis {
    /// `team_authz.args` of repos.yaml.
    pub(crate) args: Vec<String>,
    /// The Atlantis server's own environment (credentials, the tool's settings).
    pub(crate) server_env: Vec<(String, OsString)>,
    /// The Atlantis command.
    pub(crate) command: String,
    /// `owner/repo`.
    pub(crate) repo: String,
    /// The user's team names; Atlantis writes each as `owner/<name>`.
    pub(crate) teams: Vec<String>,
    /// The variables Atlantis exports (each of [`ATLANTIS_VARS`]).
    pub(crate) vars: BTreeMap<&'static str, OsString>,
}

/// What Atlantis sees: the exit code and the combined output.
pub(crate) struct Outcome {
    pub(crate) code: Option<i32>,
    pub(crate) output: String,
}

impl Outcome {
    /// The line Atlantis judges: the last of the trimmed combined output.
    pub(crate) fn last_line(&self) -> &str {
        self.output.trim().lines().last().unwrap_or("")
    }
    /// Atlantis's verdict.
    pub(crate) fn allowed(&self) -> bool {
        self.code == Some(0) && self.last_line().eq_ignore_ascii_case("pass")
    }
    /// A denial with one `deny:` line last, mentioning each of `words`, and the exit code.
    pub(crate) fn assert_denied(&self, code: i32, words: &[&str]) {
        assert!(!self.allowed(), "should deny: {self}");
        assert!(self.last_line().starts_with("deny: "), "{self}");
        assert_eq!(self.code, Some(code), "{self}");
        for w in words {
            assert!(
                self.last_line().contains(w),
                "the reason should mention {w:?}: {self}"
            );
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.output.chars().take(4000).collect();
        write!(f, "exit {:?}, output:\n{shown}", self.code)
    }
}

impl Atlantis {
    /// `user` runs `command` on acme/infra-live; `path` is the project's REPO_REL_PATH (`None`:
    /// the first, repository-wide check, where Atlantis exports PROJECT_NAME and REPO_REL_PATH
    /// empty). Set up as the README says: repos.yaml args name the policy, the server's
    /// environment has the rest.
    pub(crate) fn new(
        okta: &FakeOkta,
        cache: &Path,
        user: &str,
        command: &str,
        path: Option<&str>,
    ) -> Atlantis {
        let mut vars: BTreeMap<&'static str, OsString> = BTreeMap::new();
        for (k, v) in [
            ("BASE_BRANCH_NAME", "main"),
            ("BASE_REPO_NAME", "infra-live"),
            ("BASE_REPO_OWNER", "acme"),
            ("COMMENT_ARGS", ""),
            ("HEAD_BRANCH_NAME", "change-vpc"),
            ("HEAD_COMMIT", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"),
            ("HEAD_REPO_NAME", "infra-live"),
            ("HEAD_REPO_OWNER", "acme"),
            ("PULL_AUTHOR", user),
            ("PULL_NUM", "42"),
            ("PULL_URL", "https://github.com/acme/infra-live/pull/42"),
            ("USER_NAME", user),
            ("COMMAND_NAME", command),
            ("PROJECT_NAME", ""),
            (
                "REPO_ROOT",
                "/atlantis-data/repos/acme/infra-live/42/default",
            ),
            ("REPO_REL_PATH", path.unwrap_or("")),
        ] {
            vars.insert(k, v.into());
        }
        if let Some(p) = path {
            vars.insert("PROJECT_NAME", p.replace('/', "-").into());
        }
        assert_eq!(vars.len(), ATLANTIS_VARS.len());
        Atlantis {
            args: vec!["--policy".into(), policy().display().to_string()],
            server_env: vec![
                ("OKTA_ORG_URL".into(), okta.url.clone().into()),
                ("OKTA_API_TOKEN".into(), TOKEN.into()),
                ("ATLANTIS_AUTHZ_CACHE_DIR".into(), cache.as_os_str().into()),
                // The fake Okta speaks plain http on loopback.
                ("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP".into(), "1".into()),
            ],
            command: command.into(),
            repo: "acme/infra-live".into(),
            teams: vec!["sre".into(), "backend".into()],
            vars,
        }
    }

    /// With `policy` as repos.yaml's `--policy`.
    pub(crate) fn with_policy(mut self, policy: &Path) -> Atlantis {
        self.args[1] = policy.display().to_string();
        self
    }

    /// Set (or replace) a variable of the Atlantis server's environment.
    pub(crate) fn server(&mut self, name: &str, value: impl Into<OsString>) {
        self.server_env.retain(|(k, _)| k != name);
        self.server_env.push((name.into(), value.into()));
    }

    /// The command line Atlantis builds: "$command $args $atlantis_command $repo $teams".
    pub(crate) fn command_line(&self) -> String {
        let owner = self.repo.split('/').next().unwrap_or("");
        let teams: Vec<String> = self.teams.iter().map(|t| format!("{owner}/{t}")).collect();
        let mut words = vec![BIN.to_string()];
        words.extend(self.args.iter().cloned());
        words.push(self.command.clone());
        words.push(self.repo.clone());
        words.push(teams.join(" "));
        words.join(" ")
    }

    /// What the tool must take as Atlantis's arguments: the words after the repos.yaml args.
    pub(crate) fn atlantis_words(&self) -> Vec<String> {
        let owner = self.repo.split('/').next().unwrap_or("");
        let mut words = vec![self.command.clone(), self.repo.clone()];
        for t in &self.teams {
            words.extend(format!("{owner}/{t}").split(' ').map(str::to_string));
        }
        words
    }

    /// Run it; `None` when it has not finished within `bound` (it is then killed).
    pub(crate) async fn run_within(&self, bound: Duration) -> Option<Outcome> {
        let (tx, mut rx) = tokio::net::unix::pipe::pipe().unwrap();
        let out = tx.into_blocking_fd().unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(self.command_line())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.server_env.iter().map(|(k, v)| (k, v)))
            .envs(&self.vars)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // A group of its own, so that a run past `bound` is ended whole: killing `sh` alone
            // would leave the tool running (and holding a core) after the test has failed.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let group = child.id().expect("a pid before it is waited for");
        // Our copies of the write end go, so the read ends when the command's do.
        drop(cmd);
        let finished = tokio::time::timeout(bound, async {
            let mut bytes = Vec::new();
            rx.read_to_end(&mut bytes).await.unwrap();
            let status = child.wait().await.unwrap();
            (status, bytes)
        })
        .await;
        let Ok((status, bytes)) = finished else {
            // Not reaped yet, so the group id is still this run's.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .status();
            return None;
        };
        Some(Outcome {
            code: status.code(),
            output: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub(crate) async fn run(&self) -> Outcome {
        self.run_within(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("still running after 60 s: {}", self.command_line()))
    }
}

/// A new RSA private key (PEM) in `dir`, for the OAuth client.
fn rsa_key(dir: &Path) -> PathBuf {
    let key = dir.join("key.pem");
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
    key
}

/// An attacker's host: a fake Okta that answers without checking credentials, where `user` is
/// in the production group.
async fn attacker(user: &str) -> FakeOkta {
    let evil = FakeOkta::start(
        &[(
            user,
            "attacker@example.com",
            "ACTIVE",
            &["everyone", "engineering", "infra-prod-admins"],
        )],
        2,
    )
    .await;
    evil.behaviour.no_auth.store(true, Ordering::SeqCst);
    evil
}

fn audit_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every way an option or subcommand of the tool's own command line could be written in a
/// team name, generated from its clap definition (so a new flag is covered when it is added):
/// each long, short and alias, with its value as a separate word and attached (`--x=v`, `-xv`),
/// each subcommand name, and `--`. Each team starts with a harmless word, as a real one would
/// (Atlantis writes it as `owner/<team>`, so only later words can look like options).
fn hostile_teams(value_for: &dyn Fn(&clap::Arg) -> String) -> Vec<String> {
    fn walk(cmd: &clap::Command, value_for: &dyn Fn(&clap::Arg) -> String, out: &mut Vec<String>) {
        for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
            let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
            let v = value_for(arg);
            let longs = arg
                .get_long()
                .into_iter()
                .chain(arg.get_all_aliases().unwrap_or_default());
            for long in longs {
                if takes_value {
                    out.push(format!("x --{long} {v}"));
                    out.push(format!("x --{long}={v}"));
                    out.push(format!("x -- --{long} {v}"));
                } else {
                    out.push(format!("x --{long}"));
                    out.push(format!("x --{long}=true"));
                }
            }
            let shorts = arg
                .get_short()
                .into_iter()
                .chain(arg.get_all_short_aliases().unwrap_or_default());
            for short in shorts {
                if takes_value {
                    out.push(format!("x -{short} {v}"));
                    out.push(format!("x -{short}{v}"));
                } else {
                    out.push(format!("x -{short}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                out.push(format!("x {name}"));
                out.push(format!("x {name} --help"));
            }
            walk(sub, value_for, out);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = vec!["x --".to_string(), "x -- x".to_string()];
    walk(&cmd, value_for, &mut out);
    out.sort();
    out.dedup();
    out
}

/// Finding 1 (critical): a team named like `x --okta-url http://attacker` made the tool ask the
/// attacker for the user's groups (and send it the API token). Nothing after the Atlantis
/// command name is an option, whatever it holds: with the repos.yaml args as the README showed
/// them before, and as it shows them now (ending in `--`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_option_or_subcommand_can_be_smuggled_in_through_a_team_name() {
    let okta = people().await;
    let evil = attacker("ana").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let permissive = dir.path().join("permissive.yaml");
    std::fs::write(
        &permissive,
        "identity: {github_attribute: githubUsername}\ndefault: {allow_groups: [engineering]}\nrules: []\n",
    )
    .unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let hostile_audit = dir.path().join("hostile-audit.jsonl");
    let hostile_cache = dir.path().join("hostile-cache");
    let value_for = |arg: &clap::Arg| -> String {
        match arg.get_id().as_str() {
            "okta_url" => evil.url.clone(),
            "policy" => permissive.display().to_string(),
            "audit_log" => hostile_audit.display().to_string(),
            "cache_dir" => hostile_cache.display().to_string(),
            "okta_private_key" => key.display().to_string(),
            "okta_token" => TOKEN.to_string(),
            "user" => "priya".to_string(),
            "repo" => "acme/infra-live".to_string(),
            "command" => "apply".to_string(),
            _ if arg
                .get_value_names()
                .is_some_and(|n| n.iter().any(|n| n == "DURATION")) =>
            {
                "3650d".to_string()
            }
            _ => "x".to_string(),
        }
    };
    let teams = hostile_teams(&value_for);
    // The generator saw the flags that matter (a sanity check on the generator, not a list).
    for must in [
        "--okta-url",
        "--policy",
        "--cache-ttl",
        "--audit-log",
        "--help",
        "-h",
        "--version",
    ] {
        assert!(
            teams.iter().any(|t| t.split(' ').any(|w| w == must)),
            "{must} not generated: {teams:?}"
        );
    }
    for must in ["x check-policy", "x explain", "x help"] {
        assert!(teams.iter().any(|t| t == must), "{must} not generated");
    }

    let audit = dir.path().join("audit.jsonl");
    let mut failures = Vec::new();
    for args_end_with_escape in [false, true] {
        for team in &teams {
            let mut a = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD));
            a.server("ATLANTIS_AUTHZ_AUDIT_LOG", audit.as_os_str());
            if args_end_with_escape {
                a.args.push("--".into());
            }
            a.teams = vec!["sre".into(), team.clone()];
            let before = audit_lines(&audit).len();
            let r = a.run().await;
            let lines = audit_lines(&audit);
            let took = (lines.len() == before + 1).then(|| lines[before]["atlantis_args"].clone());
            let want = serde_json::json!(a.atlantis_words());
            if r.allowed() || !r.last_line().starts_with("deny: ") || took.as_ref() != Some(&want) {
                failures.push(format!(
                    "team {team:?} (args end with --: {args_end_with_escape}): {}; the tool took as Atlantis's arguments {took:?}, not {want}",
                    r.last_line()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile team names got through:\n{}",
        failures.len(),
        2 * teams.len(),
        failures.join("\n")
    );
    assert_eq!(
        evil.requests.load(Ordering::SeqCst),
        0,
        "the attacker's host was asked; it saw {:?}",
        evil.behaviour.auth_seen.lock().unwrap()
    );
    assert!(!hostile_audit.exists(), "a team chose the audit log");
    assert!(!hostile_cache.exists(), "a team chose the cache");
}

/// Finding 1, the guard this tool adds: a team word outside the allowed characters (or one
/// that starts with `-`) is refused with a line that says which and why, before Okta is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_words_outside_the_allowed_characters_are_refused() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    for team in ["x --okta-url=http://127.0.0.1:1", "x -h", "a+b", "ops:eu"] {
        let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
        a.teams = vec![team.into()];
        let r = a.run().await;
        r.assert_denied(2, &["team", "rename"]);
    }
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
    // Names with spaces and the usual punctuation still work.
    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.teams = vec![
        "Platform Team".into(),
        "infra-prod_admins.eu".into(),
        "Équipe".into(),
    ];
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
}

/// Finding 2: a `Link: rel="next"` to another host was followed with the API token, and the
/// groups it listed decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_host_is_not_followed() {
    let okta = FakeOkta::start(
        &[(
            "ana",
            "ana@example.com",
            "ACTIVE",
            &["everyone", "engineering", "readers"],
        )],
        2,
    )
    .await;
    let evil = attacker("ana").await;
    *okta.behaviour.next_base.lock().unwrap() = Some(evil.url.clone());
    let cache = tempfile::tempdir().unwrap();
    let r = Atlantis::new(&okta, cache.path(), "ana", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(3, &["not on the Okta org"]);
    assert_eq!(
        evil.requests.load(Ordering::SeqCst),
        0,
        "the attacker was asked; it saw {:?}",
        evil.behaviour.auth_seen.lock().unwrap()
    );
}

/// Finding 2: a redirect to another host was followed and its answer trusted; the OAuth token
/// request too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let okta = people().await;
    let evil = attacker("ana").await;
    *okta.behaviour.redirect_to.lock().unwrap() = Some(evil.url.clone());
    let cache = tempfile::tempdir().unwrap();
    let r = Atlantis::new(&okta, cache.path(), "ana", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(3, &["redirect", "302"]);

    // The OAuth token request.
    let key = rsa_key(cache.path());
    let mut a = Atlantis::new(&okta, cache.path(), "ana", "apply", Some(PROD));
    a.server_env.retain(|(k, _)| k != "OKTA_API_TOKEN");
    a.server("OKTA_CLIENT_ID", "0oa-test-client");
    a.server("OKTA_PRIVATE_KEY_FILE", key.as_os_str());
    let r = a.run().await;
    r.assert_denied(3, &["redirect"]);
    assert_eq!(
        evil.requests.load(Ordering::SeqCst),
        0,
        "the attacker was asked"
    );
}

/// Finding 2: https only; the opt-out for tests is loud and reaches loopback addresses only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_unless_allowed_for_a_loopback_test() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.server_env
        .retain(|(k, _)| k != "ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP");
    let r = a.run().await;
    r.assert_denied(2, &["https"]);
    assert_eq!(
        okta.requests.load(Ordering::SeqCst),
        0,
        "Okta was asked over http"
    );

    // Allowed for a loopback address, with a warning on every run.
    let r = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    assert!(r.allowed(), "{r}");
    assert!(r.output.contains("warning: plain http"), "{r}");

    // Not for a name, even one that resolves to loopback.
    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(STAGING));
    let port = okta.url.rsplit(':').next().unwrap();
    a.server("OKTA_ORG_URL", format!("http://localhost:{port}"));
    let r = a.run().await;
    r.assert_denied(2, &["https", "loopback"]);
}

/// Review finding: the test-only opt-out took any value but a falsey one as "on" (`maybe`,
/// `please no`); it must be a boolean, or the decision is refused naming the variable. A bad
/// value from any variable names the variable, not a flag nobody passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_that_is_not_a_clear_value_is_refused_by_name() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    for unclear in ["maybe", "please no", "2", ""] {
        let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
        a.server("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", unclear);
        let r = a.run().await;
        r.assert_denied(2, &["ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "not a boolean"]);
    }
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
    // The accepted spellings still work: off refuses http, on allows it for loopback.
    for (off, on) in [("false", "true"), ("no", "yes"), ("off", "on"), ("0", "1")] {
        let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
        a.server("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", off);
        a.run().await.assert_denied(2, &["https"]);
        let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
        a.server("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", on);
        let r = a.run().await;
        assert!(r.allowed(), "{on}: {r}");
    }

    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.server("ATLANTIS_AUTHZ_TIMEOUT", "2h");
    a.run()
        .await
        .assert_denied(2, &["ATLANTIS_AUTHZ_TIMEOUT=\"2h\"", "fix or unset"]);
}

/// A host that answers every request with a chunked body that never ends (valid JSON so far:
/// `[` and then spaces), with no Content-Length to refuse it by.
async fn endless_answers() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n[\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, " ".repeat(64 << 10));
                while conn.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    url
}

/// Finding 2: an answer larger than the cap is not read, whether its size is declared or it
/// just keeps coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_refused() {
    let okta = people().await;
    okta.behaviour.pad_bytes.store(3 << 20, Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let r = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(3, &["larger than"]);

    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.server("OKTA_ORG_URL", endless_answers().await);
    a.server("ATLANTIS_AUTHZ_OKTA_TIMEOUT", "30s");
    a.server("ATLANTIS_AUTHZ_TIMEOUT", "30s");
    a.run().await.assert_denied(3, &["larger than"]);
}

/// A copy of the example policy with `from` replaced by `to`.
fn policy_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(policy()).unwrap();
    assert!(text.contains(from), "{from:?} is not in the example policy");
    let path = dir.join("authz.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

fn run_bin(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("OKTA_API_TOKEN", TOKEN)
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `explain` of `user` applying to PROD on acme/infra-live, as `run_bin`'s arguments.
fn explain_args(policy: &Path, okta: &FakeOkta, cache: &Path, user: &str) -> Vec<String> {
    [
        "--policy",
        &policy.display().to_string(),
        "--okta-url",
        &okta.url,
        "--cache-dir",
        &cache.display().to_string(),
        "explain",
        "--user",
        user,
        "--repo",
        "acme/infra-live",
        "--path",
        PROD,
        "--command",
        "apply",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Finding 3: groups were matched by display name whatever their type, so an `APP_GROUP`
/// synced from another directory under the protected group's name allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_okta_groups_match_by_name_and_ids_match_exactly() {
    let app_group = "APP_GROUP:infra-prod-admins";
    let okta = FakeOkta::start(
        &[(
            "ana",
            "ana@example.com",
            "ACTIVE",
            &["everyone", "engineering", app_group],
        )],
        10,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let r = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(1, &["prod-apply", "APP_GROUP"]);

    // Named by its id, that group counts; explain and the audit line say which group it was.
    let id = group_id(app_group);
    let by_id = policy_with(
        dir.path(),
        "groups: [infra-prod-admins]",
        &format!("groups: [{id}]"),
    );
    let mut a = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD));
    a.args[1] = by_id.display().to_string();
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
    assert!(
        r.output.contains(&id) && r.output.contains("APP_GROUP"),
        "{r}"
    );
    let by_id_s = by_id.display().to_string();
    let explain = explain_args(&by_id, &okta, &cache, "ana");
    let (code, text) = run_bin(&explain.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "matched group: infra-prod-admins (id {id}, type APP_GROUP)"
        )),
        "{text}"
    );
    // check-policy says how each rule's groups are matched.
    let (code, text) = run_bin(&["check-policy", &by_id_s]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{id} (by id)")), "{text}");
    assert!(text.contains("engineering (by name, OKTA_GROUP)"), "{text}");

    // A policy may opt in other types by name, explicitly.
    let opted = policy_with(
        dir.path(),
        "  github_attribute: githubUsername\n",
        "  github_attribute: githubUsername\n  group_types: [OKTA_GROUP, APP_GROUP]\n",
    );
    let mut a = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD));
    a.args[1] = opted.display().to_string();
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
}

/// Finding 4: a non-UTF-8 REPO_REL_PATH counted as unset, so the request fell to the
/// repository-wide check and was allowed; any Atlantis variable that is not UTF-8 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_that_is_not_utf8_is_refused() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut a = Atlantis::new(&okta, cache.path(), "ana", "apply", Some(PROD));
    let mut bytes = PROD.as_bytes().to_vec();
    bytes.push(0xff);
    a.vars.insert("REPO_REL_PATH", OsString::from_vec(bytes));
    a.run().await.assert_denied(2, &["REPO_REL_PATH", "UTF-8"]);
    for var in ATLANTIS_VARS {
        // priya may apply to prod: only the bad variable can deny.
        let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
        let mut bytes = a.vars[var].clone().into_vec();
        bytes.extend_from_slice(b"\xff\xfe");
        a.vars.insert(var, OsString::from_vec(bytes));
        a.run().await.assert_denied(2, &[var, "UTF-8"]);
    }
}

/// Finding 4: an Okta user without `status` counted as ACTIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_status_is_not_active() {
    let okta = FakeOkta::start(
        &[(
            "priya",
            "priya@example.com",
            "",
            &["engineering", "infra-prod-admins"],
        )],
        10,
    )
    .await;
    let cache = tempfile::tempdir().unwrap();
    let r = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(1, &["priya", "no status"]);
}

/// Finding 4: `prod/**` did not cover the `prod` directory itself, so a broader later rule
/// decided there. Now a trailing `/**` covers the directory too; check-policy warns about the
/// shapes that still leave part of a directory to a later rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_glob_covers_the_directory_itself() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let broad = "  - name: live-apply\n    repos: [\"acme/infra-live\"]\n    paths: [\"live/**\"]\n    commands: [apply]\n    groups: [engineering]\n";
    let text = format!("{}\n{broad}", std::fs::read_to_string(policy()).unwrap());
    let with_broad = dir.path().join("broad.yaml");
    std::fs::write(&with_broad, &text).unwrap();
    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "ana",
        "apply",
        Some("live/111111111111/us-east-1/prod"),
    );
    a.args[1] = with_broad.display().to_string();
    a.run().await.assert_denied(1, &["prod-apply"]);

    // One level only (`prod/*`): check-policy says what the later rule decides.
    let one_level = dir.path().join("one-level.yaml");
    std::fs::write(
        &one_level,
        text.replace("live/*/*/prod/**", "live/*/*/prod/*"),
    )
    .unwrap();
    let (code, out) = run_bin(&["check-policy", one_level.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: rule \"prod-apply\"") && out.contains("\"live-apply\" decides"),
        "{out}"
    );
    // The example policy has nothing to warn about.
    let (code, out) = run_bin(&["check-policy", policy().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning: rule"), "{out}");
}

/// Finding 5: `X-Rate-Limit-Reset: 18446744073709551615` panicked (exit 101, no audit line),
/// and so did a timeout too large to add to the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_deny_without_a_panic() {
    let okta = people().await;
    okta.behaviour.rate_limited.store(1, Ordering::SeqCst);
    *okta.behaviour.reset_header.lock().unwrap() = Some(u64::MAX.to_string());
    let cache = tempfile::tempdir().unwrap();
    let r = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD))
        .run()
        .await;
    r.assert_denied(3, &["rate limit"]);
    assert!(
        r.output.contains("\"verdict\":\"deny\""),
        "no audit line: {r}"
    );

    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.server("ATLANTIS_AUTHZ_TIMEOUT", format!("{}s", u64::MAX));
    a.run().await.assert_denied(2, &["timeout"]);
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// Finding 5: a FIFO as the policy or the audit log blocked forever, though `--timeout` bounds
/// the whole decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_as_policy_or_audit_log_denies_within_the_timeout() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let bound = Duration::from_secs(10);

    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "priya",
        "apply",
        Some(PROD),
    );
    a.args[1] = fifo.display().to_string();
    a.server("ATLANTIS_AUTHZ_TIMEOUT", "2s");
    let r = a
        .run_within(bound)
        .await
        .expect("a FIFO as the policy hung");
    r.assert_denied(2, &["policy", "not a regular file"]);

    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "priya",
        "apply",
        Some(PROD),
    );
    a.args.push("--audit-log".into());
    a.args.push(fifo.display().to_string());
    a.server("ATLANTIS_AUTHZ_TIMEOUT", "2s");
    let r = a
        .run_within(bound)
        .await
        .expect("a FIFO as the audit log hung");
    r.assert_denied(2, &["audit log"]);
}

/// Finding 5: `--audit-log /dev/stderr` denied everything (fsync on a pipe fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_may_be_stderr() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut a = Atlantis::new(&okta, cache.path(), "priya", "apply", Some(PROD));
    a.args.push("--audit-log".into());
    a.args.push("/dev/stderr".into());
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
    assert!(r.output.contains("\"verdict\":\"allow\""), "{r}");
}

/// Finding 5: a 100 KB login was reported as "Okta is unavailable"; it is an input error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_no_github_user_can_have_is_an_input_error() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let mut a = Atlantis::new(&okta, cache.path(), "ana", "plan", Some(STAGING));
    a.vars.insert("USER_NAME", "a".repeat(100_000).into());
    let r = a.run().await;
    r.assert_denied(2, &["USER_NAME", "GitHub login"]);
    assert!(
        r.last_line().len() < 400,
        "the reason repeats the input: {r}"
    );
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
}

/// Finding 5: the README's policy snippet let `nonprod-apply` match any repository. Each rule
/// of the snippet names its repositories, and with it an engineer cannot apply to another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_policy_is_scoped_to_its_repository() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/atlantis-authz.md"),
    )
    .unwrap();
    let section = &readme[readme
        .find("# atlantis-authz: who may plan and apply what")
        .expect("docs/atlantis-authz.md's title")..];
    let start = section.find("**Policy**").expect("the policy snippet");
    let block = &section[start..];
    let yaml = block
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block after **Policy**");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readme-policy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    for rule in parsed["rules"].as_sequence().unwrap() {
        assert!(
            rule.get("repos").is_some(),
            "a rule without repos: {rule:?}"
        );
    }
    let okta = people().await;
    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "ana",
        "apply",
        Some(STAGING),
    );
    a.args[1] = path.display().to_string();
    a.repo = "acme/payments".into();
    a.vars.insert("BASE_REPO_NAME", "payments".into());
    a.run().await.assert_denied(1, &["no rule matches"]);
}

// Round 4 (issue #37): a new user's mistakes and Atlantis's behaviour read from its sources
// (v0.30 to current).

/// Finding 1 (high): with policy checks on, a comment's `plan` makes a second entry per project
/// with the command `policy_check`, checked like any other; Atlantis drops a denied entry, so
/// conftest never ran and apply's `policies_passed` requirement passed. The tool refused the
/// command (exit 2) and no policy could name it. A rule that allows `plan` allows
/// `policy_check` too, and a policy may name it beside `plan` (see
/// [`policy_check_is_judged_exactly_as_plan`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_is_allowed_wherever_plan_is() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // ana may plan anywhere (rule plan-everything), prod included: so she may policy_check.
    for path in [PROD, STAGING] {
        let r = Atlantis::new(&okta, &cache, "ana", "policy_check", Some(path))
            .run()
            .await;
        assert!(r.allowed(), "{path}: {r}");
        assert!(r.output.contains("plan-everything"), "{r}");
    }
    // Where she may not plan, she may not policy_check, and the denial says what follows.
    let no_plan = policy_with(dir.path(), "commands: [plan, unlock]", "commands: [unlock]");
    let a =
        Atlantis::new(&okta, &cache, "ana", "policy_check", Some(STAGING)).with_policy(&no_plan);
    a.run()
        .await
        .assert_denied(1, &["policy_check", "conftest does not run"]);
    // A policy may name it beside plan (as Atlantis's docs have it); check-policy accepts it.
    let named = policy_with(
        dir.path(),
        "commands: [plan, unlock]",
        "commands: [plan, policy_check, unlock]",
    );
    let (code, out) = run_bin(&["check-policy", named.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let a = Atlantis::new(&okta, &cache, "ana", "policy_check", Some(STAGING)).with_policy(&named);
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
}

/// Finding 9: Atlantis ≥ 0.39 has `cancel` (it cancels the pull request's queued operations)
/// and asks about it at the first, repository-wide check only. The tool refused the command and
/// no policy could allow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_a_command_a_policy_can_allow() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // The example policy does not name it: denied by the policy, not refused as unknown.
    Atlantis::new(&okta, &cache, "ana", "cancel", None)
        .run()
        .await
        .assert_denied(1, &["cancel", "no rule matches"]);
    let allowing = policy_with(
        dir.path(),
        "commands: [plan, unlock]",
        "commands: [plan, unlock, cancel]",
    );
    let (code, out) = run_bin(&["check-policy", allowing.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let a = Atlantis::new(&okta, &cache, "ana", "cancel", None).with_policy(&allowing);
    let r = a.run().await;
    assert!(r.allowed(), "{r}");
}

/// Write `text` as a policy file in `dir` and return its path.
fn policy_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A policy whose prod rule also names `projects`, before a catch-all for engineers.
const PROD_BY_PATH_AND_PROJECT: &str = r#"identity: {github_attribute: githubUsername}
rules:
  - name: prod-apply
    repos: ["acme/infra-live"]
    paths: ["live/*/*/prod/**"]
    projects: ["*"]
    commands: [apply]
    groups: [infra-prod-admins]
  - name: anything-else
    repos: ["acme/infra-live"]
    paths: ["**"]
    commands: [apply]
    groups: [engineering]
"#;

/// Finding 2: Atlantis sends `PROJECT_NAME=""` for a project without a name (no atlantis.yaml,
/// `-d`, or a pull request that drops `name:`); the tool took it for "no project", so a rule
/// with `projects: ["*"]` never matched and a later catch-all let an engineer apply prod. At the
/// per-project check the empty name is a name, and `*` matches it; check-policy warns where a
/// rule depends on the project name, which the pull request's author chooses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_project_does_not_escape_a_star_projects_rule() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let policy = policy_file(dir.path(), "p.yaml", PROD_BY_PATH_AND_PROJECT);
    let mut a = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD)).with_policy(&policy);
    a.vars.insert("PROJECT_NAME", "".into());
    a.run().await.assert_denied(1, &["prod-apply"]);
    // A prod admin still may; a named project is judged the same way.
    let mut a = Atlantis::new(&okta, &cache, "priya", "apply", Some(PROD)).with_policy(&policy);
    a.vars.insert("PROJECT_NAME", "".into());
    assert!(a.run().await.allowed());
    for named in ["prod-vpc", "live/111111111111/us-east-1/prod/vpc"] {
        // Atlantis allows `/` in a project name ("to match the directory it's in").
        let mut a = Atlantis::new(&okta, &cache, "ana", "apply", Some(PROD)).with_policy(&policy);
        a.vars.insert("PROJECT_NAME", named.into());
        a.run().await.assert_denied(1, &["prod-apply"]);
    }
    // explain with --path and no --project asks about an unnamed project, as Atlantis would.
    let policy_s = policy.display().to_string();
    let explain = explain_args(&policy, &okta, &cache, "ana");
    let (code, out) = run_bin(&explain.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("deciding rule: prod-apply"), "{out}");

    // check-policy: `*` depends on nothing; a narrower glob depends on what the author wrote.
    let (code, out) = run_bin(&["check-policy", &policy_s]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning: rule"), "{out}");
    let by_name = policy_file(
        dir.path(),
        "by-name.yaml",
        &PROD_BY_PATH_AND_PROJECT.replace("projects: [\"*\"]", "projects: [\"prod-*\"]"),
    );
    let (code, out) = run_bin(&["check-policy", by_name.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: rule \"prod-apply\"")
            && out.contains("PROJECT_NAME")
            && out.contains("atlantis.yaml"),
        "{out}"
    );
}

/// Finding 3: paths are normalised before matching (no trailing `/`, no empty segment), so a
/// glob with either can never match; check-policy said OK, the prod rule was dead and a
/// catch-all decided. Such a glob is refused with its line, and so is a policy holding one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globs_that_can_never_match_after_normalisation_are_refused() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(policy()).unwrap();
    let line = 1 + example
        .lines()
        .position(|l| l.contains("live/*/*/prod/**"))
        .unwrap();
    for dead in [
        "live/*/*/prod/",
        "live//*/*/prod/**",
        "live/*/*//prod/**",
        "live/*/*/prod//",
    ] {
        let p = policy_with(dir.path(), "live/*/*/prod/**", dead);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{dead}: {out}");
        assert!(
            out.contains(&format!("line {line}:"))
                && out.contains("never match")
                && out.contains(dead),
            "{dead}: {out}"
        );
        let a = Atlantis::new(&okta, &dir.path().join("cache"), "ana", "apply", Some(PROD))
            .with_policy(&p);
        a.run()
            .await
            .assert_denied(2, &["broken policy", "never match"]);
    }
    for dead in ["acme/infra-live/", "acme//infra-live"] {
        let p = policy_with(
            dir.path(),
            "repos: [\"acme/infra-live\"]",
            &format!("repos: [\"{dead}\"]"),
        );
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{dead}: {out}");
        assert!(out.contains("never match"), "{dead}: {out}");
    }
}

/// Finding 4: a prod glob without `/**` (`live/*/*/prod`) covers the prod directory itself and
/// nothing under it, with no warning (there was one for `prod/*`). check-policy warns, naming
/// what decides below it: a later rule, the default, or nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prod_glob_without_a_double_star_is_warned_about() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let leaf = policy_with(dir.path(), "live/*/*/prod/**", "live/*/*/prod");
    let (code, out) = run_bin(&["check-policy", leaf.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "warning: rule \"prod-apply\": paths glob \"live/*/*/prod\" covers nothing below"
        ) && out.contains("the default denies there")
            && out.contains("live/*/*/prod/**"),
        "{out}"
    );
    // With a catch-all after it, the warning names the rule that decides below prod, and that
    // rule does decide there.
    let broad = "  - name: live-apply\n    repos: [\"acme/infra-live\"]\n    paths: [\"live/**\"]\n    commands: [apply]\n    groups: [engineering]\n";
    let text = format!("{}\n{broad}", std::fs::read_to_string(&leaf).unwrap());
    let with_broad = policy_file(dir.path(), "broad.yaml", &text);
    let (code, out) = run_bin(&["check-policy", with_broad.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("covers nothing below it; rule \"live-apply\" decides there"),
        "{out}"
    );
    let a = Atlantis::new(&okta, &dir.path().join("cache"), "ana", "apply", Some(PROD))
        .with_policy(&with_broad);
    let r = a.run().await;
    assert!(
        r.allowed() && r.output.contains("live-apply"),
        "what the warning says: {r}"
    );
    // An exact project path with nothing deciding below it is not warned about.
    let exact = policy_with(
        dir.path(),
        "live/*/*/prod/**",
        "live/111111111111/us-east-1/prod/vpc",
    );
    let (_, out) = run_bin(&["check-policy", exact.to_str().unwrap()]);
    assert!(!out.contains("warning: rule"), "{out}");
}

/// Finding 5: a list with every entry commented out is YAML null, which was read as "any":
/// `paths:` so emptied let the rule match everywhere, and check-policy said OK. A list that is
/// present must name something (null or `[]` is refused with its line); leave the key out to
/// mean any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_list_is_refused_not_read_as_any() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let nonprod = "    paths: [\"live/*/*/staging/**\", \"live/*/*/dev/**\"]\n";
    let emptied = "    paths:\n      # - \"live/*/*/staging/**\"\n      # - \"live/*/*/dev/**\"\n";
    let p = policy_with(dir.path(), nonprod, emptied);
    // Read as any path, the engineers' rule allowed ana where no rule was meant to.
    let a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "ana",
        "apply",
        Some("modules/vpc"),
    )
    .with_policy(&p);
    a.run().await.assert_denied(2, &["broken policy", "paths"]);
    let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("line ") && out.contains("paths"), "{out}");
    // Every list a rule or the policy holds, emptied either way.
    let rule = "  - name: prod-apply\n    repos: [\"acme/infra-live\"]\n    paths: [\"live/*/*/prod/**\"]\n    commands: [apply, import, state]\n    groups: [infra-prod-admins]\n";
    for (key, line) in [
        ("repos", "    repos: [\"acme/infra-live\"]\n"),
        ("paths", "    paths: [\"live/*/*/prod/**\"]\n"),
        ("commands", "    commands: [apply, import, state]\n"),
        ("groups", "    groups: [infra-prod-admins]\n"),
    ] {
        for empty in [
            format!("    {key}:\n      # nothing\n"),
            format!("    {key}: []\n"),
        ] {
            let p = policy_with(dir.path(), rule, &rule.replace(line, &empty));
            let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
            assert_eq!(code, Some(2), "{key} {empty:?}: {out}");
            assert!(
                out.contains(key) && out.contains("line "),
                "{key} {empty:?}: {out}"
            );
        }
    }
    let projects = format!(
        "{}    projects:\n    # - \"*\"\n",
        rule.trim_end_matches("    groups: [infra-prod-admins]\n")
    ) + "    groups: [infra-prod-admins]\n";
    let p = policy_with(dir.path(), rule, &projects);
    let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("projects"), "{out}");
    for (from, to) in [
        ("  allow_groups: []\n", "  allow_groups:\n"),
        (
            "  users:\n    infra-bot: svc-infra-bot@example.com\n",
            "  users:\n",
        ),
    ] {
        let p = policy_with(dir.path(), from, to);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{to:?}: {out}");
    }
}

/// Finding 6: at the first, repository-wide check a rule naming the command that did not allow
/// the user denied, though the default allows the user on every path no rule covers. The first
/// check now also passes when the default allows one of the user's groups and some project of
/// the repository is left to it (one that no rule for that command matches; see
/// [`the_default_counts_at_the_first_check_only_where_a_project_is_left_to_it`]); each project
/// is then checked with its path. Where the rules cover every project, the default can never
/// decide and does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_check_counts_the_default_where_it_can_decide() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = r#"identity: {github_attribute: githubUsername}
default: {allow_groups: [engineering]}
rules:
  - name: prod-apply
    repos: ["acme/infra-live"]
    paths: ["live/*/*/prod/**"]
    commands: [apply]
    groups: [infra-prod-admins]
"#;
    let policy = policy_file(dir.path(), "p.yaml", text);
    let run = |path: Option<&'static str>, policy: &Path| {
        Atlantis::new(&okta, &cache, "ana", "apply", path).with_policy(policy)
    };
    let r = run(None, &policy).run().await;
    assert!(r.allowed(), "the first check: {r}");
    assert!(r.output.contains("the default"), "{r}");
    // Then each project: staging by the default, prod denied by its rule.
    assert!(run(Some(STAGING), &policy).run().await.allowed());
    run(Some(PROD), &policy)
        .run()
        .await
        .assert_denied(1, &["prod-apply"]);

    // A rule that covers every path and project for apply leaves the default nothing: denied.
    let covered = policy_file(
        dir.path(),
        "covered.yaml",
        &format!("{text}  - name: all-apply\n    repos: [\"acme/infra-live\"]\n    commands: [apply]\n    groups: [infra-prod-admins]\n"),
    );
    run(None, &covered)
        .run()
        .await
        .assert_denied(1, &["infra-prod-admins"]);
    // A default that does not allow the user changes nothing.
    let other_default = policy_file(
        dir.path(),
        "other.yaml",
        &text.replace("allow_groups: [engineering]", "allow_groups: [sales]"),
    );
    run(None, &other_default)
        .run()
        .await
        .assert_denied(1, &["infra-prod-admins"]);
    // unlock and cancel act on the whole pull request and are checked at the first check only:
    // there is no project for the default to decide, so a rule for them still decides (one
    // without paths: see a_rule_with_paths_does_not_grant_pull_request_wide_commands).
    let pr_wide = policy_file(
        dir.path(),
        "pr-wide.yaml",
        &format!("{text}  - name: pr-wide\n    repos: [\"acme/infra-live\"]\n    commands: [cancel]\n    groups: [infra-prod-admins]\n"),
    );
    let a = Atlantis::new(&okta, &cache, "ana", "cancel", None).with_policy(&pr_wide);
    a.run().await.assert_denied(1, &["infra-prod-admins"]);
}

/// Finding 7: GitHub's repository names are case-insensitive, the tool's comparison was not:
/// `Acme/Infra-Live` skipped an `acme/infra-live` prod rule and a later rule decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_names_compare_as_github_does() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let policy = policy_file(
        dir.path(),
        "p.yaml",
        r#"identity: {github_attribute: githubUsername}
rules:
  - name: prod-apply
    repos: ["acme/infra-live"]
    paths: ["live/*/*/prod/**"]
    commands: [apply]
    groups: [infra-prod-admins]
  - name: payments-prod
    repos: ["Acme/Payments-*"]
    paths: ["live/*/*/prod/**"]
    commands: [apply]
    groups: [infra-prod-admins]
  - name: anything-else
    paths: ["**"]
    commands: [apply]
    groups: [engineering]
"#,
    );
    let on = |user: &str, owner: &str, name: &str| {
        let mut a = Atlantis::new(&okta, &cache, user, "apply", Some(PROD)).with_policy(&policy);
        a.repo = format!("{owner}/{name}");
        a.vars.insert("BASE_REPO_OWNER", owner.into());
        a.vars.insert("BASE_REPO_NAME", name.into());
        a
    };
    for (owner, name, rule) in [
        ("Acme", "Infra-Live", "prod-apply"),
        ("ACME", "INFRA-LIVE", "prod-apply"),
        ("acme", "payments-api", "payments-prod"),
    ] {
        on("ana", owner, name).run().await.assert_denied(1, &[rule]);
        let r = on("priya", owner, name).run().await;
        assert!(
            r.allowed() && r.output.contains(rule),
            "{owner}/{name}: {r}"
        );
    }
}

/// Finding 8: a GitHub login mapped twice in `identity.users` was accepted and the last
/// mapping won silently. It is refused with the line of the second mapping, a mapping spelled
/// in another case included: GitHub logins ignore case, and so does the lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_mapped_twice_is_refused() {
    let okta = FakeOkta::start(
        &[(
            "svc-bot",
            "svc-infra-bot@example.com",
            "ACTIVE",
            &["engineering"],
        )],
        10,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mapped = "    infra-bot: svc-infra-bot@example.com\n";
    let example = std::fs::read_to_string(policy()).unwrap();
    let line = 2 + example
        .lines()
        .position(|l| format!("{l}\n") == mapped)
        .unwrap();
    for second in ["infra-bot", "Infra-Bot"] {
        let twice = policy_with(
            dir.path(),
            mapped,
            &format!("{mapped}    {second}: priya@example.com\n"),
        );
        let (code, out) = run_bin(&["check-policy", twice.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{second}: {out}");
        assert!(
            out.contains(&format!("line {line}")) && out.contains("mapped twice"),
            "{second}: {out}"
        );
        let a =
            Atlantis::new(&okta, &cache, "infra-bot", "plan", Some(STAGING)).with_policy(&twice);
        a.run().await.assert_denied(2, &["mapped twice"]);
    }
    // The one mapping applies whatever the case GitHub spells the login in.
    for login in ["infra-bot", "Infra-Bot"] {
        let r = Atlantis::new(&okta, &cache, login, "plan", Some(STAGING))
            .run()
            .await;
        assert!(r.allowed(), "{login}: {r}");
    }
}

/// Run the binary with `args` and stdout a pipe whose reader is gone (`… | head` once head has
/// exited); stderr is kept. (The exit code, or the signal that ended it, and stderr.)
async fn into_a_closed_pipe(args: &[&str]) -> (Option<i32>, Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let (tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
    drop(rx);
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("OKTA_API_TOKEN", TOKEN)
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .stdout(Stdio::from(tx.into_blocking_fd().unwrap()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Finding 10: `check-policy` and `explain` into a closed pipe (`| head`) panicked on the
/// failed write, the panic hook's own print panicked again, and the process aborted. They now
/// stop writing and exit with the code they reached, quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let okta = people().await;
    let cache = tempfile::tempdir().unwrap();
    let example = policy().display().to_string();
    let explain = |user| explain_args(&policy(), &okta, cache.path(), user);
    let (priya, ana) = (explain("priya"), explain("ana"));
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["check-policy", &example], 0),
        (vec!["check-policy", "/nonexistent/policy.yaml"], 2),
        (priya.iter().map(String::as_str).collect(), 0),
        (ana.iter().map(String::as_str).collect(), 1),
        (vec!["--help"], 0),
    ];
    for (args, want) in cases {
        let (code, signal, stderr) = into_a_closed_pipe(&args).await;
        assert_eq!(
            (code, signal),
            (Some(want), None),
            "{args:?}: stderr:\n{stderr}"
        );
        assert!(
            !stderr.contains("internal error") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

/// Finding 11: serde expands every YAML alias in full, so a policy under the 1 MiB cap with a
/// 400 KB anchored name and 120,000 aliases to it stands for ~48 GB: the process died (rc 134)
/// without a `deny:` line. Aliases are refused, with their line, before anything is expanded.
/// (The tool runs here with its address space capped at 1 GiB, so that the bomb cannot take the
/// machine's memory while the test fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_alias_bomb_is_refused_not_expanded() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let aliases = vec!["*a"; 120_000].join(", ");
    let bomb = format!(
        "identity: {{github_attribute: githubUsername}}\nrules:\n  - name: &a \"{}\"\n    groups: [{aliases}]\n",
        "x".repeat(400_000)
    );
    assert!(bomb.len() < 1 << 20, "under the size cap: {}", bomb.len());
    let bomb = policy_file(dir.path(), "bomb.yaml", &bomb);
    // A small alias, as someone might write to avoid repeating a list, is refused as well.
    let small = policy_with(
        dir.path(),
        "    groups: [infra-prod-admins]\n",
        "    groups: &admins [infra-prod-admins]\n",
    );
    let text = std::fs::read_to_string(&small).unwrap();
    let small = policy_file(
        dir.path(),
        "small.yaml",
        &text.replace("    groups: [platform]\n", "    groups: *admins\n"),
    );
    let line = 1 + text
        .lines()
        .position(|l| l == "    groups: [platform]")
        .unwrap();
    for (policy, at) in [(&bomb, 4), (&small, line)] {
        let mut sh = tokio::process::Command::new("sh");
        sh.arg("-c")
            .arg(format!(
                "ulimit -v 1048576 && exec {BIN} --policy {} -- apply acme/infra-live acme/sre",
                policy.display()
            ))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OKTA_ORG_URL", &okta.url)
            .env("OKTA_API_TOKEN", TOKEN)
            .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
            .env("ATLANTIS_AUTHZ_CACHE_DIR", dir.path().join("cache"))
            .env("USER_NAME", "ana")
            .env("REPO_REL_PATH", PROD)
            .env("PROJECT_NAME", "")
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), sh.output())
            .await
            .expect("still expanding after 60 s")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.trim().lines().last().unwrap_or("");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {stdout}{}",
            policy.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            last.starts_with("deny: broken policy")
                && last.contains("alias")
                && last.contains(&format!("line {at} ")),
            "{last}"
        );
        let (code, text) = run_bin(&["check-policy", policy.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{text}");
    }
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
}

/// Finding 12: a token with a trailing newline (a Kubernetes secret made with `echo`) or a
/// control character inside made every call panic (exit 70, no audit line): the header could
/// not be built. Surrounding whitespace is trimmed; a control character or space inside is a
/// configuration error that names the variable (exit 2, audited, the token never shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_newline_is_trimmed_and_one_with_a_control_character_is_refused() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    for (i, token) in [
        format!("{TOKEN}\n"),
        format!("{TOKEN}\r\n"),
        format!(" \t{TOKEN} \n"),
    ]
    .into_iter()
    .enumerate()
    {
        // A cache of its own each time: the token must reach Okta and be accepted.
        let mut a = Atlantis::new(
            &okta,
            &dir.path().join(format!("c{i}")),
            "priya",
            "apply",
            Some(PROD),
        );
        a.server("OKTA_API_TOKEN", token.clone());
        let r = a.run().await;
        assert!(r.allowed(), "{token:?}: {r}");
    }
    let asked = okta.requests.load(Ordering::SeqCst);
    for token in [
        format!("{TOKEN}\u{1}"),
        "test-api\ntoken".to_string(),
        "test-api\u{7f}token".to_string(),
        "test-api token".to_string(),
    ] {
        let mut a = Atlantis::new(
            &okta,
            &dir.path().join("cache"),
            "priya",
            "apply",
            Some(PROD),
        );
        a.server("OKTA_API_TOKEN", token.clone());
        let r = a.run().await;
        r.assert_denied(2, &["OKTA_API_TOKEN"]);
        assert!(
            r.output.contains("\"verdict\":\"deny\"") && !r.output.contains("test-api"),
            "{token:?}: an audit line, and the token not shown: {r}"
        );
    }
    assert_eq!(
        okta.requests.load(Ordering::SeqCst),
        asked,
        "Okta was asked"
    );

    // The same for an access token Okta hands out: an error (Okta's answer), not a panic.
    let key = rsa_key(dir.path());
    *okta.behaviour.canned.lock().unwrap() = Some(crate::okta::Canned {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"access_token": "abc\u0001def", "token_type": "Bearer"}"#.to_vec(),
    });
    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("oauth"),
        "priya",
        "apply",
        Some(PROD),
    );
    a.server_env.retain(|(k, _)| k != "OKTA_API_TOKEN");
    a.server("OKTA_CLIENT_ID", "0oa-test-client");
    a.server("OKTA_PRIVATE_KEY_FILE", key.as_os_str());
    let r = a.run().await;
    r.assert_denied(3, &["could not be built"]);
    assert!(!r.output.contains("abc"), "the token not shown: {r}");
}

/// The documentation points of #37: what Atlantis does around the tool, read from its sources,
/// that the docs got wrong or left out. The threat model must say each, since the tool cannot
/// stop any of them: autoplan makes no per-project check; `PROJECT_NAME` comes from the pull
/// request's own atlantis.yaml; plan-time Terraform code runs with the server's environment
/// (the Okta token) and can write the cache.
#[test]
fn the_docs_say_what_the_tool_cannot_stop() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/atlantis-authz.md"),
    )
    .unwrap();
    let flat = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = flat
        .find("**What it guards, and what it cannot.**")
        .expect("the threat model's heading");
    let end = flat[start..]
        .find("More rules:")
        .map_or(flat.len(), |e| start + e);
    let threat_model = &flat[start..end];
    for must in [
        "Autoplan makes no per-project check",
        "PROJECT_NAME comes from the pull request's own atlantis.yaml",
        "Plan-time code runs as the Atlantis server",
        "OKTA_API_TOKEN",
        "write the cache",
        "policy_check",
    ] {
        assert!(
            threat_model.contains(must),
            "the threat model does not say {must:?}"
        );
    }
    // The overview no longer says every command is checked twice.
    assert!(
        !flat.contains("It checks twice: once per command for the repository as a whole (no project yet), then once per project."),
        "the overview still says it checks twice, autoplan included"
    );
}

// Round 5: a hostile review of round 4's fixes.

/// Review finding 1 (high): a rule naming `policy_check` without `plan` (`[approve_policies,
/// policy_check]` for security) came first for an engineer's `policy_check` and denied it, while
/// a later rule allowed the plan: Atlantis dropped the entry, conftest never ran and apply's
/// `policies_passed` passed, with check-policy saying OK. `policy_check` is judged exactly as
/// `plan` (a rule grants or denies both), and a rule naming `policy_check` without `plan` is
/// refused, since it could never decide alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_is_judged_exactly_as_plan() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = |owners: &str| {
        format!(
            r#"identity: {{github_attribute: githubUsername}}
rules:
  - name: policy-owners
    repos: ["acme/infra-live"]
    commands: {owners}
    groups: [infra-prod-admins]
  - name: plan-everything
    repos: ["acme/infra-live"]
    commands: [plan]
    groups: [engineering]
"#
        )
    };
    let alone = policy_file(
        dir.path(),
        "alone.yaml",
        &text("[approve_policies, policy_check]"),
    );
    let (code, out) = run_bin(&["check-policy", alone.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("line 5") && out.contains("policy_check") && out.contains("plan"),
        "{out}"
    );
    for command in ["plan", "policy_check"] {
        let a = Atlantis::new(&okta, &cache, "ana", command, Some(STAGING)).with_policy(&alone);
        a.run()
            .await
            .assert_denied(2, &["broken policy", "policy_check"]);
    }
    // Named beside plan, the rule decides both the same way: for each user and path, the
    // verdict on policy_check is the verdict on plan (the example policy, and this one).
    let beside = policy_file(
        dir.path(),
        "beside.yaml",
        &text("[approve_policies, policy_check, plan]"),
    );
    for p in [policy(), beside] {
        for user in ["ana", "priya", "max"] {
            for path in [PROD, STAGING, "modules/vpc"] {
                let run = |command| {
                    Atlantis::new(&okta, &cache, user, command, Some(path)).with_policy(&p)
                };
                let plan = run("plan").run().await;
                let check = run("policy_check").run().await;
                assert_eq!(
                    plan.allowed(),
                    check.allowed(),
                    "{} {user} {path}: plan {plan}\npolicy_check {check}",
                    p.display()
                );
            }
        }
    }
}

/// Review finding 2 (high): `live/*/*/prod/**/*` (or `…/**/?`) leaves the prod directory itself
/// to a later rule, and check-policy did not warn: it tested the glob against its own text,
/// which the glob matches literally. Coverage is tested with concrete paths (each part of the
/// glob written as a literal), and a warning names the directory as the glob spells it, braces
/// expanded (`live/*/*/prod/{*,*/*}` was cut inside its braces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_that_leaves_its_directory_to_a_later_rule_is_warned_about() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let text = |prod: &str| {
        format!(
            r#"identity: {{github_attribute: githubUsername}}
rules:
  - name: prod-apply
    repos: ["acme/infra-live"]
    paths: ["{prod}"]
    commands: [apply]
    groups: [infra-prod-admins]
  - name: nonprod-apply
    repos: ["acme/infra-live"]
    paths: ["live/**"]
    commands: [apply]
    groups: [engineering]
"#
        )
    };
    for prod in [
        "live/*/*/prod/**/*",
        "live/*/*/prod/**/?",
        "live/*/*/prod/{*,*/*}",
    ] {
        let p = policy_file(dir.path(), "p.yaml", &text(prod));
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{prod}: {out}");
        assert!(
            out.contains(&format!(
                "warning: rule \"prod-apply\": paths glob \"{prod}\" does not cover the directory live/*/*/prod itself;"
            )) && out.contains("rule \"nonprod-apply\" decides there"),
            "{prod}: {out}"
        );
        // What the warning says: an engineer may apply to the prod directory itself.
        let a = Atlantis::new(
            &okta,
            &dir.path().join("cache"),
            "ana",
            "apply",
            Some("live/111111111111/us-east-1/prod"),
        )
        .with_policy(&p);
        let r = a.run().await;
        assert!(r.allowed() && r.output.contains("nonprod-apply"), "{r}");
    }
    // With `/**` nothing is left to the later rule, and nothing is warned about.
    let p = policy_file(dir.path(), "p.yaml", &text("live/*/*/prod/**"));
    let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning: rule"), "{out}");
}

/// Review finding 3 (medium): repository globs that can never match were accepted, and the
/// restrictive rule was silently skipped: a host in front (`github.com/acme/infra-live`), a
/// space inside or after the name, a `.git/x` tail, three parts (`*/*/*`). A repository glob
/// is `owner/name` (each alternative of its braces: two `/`-separated parts, or `**`), of
/// GitHub's name characters and glob characters only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_globs_that_can_never_match_are_refused() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(policy()).unwrap();
    let line = 1 + example
        .lines()
        .position(|l| l.contains("repos: [\"acme/infra-live\"]"))
        .unwrap();
    let with = |glob: &str| {
        policy_with(
            dir.path(),
            "repos: [\"acme/infra-live\"]",
            &format!("repos: [\"{glob}\"]"),
        )
    };
    for dead in [
        "github.com/acme/infra-live",
        "acme/infra live",
        "acme/infra-live ",
        "acme/infra-live.git/x",
        "*/*/*",
        "acme/{infra-live,x/y}",
        "acme/infra-live\t",
        "acme/\u{a0}infra-live",
    ] {
        let p = with(dead);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{dead:?}: {out}");
        assert!(
            out.contains(&format!("line {line}:")) && out.contains("never match"),
            "{dead:?}: {out}"
        );
        let a = Atlantis::new(
            &okta,
            &dir.path().join("cache"),
            "ana",
            "plan",
            Some(STAGING),
        )
        .with_policy(&p);
        a.run()
            .await
            .assert_denied(2, &["broken policy", "never match"]);
    }
    for live in [
        "acme/infra-live",
        "Acme/Infra-*",
        "*/infra-live",
        "**",
        "**/infra-live",
        "{acme,other}/infra-live",
        "{acme/infra-live,other/x}",
        "acme/infra-[a-z]*",
        "acme/infra.live_2",
    ] {
        let p = with(live);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{live:?}: {out}");
    }
}

/// Review finding 4 (medium/low): at the first check the default counted unless a rule's paths
/// were spelled `**`: `paths: ["**/*"]` (or `["**/**"]`, or `["*", "*/**"]` together) covers every
/// project, yet the default let a user whom only it allows through, which is all autoplan asks.
/// The default counts only where a project is shown to be left to it: a concrete path and name
/// that no rule for the command and repository matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_counts_at_the_first_check_only_where_a_project_is_left_to_it() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // max is in g1 (the default's group), not in engineering.
    let text = |paths: &str| {
        format!(
            r#"identity: {{github_attribute: githubUsername}}
default: {{allow_groups: [g1]}}
rules:
  - name: plan-eng
    repos: ["acme/infra-live"]
    paths: {paths}
    commands: [plan]
    groups: [engineering]
"#
        )
    };
    for every in [
        r#"["**/*"]"#,
        r#"["**/**"]"#,
        r#"["*", "*/**"]"#,
        r#"["{**/*,x}"]"#,
    ] {
        let p = policy_file(dir.path(), "p.yaml", &text(every));
        let a = Atlantis::new(&okta, &cache, "max", "plan", None).with_policy(&p);
        a.run()
            .await
            .assert_denied(1, &["engineering", "the default"]);
        // An engineer still passes.
        let a = Atlantis::new(&okta, &cache, "ana", "plan", None).with_policy(&p);
        assert!(a.run().await.allowed(), "{every}");
    }
    // Where a project is left to the default, it counts.
    let p = policy_file(dir.path(), "p.yaml", &text(r#"["live/**"]"#));
    let r = Atlantis::new(&okta, &cache, "max", "plan", None)
        .with_policy(&p)
        .run()
        .await;
    assert!(r.allowed() && r.output.contains("the default"), "{r}");
}

/// Review finding 5 (medium/low, a denial of service): deeply nested YAML (`rules: [[[…]]]`)
/// made the alias scan, and serde_yaml_ng after it, quadratic: 100,000 levels (200 KB) took
/// about three minutes, and the 1 MiB cap allowed about an hour, with Atlantis waiting. Nesting
/// deeper than 64 is refused while scanning, with its line, before anything is deserialized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_yaml_is_refused_at_once() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let flow = format!(
        "identity: {{github_attribute: githubUsername}}\nrules: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let block = format!(
        "identity: {{github_attribute: githubUsername}}\nrules:\n{}x\n",
        "- ".repeat(n)
    );
    let maps = format!(
        "identity: {{github_attribute: githubUsername}}\nrules: {}{}\n",
        "{a: ".repeat(n),
        "}".repeat(n)
    );
    for (name, text, line) in [("flow", flow, 2), ("block", block, 3), ("maps", maps, 2)] {
        assert!(text.len() < 1 << 20, "under the size cap");
        let p = policy_file(dir.path(), &format!("{name}.yaml"), &text);
        let a = Atlantis::new(
            &okta,
            &dir.path().join("cache"),
            "priya",
            "plan",
            Some(STAGING),
        )
        .with_policy(&p);
        // Bounded, so that the quadratic scan fails the test rather than hangs it.
        let r = a
            .run_within(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("{name}: still reading the policy after 60 s"));
        r.assert_denied(
            2,
            &[
                "broken policy",
                &format!("line {line} "),
                "nested deeper than 64",
            ],
        );
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains("nested deeper than 64"), "{name}: {out}");
    }
    // A policy's own nesting is far from it: the example policy reads.
    let (code, out) = run_bin(&["check-policy", policy().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
}

/// Review finding 5, the other half: `--timeout` did not bound reading the policy, so a policy
/// slow to read (deep nesting before it was limited; whatever else may be found) held Atlantis
/// for as long as it took. Reading the policy is under the decision's deadline: past it, the
/// call denies (exit 2, audited) and exits, whatever the reading is doing. A debug build's
/// `ATLANTIS_AUTHZ_DEBUG_STALL_POLICY` stands for such a policy: its reading never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_not_read_within_the_timeout_denies() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = Atlantis::new(
        &okta,
        &dir.path().join("cache"),
        "priya",
        "apply",
        Some(PROD),
    );
    a.server("ATLANTIS_AUTHZ_TIMEOUT", "2s");
    a.server("ATLANTIS_AUTHZ_DEBUG_STALL_POLICY", "1");
    let r = a
        .run_within(Duration::from_secs(30))
        .await
        .expect("still reading the policy 30 s on, with --timeout 2s");
    r.assert_denied(2, &["policy", "--timeout"]);
    assert!(
        r.output.contains("\"verdict\":\"deny\""),
        "no audit line: {r}"
    );
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
    // explain is bounded the same way.
    let mut args = explain_args(&policy(), &okta, &dir.path().join("cache"), "priya");
    args.splice(0..0, ["--timeout".to_string(), "2s".to_string()]);
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(&args)
        .env("OKTA_API_TOKEN", TOKEN)
        .env("ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP", "1")
        .env("ATLANTIS_AUTHZ_DEBUG_STALL_POLICY", "1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("explain still reading the policy 30 s on, with --timeout 2s")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--timeout"), "{text}");
}

/// Review finding 6 (low): the check for a login mapped twice compared each mapping with every
/// earlier one: 72,000 logins (780 KB, under the size cap) took minutes (62 s for the reviewer,
/// 154 s on this machine's debug build). A set keyed by the lowercased login makes it linear;
/// a login mapped twice is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_mapped_logins_are_checked_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let n = 72_000;
    let users = |extra: &str| {
        let mut m: Vec<String> = (0..n).map(|i| format!("u{i}: a")).collect();
        m.push(extra.to_string());
        format!(
            "identity:\n  github_attribute: githubUsername\n  users: {{{}}}\nrules:\n  - name: r\n    groups: [engineering]\n",
            m.join(", ")
        )
    };
    for (extra, code) in [("v: a", 0), ("U71999: b", 2)] {
        let p = policy_file(dir.path(), "users.yaml", &users(extra));
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("check-policy").arg(&p).kill_on_drop(true);
        // Bounded, so that the quadratic check fails the test rather than holds it.
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{extra}: still checking 72,000 logins after 60 s"))
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra}: {text}");
        if code == 2 {
            assert!(
                text.contains("\"U71999\" is mapped twice") && text.contains("line 3"),
                "{text}"
            );
        }
    }
}

/// Review finding 7 (low): `paths: ["."]` was refused as "can never match", but the repository
/// root normalises to `.` (a project at the root: `dir: .`). Exactly `.` is accepted; a `.`
/// segment in a longer glob is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_root_can_be_named_as_dot() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = policy_with(dir.path(), "live/*/*/prod/**", ".");
    let (code, out) = run_bin(&["check-policy", root.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    for path in [".", "./"] {
        let a = Atlantis::new(&okta, &cache, "ana", "apply", Some(path)).with_policy(&root);
        a.run().await.assert_denied(1, &["prod-apply"]);
        let a = Atlantis::new(&okta, &cache, "priya", "apply", Some(path)).with_policy(&root);
        let r = a.run().await;
        assert!(
            r.allowed() && r.output.contains("prod-apply"),
            "{path}: {r}"
        );
    }
    // Only the root: an engineer's staging project is decided by its own rule.
    let a = Atlantis::new(&okta, &cache, "ana", "apply", Some(STAGING)).with_policy(&root);
    assert!(a.run().await.allowed());
    for dead in ["./live/**", "live/./prod/**", "./"] {
        let p = policy_with(dir.path(), "live/*/*/prod/**", dead);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{dead}: {out}");
        assert!(out.contains("never match"), "{dead}: {out}");
    }
}

/// Review finding 8 (low): `unlock` and `cancel` act on the whole pull request, with no path or
/// project, yet a rule with `paths` (contractors on `dev/**`, any command) granted them on every
/// pull request, prod's included, with no warning. A rule with `paths` or `projects` does not
/// match them; one that names them is refused, since it could never decide them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_with_paths_does_not_grant_pull_request_wide_commands() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // max is in g1 (the contractors), not in engineering.
    let text = r#"identity: {github_attribute: githubUsername}
rules:
  - name: contractors-dev
    repos: ["acme/infra-live"]
    paths: ["live/*/*/dev/**"]
    groups: [g1]
  - name: eng
    repos: ["acme/infra-live"]
    commands: [plan, unlock, cancel]
    groups: [engineering]
"#;
    let p = policy_file(dir.path(), "p.yaml", text);
    for command in ["unlock", "cancel"] {
        let a = Atlantis::new(&okta, &cache, "max", command, None).with_policy(&p);
        a.run().await.assert_denied(1, &["eng", "engineering"]);
        let a = Atlantis::new(&okta, &cache, "ana", command, None).with_policy(&p);
        assert!(a.run().await.allowed(), "{command}");
    }
    // The contractors still plan and apply in dev.
    let dev = "live/333333333333/us-east-1/dev/vpc";
    for command in ["plan", "apply"] {
        let a = Atlantis::new(&okta, &cache, "max", command, Some(dev)).with_policy(&p);
        assert!(a.run().await.allowed(), "{command}");
    }
    // Without a rule for them, the default decides unlock and cancel.
    let by_default = policy_file(
        dir.path(),
        "default.yaml",
        &format!(
            "{}default: {{allow_groups: [engineering]}}\n",
            text.split("  - name: eng").next().unwrap()
        ),
    );
    let a = Atlantis::new(&okta, &cache, "max", "unlock", None).with_policy(&by_default);
    a.run().await.assert_denied(1, &["no rule matches"]);
    let a = Atlantis::new(&okta, &cache, "ana", "unlock", None).with_policy(&by_default);
    assert!(a.run().await.allowed());
    // Naming them in a rule with paths or projects is refused, with the line.
    for (scope, command) in [
        ("    paths: [\"live/*/*/dev/**\"]\n", "unlock"),
        ("    projects: [\"dev-*\"]\n", "cancel"),
    ] {
        let named = format!(
            "identity: {{github_attribute: githubUsername}}\nrules:\n  - name: contractors-dev\n{scope}    commands: [apply, {command}]\n    groups: [g1]\n"
        );
        let p = policy_file(dir.path(), "named.yaml", &named);
        let (code, out) = run_bin(&["check-policy", p.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("line 5") && out.contains(command) && out.contains("whole pull request"),
            "{out}"
        );
    }
}

/// Review finding 9 (trivial): the token was trimmed of any Unicode whitespace, so a C1 control
/// character (U+0085) at either end was dropped rather than refused. Only space, tab, CR and LF
/// are trimmed; anything else that cannot be in a token is refused wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_ascii_whitespace_is_trimmed_from_the_token() {
    let okta = people().await;
    let dir = tempfile::tempdir().unwrap();
    for token in [
        format!("\u{85}{TOKEN}"),
        format!("{TOKEN}\u{85}"),
        format!("\u{a0}{TOKEN}"),
        format!("{TOKEN}\u{2028}"),
        format!("{TOKEN}\u{b}"),
        format!("\u{c}{TOKEN}"),
        "\u{85}".to_string(),
    ] {
        let mut a = Atlantis::new(
            &okta,
            &dir.path().join("cache"),
            "priya",
            "apply",
            Some(PROD),
        );
        a.server("OKTA_API_TOKEN", token.clone());
        let r = a.run().await;
        r.assert_denied(2, &["OKTA_API_TOKEN"]);
        assert!(!r.output.contains(TOKEN), "{token:?}: the token shown: {r}");
    }
    assert_eq!(okta.requests.load(Ordering::SeqCst), 0, "Okta was asked");
}

//! One decision, end to end, failing closed: any error is a deny with a reason, and only an
//! allow prints `pass` (always as the very last line, after the audit line).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::cache::{self, Cache};
use crate::cli::{Cli, Command, OktaArgs};
use crate::files;
use crate::okta::{self, Auth, Okta, OktaError};
use crate::policy::{self, Decision, Group, Policy, Request};
use crate::request::{self, one_line};

/// One line to stdout (`say`) or stderr (`tell`), never a panic: a reader that went away
/// (`| head`) is not this tool's failure, so the command goes on to the exit code it reaches
/// (`println!` would panic, and the panic hook's own print then abort). What Atlantis reads is
/// written by [`verdict`].
pub use cli_edge::out::{say, tell};

macro_rules! say {
    ($($arg:tt)*) => { say(format_args!($($arg)*)) };
}

macro_rules! tell {
    ($($arg:tt)*) => { tell(format_args!($($arg)*)) };
}

/// Exit codes.
pub mod exit {
    /// Allowed (and `pass` printed last).
    pub const ALLOW: u8 = cli_edge::exit::OK;
    /// Denied by the policy (or the user is unknown, or not ACTIVE).
    pub const DENY: u8 = cli_edge::exit::CHECK_FAILED;
    /// Bad usage, a broken or unreadable policy, a refused request, an unwritable audit log:
    /// denied.
    pub const USAGE: u8 = cli_edge::exit::USAGE;
    /// Okta could not answer, or answered what is not trusted (a redirect, a link to another
    /// host, too large): denied. (atlantis-authz's own: 3 is something else in each tool.)
    pub const OKTA: u8 = 3;
}

/// A denial that is not the policy's verdict: what went wrong, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// One line.
    pub reason: String,
    /// The exit code.
    pub code: u8,
}

impl Failure {
    fn usage(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            code: exit::USAGE,
        }
    }
}

impl From<OktaError> for Failure {
    fn from(e: OktaError) -> Failure {
        let code = match e {
            OktaError::UnknownUser(_)
            | OktaError::Ambiguous { .. }
            | OktaError::Inactive { .. }
            | OktaError::BadLogin(_) => exit::DENY,
            _ => exit::OKTA,
        };
        Failure {
            reason: e.to_string(),
            code,
        }
    }
}

/// The largest policy file read.
const POLICY_LIMIT: u64 = 1 << 20;

/// Read and parse the policy named by `--policy` (a regular file: see [`files`]).
pub fn load_policy(path: Option<&Path>) -> Result<Policy, Failure> {
    let path = path.ok_or_else(|| {
        Failure::usage("no policy: pass --policy FILE (or set ATLANTIS_AUTHZ_POLICY)")
    })?;
    let text = files::read_regular_text(path, POLICY_LIMIT)
        .map_err(|e| Failure::usage(format!("cannot read policy {}: {e}", path.display())))?;
    #[cfg(debug_assertions)]
    if std::env::var_os("ATLANTIS_AUTHZ_DEBUG_STALL_POLICY").is_some() {
        // Debug builds only: a policy that takes longer than any --timeout to read, for the
        // tests of the deadline (no such policy is known once nesting is limited).
        loop {
            std::thread::park();
        }
    }
    policy::parse(&path.display().to_string(), &text)
        .map_err(|e| Failure::usage(format!("broken policy: {e}")))
}

/// The decision's deadline: `--timeout` from `started`.
fn deadline(args: &OktaArgs, started: Instant) -> Result<Instant, Failure> {
    started
        .checked_add(args.timeout)
        .ok_or_else(|| Failure::usage("--timeout is too large"))
}

/// [`load_policy`] on a thread of its own, given until `deadline`: however the policy is
/// written, reading it cannot hold Atlantis past `--timeout`. Past it, a denial; the reading is
/// left behind, and ends with the process.
pub fn load_policy_until(path: Option<&Path>, deadline: Instant) -> Result<Policy, Failure> {
    let owned = path.map(Path::to_path_buf);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("policy".into())
        .spawn(move || {
            let _ = tx.send(load_policy(owned.as_deref()));
        })
        .map_err(|e| Failure::usage(format!("cannot start reading the policy: {e}")))?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(loaded) => loaded,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Failure::usage(format!(
            "the policy {} was not read within --timeout (ATLANTIS_AUTHZ_TIMEOUT): make it smaller or simpler",
            path.map_or("(none)".into(), |p| p.display().to_string())
        ))),
        // A panic there ends the process through the panic hook; this is only in case.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Failure::usage(
            "reading the policy failed unexpectedly",
        )),
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("atlantis-authz");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache/atlantis-authz");
    }
    std::env::temp_dir().join("atlantis-authz-cache")
}

/// Where a user's groups came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fresh cache entry.
    Cache,
    /// Okta, just now.
    Okta,
}

/// The user's Okta groups: from a fresh cache entry made under the same org, credential and
/// identity mapping, else from Okta (then cached), by `deadline`.
pub async fn groups_of(
    args: &OktaArgs,
    policy: &Policy,
    login: &str,
    deadline: Instant,
) -> Result<(Vec<Group>, Source), Failure> {
    let url = args
        .okta_url
        .as_deref()
        .ok_or_else(|| Failure::usage("no Okta org: pass --okta-url (or set OKTA_ORG_URL)"))?;
    let base = okta::org_url(url, args.okta_allow_http).map_err(Failure::usage)?;
    let auth = match (
        &args.okta_token,
        &args.okta_client_id,
        &args.okta_private_key,
    ) {
        (Some(t), _, _) if !around_trimmed(t).is_empty() => Auth::ApiToken(api_token(t)?),
        (_, Some(id), Some(key)) => Auth::PrivateKeyJwt {
            client_id: id.clone(),
            pem: files::read_regular(key, 64 << 10).map_err(|e| {
                Failure::usage(format!(
                    "cannot read --okta-private-key {}: {e}",
                    key.display()
                ))
            })?,
            key_id: args.okta_key_id.clone(),
        },
        _ => return Err(Failure::usage(
            "no Okta credentials: set OKTA_API_TOKEN, or OKTA_CLIENT_ID with OKTA_PRIVATE_KEY_FILE",
        )),
    };
    // Everything that decides the answer: a cached answer under another org, credential (a
    // revoked token is a changed token) or mapping of this login is not used.
    let credential = match &auth {
        Auth::ApiToken(t) => format!("ssws:{t}"),
        Auth::PrivateKeyJwt {
            client_id,
            pem,
            key_id,
        } => format!(
            "jwt:{client_id}:{}:{}",
            key_id.as_deref().unwrap_or(""),
            String::from_utf8_lossy(pem)
        ),
    };
    let mapping = match (
        policy.identity.okta_login(login),
        &policy.identity.github_attribute,
    ) {
        (Some(okta_login), _) => format!("user:{okta_login}"),
        (None, Some(attr)) => format!("attr:{attr}"),
        (None, None) => String::new(),
    };
    let key = cache::key(&[base.as_str(), &credential, &mapping, login]);
    let cache = Cache::new(
        &args.cache_dir.clone().unwrap_or_else(default_cache_dir),
        args.cache_ttl,
    );
    if let Some(e) = cache.get(login, &key) {
        return Ok((e.groups, Source::Cache));
    }
    let mut okta = Okta::new(base, auth, deadline, args.okta_timeout)?;
    let id = okta.find_user(&policy.identity, login).await?;
    let groups = okta.groups(&id).await?;
    cache.put(login, &key, &id, &groups);
    Ok((groups, Source::Okta))
}

/// `s` without the space, tab, CR and LF around it: only what `echo` or an editor adds. Any
/// other character (a C1 control such as U+0085, a no-break space) stays, to be refused.
fn around_trimmed(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// The API token as Okta issued it: surrounding space, tab, CR and LF go (a secret made with
/// `echo` ends in a newline); anything else that is not printable ASCII (a control character,
/// a space inside, U+0085 at either end) cannot be part of a token, and is a configuration
/// error that never shows the token.
fn api_token(raw: &str) -> Result<String, Failure> {
    let token = around_trimmed(raw);
    if token.chars().all(|c| c.is_ascii_graphic()) {
        return Ok(token.to_string());
    }
    Err(Failure::usage(
        "--okta-token (OKTA_API_TOKEN) holds a control character, a space or a non-ASCII character (only space, tab, CR and LF around it are ignored): an Okta API token is one word of printable ASCII; recreate the secret",
    ))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// One decision as the audit log records it.
struct Record<'a> {
    req: Option<&'a Request>,
    allowed: bool,
    rule: Option<&'a str>,
    group: Option<&'a Group>,
    reason: &'a str,
    source: Option<Source>,
}

impl<'a> Record<'a> {
    /// A denial that is not the policy's verdict.
    fn failure(req: Option<&'a Request>, reason: &'a str) -> Record<'a> {
        Record {
            req,
            allowed: false,
            rule: None,
            group: None,
            reason,
            source: None,
        }
    }
}

/// Write one JSON audit line (to `--audit-log`, else stderr), flushed before the verdict is
/// printed. `Err` when `--audit-log` could not be written: the line went to stderr instead, and
/// the caller fails closed (an authorization tool must not allow what it cannot record).
/// `atlantis_args` are the arguments taken as Atlantis's (each cut to 1 KiB), so the log shows
/// what came, whatever it held.
fn audit(cli: &Cli, r: &Record, started: Instant) -> Result<(), String> {
    let args: Vec<&str> = cli
        .atlantis
        .iter()
        .map(|a| {
            let cut = a.char_indices().nth(1024).map_or(a.len(), |(i, _)| i);
            &a[..cut]
        })
        .collect();
    let req = r.req;
    let line = serde_json::json!({
        "ts": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "atlantis_args": args,
        "user": req.map(|r| r.user.as_str()),
        "repo": req.map(|r| r.repo.as_str()),
        "command": req.map(|r| r.command.as_str()),
        "path": req.and_then(|r| r.path.as_deref()),
        "project": req.and_then(|r| r.project.as_deref()),
        "pull": env("PULL_NUM"),
        "verdict": if r.allowed { "allow" } else { "deny" },
        "rule": r.rule,
        "group": r.group,
        "reason": r.reason,
        "groups_from": r.source.map(|s| match s { Source::Cache => "cache", Source::Okta => "okta" }),
        "latency_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
    .to_string();
    let to = cli.audit_log.as_deref();
    let written = to.map(|p| files::append_line(p, &line));
    if matches!(written, Some(Ok(()))) {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
    match (to, written) {
        (Some(p), Some(Err(e))) => Err(format!(
            "cannot write the audit log {}: {e}; denying (an unrecorded decision is not allowed)",
            p.display()
        )),
        _ => Ok(()),
    }
}

/// The verdict line on stdout: `pass` alone for an allow, one `deny: …` line otherwise (every
/// control character of the reason escaped, so untrusted input cannot add a line).
fn verdict(allowed: bool, reason: &str) {
    let mut out = std::io::stdout().lock();
    let _ = if allowed {
        writeln!(out, "pass")
    } else {
        writeln!(out, "deny: {}", one_line(reason))
    };
    let _ = out.flush();
}

/// Atlantis's call: `<command> <owner/repo> <teams…>` plus the environment.
async fn atlantis(cli: &Cli, started: Instant) -> ExitCode {
    // The request is checked before anything else: no Okta call for one that can never pass.
    let req = match request::from_atlantis(&cli.atlantis, |name: &str| std::env::var_os(name)) {
        Ok(r) => r,
        Err(refused) => {
            return deny(
                cli,
                &Record::failure(None, &refused.0),
                started,
                exit::USAGE,
            )
        }
    };
    // One deadline for the whole decision: reading the policy, then Okta.
    let policy = match deadline(&cli.okta, started)
        .and_then(|d| load_policy_until(cli.policy.as_deref(), d).map(|p| (p, d)))
    {
        Ok(p) => p,
        Err(f) => {
            return deny(
                cli,
                &Record::failure(Some(&req), &f.reason),
                started,
                f.code,
            )
        }
    };
    let (policy, deadline) = policy;
    let (groups, source) = match groups_of(&cli.okta, &policy, &req.user, deadline).await {
        Ok(g) => g,
        Err(f) => {
            return deny(
                cli,
                &Record::failure(Some(&req), &f.reason),
                started,
                f.code,
            )
        }
    };
    let d: Decision = policy::decide(&policy, &req, &groups);
    let record = Record {
        req: Some(&req),
        allowed: d.allowed,
        rule: d.rule.as_deref(),
        group: d.group.as_ref(),
        reason: &d.reason,
        source: Some(source),
    };
    if !d.allowed {
        return deny(cli, &record, started, exit::DENY);
    }
    if let Err(why) = audit(cli, &record, started) {
        verdict(false, &why);
        return ExitCode::from(exit::USAGE);
    }
    verdict(true, &d.reason);
    ExitCode::from(exit::ALLOW)
}

fn deny(cli: &Cli, record: &Record, started: Instant, code: u8) -> ExitCode {
    match audit(cli, record, started) {
        Ok(()) => verdict(false, record.reason),
        Err(why) => verdict(false, &format!("{} (and {why})", record.reason)),
    }
    ExitCode::from(code)
}

/// `check-policy`: valid or not (with the line), then how each rule's groups are matched and
/// what looks wrong.
fn check_policy(file: &Path) -> ExitCode {
    let p = match load_policy(Some(file)) {
        Ok(p) => p,
        Err(f) => {
            tell!("{}", f.reason);
            return ExitCode::from(exit::USAGE);
        }
    };
    say!("{}: OK: {} rules", file.display(), p.rules.len());
    let entries = |groups: &[String]| {
        groups
            .iter()
            .map(|g| p.describe_entry(g))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in &p.rules {
        say!("  rule {:?}: {}", r.name, entries(&r.groups));
    }
    say!(
        "  default: {}",
        if p.default.allow_groups.is_empty() {
            "nobody".to_string()
        } else {
            entries(&p.default.allow_groups)
        }
    );
    for w in p.warnings() {
        say!("warning: {w}");
    }
    ExitCode::SUCCESS
}

/// Run the parsed command line to its exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let started = Instant::now();
    if cli.okta.okta_allow_http {
        tell!(
            "atlantis-authz: warning: plain http to Okta is allowed (--okta-allow-http or ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP), to a loopback address only: this is for tests, never for production"
        );
    }
    match &cli.command {
        None => atlantis(&cli, started).await,
        Some(Command::CheckPolicy { file }) => check_policy(file),
        Some(Command::Explain {
            user,
            repo,
            path,
            project,
            command,
        }) => {
            let loaded = deadline(&cli.okta, started)
                .and_then(|d| load_policy_until(cli.policy.as_deref(), d).map(|p| (p, d)));
            let (policy, deadline) = match loaded {
                Ok(p) => p,
                Err(f) => {
                    tell!("{}", f.reason);
                    return ExitCode::from(f.code);
                }
            };
            if let Err(refused) = request::check_login("--user", user) {
                say!("verdict: deny — {}", one_line(&refused.0));
                return ExitCode::from(exit::USAGE);
            }
            let path = match path.as_deref().map(request::normalise_path).transpose() {
                Ok(p) => p,
                Err(refused) => {
                    say!("verdict: deny — {}", one_line(&refused.0));
                    return ExitCode::from(exit::USAGE);
                }
            };
            // With a path and no --project: an unnamed project, as Atlantis asks about it.
            let project = project
                .clone()
                .or_else(|| path.as_ref().map(|_| String::new()));
            let req = Request {
                user: user.clone(),
                repo: repo.clone(),
                command: command.clone(),
                path,
                project,
            };
            // What the policy says before anyone is asked: the rules that apply to the request.
            let matching: Vec<&str> = policy
                .rules
                .iter()
                .filter(|r| r.matches(&req))
                .map(|r| r.name.as_str())
                .collect();
            say!(
                "request: {} {} {}",
                one_line(&req.command),
                one_line(&req.repo),
                one_line(
                    req.path
                        .as_deref()
                        .or(req.project.as_deref())
                        .unwrap_or("(command level)")
                )
            );
            say!("user:    {}", one_line(user));
            say!(
                "rules that match, in order: {}",
                if matching.is_empty() {
                    "none".to_string()
                } else {
                    matching.join(", ")
                }
            );
            let (groups, source) = match groups_of(&cli.okta, &policy, user, deadline).await {
                Ok(g) => g,
                Err(f) => {
                    say!(
                        "groups:  unknown ({})\nverdict: deny (the user's groups are unknown)",
                        one_line(&f.reason)
                    );
                    return ExitCode::from(f.code);
                }
            };
            let d = policy::decide(&policy, &req, &groups);
            // Names; the type too where it is not an Okta group (names match those only).
            let listed: Vec<String> = groups
                .iter()
                .map(|g| match g.kind.as_str() {
                    "OKTA_GROUP" => g.name.clone(),
                    kind => format!("{} ({kind})", g.name),
                })
                .collect();
            say!(
                "groups:  {} (from {})",
                if groups.is_empty() {
                    "none".to_string()
                } else {
                    one_line(&listed.join(", "))
                },
                if source == Source::Cache {
                    "cache"
                } else {
                    "okta"
                }
            );
            say!(
                "deciding rule: {}",
                d.rule.as_deref().unwrap_or("(default)")
            );
            say!(
                "matched group: {}",
                d.group
                    .as_ref()
                    .map_or("none".to_string(), |g| one_line(&g.to_string()))
            );
            say!(
                "verdict: {} — {}",
                if d.allowed { "allow" } else { "deny" },
                one_line(&d.reason)
            );
            ExitCode::from(if d.allowed { exit::ALLOW } else { exit::DENY })
        }
    }
}

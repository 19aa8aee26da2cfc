//! The command line. Atlantis runs `sh -c "<command> <args…> <atlantis-command> <owner/repo>
//! <owner/team>…"` with the request in the environment; the same binary also checks policies
//! and explains decisions.
//!
//! Atlantis appends the user's team names unquoted, so they are untrusted words on our command
//! line: options are read only before the first of Atlantis's arguments (the Atlantis command
//! name); from there on every word is one of [`Cli::atlantis`], whatever it looks like — an
//! option, `--`, `--help`, a subcommand's name. A test generated from this definition checks
//! that for every option.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

/// Decide Atlantis permissions from Okta groups (team_authz command).
#[derive(Debug, Parser)]
#[command(name = "atlantis-authz", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub okta: OktaArgs,

    /// The policy file (YAML)
    #[arg(
        long,
        env = "ATLANTIS_AUTHZ_POLICY",
        value_name = "FILE",
        global = true
    )]
    pub policy: Option<PathBuf>,

    /// Append one JSON audit line per decision to this file [default: stderr]
    #[arg(
        long,
        env = "ATLANTIS_AUTHZ_AUDIT_LOG",
        value_name = "FILE",
        global = true
    )]
    pub audit_log: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// As Atlantis passes them: the Atlantis command, owner/repo, then the user's GitHub teams.
    /// Everything from the first of them on is taken as it is: never an option, a `--` or a
    /// subcommand, whatever it holds (Atlantis appends the team names unquoted).
    #[arg(
        value_name = "ATLANTIS_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub atlantis: Vec<String>,
}

/// How to reach Okta.
#[derive(Debug, Args)]
pub struct OktaArgs {
    /// Okta org URL, e.g. https://acme.okta.com; every request goes there and nowhere else
    #[arg(long, env = "OKTA_ORG_URL", value_name = "URL", global = true)]
    pub okta_url: Option<String>,

    /// Tests only: allow a plain-http Okta URL on a loopback address (warns on every run). The
    /// variable takes true/false, yes/no, on/off or 1/0; anything else is refused, not guessed
    #[arg(
        long,
        env = "ATLANTIS_AUTHZ_OKTA_ALLOW_HTTP",
        value_parser = BoolishValueParser::new(),
        global = true
    )]
    pub okta_allow_http: bool,

    /// Okta API token (sent as SSWS); or use the OAuth client flags
    #[arg(
        long,
        env = "OKTA_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub okta_token: Option<String>,

    /// OAuth 2.0 client id (client credentials with a private-key JWT)
    #[arg(long, env = "OKTA_CLIENT_ID", value_name = "ID", global = true)]
    pub okta_client_id: Option<String>,

    /// PEM file of the OAuth client's RSA private key
    #[arg(
        long,
        env = "OKTA_PRIVATE_KEY_FILE",
        value_name = "FILE",
        global = true
    )]
    pub okta_private_key: Option<PathBuf>,

    /// Key id (kid) of that key, if the app has several
    #[arg(long, env = "OKTA_KEY_ID", value_name = "KID", global = true)]
    pub okta_key_id: Option<String>,

    /// Timeout of each Okta call (at most 1h)
    #[arg(long, env = "ATLANTIS_AUTHZ_OKTA_TIMEOUT", default_value = "5s", value_parser = at_most_an_hour, value_name = "DURATION", global = true)]
    pub okta_timeout: Duration,

    /// Upper bound on the whole decision, reading the policy and Okta's rate limits waited out included (at most 1h)
    #[arg(long, env = "ATLANTIS_AUTHZ_TIMEOUT", default_value = "15s", value_parser = at_most_an_hour, value_name = "DURATION", global = true)]
    pub timeout: Duration,

    /// Where to cache users' groups [default: $XDG_CACHE_HOME/atlantis-authz or ~/.cache/atlantis-authz]
    #[arg(
        long,
        env = "ATLANTIS_AUTHZ_CACHE_DIR",
        value_name = "DIR",
        global = true
    )]
    pub cache_dir: Option<PathBuf>,

    /// How long cached groups are used; 0s disables the cache
    #[arg(long, env = "ATLANTIS_AUTHZ_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION", global = true)]
    pub cache_ttl: Duration,
}

/// A duration (`15s`, `2m`) of at most an hour: nobody waits longer for a permission, and any
/// such duration can be added to the clock.
fn at_most_an_hour(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(3600) {
        return Err("longer than 1h, the most a decision may take".into());
    }
    Ok(d)
}

/// Subcommands for people (Atlantis uses the positional form).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy file (for the policy repository's CI); errors give line and column
    CheckPolicy {
        /// The policy file
        file: PathBuf,
    },
    /// Show how a request would be decided: the matching rule, the user's groups, the verdict
    Explain {
        /// GitHub login
        #[arg(long)]
        user: String,
        /// owner/repo
        #[arg(long)]
        repo: String,
        /// Project path (REPO_REL_PATH); omit for the command-level check
        #[arg(long)]
        path: Option<String>,
        /// Project name (PROJECT_NAME); with --path and without it, an unnamed project
        #[arg(long)]
        project: Option<String>,
        /// Atlantis command
        #[arg(long)]
        command: String,
    },
}

const AFTER_HELP: &str = "\
Atlantis (server-side repo config):
  team_authz:
    command: /usr/local/bin/atlantis-authz
    args: [--policy, /etc/atlantis/authz.yaml, --]

Nothing after the Atlantis command name is read as an option; the `--` says so to any version.

Only an allow prints `pass` as the last line and exits 0. Everything else denies, with one line
saying why (`deny: …`).

Exit codes: 0 allow; 1 deny; 2 bad usage, a broken policy, a refused request or an unwritable
audit log (deny); 3 Okta unavailable, or answering what is not trusted (deny); 70 a bug in
atlantis-authz (deny; please report it).";

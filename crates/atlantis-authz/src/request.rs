//! What Atlantis asks, checked before anything else happens (no Okta call for a request that
//! can never be allowed): the input rules the README states. Pure.
//!
//! - The command is one of [`COMMANDS`]; the repository is `owner/repo`.
//! - No value (login, repository, command, teams, path, project) may hold a control character:
//!   a newline could forge a line of output, and Atlantis reads the last one.
//! - Atlantis appends the user's team names to the command line unquoted, so the shell splits
//!   them into words: each word must be made of [`TEAM_CHARACTERS`] and not start with `-`. (The
//!   command line parses every word after the Atlantis command as an argument, never an option;
//!   this refuses what a team name can only hold by mistake or by attack, so it gets noticed.)
//! - `REPO_REL_PATH` is normalised (`./`, empty segments and a trailing `/` go) before matching;
//!   an absolute path or a `..` segment is denied, never rewritten into something that matches.
//! - The first, repository-wide check is the one without `REPO_REL_PATH`, whether or not
//!   `PROJECT_NAME` is set (Atlantis ≥ 0.30 leaves it out; an open change sends it with `-p`).
//! - `USER_NAME` is a GitHub login ([`check_login`]); no other value may be longer than
//!   [`MAX_VALUE`] bytes (a path cannot be).
//! - Every variable Atlantis sets ([`ATLANTIS_VARS`]) that is present must be UTF-8: one that
//!   is not is refused, never read as unset (an unset `REPO_REL_PATH` makes the check
//!   repository-wide).

use std::ffi::OsString;

use crate::policy::{Request, COMMANDS};

/// The variables Atlantis sets for the team_authz command.
pub const ATLANTIS_VARS: &[&str] = &[
    "BASE_BRANCH_NAME",
    "BASE_REPO_NAME",
    "BASE_REPO_OWNER",
    "COMMENT_ARGS",
    "HEAD_BRANCH_NAME",
    "HEAD_COMMIT",
    "HEAD_REPO_NAME",
    "HEAD_REPO_OWNER",
    "PULL_AUTHOR",
    "PULL_NUM",
    "PULL_URL",
    "USER_NAME",
    "COMMAND_NAME",
    "PROJECT_NAME",
    "REPO_ROOT",
    "REPO_REL_PATH",
];

/// Why a request is refused before it is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// Escape every control character of an untrusted value, so that it prints on one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The longest value accepted from Atlantis (an argument, `REPO_REL_PATH`, `PROJECT_NAME`).
pub const MAX_VALUE: usize = 4096;

/// The longest GitHub login accepted: GitHub's are at most 39 characters, an enterprise
/// managed user's adds `_<shortcode>`; this leaves room and refuses what no login can be.
pub const MAX_LOGIN: usize = 100;

/// A GitHub login as it can go into an Okta search: 1 to [`MAX_LOGIN`] ASCII letters, digits,
/// `-`, `_` or `.` (`what` names it in the refusal: `USER_NAME`, `--user`).
pub fn check_login(what: &str, login: &str) -> Result<(), Refused> {
    let ok = !login.is_empty()
        && login.len() <= MAX_LOGIN
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(Refused(format!(
        "{what} {} is not a GitHub login (1 to {MAX_LOGIN} letters, digits, -, _ or .)",
        shown(login)
    )))
}

fn not_too_long(what: &str, value: &str) -> Result<(), Refused> {
    if value.len() > MAX_VALUE {
        return Err(Refused(format!(
            "{what} {} is longer than {MAX_VALUE} bytes",
            shown(value)
        )));
    }
    Ok(())
}

/// An untrusted value for a message: on one line, and cut short when long.
pub fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => format!("{:?}", one_line(s)),
        Some((cut, _)) => format!("{:?}… ({} bytes)", one_line(&s[..cut]), s.len()),
    }
}

/// What a word of a team name may hold, besides letters and digits (any script).
pub const TEAM_CHARACTERS: &str = "-_./";

/// A word of Atlantis's team list (`owner/<team name>`, split by the shell): letters, digits
/// and [`TEAM_CHARACTERS`], not starting with `-`.
fn check_team_word(word: &str) -> Result<(), Refused> {
    let ok = !word.is_empty()
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || TEAM_CHARACTERS.contains(c));
    if ok {
        return Ok(());
    }
    Err(Refused(format!(
        "team word {} is refused: Atlantis puts team names on the command line unquoted, so a team name may hold only letters, digits, spaces and {TEAM_CHARACTERS}, with no word starting with -; rename the team",
        shown(word)
    )))
}

fn no_control(what: &str, value: &str) -> Result<(), Refused> {
    not_too_long(what, value)?;
    if value.chars().any(char::is_control) {
        return Err(Refused(format!(
            "{what} {} holds a control character",
            shown(value)
        )));
    }
    Ok(())
}

/// `REPO_REL_PATH` as the policy's globs see it: `./` and empty segments dropped, no trailing
/// `/`; the repository root is `.`. Absolute paths and `..` segments are refused.
pub fn normalise_path(path: &str) -> Result<String, Refused> {
    no_control("REPO_REL_PATH", path)?;
    if path.starts_with('/') {
        return Err(Refused(format!(
            "REPO_REL_PATH {path:?} is absolute; Atlantis passes paths relative to the repository"
        )));
    }
    let mut kept = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                return Err(Refused(format!(
                "REPO_REL_PATH {path:?} has a `..` segment; it is never matched against the policy"
            )))
            }
            s => kept.push(s),
        }
    }
    Ok(if kept.is_empty() {
        ".".into()
    } else {
        kept.join("/")
    })
}

/// Whether `repo` is `owner/repo` as GitHub spells them.
fn is_owner_repo(repo: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    matches!(repo.split_once('/'), Some((o, r)) if ok(o) && ok(r))
}

/// The request Atlantis sends: `args` = `<command> <owner/repo> <teams…>`, and its environment
/// (`env` as [`std::env::var_os`]; an empty variable counts as unset, as Atlantis sets
/// `REPO_REL_PATH` and `PROJECT_NAME` empty at its first check — except `PROJECT_NAME` with a
/// `REPO_REL_PATH`: there empty is the name of an unnamed project).
pub fn from_atlantis(
    args: &[String],
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Request, Refused> {
    for name in ATLANTIS_VARS {
        if env(name).is_some_and(|v| v.to_str().is_none()) {
            return Err(Refused(format!(
                "{name} is not valid UTF-8: refused (it is never taken as unset)"
            )));
        }
    }
    let env = |name: &str| {
        env(name)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty())
    };
    let (command, repo, teams) = match args {
        [c, r, teams @ ..] => (c, r, teams),
        _ => {
            return Err(Refused(
                "expected <atlantis-command> <owner/repo> [teams…] as Atlantis passes them".into(),
            ))
        }
    };
    no_control("the command", command)?;
    if !COMMANDS.contains(&command.as_str()) {
        return Err(Refused(format!(
            "unknown Atlantis command {command:?}; expected one of {}",
            COMMANDS.join(", ")
        )));
    }
    no_control("the repository", repo)?;
    if !is_owner_repo(repo) {
        return Err(Refused(format!(
            "{repo:?} is not a repository as owner/repo"
        )));
    }
    for t in teams {
        not_too_long("a team word", t)?;
        check_team_word(t)?;
    }
    let user = env("USER_NAME").ok_or_else(|| {
        Refused("USER_NAME is not set: this must run as Atlantis's team_authz command".into())
    })?;
    check_login("USER_NAME", &user)?;
    let path = env("REPO_REL_PATH")
        .map(|p| normalise_path(&p))
        .transpose()?;
    // At the per-project check an empty PROJECT_NAME is the name of an unnamed project (no
    // atlantis.yaml, `-d`, no `name:`), which rules match like any other; at the first check
    // it means none.
    let project = match &path {
        Some(_) => Some(env("PROJECT_NAME").unwrap_or_default()),
        None => env("PROJECT_NAME"),
    };
    if let Some(p) = &project {
        no_control("PROJECT_NAME", p)?;
    }
    Ok(Request {
        user,
        repo: repo.clone(),
        command: command.clone(),
        path,
        project,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        // (REPO_REL_PATH, normalised, or refused)
        let cases = [
            (
                "live/1/us-east-1/prod/vpc",
                Some("live/1/us-east-1/prod/vpc"),
            ),
            ("./live//prod/vpc/", Some("live/prod/vpc")),
            (".", Some(".")),
            ("./", Some(".")),
            ("live/staging/../prod/vpc", None),
            ("live/sandbox/../../live/prod/x", None),
            ("..", None),
            ("/live/prod", None),
            ("live/prod\nvpc", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_path(input).ok().as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn requests_are_checked_before_anything_is_asked() {
        let env = |k: &str| match k {
            "USER_NAME" => Some(OsString::from("ana")),
            _ => None,
        };
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(from_atlantis(&a(&["plan", "acme/infra-live", "acme/sre"]), env).is_ok());
        for bad in [
            a(&["destroy", "acme/infra-live"]),
            a(&["plan", "infra-live"]),
            a(&["plan", "acme/infra live"]),
            a(&["plan\npass", "acme/infra-live"]),
            a(&["plan", "acme/infra-live", "acme/sre\npass"]),
            a(&["plan", "acme/infra-live", "acme/x", "--okta-url"]),
            a(&["plan", "acme/infra-live", "acme/x", "-h"]),
            a(&["plan", "acme/infra-live", "acme/x", "--"]),
            a(&["plan", "acme/infra-live", "acme/ops:eu"]),
            a(&["plan"]),
        ] {
            assert!(from_atlantis(&bad, env).is_err(), "{bad:?}");
        }
        let with = |k: &'static str, v: &'static str| {
            move |name: &str| match name {
                "USER_NAME" => Some(OsString::from("ana")),
                n if n == k => Some(OsString::from(v)),
                _ => None,
            }
        };
        let args = a(&["apply", "acme/infra-live"]);
        assert!(from_atlantis(&args, with("PROJECT_NAME", "prod\npass\n")).is_err());
        let forged_user = |k: &str| (k == "USER_NAME").then(|| OsString::from("ana\npass"));
        assert!(from_atlantis(&args, forged_user).is_err());
        // The first check with -p: PROJECT_NAME without REPO_REL_PATH is still repository-wide.
        let r = from_atlantis(&args, with("PROJECT_NAME", "prod-vpc")).unwrap();
        assert!(r.command_level(), "{r:?}");
        let r = from_atlantis(&args, with("REPO_REL_PATH", "live/./a/")).unwrap();
        assert_eq!(r.path.as_deref(), Some("live/a"));
        // Atlantis's first check: REPO_REL_PATH and PROJECT_NAME set, empty.
        let r = from_atlantis(&args, with("REPO_REL_PATH", "")).unwrap();
        assert!(r.command_level(), "{r:?}");
    }

    #[test]
    fn a_variable_that_is_not_utf8_is_refused_not_unset() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec!["apply".to_string(), "acme/infra-live".to_string()];
        for bad in ATLANTIS_VARS {
            let env = |name: &str| match name {
                n if n == *bad => Some(OsString::from_vec(b"live/prod\xff".to_vec())),
                "USER_NAME" => Some(OsString::from("ana")),
                _ => None,
            };
            let e = from_atlantis(&args, env).unwrap_err();
            assert!(e.0.contains(bad) && e.0.contains("UTF-8"), "{e:?}");
        }
    }

    #[test]
    fn team_words_are_letters_digits_and_a_little_punctuation() {
        for ok in [
            "acme/sre",
            "acme/Platform",
            "Team",
            "acme/infra-prod_admins.eu",
            "Équipe",
        ] {
            assert!(check_team_word(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "-",
            "--okta-url",
            "-h",
            "--x=y",
            "a+b",
            "ops:eu",
            "a b",
            "x\n",
            "`id`",
        ] {
            assert!(check_team_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_login_is_what_github_allows() {
        for ok in [
            "octocat",
            "ana",
            "infra-bot",
            "jane_acme",
            "a.b",
            &"a".repeat(MAX_LOGIN),
        ] {
            assert!(check_login("USER_NAME", ok).is_ok(), "{ok:?}");
        }
        let long = "a".repeat(100_000);
        for bad in [
            "",
            "ana pass",
            "ana\"",
            "renovate[bot]",
            "ä",
            &"a".repeat(MAX_LOGIN + 1),
            &long,
        ] {
            let e = check_login("USER_NAME", bad).unwrap_err();
            assert!(e.0.contains("GitHub login") && e.0.len() < 300, "{e:?}");
        }
    }

    #[test]
    fn long_values_are_shown_cut_short() {
        assert_eq!(shown("ab"), "\"ab\"");
        let long = "a".repeat(100_000);
        let s = shown(&long);
        assert!(s.len() < 120 && s.ends_with("(100000 bytes)"), "{s}");
    }

    #[test]
    fn untrusted_values_print_on_one_line() {
        assert_eq!(one_line("prod\npass\n"), "prod\\npass\\n");
        assert_eq!(one_line("a\tb\u{7}"), "a\\tb\\u{7}");
        assert_eq!(one_line("plain/ünïcode"), "plain/ünïcode");
    }
}

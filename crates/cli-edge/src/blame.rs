//! A value clap refuses may have come from an option's environment variable (clap's `env`), not
//! from the command line: then the message names the variable, so the operator fixes the
//! environment (a Deployment, the Atlantis server's), not a flag nobody passed.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// A refused value that came from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blame {
    /// The variable, e.g. `TFMOD_S3_TIMEOUT`.
    pub var: String,
    /// Its value as shown: quoted, or `…` for a secret (`hide_env_values`).
    pub value: String,
    /// clap's reason, its first line without `error: `.
    pub why: String,
}

impl std::fmt::Display for Blame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Blame { var, value, why } = self;
        write!(
            f,
            "{var}={value} (from the environment): {why}; fix or unset {var}"
        )
    }
}

/// When clap's error `e` (from parsing `argv` with `cmd`) is about a value that came from an
/// option's variable, that variable and its value.
pub fn blame(
    e: &clap::Error,
    cmd: &clap::Command,
    argv: impl Iterator<Item = String>,
) -> Option<Blame> {
    blame_in(e, cmd, argv, |var| std::env::var(var).ok())
}

/// For an error found after parsing that names flags (`--bucket "a.b" is not an S3 bucket
/// name`): which of them took their value from a variable, as a note to append, e.g.
/// `(from the environment: --bucket is TFMOD_BUCKET; fix or unset it there)`. The value is not
/// repeated: it may hold a password. `None` when no flag named did.
pub fn note_the_variables(
    msg: &str,
    cmd: &clap::Command,
    argv: impl Iterator<Item = String>,
) -> Option<String> {
    note_in(msg, cmd, argv, |var| std::env::var_os(var).is_some())
}

/// [`note_the_variables`], asking `is_set` whether a variable is set.
fn note_in(
    msg: &str,
    cmd: &clap::Command,
    argv: impl Iterator<Item = String>,
    is_set: impl Fn(&str) -> bool,
) -> Option<String> {
    let argv: Vec<String> = argv.collect();
    let mut vars: Vec<String> = Vec::new();
    for long in msg
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|w| w.strip_prefix("--").filter(|l| !l.is_empty()))
    {
        let Some(option) = from_the_environment(long, cmd, &argv, &is_set) else {
            continue;
        };
        let Some(var) = option.get_env() else {
            continue;
        };
        let note = format!("--{long} is {}", var.to_string_lossy());
        if !vars.contains(&note) {
            vars.push(note);
        }
    }
    (!vars.is_empty()).then(|| {
        format!(
            "(from the environment: {}; fix or unset it there)",
            vars.join(", ")
        )
    })
}

/// [`blame`], reading the environment through `env`.
fn blame_in(
    e: &clap::Error,
    cmd: &clap::Command,
    argv: impl Iterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Blame> {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let argv: Vec<String> = argv.collect();
    let option = from_the_environment(long, cmd, &argv, &|var| env(var).is_some())?;
    let var = option.get_env()?.to_string_lossy().into_owned();
    let value = env(&var)?;
    let text = e.to_string();
    let why = text.lines().next()?.trim_start_matches("error: ");
    // A secret is not repeated, neither by us nor in clap's reason.
    let (value, why) = if option.is_hide_env_values_set() && !value.is_empty() {
        ("…".to_string(), why.replace(&value, "…"))
    } else {
        (format!("{value:?}"), why.to_string())
    };
    Some(Blame { var, value, why })
}

/// The option `--long` of the innermost command named in `argv` that has one, when it is not on
/// the command line and its variable is set (`is_set`).
fn from_the_environment<'c>(
    long: &str,
    cmd: &'c clap::Command,
    argv: &[String],
    is_set: &dyn Fn(&str) -> bool,
) -> Option<&'c clap::Arg> {
    let mut chain = vec![cmd];
    for word in argv.iter().skip(1) {
        if let Some(sub) = chain.last().and_then(|c| c.find_subcommand(word)) {
            chain.push(sub);
        }
    }
    let option = chain
        .iter()
        .rev()
        .find_map(|c| c.get_arguments().find(|a| a.get_long() == Some(long)))?;
    if !is_set(&option.get_env()?.to_string_lossy()) {
        return None;
    }
    let flag = format!("--{long}");
    let given = argv
        .iter()
        .skip(1)
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
    (!given).then_some(option)
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    use super::*;

    /// `t [--wait N] [--token N] [status [--output N]] [claim]`, each with its variable.
    fn cmd() -> Command {
        let number = || clap::value_parser!(u32);
        Command::new("t")
            .arg(
                Arg::new("wait")
                    .long("wait")
                    .env("T_WAIT")
                    .value_parser(number()),
            )
            .arg(
                Arg::new("token")
                    .long("token")
                    .env("T_TOKEN")
                    .hide_env_values(true)
                    .value_parser(number()),
            )
            .arg(Arg::new("output").long("output").env("T_OUTPUT"))
            .subcommand(
                Command::new("status").arg(
                    Arg::new("output")
                        .long("output")
                        .env("T_STATUS_OUTPUT")
                        .value_parser(number()),
                ),
            )
            .subcommand(Command::new("claim"))
    }

    /// clap's error for `bad` given to `flag` (the same error as when the value comes from the
    /// variable), then the blame for `argv` with `vars` set.
    fn blamed(words: &[&str], vars: &[(&str, &str)], argv: &[&str]) -> Option<Blame> {
        let e = cmd().try_get_matches_from(words).unwrap_err();
        let argv = argv.iter().map(|a| a.to_string());
        let env = |var: &str| {
            vars.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        };
        blame_in(&e, &cmd(), argv, env)
    }

    #[test]
    fn a_bad_value_from_the_variable_names_the_variable() {
        let b = blamed(
            &["t", "--wait", "soon"],
            &[("T_WAIT", "soon")],
            &["t", "claim"],
        )
        .unwrap();
        assert_eq!(b.var, "T_WAIT");
        assert_eq!(b.value, "\"soon\"");
        assert!(
            b.why.contains("--wait") && !b.why.starts_with("error"),
            "{b:?}"
        );
        let line = b.to_string();
        assert!(
            line.starts_with("T_WAIT=\"soon\" (from the environment): invalid value"),
            "{line}"
        );
        assert!(line.ends_with("; fix or unset T_WAIT"), "{line}");
    }

    #[test]
    fn a_bad_value_on_the_command_line_is_the_flags() {
        let vars = [("T_WAIT", "soon")];
        for argv in [&["t", "--wait", "soon"][..], &["t", "--wait=soon"]] {
            assert_eq!(
                blamed(&["t", "--wait", "soon"], &vars, argv),
                None,
                "{argv:?}"
            );
        }
        // Not set: nothing to blame it on.
        assert_eq!(blamed(&["t", "--wait", "soon"], &[], &["t"]), None);
    }

    #[test]
    fn a_secret_is_not_repeated() {
        let b = blamed(
            &["t", "--token", "hunter2"],
            &[("T_TOKEN", "hunter2")],
            &["t"],
        )
        .unwrap();
        assert_eq!(b.value, "…");
        assert!(!b.to_string().contains("hunter2"), "{b}");
    }

    #[test]
    fn the_innermost_commands_flag_is_blamed_not_its_namesake() {
        let vars = [("T_STATUS_OUTPUT", "x"), ("T_OUTPUT", "/run/env")];
        let words = ["t", "status", "--output", "x"];
        let b = blamed(&words, &vars, &["t", "status"]).unwrap();
        assert_eq!(b.var, "T_STATUS_OUTPUT");
    }

    #[test]
    fn a_message_naming_flags_notes_the_variables_they_came_from() {
        let msg = "--wait and --output conflict; --wait again";
        let set = |var: &str| var == "T_WAIT" || var == "T_OUTPUT";
        let note = note_in(msg, &cmd(), ["t".to_string()].into_iter(), set).unwrap();
        assert_eq!(
            note,
            "(from the environment: --wait is T_WAIT, --output is T_OUTPUT; fix or unset it there)"
        );
        // On the command line: nothing to note. Inside `status`, its own --output's variable.
        let argv = ["t", "--wait=1", "--output", "x"].map(String::from);
        assert_eq!(note_in(msg, &cmd(), argv.into_iter(), set), None);
        let argv = ["t", "status"].map(String::from);
        let note = note_in("--output", &cmd(), argv.into_iter(), |v| {
            v == "T_STATUS_OUTPUT"
        });
        assert!(note.unwrap().contains("--output is T_STATUS_OUTPUT"));
    }

    #[test]
    fn other_errors_blame_nothing() {
        let e = cmd().try_get_matches_from(["t", "--nope"]).unwrap_err();
        let argv = ["t".to_string()].into_iter();
        assert_eq!(blame_in(&e, &cmd(), argv, |_| Some("1".into())), None);
    }
}

//! A panic is a bug: the tool says so in its own lines (one asking for a report; atlantis-authz
//! adds the `deny:` line Atlantis reads) and exits [`crate::exit::SOFTWARE`] at once, from
//! whichever thread panicked, instead of Rust's message and exit 101.

/// What a panic said, for the tool's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The panic's message, or "a panic" when it carried no text.
    pub what: String,
    /// ` at FILE:LINE` where it panicked, or empty.
    pub at: String,
}

impl Report {
    fn of(info: &std::panic::PanicHookInfo) -> Report {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        Report { what, at }
    }

    /// eipool's and tfmod's line: the tool, the command (its name only: its arguments may hold a
    /// password), the message's first line and the version.
    pub fn line(&self, tool: &str, command: &str, version: &str) -> String {
        format!(
            "{tool}: error: internal error{} in `{tool} {command}`: {} (a bug: please report it with this line, version {version})",
            self.at,
            self.what.lines().next().unwrap_or("")
        )
    }
}

/// On a panic, `say` writes the tool's lines (with [`crate::out::tell`] and
/// [`crate::out::say`]: a failed write must not panic inside the hook), then the process exits
/// with `code`.
pub fn exit_on_panic(code: u8, say: impl Fn(&Report) + Send + Sync + 'static) {
    std::panic::set_hook(Box::new(move |info| {
        say(&Report::of(info));
        std::process::exit(i32::from(code));
    }));
}

/// The name of the subcommand `argv` runs (the first word that names one of `cmd`'s), or empty.
pub fn command_name(cmd: &clap::Command, argv: impl Iterator<Item = String>) -> String {
    argv.skip(1)
        .find(|a| cmd.find_subcommand(a).is_some())
        .unwrap_or_default()
}

/// Debug builds only: panics when the variable `var` is set, so a test can prove the panic
/// path of a release-like binary. The panic is reported at the caller's line.
#[track_caller]
pub fn when_asked(var: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(var).is_some() {
        panic!("panic requested by {var}");
    }
    #[cfg(not(debug_assertions))]
    let _ = var;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_tool_command_place_and_version_with_the_first_line_only() {
        let r = Report {
            what: "boom\nsecond line".into(),
            at: " at src/x.rs:3".into(),
        };
        assert_eq!(
            r.line("tfmod", "publish", "0.1.0"),
            "tfmod: error: internal error at src/x.rs:3 in `tfmod publish`: boom (a bug: please report it with this line, version 0.1.0)"
        );
    }

    #[test]
    fn the_command_is_its_name_not_its_arguments() {
        let cmd = clap::Command::new("t")
            .arg(clap::Arg::new("pool").long("pool"))
            .subcommand(clap::Command::new("claim"));
        let argv = ["t", "--pool", "secret", "claim", "--x"].map(String::from);
        assert_eq!(command_name(&cmd, argv.into_iter()), "claim");
        let argv = ["t", "--pool", "secret"].map(String::from);
        assert_eq!(command_name(&cmd, argv.into_iter()), "");
    }
}

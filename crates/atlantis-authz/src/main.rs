//! The `atlantis-authz` binary: parse flags, decide, exit. Fails closed: a usage error (exit 2)
//! or a panic never prints `pass`.

use std::process::ExitCode;

use atlantis_authz::run::{exit, say, tell};
use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    deny_on_panic();
    // Debug builds only: lets the tests prove the panic path.
    cli_edge::panic::when_asked("ATLANTIS_AUTHZ_DEBUG_PANIC");
    let cli = match atlantis_authz::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::ALLOW
            };
            let _ = e.print();
            if code != 0 {
                // Atlantis reads the last line: make it a clear denial, with clap's first line.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                // A value from the Atlantis server's environment names its variable.
                let blamed = cli_edge::blame::blame(
                    &e,
                    &atlantis_authz::cli::Cli::command(),
                    std::env::args(),
                )
                .map(|b| b.to_string());
                if let Some(msg) = &blamed {
                    tell(format_args!("{msg}"));
                }
                let first = blamed.as_deref().unwrap_or(first);
                let cut = first
                    .char_indices()
                    .nth(300)
                    .map_or(first.len(), |(i, _)| i);
                say(format_args!(
                    "deny: bad arguments to atlantis-authz: {}",
                    atlantis_authz::request::one_line(&first[..cut])
                ));
            }
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say(format_args!("deny: cannot start: {e}"));
            return ExitCode::from(exit::USAGE);
        }
    };
    runtime.block_on(atlantis_authz::run::run(cli))
}

/// A panic is a bug: one line on stderr naming it and asking for a report, then the `deny:`
/// line Atlantis reads, and exit 70 at once (a bug, never a verdict; no audit line: nothing is
/// decided).
fn deny_on_panic() {
    cli_edge::panic::exit_on_panic(cli_edge::exit::SOFTWARE, |report| {
        tell(format_args!(
            "atlantis-authz {}: internal error{}: {} (a bug: please report it with this line)",
            env!("CARGO_PKG_VERSION"),
            report.at,
            atlantis_authz::request::one_line(&report.what)
        ));
        say(format_args!(
            "deny: atlantis-authz failed unexpectedly (a bug); nothing was allowed"
        ));
    });
}

//! The `atlantis-authz` binary: parse flags, decide, exit. Fails closed: a usage error (exit 2)
//! or a panic never prints `pass`.

use std::process::ExitCode;

use atlantis_authz::run::{say, tell};
use clap::Parser;

/// Exit code of a panic: a bug, never a verdict (see the README's exit codes).
const PANIC_EXIT: i32 = 70;

fn main() -> ExitCode {
    deny_on_panic();
    #[cfg(debug_assertions)]
    if std::env::var_os("ATLANTIS_AUTHZ_DEBUG_PANIC").is_some() {
        // Debug builds only: lets the tests prove the panic path.
        panic!("panic requested by ATLANTIS_AUTHZ_DEBUG_PANIC");
    }
    let cli = match atlantis_authz::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            if code != 0 {
                // Atlantis reads the last line: make it a clear denial, with clap's first line.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                let blamed = atlantis_authz::cli::blame_the_environment(&e, std::env::args());
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
            return ExitCode::from(2);
        }
    };
    runtime.block_on(atlantis_authz::run::run(cli))
}

/// A panic is a bug: one line on stderr naming it and asking for a report, then the `deny:`
/// line Atlantis reads, and exit [`PANIC_EXIT`] at once (no audit line: nothing is decided).
fn deny_on_panic() {
    std::panic::set_hook(Box::new(|info| {
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
        // Never println! here: a failed write would panic inside the hook and abort.
        tell(format_args!(
            "atlantis-authz {}: internal error{at}: {} (a bug: please report it with this line)",
            env!("CARGO_PKG_VERSION"),
            atlantis_authz::request::one_line(&what)
        ));
        say(format_args!(
            "deny: atlantis-authz failed unexpectedly (a bug); nothing was allowed"
        ));
        std::process::exit(PANIC_EXIT);
    }));
}

//! The `atlantis-authz` binary: parse flags, decide, exit. Fails closed: a usage error (exit 2)
//! or a panic never prints `pass`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
                let cut = first
                    .char_indices()
                    .nth(300)
                    .map_or(first.len(), |(i, _)| i);
                println!(
                    "deny: bad arguments to atlantis-authz: {}",
                    atlantis_authz::request::one_line(&first[..cut])
                );
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
            println!("deny: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(atlantis_authz::run::run(cli))
}

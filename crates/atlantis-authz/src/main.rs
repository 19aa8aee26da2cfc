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
                // Atlantis reads the last line: make it a clear denial.
                println!("deny: bad arguments to atlantis-authz (see above)");
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

//! Parse arguments, set up logging, run, map the error to its exit code. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use tfmod::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "tfmod=debug,warn",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tfmod: error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(tfmod::commands::run(cli.command, cli.s3_timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tfmod: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

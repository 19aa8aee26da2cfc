//! The `eipool` binary: parse flags, set up logging, run the command, map its error to an exit code.

// The AWS SDK's futures nest deeply; the claim future needs a deeper layout query.
#![recursion_limit = "256"]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use eipool::cli::{Cli, Command, LogFormat};
use eipool::error::Error;
use eipool::{claim, config, shutdown};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format, &cli.global.log);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(exit_code = e.exit_code(), "{e}");
            eprintln!("eipool: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let cancel = shutdown::on_signals()
            .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
        match cli.command {
            Command::Claim(args) => {
                let cfg = config::claim_config(&cli.global, &args)?;
                let claimed = claim::run(cfg, cancel).await?;
                print_json(&claimed)
            }
        }
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let line = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::Internal(format!("cannot write to stdout: {e}")))
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("eipool: warning: --log {filter:?} is not a valid filter ({e}); using info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

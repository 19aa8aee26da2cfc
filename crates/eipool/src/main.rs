//! The `eipool` binary: parse flags, set up logging, run the command, map its error to an exit
//! code. The only place the process exits: every exit code comes from `Error::exit_code`.

// The AWS SDK's futures nest deeply; the claim future needs a deeper layout query.
#![recursion_limit = "256"]

use std::io::IsTerminal;
use std::process::ExitCode;

use eipool::{Cli, Error, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    exit_70_on_panic();
    // Debug builds only: lets the tests prove the panic path.
    cli_edge::panic::when_asked("EIPOOL_DEBUG_PANIC");
    let cli = match eipool::parse_cli() {
        Ok(Some(cli)) => cli,
        // --help or --version, printed.
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eipool: error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let format = cli.global.log_format;
    init_logging(format, &cli.global.log);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, in the log's own format: one JSON object, or one line for people.
            match format {
                LogFormat::Json => tracing::error!(exit_code = e.exit_code(), "{e}"),
                LogFormat::Text => eprintln!("eipool: error: {e}"),
            }
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
    runtime.block_on(eipool::run(cli))
}

/// Logs on stderr: colour only on a terminal, and never with `NO_COLOR` set. The filter was
/// checked as the command line was parsed (a bad `--log` or `EIPOOL_LOG` is a usage error).
fn init_logging(format: LogFormat, filter: &str) {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A panic is a bug: one line naming the command and asking for a report, then exit 70 (the exit
/// table's internal error) at once, from whichever thread panicked. What the command held is
/// not given back: a claim's lease expires, and `eipool gc` finds an association left behind.
fn exit_70_on_panic() {
    let code = Error::Internal(String::new()).exit_code();
    cli_edge::panic::exit_on_panic(code, |report| {
        // The command's name only: its arguments may hold a password.
        let command = cli_edge::panic::command_name(
            &<Cli as clap::CommandFactory>::command(),
            std::env::args(),
        );
        cli_edge::out::tell(format_args!(
            "{}",
            report.line("eipool", &command, env!("CARGO_PKG_VERSION"))
        ));
    });
}

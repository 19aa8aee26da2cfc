//! Parse arguments, set up logging, run, map the error to its exit code. Nothing else. A panic
//! is one line asking for a report and exit 70; a value refused from a `TFMOD_*` variable names
//! the variable; a closed stdout is not a panic (cli-edge, as the other two binaries).

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cli_edge::out::tell;
use tfmod::cli::Cli;

fn main() -> ExitCode {
    cli_edge::panic::exit_on_panic(cli_edge::exit::SOFTWARE, |report| {
        let command = cli_edge::panic::command_name(&Cli::command(), std::env::args());
        tell(format_args!(
            "{}",
            report.line("tfmod", &command, env!("CARGO_PKG_VERSION"))
        ));
    });
    cli_edge::panic::when_asked("TFMOD_DEBUG_PANIC");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match cli_edge::blame::blame(&e, &Cli::command(), std::env::args()) {
            Some(blame) => {
                tell(format_args!("tfmod: error: {blame}"));
                return ExitCode::from(cli_edge::exit::USAGE);
            }
            // clap's own message, or --help and --version (exit 0; a closed stdout is ignored).
            None => e.exit(),
        },
    };
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
            tell(format_args!("tfmod: error: starting the runtime: {e}"));
            return ExitCode::from(cli_edge::exit::USAGE);
        }
    };
    match runtime.block_on(tfmod::commands::run(cli.command, cli.s3_timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A flag named in the message whose value came from its TFMOD_* variable: say so.
            let note = match &e {
                tfmod::Error::Usage(msg) => {
                    cli_edge::blame::note_the_variables(msg, &Cli::command(), std::env::args())
                }
                _ => None,
            };
            match note {
                Some(note) => tell(format_args!("tfmod: error: {e} {note}")),
                None => tell(format_args!("tfmod: error: {e}")),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

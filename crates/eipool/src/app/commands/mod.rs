//! One file per subcommand: validate its flags, connect, run it within its budget, print its
//! result on stdout. Logs go to stderr; errors go back to `main` for the exit code.

mod agent;
mod claim;
mod doctor;
mod exporter;
mod gc;
mod node;
mod pool;
mod release;
mod status;

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::app::cli::{Cli, Command, Global, PoolCommand};
use crate::app::config;
use crate::pure::error::Error;
use crate::services::context::{self, Context, DEFAULT_LEASE, OPS_CALL_TIMEOUT};

/// Run the parsed command to the end.
pub(crate) async fn run(cli: Cli, cancel: CancellationToken) -> Result<(), Error> {
    let g = &cli.global;
    match cli.command {
        Command::Claim(args) => claim::run(g, &args, cancel).await,
        Command::Agent(args) => agent::run(g, &args, cancel).await,
        Command::Node(args) => node::run(g, &args, cancel).await,
        Command::Release(args) => release::run(g, &args, cancel).await,
        Command::Exporter(args) => exporter::run(g, &args, cancel).await,
        Command::Status(args) => status::run(g, &args, cancel).await,
        Command::Pool(PoolCommand::Grow(args)) => pool::grow(g, &args, cancel).await,
        Command::Pool(PoolCommand::Shrink(args)) => pool::shrink(g, &args, cancel).await,
        Command::Gc(args) => gc::run(g, &args, cancel).await,
        Command::Doctor(args) => doctor::run(g, &args, cancel).await,
    }
}

/// What `command` does on SIGTERM/SIGINT, for the log line that says it is shutting down.
pub(crate) fn on_signal(command: &Command) -> &'static str {
    match command {
        Command::Claim(_) => "giving back what the claim took",
        Command::Agent(a) if a.release_on_exit => "releasing the address (--release-on-exit)",
        Command::Agent(_) => "keeping the address (no --release-on-exit)",
        Command::Node(_) => {
            "keeping the node's address and its Node's label (the next pod adopts them)"
        }
        Command::Exporter(_) => "stopping (the exporter holds no address)",
        Command::Release(_) => "stopping (what is not released yet stays associated)",
        Command::Status(_) | Command::Pool(_) | Command::Gc(_) | Command::Doctor(_) => "stopping",
    }
}

/// The pool, EC2 and Redis for the operations commands.
async fn ops_context(g: &Global) -> Result<Context, Error> {
    let pool = config::validate_pool(g.pool.as_deref())?;
    let redis = config::validate_redis(g)?;
    context::connect(&pool, redis.as_ref(), OPS_CALL_TIMEOUT, DEFAULT_LEASE).await
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let line = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    print_text(&format!("{line}\n"))
}

/// Write the command's report on stdout. A stdout that cannot take it (closed: the reader went
/// away) is [`Error::Undelivered`], not a bug.
fn print_text(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::Undelivered(format!("cannot write the report to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_shutdown_line_says_what_the_command_does_with_its_address() {
        let said = |argv: &[&str]| {
            let cli = Cli::try_parse_from(["eipool", "--pool", "p"].iter().chain(argv)).unwrap();
            on_signal(&cli.command)
        };
        assert!(said(&["agent"]).contains("keeping the address"));
        assert!(said(&["agent", "--release-on-exit"]).contains("releasing the address"));
        assert!(!said(&["exporter"]).contains("releas"));
        assert!(said(&["claim"]).contains("giving back"));
        assert!(!said(&["status"]).contains("releas"));
    }
}

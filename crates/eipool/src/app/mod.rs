//! Layer 4, the application: the command line ([`cli`], clap only), its validation into what the
//! services take ([`config`], pure), the HTTP endpoints ([`http`]), and one file per command
//! ([`commands`]). Nothing below depends on it.

pub(crate) mod cli;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod http;

use tokio_util::sync::CancellationToken;

use crate::pure::error::Error;
use crate::support::shutdown;

/// Run the parsed command to the end, with SIGTERM/SIGINT as the only cancellation.
pub async fn run(cli: cli::Cli) -> Result<(), Error> {
    for warning in &cli.deprecated {
        tracing::warn!("{warning}");
    }
    let cancel: CancellationToken = shutdown::on_signals(commands::on_signal(&cli.command))
        .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
    commands::run(cli, cancel)
        .await
        .map_err(cli::name_the_variable)
}

//! `eipool agent`: serve `/metrics`, `/healthz`, `/readyz`; find out who we are once; then hold
//! and watch the address until SIGTERM/SIGINT.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::cli::{AgentArgs, Global};
use crate::app::{config, http};
use crate::pure::error::Error;
use crate::services::{agent, context, identity};
use crate::support::budget::Budget;
use crate::support::health::Health;
use crate::support::metrics::Served;

/// The agent's port when `--listen` is not given.
const DEFAULT_PORT: u16 = 9877;

pub(super) async fn run(
    g: &Global,
    args: &AgentArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = config::agent_config(g, args)?;
    let c = &cfg.claim;
    let ctx = context::connect(&c.pool, c.redis.as_ref(), c.call_timeout, c.lease).await?;
    let start = Budget::new(Instant::now() + c.timeout, cancel.clone()).of_timeout(c.timeout);
    let found = match identity::resolve_paced(&ctx, &start, &c.identity, c.private_ip).await {
        Ok(found) => found,
        Err(Error::Interrupted) => return Ok(()),
        Err(e) => return Err(e),
    };
    // By default on this node's private IP only: the kubelet's probes and Prometheus reach it
    // in the VPC; other interfaces of a host-network node (and their public IPs) do not.
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| format!("{}:{DEFAULT_PORT}", found.me.private_ip));
    let health = Health::starting("starting: no address yet");
    let server = http::serve(&listen, health.clone(), Served::ByAgent).await?;
    let result = agent::run(&cfg, &ctx, found, &health, &mut agent::Nothing, &cancel).await;
    server.stop().await;
    result
}

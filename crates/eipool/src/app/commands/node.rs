//! `eipool node`: the DaemonSet pod of node mode. Check that this pod may read and patch its
//! Node (before anything is claimed), find out who we are, serve `/metrics`, `/healthz`,
//! `/readyz`, then hold the node's address as the agent does, publishing it on the Node.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapters::kube::{Kube, KubeError};
use crate::app::cli::{Global, NodeArgs};
use crate::app::{config, http};
use crate::pure::error::Error;
use crate::services::node::NodePublisher;
use crate::services::{agent, context, identity};
use crate::support::budget::Budget;
use crate::support::health::Health;
use crate::support::metrics::Served;

/// The port when `--listen` is not given (the agent's).
const DEFAULT_PORT: u16 = 9877;

pub(super) async fn run(
    g: &Global,
    args: &NodeArgs,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = config::node_config(g, args)?;
    let c = &cfg.agent.claim;
    let start = Budget::new(Instant::now() + c.timeout, cancel.clone()).of_timeout(c.timeout);
    // Say which Node it was for: a valid --node-name is followed by this error, not its own.
    let kube = Kube::connect(cfg.kubeconfig.as_deref(), c.call_timeout)
        .await
        .map_err(|e| match e {
            KubeError::Config(why) => KubeError::Config(format!(
                "Node {:?} (--node-name, EIPOOL_NODE_NAME): {why}",
                cfg.node_name
            )),
            e => e,
        })?;
    let mut publisher = match NodePublisher::check(kube, &cfg, &start, cancel.clone()).await {
        Ok(p) => p,
        Err(Error::Interrupted) => return Ok(()),
        Err(e) => return Err(e),
    };
    let ctx = context::connect(&c.pool, c.redis.as_ref(), c.call_timeout, c.lease).await?;
    let found = match identity::resolve_paced(&ctx, &start, &c.identity, c.private_ip).await {
        Ok(found) => found,
        Err(Error::Interrupted) => return Ok(()),
        Err(e) => return Err(e),
    };
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| format!("{}:{DEFAULT_PORT}", found.me.private_ip));
    let health = Health::starting("starting: no address yet");
    let server = http::serve(&listen, health.clone(), Served::ByAgent).await?;
    let result = agent::run(&cfg.agent, &ctx, found, &health, &mut publisher, &cancel).await;
    server.stop().await;
    result
}

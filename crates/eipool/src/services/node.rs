//! Node mode: the agent's loop run by a DaemonSet pod for its node, publishing what the node
//! holds on the Kubernetes Node as well as in the env file on the host. Holding an address (a
//! claim validated it: EC2 shows it on this node's interface) → the label names it and the
//! startup taint goes; no address (a loss, at once, before any reclaim; the pool exhausted; a
//! try that failed) → the taint is back and the label gone, and on a loss or an exhausted pool
//! the env file goes too, so that nothing names an address that is not this node's. Each change
//! is one JSON patch guarded by the Node's resourceVersion ([`crate::pure::node::patch`]); a 409
//! reads again and retries, a failure that may pass is retried every interval. The Node is read
//! every interval even when nothing changed here: a Node re-created (with its startup taint) or
//! edited by hand is put back to what the node holds.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapters::kube::{Kube, KubeError};
use crate::pure::error::Error;
use crate::pure::node::{self, Desired, Marks};
use crate::services::agent::{AgentConfig, Publish};
use crate::support::budget::{Budget, Stopped};
use crate::support::output::Claimed;

/// Node mode's validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    /// The agent's: how to claim (its `--output` is the env file on the host) and watch.
    pub(crate) agent: AgentConfig,
    /// This pod's Node (`spec.nodeName`).
    pub(crate) node_name: String,
    /// The label and the taint.
    pub(crate) marks: Marks,
    /// `--kubeconfig`, else the environment or the in-cluster configuration.
    pub(crate) kubeconfig: Option<PathBuf>,
}

/// Publishes on one Node what its agent holds.
#[derive(Debug)]
pub(crate) struct NodePublisher {
    kube: Kube,
    name: String,
    marks: Marks,
    /// What the Node should say, once the agent has said.
    want: Option<Desired>,
    /// What the Node was last seen or made to say.
    said: Option<Desired>,
    /// Bound on one attempt to publish (the agent's interval).
    each: Duration,
    /// The env file on the host (the agent's `--output`), removed when the address is lost.
    env_file: Option<PathBuf>,
    /// The Node was missing at the last read (said once, not every interval).
    missing: bool,
    cancel: CancellationToken,
}

impl NodePublisher {
    /// Check, before anything is claimed, that this pod may read and patch its Node: a GET and a
    /// patch that changes nothing with `dryRun=All` (RBAC and admission both answer it). A
    /// missing Node or permission stops here, with what to fix.
    pub(crate) async fn check(
        kube: Kube,
        cfg: &NodeConfig,
        budget: &Budget,
        cancel: CancellationToken,
    ) -> Result<NodePublisher, Error> {
        let name = cfg.node_name.as_str();
        let label = cfg.marks.label.as_str();
        let kube_ = &kube;
        budget
            .retry("read the Node and check it can be patched", || async move {
                let seen = kube_.get_node(name, label).await?;
                // A 409 (changed since read) comes after RBAC and admission said yes; it is
                // retried all the same, on a fresh read.
                kube_
                    .patch_node(name, &node::probe_patch(&seen), true)
                    .await
            })
            .await
            .map_err(|s| match s {
                Stopped::Failed(KubeError::NotFound { .. }) => Error::usage(format!(
                    "--node-name {name}: there is no such Node. Set EIPOOL_NODE_NAME from the downward API (fieldRef spec.nodeName)"
                )),
                s => budget.stopped(s),
            })?;
        info!(node = name, label = %cfg.marks.label, taint = %cfg.marks.taint.key, "this pod may read and patch its Node");
        Ok(NodePublisher {
            kube,
            name: name.to_string(),
            marks: cfg.marks.clone(),
            want: None,
            said: None,
            each: cfg.agent.interval,
            env_file: cfg.agent.claim.output.clone(),
            missing: false,
            cancel,
        })
    }

    /// Make the Node say what it should, if it does not: read (every time: it may have been
    /// re-created or edited since), patch under the resourceVersion read, and on a 409 read
    /// again (backing off), within one interval. A failure that may pass is logged and tried
    /// again at the next tick.
    async fn publish(&mut self) -> Result<(), Error> {
        let Some(want) = self.want else { return Ok(()) };
        let budget = Budget::new(Instant::now() + self.each, self.cancel.clone());
        let (kube, name, marks) = (&self.kube, self.name.as_str(), &self.marks);
        let result = budget
            .retry("publish on the Node", || async move {
                let seen = kube.get_node(name, &marks.label).await?;
                let Some(ops) = node::patch(&seen, want, marks) else {
                    return Ok(false);
                };
                match kube.patch_node(name, &ops, false).await {
                    // The API server applies the operations before it compares the
                    // resourceVersion: one that no longer applies (someone removed the taint or
                    // the label since the read) is a 422, not the 409 it is. A Node that moved
                    // on since the read is read again; one that did not refused the patch.
                    Err(e @ KubeError::Rejected { .. }) => {
                        let now = kube.get_node(name, &marks.label).await?;
                        Err(if now.resource_version != seen.resource_version {
                            KubeError::Conflict {
                                message: format!("the patch no longer applies: {e}"),
                            }
                        } else {
                            e
                        })
                    }
                    done => done.map(|()| true),
                }
            })
            .await;
        match result {
            Ok(patched) => {
                let put_back = patched && self.said == Some(want);
                let news = self.said != Some(want);
                self.said = Some(want);
                self.missing = false;
                match (want, patched) {
                    _ if put_back => {
                        warn!(node = name, ?want, label = %marks.label, taint = %marks.taint.key, "the Node no longer said what this node holds (re-created, or its label or taint edited): put back")
                    }
                    (_, false) if !news => {}
                    (Desired::Holding(ip), true) => {
                        info!(node = name, public_ip = %ip, label = %marks.label, taint = %marks.taint.key, "published: the Node is labelled with its address and its taint is removed")
                    }
                    (Desired::Unassigned, true) => {
                        warn!(node = name, taint = %marks.taint.key, effect = %marks.taint.effect, "no address: the Node is tainted again and its label removed")
                    }
                    (_, false) => info!(node = name, ?want, "the Node says so already"),
                }
                Ok(())
            }
            Err(Stopped::Failed(KubeError::NotFound { .. })) => {
                if !std::mem::replace(&mut self.missing, true) {
                    warn!(
                        node = name,
                        "the Node does not exist (deleted?); publishing again once it is back"
                    );
                }
                Ok(())
            }
            Err(Stopped::Failed(
                e @ (KubeError::Forbidden { .. }
                | KubeError::Rejected { .. }
                | KubeError::Config(_)),
            )) => Err(e.into()),
            Err(Stopped::Failed(e)) => {
                warn!(node = name, error = %e, "could not publish on the Node; trying again next interval");
                Ok(())
            }
            Err(Stopped::Interrupted(_)) => {
                warn!(
                    node = name,
                    error = budget.last_error().unwrap_or_default(),
                    "could not publish on the Node within an interval; trying again next interval"
                );
                Ok(())
            }
        }
    }
}

impl Publish for NodePublisher {
    async fn holding(&mut self, c: &Claimed) -> Result<(), Error> {
        self.want = Some(Desired::Holding(c.public_ip));
        self.publish().await
    }

    async fn unassigned(&mut self) -> Result<(), Error> {
        self.want = Some(Desired::Unassigned);
        self.publish().await
    }

    /// The env file goes first (a media pod starting now must not read the lost address), then
    /// the Node is tainted and unlabelled: also when the file cannot be removed, before that
    /// failure stops the pod, so that the Node does not name the lost address meanwhile.
    async fn lost(&mut self) -> Result<(), Error> {
        let mut removal = Ok(());
        if let Some(file) = &self.env_file {
            match std::fs::remove_file(file) {
                Ok(()) => {
                    warn!(env_file = %file.display(), "no address: the env file is removed until one is held")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    removal = Err(Error::usage(format!(
                        "--output {}: cannot remove the env file naming an address this node no longer holds: {e}",
                        file.display()
                    )))
                }
            }
        }
        self.unassigned().await?;
        removal
    }

    async fn tick(&mut self) -> Result<(), Error> {
        self.publish().await
    }
}

//! The Kubernetes API, as node mode uses it: read one Node, JSON-patch one Node. kube-rs's
//! client (rustls, the process's aws-lc-rs provider): in a pod, the in-cluster configuration
//! (the API server from `KUBERNETES_SERVICE_HOST`, the service account's CA, and its projected
//! token, which kube-rs re-reads as the kubelet rotates it); or a kubeconfig file
//! (`--kubeconfig`, else `KUBECONFIG`).

mod errors;

use std::path::Path;
use std::time::Duration;

use ::kube::api::{Api, Patch, PatchParams};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;
use tracing::{debug, instrument};

use crate::pure::node::Observed;

pub(crate) use errors::KubeError;

/// A client for the cluster's Nodes.
#[derive(Clone)]
pub(crate) struct Kube {
    nodes: Api<Node>,
    /// Bound on each call.
    call_timeout: Duration,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube").finish_non_exhaustive()
    }
}

impl Kube {
    /// A client from `kubeconfig`, or else the environment: `KUBECONFIG` (or `~/.kube/config`)
    /// if there is one, the in-cluster configuration otherwise. Nothing is sent yet.
    pub(crate) async fn connect(
        kubeconfig: Option<&Path>,
        call_timeout: Duration,
    ) -> Result<Kube, KubeError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file = ::kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    KubeError::Config(format!(
                        "--kubeconfig {}: cannot read it: {e}",
                        path.display()
                    ))
                })?;
                ::kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| {
                        KubeError::Config(format!(
                            "--kubeconfig {}: cannot use it: {e}",
                            path.display()
                        ))
                    })?
            }
            None => ::kube::Config::infer().await.map_err(|e| {
                KubeError::Config(format!(
                    "no Kubernetes configuration: {e}. Run in a pod with its service account token mounted (automountServiceAccountToken), or give --kubeconfig"
                ))
            })?,
        };
        config.connect_timeout = Some(call_timeout);
        config.read_timeout = Some(call_timeout);
        config.write_timeout = Some(call_timeout);
        let client = ::kube::Client::try_from(config)
            .map_err(|e| KubeError::Config(format!("cannot make a Kubernetes client: {e}")))?;
        Ok(Kube {
            nodes: Api::all(client),
            call_timeout,
        })
    }

    /// Read the Node `name`: what node mode looks at of it.
    #[instrument(skip(self))]
    pub(crate) async fn get_node(&self, name: &str, label: &str) -> Result<Observed, KubeError> {
        let node = self
            .bounded("get", self.nodes.get(name))
            .await?
            .map_err(|e| errors::classify("get", name, e))?;
        Ok(observe(&node, label))
    }

    /// Apply the JSON patch `ops` to the Node `name` (with `dry_run`, checked and not stored).
    #[instrument(skip(self, ops))]
    pub(crate) async fn patch_node(
        &self,
        name: &str,
        ops: &[Value],
        dry_run: bool,
    ) -> Result<(), KubeError> {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| {
                KubeError::Config(format!(
                    "internal: a JSON patch eipool made does not parse: {e}"
                ))
            })?;
        let shown = Value::Array(ops.to_vec()).to_string();
        debug!(patch = %shown, dry_run, "patching the Node");
        let params = PatchParams {
            dry_run,
            field_manager: Some("eipool".into()),
            ..Default::default()
        };
        self.bounded(
            "patch",
            self.nodes.patch(name, &params, &Patch::Json::<()>(patch)),
        )
        .await?
        .map(drop)
        .map_err(|e| errors::classify("patch", name, e))
    }

    async fn bounded<T>(
        &self,
        verb: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, KubeError> {
        tokio::time::timeout(self.call_timeout, fut)
            .await
            .map_err(|_| KubeError::Transient {
                verb,
                message: format!("no answer within {:?}", self.call_timeout),
            })
    }
}

/// The parts of `node` node mode looks at.
fn observe(node: &Node, label: &str) -> Observed {
    let labels = node.metadata.labels.as_ref();
    Observed {
        resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
        has_labels: labels.is_some(),
        label: labels.and_then(|l| l.get(label)).cloned(),
        taints: node.spec.as_ref().and_then(|s| s.taints.as_ref()).map(|t| {
            t.iter()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
                .collect()
        }),
    }
}

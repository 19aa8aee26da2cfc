//! The instance metadata service (IMDSv2, through `aws_config::imds`): what the node says about
//! itself. The endpoint follows the standard chain (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).

use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::imds;
use tracing::{debug, instrument};

use crate::pure::ids::{EniId, InstanceId};

/// IMDSv2 could not be read, or answered something unexpected.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} from IMDSv2: {detail}")]
pub(crate) struct ImdsError {
    /// The metadata path.
    pub(crate) path: String,
    /// What went wrong.
    pub(crate) detail: String,
}

/// An IMDSv2 client: short timeouts, a few attempts (it is on the node; it answers fast or not
/// at all).
#[derive(Debug, Clone)]
pub(crate) struct Imds {
    client: imds::Client,
}

/// What IMDSv2 says about the node's primary interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInterface {
    /// The instance.
    pub(crate) instance_id: InstanceId,
    /// The primary interface's MAC address.
    pub(crate) mac: String,
    /// The primary interface.
    pub(crate) eni: EniId,
}

impl Imds {
    /// A client on the standard chain's endpoint.
    pub(crate) fn new() -> Imds {
        Imds {
            client: imds::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(2))
                .max_attempts(3)
                .build(),
        }
    }

    async fn get(&self, path: String) -> Result<String, ImdsError> {
        self.get_optional(path.clone())
            .await?
            .ok_or_else(|| ImdsError {
                path,
                detail: "not found (404)".into(),
            })
    }

    /// A path that may not exist (IMDS answers 404 for a listing with nothing in it).
    async fn get_optional(&self, path: String) -> Result<Option<String>, ImdsError> {
        match self.client.get(path.clone()).await {
            Ok(v) => Ok(Some(v.as_ref().trim().to_string())),
            Err(imds::client::error::ImdsError::ErrorResponse(r))
                if r.response().status().as_u16() == 404 =>
            {
                Ok(None)
            }
            Err(e) => Err(ImdsError {
                path,
                detail: e.to_string(),
            }),
        }
    }

    async fn get_parsed<T: std::str::FromStr>(&self, path: String) -> Result<T, ImdsError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.get(path.clone()).await?;
        text.parse().map_err(|e| ImdsError {
            path,
            detail: format!("answered {text:?}: {e}"),
        })
    }

    /// The instance id: whether IMDSv2 answers at all.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn instance_id(&self) -> Result<InstanceId, ImdsError> {
        self.get_parsed("/latest/meta-data/instance-id".into())
            .await
    }

    /// The instance, then the MAC of the primary interface, then that interface's id.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn primary_interface(&self) -> Result<NodeInterface, ImdsError> {
        let instance_id = self.instance_id().await?;
        let mac = self.get("/latest/meta-data/mac".into()).await?;
        let eni = self
            .get_parsed(format!(
                "/latest/meta-data/network/interfaces/macs/{mac}/interface-id"
            ))
            .await?;
        debug!(%instance_id, %mac, %eni, "identity from IMDSv2");
        Ok(NodeInterface {
            instance_id,
            mac,
            eni,
        })
    }

    /// The public IPv4 addresses mapped to the private IPs of the interface with this MAC, as
    /// `(public, private)`: the node's own view, which costs no EC2 call.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn ipv4_associations(
        &self,
        mac: &str,
    ) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, ImdsError> {
        let base = format!("/latest/meta-data/network/interfaces/macs/{mac}/ipv4-associations/");
        let Some(list) = self.get_optional(base.clone()).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for public in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let path = format!("{base}{public}");
            let public: Ipv4Addr = public.parse().map_err(|e| ImdsError {
                path: base.clone(),
                detail: format!("listed {public:?}: {e}"),
            })?;
            out.push((public, self.get_parsed(path).await?));
        }
        Ok(out)
    }

    /// The primary interface's primary private IPv4.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn local_ipv4(&self) -> Result<Ipv4Addr, ImdsError> {
        self.get_parsed("/latest/meta-data/local-ipv4".into()).await
    }
}

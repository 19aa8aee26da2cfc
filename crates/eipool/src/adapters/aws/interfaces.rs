//! EC2 calls on interfaces and instances: who a claimer is, and whether a holder is alive.

use std::collections::BTreeMap;

use tracing::instrument;

use super::client::{filter, filter_any, id, to_interface, Ec2};
use super::errors::Ec2Error;
use crate::pure::address::{Interface, InterfaceState};
use crate::pure::ids::{EniId, InstanceId};

impl Ec2 {
    /// The interface `eni` and its private IPs.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_interface(&self, eni: &EniId) -> Result<Interface, Ec2Error> {
        const ACTION: &str = "DescribeNetworkInterfaces";
        let req = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(eni.as_str());
        let out = self.send(ACTION, req.send()).await?;
        out.network_interfaces()
            .iter()
            .find_map(to_interface)
            .ok_or_else(|| Ec2Error::InterfaceNotFound(eni.to_string()))
    }

    /// The device-index-0 (primary) interface of `instance`.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn primary_interface_of(
        &self,
        instance: &InstanceId,
    ) -> Result<Interface, Ec2Error> {
        const ACTION: &str = "DescribeNetworkInterfaces";
        let req = self
            .client
            .describe_network_interfaces()
            .filters(filter("attachment.instance-id", instance.as_str()));
        let out = self.send(ACTION, req.send()).await?;
        out.network_interfaces()
            .iter()
            .filter(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
            .find_map(to_interface)
            .ok_or_else(|| Ec2Error::InstanceNotFound(instance.to_string()))
    }

    /// Status and attachment of these interfaces; ids that no longer exist are simply absent.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn interface_states(
        &self,
        ids: &[EniId],
    ) -> Result<Vec<InterfaceState>, Ec2Error> {
        const ACTION: &str = "DescribeNetworkInterfaces";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let f = filter_any("network-interface-id", ids.iter().map(EniId::as_str));
        let out = self
            .send(
                ACTION,
                self.client.describe_network_interfaces().filters(f).send(),
            )
            .await?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter_map(|n| {
                Some(InterfaceState {
                    id: id(n.network_interface_id())?,
                    status: n
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    instance_id: n.attachment().and_then(|a| id(a.instance_id())),
                })
            })
            .collect())
    }

    /// The state name (`running`, `stopped`, `terminated`, …) of these instances; ids EC2 no
    /// longer knows are absent.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn instance_states(
        &self,
        ids: &[InstanceId],
    ) -> Result<BTreeMap<InstanceId, String>, Ec2Error> {
        const ACTION: &str = "DescribeInstances";
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let f = filter_any("instance-id", ids.iter().map(InstanceId::as_str));
        let out = self
            .send(ACTION, self.client.describe_instances().filters(f).send())
            .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                Some((id(i.instance_id())?, state))
            })
            .collect())
    }
}

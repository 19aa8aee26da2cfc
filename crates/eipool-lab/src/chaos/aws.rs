//! What EC2 does and moto does not, emulated around the forwarded call when
//! [`ChaosConfig::aws_semantics`](super::ChaosConfig::aws_semantics) is on (each rule's AWS
//! documentation is linked there):
//! - AssociateAddress replaces the Elastic IP already on the same private IP;
//! - TerminateInstances disassociates the addresses of the interfaces that die with it;
//! - DescribeAddresses shows the InstanceId of an association made by interface;
//! - an association made for a secondary private IP is on that private IP ([`private_ips`](super::private_ips)).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::MutexGuard;

use super::private_ips::PrivateIps;
use super::stats::Stats;
use super::upstream::Upstream;
use super::xml;

/// The emulation's own state.
#[derive(Debug, Default)]
pub(super) struct Ec2Rules {
    /// One AssociateAddress (and its displacement) at a time, so the last association to a
    /// private IP wins, as in EC2.
    associating: tokio::sync::Mutex<()>,
    /// The private IP of each association made for a secondary one.
    private_ips: PrivateIps,
}

/// What the emulation did before a call is forwarded, for [`Ec2Rules::after`].
pub(super) struct Before<'a> {
    _one_at_a_time: Option<MutexGuard<'a, ()>>,
    /// TerminateInstances: the associations that die with the instances.
    dying: Vec<String>,
}

impl Ec2Rules {
    /// Before `action` is forwarded to moto.
    pub(super) async fn before(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        action: &str,
        params: &HashMap<String, String>,
    ) -> Before<'_> {
        match action {
            "AssociateAddress" => Before {
                _one_at_a_time: Some(self.associating.lock().await),
                dying: Vec::new(),
            },
            "TerminateInstances" => Before {
                _one_at_a_time: None,
                dying: addresses_dying_with(upstream, headers, params).await,
            },
            _ => Before {
                _one_at_a_time: None,
                dying: Vec::new(),
            },
        }
    }

    /// After moto answered `action` successfully with `body`: apply what EC2 would have done
    /// too; the answer to give the caller.
    pub(super) async fn after(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        (action, params): (&str, &HashMap<String, String>),
        before: Before<'_>,
        body: Bytes,
        stats: &Mutex<Stats>,
    ) -> Bytes {
        match action {
            "AssociateAddress" => {
                self.private_ips
                    .associated(params, &String::from_utf8_lossy(&body));
                for _ in 0..self.displace_others(upstream, headers, params).await {
                    stats.lock().unwrap().count(action, "displaced");
                }
                body
            }
            "TerminateInstances" => {
                for assoc in &before.dying {
                    upstream
                        .query(headers, "DisassociateAddress", &[("AssociationId", assoc)])
                        .await;
                    stats.lock().unwrap().count(action, "disassociated");
                }
                body
            }
            "DescribeAddresses" => {
                let body = with_instance_ids(upstream, headers, body).await;
                let text = String::from_utf8_lossy(&body).into_owned();
                Bytes::from(
                    self.private_ips
                        .describe_addresses(upstream, headers, params, text)
                        .await,
                )
            }
            "DescribeNetworkInterfaces" => {
                let text = String::from_utf8_lossy(&body).into_owned();
                Bytes::from(
                    self.private_ips
                        .describe_interfaces(upstream, headers, text)
                        .await,
                )
            }
            _ => body,
        }
    }
}

impl Ec2Rules {
    /// After an AssociateAddress succeeded: every other Elastic IP on the same private IP (as
    /// EC2 maps it) is disassociated (it stays allocated); how many were.
    async fn displace_others(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        params: &HashMap<String, String>,
    ) -> usize {
        let (Some(alloc), Some(eni)) =
            (params.get("AllocationId"), params.get("NetworkInterfaceId"))
        else {
            return 0;
        };
        let private_ip = match params.get("PrivateIpAddress") {
            Some(ip) => ip.clone(),
            None => {
                let Some(x) = upstream
                    .query(
                        headers,
                        "DescribeNetworkInterfaces",
                        &[("NetworkInterfaceId.1", eni)],
                    )
                    .await
                else {
                    return 0;
                };
                match xml::field(&x, "privateIpAddress") {
                    Some(ip) => ip.to_string(),
                    None => return 0,
                }
            }
        };
        let Some(held) = self.private_ips.on_interface(upstream, headers, eni).await else {
            return 0;
        };
        let mut displaced = 0;
        for other in held
            .iter()
            .filter(|a| a.private_ip == private_ip && a.allocation_id != *alloc)
        {
            upstream
                .query(
                    headers,
                    "DisassociateAddress",
                    &[("AssociationId", &other.association_id)],
                )
                .await;
            displaced += 1;
        }
        displaced
    }
}

/// Before a TerminateInstances: the associations of the Elastic IPs on the interfaces that die
/// with the instances (device index 0, or DeleteOnTermination).
async fn addresses_dying_with(
    upstream: &Upstream,
    headers: &hyper::HeaderMap,
    params: &HashMap<String, String>,
) -> Vec<String> {
    let mut dying = Vec::new();
    for (k, instance) in params {
        if !k.starts_with("InstanceId.") {
            continue;
        }
        let Some(ifaces) = upstream
            .query(
                headers,
                "DescribeNetworkInterfaces",
                &[
                    ("Filter.1.Name", "attachment.instance-id"),
                    ("Filter.1.Value.1", instance),
                ],
            )
            .await
        else {
            continue;
        };
        for item in xml::items(&ifaces, "networkInterfaceSet") {
            let primary = xml::field(item, "deviceIndex") == Some("0");
            let deleted = xml::field(item, "deleteOnTermination") == Some("true");
            // The interface's own id: the item's last networkInterfaceId (moto puts the
            // attachment first, and nothing in it names the interface).
            let Some(eni) = item
                .rfind("<networkInterfaceId>")
                .and_then(|i| xml::field(&item[i..], "networkInterfaceId"))
            else {
                continue;
            };
            if !(primary || deleted) {
                continue;
            }
            if let Some(held) = upstream
                .query(
                    headers,
                    "DescribeAddresses",
                    &[
                        ("Filter.1.Name", "network-interface-id"),
                        ("Filter.1.Value.1", eni),
                    ],
                )
                .await
            {
                dying.extend(
                    xml::items(&held, "addressesSet")
                        .into_iter()
                        .filter_map(|i| xml::field(i, "associationId"))
                        .map(str::to_string),
                );
            }
        }
    }
    dying
}

/// Fill in the InstanceId of interface associations in a DescribeAddresses answer, as EC2
/// shows it.
async fn with_instance_ids(upstream: &Upstream, headers: &hyper::HeaderMap, body: Bytes) -> Bytes {
    let text = String::from_utf8_lossy(&body).into_owned();
    if !text.contains("<instanceId/>") {
        return body;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<instanceId/>") {
        let (before, after) = rest.split_at(at);
        // The interface of this item: the last one named before its empty instanceId.
        let eni = before
            .rfind("<item>")
            .and_then(|i| xml::field(&before[i..], "networkInterfaceId"));
        let instance = match eni {
            Some(eni) => instance_of(upstream, headers, eni).await,
            None => None,
        };
        out.push_str(before);
        match instance {
            Some(i) => out.push_str(&format!("<instanceId>{i}</instanceId>")),
            None => out.push_str("<instanceId/>"),
        }
        rest = &after["<instanceId/>".len()..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

/// The instance an interface is attached to, per moto.
async fn instance_of(upstream: &Upstream, headers: &hyper::HeaderMap, eni: &str) -> Option<String> {
    let x = upstream
        .query(
            headers,
            "DescribeNetworkInterfaces",
            &[("NetworkInterfaceId.1", eni)],
        )
        .await?;
    Some(xml::field(xml::field(&x, "attachment")?, "instanceId")?.to_string())
}

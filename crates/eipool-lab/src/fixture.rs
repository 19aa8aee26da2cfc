//! EC2 state in moto for tests and the demo: nodes (instances with their primary interface),
//! tagged Elastic IP pools, and snapshots of what EC2 says afterwards.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{DomainType, Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

/// The pool tag key (the same as eipool's).
pub const POOL_TAG: &str = "eipool:pool";
/// The region the lab uses.
pub const REGION: &str = "us-east-1";

/// A node: an instance and its primary (device-index-0) interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `i-…`.
    pub instance_id: String,
    /// `eni-…`.
    pub eni: String,
    /// The interface's primary private IP.
    pub private_ip: String,
}

/// One Elastic IP as EC2 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip {
    /// `eipalloc-…`.
    pub allocation_id: String,
    /// The public IP.
    pub public_ip: String,
    /// `eipassoc-…` when associated.
    pub association_id: Option<String>,
    /// The interface it is associated with.
    pub eni: Option<String>,
    /// The private IP it maps to.
    pub private_ip: Option<String>,
    /// The `eipool:pool` tag.
    pub pool: Option<String>,
}

/// An SDK client on moto with fake credentials.
#[derive(Debug, Clone)]
pub struct Ec2Lab {
    /// The raw client.
    pub client: Client,
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

impl Ec2Lab {
    /// A client for moto at `endpoint`.
    pub fn new(endpoint: &str) -> Ec2Lab {
        Self::in_region(endpoint, REGION)
    }

    /// A client for moto at `endpoint`, in `region`.
    pub fn in_region(endpoint: &str, region: &str) -> Ec2Lab {
        Self::with_credentials(endpoint, region, "testing", "testing")
    }

    /// A client for moto at `endpoint`, in `region`, as the user with this access key.
    pub fn with_credentials(endpoint: &str, region: &str, key: &str, secret: &str) -> Ec2Lab {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new(key, secret, None, None, "eipool-lab"))
            .endpoint_url(endpoint)
            .build();
        Ec2Lab {
            client: Client::from_conf(config),
        }
    }

    /// A fresh VPC and subnet with `n` running instances; returns their primary interfaces.
    pub async fn nodes(&self, n: usize) -> Result<Vec<Node>> {
        let vpc = self
            .client
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .context("CreateVpc")?;
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).context("no vpc id")?;
        let subnet = self
            .client
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block("10.0.0.0/20")
            .send()
            .await
            .context("CreateSubnet")?;
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .context("no subnet id")?;
        let mut nodes = Vec::with_capacity(n);
        while nodes.len() < n {
            let batch = (n - nodes.len()).min(100) as i32;
            let out = self
                .client
                .run_instances()
                .image_id("ami-12345678")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(batch)
                .max_count(batch)
                .subnet_id(subnet_id)
                .send()
                .await
                .context("RunInstances")?;
            for i in out.instances() {
                let eni = i
                    .network_interfaces()
                    .iter()
                    .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
                    .context("instance without primary interface")?;
                nodes.push(Node {
                    instance_id: i.instance_id().context("no instance id")?.to_string(),
                    eni: eni.network_interface_id().context("no eni id")?.to_string(),
                    private_ip: eni
                        .private_ip_address()
                        .context("no private ip")?
                        .to_string(),
                });
            }
        }
        Ok(nodes)
    }

    /// Allocate `n` VPC Elastic IPs tagged `eipool:pool=<pool>` (untagged when `pool` is None).
    pub async fn allocate(&self, pool: Option<&str>, n: usize) -> Result<Vec<Eip>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut req = self.client.allocate_address().domain(DomainType::Vpc);
            if let Some(p) = pool {
                req = req.tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::ElasticIp)
                        .tags(Tag::builder().key(POOL_TAG).value(p).build())
                        .build(),
                );
            }
            let a = req.send().await.context("AllocateAddress")?;
            out.push(Eip {
                allocation_id: a.allocation_id().context("no allocation id")?.to_string(),
                public_ip: a.public_ip().context("no public ip")?.to_string(),
                association_id: None,
                eni: None,
                private_ip: None,
                pool: pool.map(str::to_string),
            });
        }
        Ok(out)
    }

    /// Associate as an outsider would (plain AssociateAddress: reassociation allowed, steals).
    pub async fn associate_external(&self, allocation_id: &str, eni: &str) -> Result<String> {
        let out = self
            .client
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(eni)
            .allow_reassociation(true)
            .send()
            .await
            .context("AssociateAddress")?;
        Ok(out.association_id().unwrap_or_default().to_string())
    }

    /// The addresses of `pool` as EC2 shows them now, by allocation id.
    pub async fn pool_state(&self, pool: &str) -> Result<BTreeMap<String, Eip>> {
        let out = self
            .client
            .describe_addresses()
            .filters(
                Filter::builder()
                    .name(format!("tag:{POOL_TAG}"))
                    .values(pool)
                    .build(),
            )
            .send()
            .await
            .context("DescribeAddresses")?;
        Ok(out
            .addresses()
            .iter()
            .map(to_eip)
            .map(|e| (e.allocation_id.clone(), e))
            .collect())
    }

    /// The Elastic IPs associated with interface `eni` now (any pool, or none).
    pub async fn addresses_on(&self, eni: &str) -> Result<Vec<Eip>> {
        let out = self
            .client
            .describe_addresses()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(eni)
                    .build(),
            )
            .send()
            .await
            .context("DescribeAddresses")?;
        Ok(out.addresses().iter().map(to_eip).collect())
    }

    /// Give `eni` `n` more (secondary) private IPs; all of its private IPs, the primary first.
    pub async fn add_private_ips(&self, eni: &str, n: i32) -> Result<Vec<String>> {
        self.client
            .assign_private_ip_addresses()
            .network_interface_id(eni)
            .secondary_private_ip_address_count(n)
            .send()
            .await
            .context("AssignPrivateIpAddresses")?;
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send()
            .await
            .context("DescribeNetworkInterfaces")?;
        let iface = out
            .network_interfaces()
            .first()
            .context("no such interface")?;
        let mut ips: Vec<(bool, String)> = iface
            .private_ip_addresses()
            .iter()
            .filter_map(|p| Some((!p.primary()?, p.private_ip_address()?.to_string())))
            .collect();
        ips.sort_by_key(|(secondary, _)| *secondary);
        Ok(ips.into_iter().map(|(_, ip)| ip).collect())
    }

    /// Associate with a given private IP of `eni` as an outsider would (reassociation allowed).
    pub async fn associate_external_at(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: &str,
    ) -> Result<String> {
        let out = self
            .client
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(eni)
            .private_ip_address(private_ip)
            .allow_reassociation(true)
            .send()
            .await
            .context("AssociateAddress")?;
        Ok(out.association_id().unwrap_or_default().to_string())
    }

    /// Disassociate by hand, as an operator would.
    pub async fn disassociate(&self, association_id: &str) -> Result<()> {
        self.client
            .disassociate_address()
            .association_id(association_id)
            .send()
            .await
            .context("DisassociateAddress")?;
        Ok(())
    }

    /// These addresses as EC2 shows them now.
    pub async fn addresses(&self, allocation_ids: &[String]) -> Result<Vec<Eip>> {
        let out = self
            .client
            .describe_addresses()
            .set_allocation_ids(Some(allocation_ids.to_vec()))
            .send()
            .await
            .context("DescribeAddresses")?;
        Ok(out.addresses().iter().map(to_eip).collect())
    }
}

fn to_eip(a: &aws_sdk_ec2::types::Address) -> Eip {
    Eip {
        allocation_id: a.allocation_id().unwrap_or_default().to_string(),
        public_ip: a.public_ip().unwrap_or_default().to_string(),
        association_id: nonempty(a.association_id()),
        eni: nonempty(a.network_interface_id()),
        private_ip: nonempty(a.private_ip_address()),
        pool: a
            .tags()
            .iter()
            .find(|t| t.key() == Some(POOL_TAG))
            .and_then(|t| t.value())
            .map(str::to_string),
    }
}

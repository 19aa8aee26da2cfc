//! EC2 calls on Elastic IPs: one function per call, each traced and bounded by the per-call
//! timeout (in [`Ec2::send`]).

use std::net::Ipv4Addr;

use aws_sdk_ec2::types::{DomainType, Filter, ResourceType, Tag, TagSpecification};
use tracing::instrument;

use super::client::{filter, filter_any, id, to_address, Ec2};
use super::errors::Ec2Error;
use crate::pure::address::{Address, AddressSource, POOL_TAG};
use crate::pure::address::{HolderTag, HOLDER_TAG};
use crate::pure::ids::{AllocationId, AssociationId, EniId};

impl Ec2 {
    /// All VPC Elastic IPs tagged `eipool:pool=<pool>`. One call; the pool is listed sparingly.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_pool(&self, pool: &str) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, None).await
    }

    /// The pool addresses associated with `eni` (cheap: filtered server-side).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_pool_on(
        &self,
        pool: &str,
        eni: &EniId,
    ) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, Some(filter("network-interface-id", eni.as_str())))
            .await
    }

    /// The pool addresses carrying tag `key=value` (e.g. a grow's idempotency token).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_pool_tagged(
        &self,
        pool: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, Some(filter(&format!("tag:{key}"), value)))
            .await
    }

    /// The pool's VPC addresses, narrowed by `extra` when given: the one DescribeAddresses
    /// behind every pool listing.
    async fn describe_pool_where(
        &self,
        pool: &str,
        extra: Option<Filter>,
    ) -> Result<Vec<Address>, Ec2Error> {
        const ACTION: &str = "DescribeAddresses";
        let req = self
            .client
            .describe_addresses()
            .filters(filter("domain", "vpc"))
            .filters(filter(&format!("tag:{POOL_TAG}"), pool));
        let req = match extra {
            Some(f) => req.filters(f),
            None => req,
        };
        let out = self.send(ACTION, req.send()).await?;
        Ok(out.addresses().iter().filter_map(to_address).collect())
    }

    /// One Elastic IP by allocation id (cheap: EC2 and moto filter server-side).
    /// `Ok(None)` when it no longer exists.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_address(
        &self,
        alloc: &AllocationId,
    ) -> Result<Option<Address>, Ec2Error> {
        const ACTION: &str = "DescribeAddresses";
        let req = self
            .client
            .describe_addresses()
            .allocation_ids(alloc.as_str());
        match self.send(ACTION, req.send()).await {
            Ok(out) => Ok(out.addresses().iter().find_map(to_address)),
            Err(Ec2Error::AllocationNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// These Elastic IPs, in one call (by filter: ids that no longer exist are simply absent).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_addresses(
        &self,
        allocs: &[AllocationId],
    ) -> Result<Vec<Address>, Ec2Error> {
        const ACTION: &str = "DescribeAddresses";
        if allocs.is_empty() {
            return Ok(Vec::new());
        }
        let f = filter_any("allocation-id", allocs.iter().map(AllocationId::as_str));
        let out = self
            .send(ACTION, self.client.describe_addresses().filters(f).send())
            .await?;
        Ok(out.addresses().iter().filter_map(to_address).collect())
    }

    /// The Elastic IP (of any pool, or none) with this public IP in the account, if there is one:
    /// `None` means the public IP is not an Elastic IP (e.g. an instance's ephemeral one).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn describe_public_ip(
        &self,
        public_ip: Ipv4Addr,
    ) -> Result<Option<Address>, Ec2Error> {
        const ACTION: &str = "DescribeAddresses";
        let f = filter("public-ip", &public_ip.to_string());
        let out = self
            .send(ACTION, self.client.describe_addresses().filters(f).send())
            .await?;
        Ok(out.addresses().iter().find_map(to_address))
    }

    /// Write the holder record on the address (`eipool:holder`): where eipool put it. EC2 then
    /// tells eipool's holders from foreign ones without Redis. CreateTags has its own request
    /// bucket, so this costs the herd none of its AssociateAddress budget.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn tag_holder(
        &self,
        alloc: &AllocationId,
        holder: &HolderTag,
    ) -> Result<(), Ec2Error> {
        const ACTION: &str = "CreateTags";
        let req = self
            .client
            .create_tags()
            .resources(alloc.as_str())
            .tags(Tag::builder().key(HOLDER_TAG).value(holder.value()).build());
        self.send(ACTION, req.send()).await?;
        Ok(())
    }

    /// Associates `alloc` with `eni`/`private_ip`; never steals: `AllowReassociation=false`
    /// makes EC2 answer `Resource.AlreadyAssociated` when someone holds the address.
    ///
    /// The only AssociateAddress in the product.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn associate(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        private_ip: Ipv4Addr,
    ) -> Result<AssociationId, Ec2Error> {
        const ACTION: &str = "AssociateAddress";
        let req = self
            .client
            .associate_address()
            .allocation_id(alloc.as_str())
            .network_interface_id(eni.as_str())
            .private_ip_address(private_ip.to_string())
            .allow_reassociation(false);
        let out = self.send(ACTION, req.send()).await.map_err(|e| match e {
            Ec2Error::AlreadyAssociated(_) => Ec2Error::AlreadyAssociated(alloc.to_string()),
            other => other,
        })?;
        id(out.association_id()).ok_or_else(|| Ec2Error::Transient {
            action: ACTION,
            detail: "answer carried no association id".into(),
            maybe_applied: true,
        })
    }

    /// Disassociates by association id. Already gone (`InvalidAssociationID.NotFound`) is success:
    /// disassociating is idempotent.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn disassociate(&self, assoc: &AssociationId) -> Result<(), Ec2Error> {
        const ACTION: &str = "DisassociateAddress";
        let req = self
            .client
            .disassociate_address()
            .association_id(assoc.as_str());
        match self.send(ACTION, req.send()).await {
            Ok(_) => Ok(()),
            Err(Ec2Error::Rejected { code, .. }) if code == "InvalidAssociationID.NotFound" => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Allocate one VPC Elastic IP tagged into `pool` at creation (one call: no window in which
    /// it exists untagged). `extra_tag` marks it, e.g. with the idempotency token of a grow.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn allocate(
        &self,
        pool: &str,
        extra_tag: Option<(&str, &str)>,
        source: &AddressSource,
    ) -> Result<Address, Ec2Error> {
        const ACTION: &str = "AllocateAddress";
        let mut spec = TagSpecification::builder()
            .resource_type(ResourceType::ElasticIp)
            .tags(Tag::builder().key(POOL_TAG).value(pool).build());
        if let Some((k, v)) = extra_tag {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        let mut req = self
            .client
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(spec.build());
        match source {
            AddressSource::Amazon => {}
            AddressSource::Ipam(id) => req = req.ipam_pool_id(id),
            AddressSource::PublicIpv4Pool(id) => req = req.public_ipv4_pool(id),
        }
        let out = self.send(ACTION, req.send()).await?;
        let lost = |what: &str| Ec2Error::Transient {
            action: ACTION,
            detail: format!("answer carried no {what}"),
            maybe_applied: true,
        };
        let allocation_id = id(out.allocation_id()).ok_or_else(|| lost("allocation id"))?;
        let public_ip = out
            .public_ip()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| lost("public IP"))?;
        Ok(Address {
            allocation_id,
            public_ip,
            association: None,
            pool: Some(pool.to_string()),
            holder: None,
        })
    }

    /// Release (give back to AWS) an Elastic IP. EC2 refuses while it is associated
    /// (`InvalidIPAddress.InUse`), which is the guard that keeps shrink from freeing a used one.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn release_address(&self, alloc: &AllocationId) -> Result<(), Ec2Error> {
        const ACTION: &str = "ReleaseAddress";
        self.send(
            ACTION,
            self.client
                .release_address()
                .allocation_id(alloc.as_str())
                .send(),
        )
        .await?;
        Ok(())
    }
}

//! DryRun permission checks (`doctor`): would EC2 let this identity make each call eipool makes?

use aws_sdk_ec2::types::DomainType;
use tracing::instrument;

use super::client::Ec2;
use super::errors::Ec2Error;
use crate::pure::ids::{AllocationId, EniId};

/// An action whose permission `doctor` checks with DryRun.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DryRunAction<'a> {
    /// ec2:DescribeAddresses.
    DescribeAddresses,
    /// ec2:DescribeNetworkInterfaces.
    DescribeNetworkInterfaces,
    /// ec2:DescribeInstances.
    DescribeInstances,
    /// ec2:AssociateAddress of this address to this interface.
    AssociateAddress(&'a AllocationId, &'a EniId),
    /// ec2:DisassociateAddress.
    DisassociateAddress,
    /// ec2:AllocateAddress.
    AllocateAddress,
    /// ec2:ReleaseAddress of this address.
    ReleaseAddress(&'a AllocationId),
}

impl DryRunAction<'_> {
    /// The EC2 action name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            DryRunAction::DescribeAddresses => "DescribeAddresses",
            DryRunAction::DescribeNetworkInterfaces => "DescribeNetworkInterfaces",
            DryRunAction::DescribeInstances => "DescribeInstances",
            DryRunAction::AssociateAddress(..) => "AssociateAddress",
            DryRunAction::DisassociateAddress => "DisassociateAddress",
            DryRunAction::AllocateAddress => "AllocateAddress",
            DryRunAction::ReleaseAddress(_) => "ReleaseAddress",
        }
    }
}

/// What a DryRun said about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permission {
    /// `DryRunOperation`: the call would have succeeded.
    Allowed,
    /// `UnauthorizedOperation`, with AWS's message.
    Denied(String),
    /// Neither: the message says what happened instead.
    Unknown(String),
}

impl Ec2 {
    /// Ask EC2 whether this identity may call `action`, with `DryRun=true` (nothing changes).
    #[instrument(skip(self))]
    pub(crate) async fn may_call(&self, action: DryRunAction<'_>) -> Permission {
        let name = action.name();
        let result = match action {
            DryRunAction::DescribeAddresses => self
                .send(name, self.client.describe_addresses().dry_run(true).send())
                .await
                .map(drop),
            DryRunAction::DescribeNetworkInterfaces => self
                .send(
                    name,
                    self.client
                        .describe_network_interfaces()
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
            DryRunAction::DescribeInstances => self
                .send(name, self.client.describe_instances().dry_run(true).send())
                .await
                .map(drop),
            DryRunAction::AssociateAddress(alloc, eni) => self
                .send(
                    name,
                    self.client
                        .associate_address()
                        .allocation_id(alloc.as_str())
                        .network_interface_id(eni.as_str())
                        .allow_reassociation(false)
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
            DryRunAction::DisassociateAddress => self
                .send(
                    name,
                    self.client
                        .disassociate_address()
                        .association_id("eipassoc-00000000000000000")
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
            DryRunAction::AllocateAddress => self
                .send(
                    name,
                    self.client
                        .allocate_address()
                        .domain(DomainType::Vpc)
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
            DryRunAction::ReleaseAddress(alloc) => self
                .send(
                    name,
                    self.client
                        .release_address()
                        .allocation_id(alloc.as_str())
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
        };
        match result {
            Err(Ec2Error::Rejected { code, .. }) if code == "DryRunOperation" => {
                Permission::Allowed
            }
            Err(Ec2Error::Unauthorized { message, .. }) => Permission::Denied(message),
            Ok(()) => Permission::Allowed, // an endpoint that ignores DryRun still let us call it
            Err(e) => Permission::Unknown(e.to_string()),
        }
    }
}

//! DryRun permission checks (`doctor`): would EC2 let this identity make each call eipool makes?

use aws_sdk_ec2::types::{DomainType, ResourceType, Tag, TagSpecification};
use tracing::instrument;

use super::client::Ec2;
use super::errors::Ec2Error;
use crate::pure::address::{HOLDER_TAG, POOL_TAG};
use crate::pure::ids::{AllocationId, AssociationId, EniId};

/// An action whose permission `doctor` checks with DryRun, as eipool makes it (tags included:
/// the shipped policies allow some actions only with the pool's tag).
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
    /// ec2:DisassociateAddress of this association.
    DisassociateAddress(&'a AssociationId),
    /// ec2:AllocateAddress tagged into this pool at creation.
    AllocateAddress(&'a str),
    /// ec2:ReleaseAddress of this address.
    ReleaseAddress(&'a AllocationId),
    /// ec2:CreateTags of the holder tag on this address.
    TagHolder(&'a AllocationId),
}

impl DryRunAction<'_> {
    /// The EC2 action name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            DryRunAction::DescribeAddresses => "DescribeAddresses",
            DryRunAction::DescribeNetworkInterfaces => "DescribeNetworkInterfaces",
            DryRunAction::DescribeInstances => "DescribeInstances",
            DryRunAction::AssociateAddress(..) => "AssociateAddress",
            DryRunAction::DisassociateAddress(_) => "DisassociateAddress",
            DryRunAction::AllocateAddress(_) => "AllocateAddress",
            DryRunAction::ReleaseAddress(_) => "ReleaseAddress",
            DryRunAction::TagHolder(_) => "CreateTags",
        }
    }
}

/// What a DryRun said about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permission {
    /// `DryRunOperation`: the call would have succeeded.
    Allowed,
    /// `UnauthorizedOperation`, with AWS's message: the identity lacks the permission.
    Denied(String),
    /// The endpoint could not be reached (network, timeout, 5xx): nothing is known yet.
    Unreachable(String),
    /// No credentials in the standard chain, or the SDK could not build the request.
    NoCredentials(String),
    /// `AuthFailure`: EC2 does not accept these credentials.
    BadCredentials(String),
    /// Anything else: the message says what happened instead.
    Unknown(String),
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::Allowed => f.write_str("allowed"),
            Permission::Denied(m) => write!(f, "denied: {m}"),
            Permission::Unreachable(m) => write!(f, "EC2 did not answer: {m}"),
            Permission::NoCredentials(m) => write!(f, "no credentials: {m}"),
            Permission::BadCredentials(m) => write!(f, "credentials rejected: {m}"),
            Permission::Unknown(m) => f.write_str(m),
        }
    }
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
            DryRunAction::DisassociateAddress(assoc) => self
                .send(
                    name,
                    self.client
                        .disassociate_address()
                        .association_id(assoc.as_str())
                        .dry_run(true)
                        .send(),
                )
                .await
                .map(drop),
            DryRunAction::AllocateAddress(pool) => self
                .send(
                    name,
                    self.client
                        .allocate_address()
                        .domain(DomainType::Vpc)
                        .tag_specifications(
                            TagSpecification::builder()
                                .resource_type(ResourceType::ElasticIp)
                                .tags(Tag::builder().key(POOL_TAG).value(pool).build())
                                .build(),
                        )
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
            DryRunAction::TagHolder(alloc) => self
                .send(
                    name,
                    self.client
                        .create_tags()
                        .resources(alloc.as_str())
                        .tags(
                            Tag::builder()
                                .key(HOLDER_TAG)
                                .value("doctor-dry-run")
                                .build(),
                        )
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
            Err(Ec2Error::BadCredentials { message, .. }) => Permission::BadCredentials(message),
            Err(e @ (Ec2Error::Transient { .. } | Ec2Error::Throttled { .. })) => {
                Permission::Unreachable(e.to_string())
            }
            Err(Ec2Error::Configuration { message, .. }) => Permission::NoCredentials(message),
            Ok(()) => Permission::Allowed, // an endpoint that ignores DryRun still let us call it
            Err(e) => Permission::Unknown(e.to_string()),
        }
    }
}

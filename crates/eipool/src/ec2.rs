//! Every EC2 call eipool makes: one async function per API action, each bounded by a timeout,
//! traced, and mapping AWS error codes onto [`Ec2Error`].
//!
//! The SDK's own retries are off (see [`connect`]): retries, backoff and the overall deadline
//! belong to the caller, which can tell a harmless retry from one that may double-apply.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{DomainType, Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use tracing::instrument;

/// The tag that puts an Elastic IP in a pool: `eipool:pool=<name>`.
pub const POOL_TAG: &str = "eipool:pool";

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $name {
            /// The id as EC2 spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

id_newtype!(
    /// An Elastic IP's allocation id, `eipalloc-…`.
    AllocationId
);
id_newtype!(
    /// An association of an Elastic IP with an interface, `eipassoc-…`.
    AssociationId
);
id_newtype!(
    /// A network interface id, `eni-…`.
    EniId
);
id_newtype!(
    /// An EC2 instance id, `i-…`.
    InstanceId
);

/// Errors of EC2 calls, by what the caller does about them.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// `Resource.AlreadyAssociated`: AssociateAddress without reassociation found the address taken; move on.
    #[error("{0} is already associated elsewhere")]
    AlreadyAssociated(AllocationId),
    /// `InvalidAllocationID.NotFound`: the address was released (or never existed in this region).
    #[error("Elastic IP {0} does not exist in this region")]
    AllocationNotFound(AllocationId),
    /// The network interface does not exist (or is malformed); check `--network-interface-id`.
    #[error("network interface {0} does not exist in this region")]
    InterfaceNotFound(String),
    /// The instance does not exist (or is malformed); check `--instance-id`.
    #[error("instance {0} does not exist in this region")]
    InstanceNotFound(String),
    /// `UnauthorizedOperation` / `AuthFailure`: the IAM identity may not call this action; grant it.
    #[error("AWS refused permission for ec2:{action}: {message}")]
    Unauthorized {
        /// The EC2 action, e.g. `AssociateAddress`.
        action: &'static str,
        /// AWS's message.
        message: String,
    },
    /// No usable AWS credentials or region in the standard chain; configure them.
    #[error("AWS configuration for ec2:{action}: {message}")]
    Configuration {
        /// The EC2 action that could not be sent.
        action: &'static str,
        /// What the SDK said.
        message: String,
    },
    /// `RequestLimitExceeded` / `Throttling`: EC2 rate limit; back off and retry.
    #[error("ec2:{action} was throttled (RequestLimitExceeded)")]
    Throttled {
        /// The EC2 action.
        action: &'static str,
    },
    /// A 5xx, connection failure, timeout or unreadable answer: retry with backoff. The request
    /// may have been applied when `maybe_applied` is set (the answer, not the request, was lost).
    #[error("ec2:{action} failed temporarily: {detail}")]
    Transient {
        /// The EC2 action.
        action: &'static str,
        /// What went wrong.
        detail: String,
        /// Whether EC2 may have applied the request even though we saw no answer.
        maybe_applied: bool,
    },
    /// Any other error EC2 answered with; not retried.
    #[error("ec2:{action} was rejected: {code}: {message}")]
    Rejected {
        /// The EC2 action.
        action: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
}

impl Ec2Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Ec2Error::Throttled { .. } | Ec2Error::Transient { .. }
        )
    }

    /// The `outcome` label of this error in `eipool_ec2_calls_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Ec2Error::AlreadyAssociated(_) => "already_associated",
            Ec2Error::AllocationNotFound(_)
            | Ec2Error::InterfaceNotFound(_)
            | Ec2Error::InstanceNotFound(_) => "not_found",
            Ec2Error::Unauthorized { .. } => "unauthorized",
            Ec2Error::Configuration { .. } => "configuration",
            Ec2Error::Throttled { .. } => "throttled",
            Ec2Error::Transient { .. } => "transient",
            Ec2Error::Rejected { code, .. } if code == "DryRunOperation" => "dry_run",
            Ec2Error::Rejected { .. } => "rejected",
        }
    }

    /// Whether the request may have taken effect although no success was seen.
    pub fn maybe_applied(&self) -> bool {
        matches!(
            self,
            Ec2Error::Transient {
                maybe_applied: true,
                ..
            }
        )
    }
}

/// One Elastic IP as DescribeAddresses shows it. (Serialized only to share a listing with the
/// herd through Redis.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// `eipalloc-…`.
    pub allocation_id: AllocationId,
    /// The public IPv4 address.
    pub public_ip: Ipv4Addr,
    /// Where it is associated, if anywhere.
    pub association: Option<Association>,
    /// The value of the `eipool:pool` tag, if any.
    pub pool: Option<String>,
}

/// Where an Elastic IP is associated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Association {
    /// `eipassoc-…`.
    pub id: AssociationId,
    /// The interface holding it (absent for EC2-Classic style instance associations).
    pub network_interface_id: Option<EniId>,
    /// The private IP of that interface it maps to.
    pub private_ip: Option<Ipv4Addr>,
    /// The instance, when EC2 reports one (moto 5 does not for interface associations).
    pub instance_id: Option<InstanceId>,
}

impl Address {
    /// Whether this address is associated with exactly this interface and private IP.
    pub fn held_by(&self, eni: &EniId, private_ip: Ipv4Addr) -> bool {
        self.association.as_ref().is_some_and(|a| {
            a.network_interface_id.as_ref() == Some(eni) && a.private_ip == Some(private_ip)
        })
    }
}

/// A network interface and the private IPs it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `eni-…`.
    pub id: EniId,
    /// Its primary private IPv4 address.
    pub primary_private_ip: Ipv4Addr,
    /// All its private IPv4 addresses, primary first.
    pub private_ips: Vec<Ipv4Addr>,
    /// The instance it is attached to, if attached.
    pub instance_id: Option<InstanceId>,
}

/// An interface's status (`in-use`, `available`, …) and attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceState {
    /// `eni-…`.
    pub id: EniId,
    /// EC2's status of the interface.
    pub status: String,
    /// The instance it is attached to, if any.
    pub instance_id: Option<InstanceId>,
}

/// Where new addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// Amazon's pool.
    Amazon,
    /// An IPAM pool (`--ipam-pool-id`).
    Ipam(String),
    /// A BYOIP public IPv4 pool (`--public-ipv4-pool`).
    PublicIpv4Pool(String),
}

/// An action whose permission `doctor` checks with DryRun.
#[derive(Debug, Clone, Copy)]
pub enum DryRunAction<'a> {
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
    pub fn name(&self) -> &'static str {
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
pub enum Permission {
    /// `DryRunOperation`: the call would have succeeded.
    Allowed,
    /// `UnauthorizedOperation`, with AWS's message.
    Denied(String),
    /// Neither: the message says what happened instead.
    Unknown(String),
}

/// EC2 client with eipool's per-call timeout.
#[derive(Clone, Debug)]
pub struct Ec2 {
    client: Client,
    call_timeout: Duration,
    region: String,
}

/// Build a client from the standard AWS chain (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`, …)
/// with SDK retries off and `call_timeout` on every attempt.
///
/// Returns `Err` with a message when no region can be found, so the caller can say which
/// setting is missing before any request is made.
pub async fn connect(call_timeout: Duration) -> Result<Ec2, String> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(call_timeout.min(Duration::from_secs(3)))
                // Ours (in `send`) is the real bound; it grows on retries, so the SDK's must not cut first.
                .operation_attempt_timeout(call_timeout * crate::budget::timeout_scale(u32::MAX))
                .build(),
        )
        .load()
        .await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        return Err(
            "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile region)"
                .into(),
        );
    };
    Ok(Ec2 {
        client: Client::new(&config),
        call_timeout,
        region,
    })
}

impl Ec2 {
    /// The region calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The timeout applied to every single call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The raw SDK client, for tools (tests, lab) that need calls eipool itself never makes.
    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// All VPC Elastic IPs tagged `eipool:pool=<pool>`. One call; the pool is listed sparingly.
    #[instrument(skip(self), err(Display))]
    pub async fn describe_pool(&self, pool: &str) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, None).await
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
    #[instrument(skip(self), err(Display))]
    pub async fn describe_address(
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

    /// Associates `alloc` with `eni`/`private_ip`; never steals: `AllowReassociation=false`
    /// makes EC2 answer `Resource.AlreadyAssociated` when someone holds the address.
    #[instrument(skip(self), err(Display))]
    pub async fn associate(
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
            Ec2Error::Rejected { code, .. } if code == "Resource.AlreadyAssociated" => {
                Ec2Error::AlreadyAssociated(alloc.clone())
            }
            other => other,
        })?;
        let id = out
            .association_id()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Ec2Error::Transient {
                action: ACTION,
                detail: "answer carried no association id".into(),
                maybe_applied: true,
            })?;
        Ok(AssociationId(id.to_string()))
    }

    /// Disassociates by association id. Already gone (`InvalidAssociationID.NotFound`) is success:
    /// disassociating is idempotent.
    #[instrument(skip(self), err(Display))]
    pub async fn disassociate(&self, assoc: &AssociationId) -> Result<(), Ec2Error> {
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

    /// The interface `eni` and its private IPs.
    #[instrument(skip(self), err(Display))]
    pub async fn describe_interface(&self, eni: &EniId) -> Result<Interface, Ec2Error> {
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
    #[instrument(skip(self), err(Display))]
    pub async fn primary_interface_of(&self, instance: &InstanceId) -> Result<Interface, Ec2Error> {
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

    /// The pool addresses associated with `eni` (cheap: filtered server-side).
    #[instrument(skip(self), err(Display))]
    pub async fn describe_pool_on(
        &self,
        pool: &str,
        eni: &EniId,
    ) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, Some(filter("network-interface-id", eni.as_str())))
            .await
    }

    /// Status and attachment of these interfaces; ids that no longer exist are simply absent.
    #[instrument(skip(self), err(Display))]
    pub async fn interface_states(&self, ids: &[EniId]) -> Result<Vec<InterfaceState>, Ec2Error> {
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
                    id: EniId(nonempty(n.network_interface_id())?.to_string()),
                    status: n
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    instance_id: n
                        .attachment()
                        .and_then(|a| nonempty(a.instance_id()))
                        .map(|s| InstanceId(s.to_string())),
                })
            })
            .collect())
    }

    /// The state name (`running`, `stopped`, `terminated`, …) of these instances; ids EC2 no
    /// longer knows are absent.
    #[instrument(skip(self), err(Display))]
    pub async fn instance_states(
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
                let id = InstanceId(nonempty(i.instance_id())?.to_string());
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                Some((id, state))
            })
            .collect())
    }

    /// Allocate one VPC Elastic IP tagged into `pool` at creation (one call: no window in which
    /// it exists untagged). `extra_tag` marks it, e.g. with the idempotency token of a grow.
    #[instrument(skip(self), err(Display))]
    pub async fn allocate(
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
        let allocation_id = AllocationId(
            nonempty(out.allocation_id())
                .ok_or_else(|| Ec2Error::Transient {
                    action: ACTION,
                    detail: "answer carried no allocation id".into(),
                    maybe_applied: true,
                })?
                .to_string(),
        );
        let public_ip = out
            .public_ip()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Ec2Error::Transient {
                action: ACTION,
                detail: "answer carried no public IP".into(),
                maybe_applied: true,
            })?;
        Ok(Address {
            allocation_id,
            public_ip,
            association: None,
            pool: Some(pool.to_string()),
        })
    }

    /// The pool addresses carrying tag `key=value` (e.g. a grow's idempotency token).
    #[instrument(skip(self), err(Display))]
    pub async fn describe_pool_tagged(
        &self,
        pool: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<Address>, Ec2Error> {
        self.describe_pool_where(pool, Some(filter(&format!("tag:{key}"), value)))
            .await
    }

    /// Release (give back to AWS) an Elastic IP. EC2 refuses while it is associated
    /// (`InvalidIPAddress.InUse`), which is the guard that keeps shrink from freeing a used one.
    #[instrument(skip(self), err(Display))]
    pub async fn release_address(&self, alloc: &AllocationId) -> Result<(), Ec2Error> {
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

    /// Ask EC2 whether this identity may call `action`, with `DryRun=true` (nothing changes).
    #[instrument(skip(self))]
    pub async fn may_call(&self, action: DryRunAction<'_>) -> Permission {
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

    /// Send with the per-call timeout on top of the SDK's own attempt timeout, so a stalled
    /// connection can never hold a claimer past its budget; map the error.
    async fn send<T, E>(
        &self,
        action: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T, Ec2Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let attempt = crate::budget::ATTEMPT.try_with(|a| *a).unwrap_or(0);
        let timeout = self.call_timeout * crate::budget::timeout_scale(attempt);
        let sent = std::time::Instant::now();
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|e| map_err(action, e)),
            Err(_) => Err(Ec2Error::Transient {
                action,
                detail: format!("no answer within {timeout:?}"),
                maybe_applied: true,
            }),
        };
        let outcome = result.as_ref().map_or_else(Ec2Error::label, |_| "ok");
        crate::metrics::global().ec2_call(action, outcome);
        let elapsed_ms = sent.elapsed().as_millis() as u64;
        tracing::debug!(action, outcome, elapsed_ms, "ec2 call");
        result
    }
}

fn filter(name: &str, value: &str) -> Filter {
    filter_any(name, [value])
}

/// A filter matching any of `values`.
fn filter_any<'a>(name: &str, values: impl IntoIterator<Item = &'a str>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(str::to_string).collect()))
        .build()
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn to_address(a: &aws_sdk_ec2::types::Address) -> Option<Address> {
    let allocation_id = AllocationId(nonempty(a.allocation_id())?.to_string());
    let public_ip = a.public_ip()?.parse().ok()?;
    let association = nonempty(a.association_id()).map(|id| Association {
        id: AssociationId(id.to_string()),
        network_interface_id: nonempty(a.network_interface_id()).map(|s| EniId(s.to_string())),
        private_ip: nonempty(a.private_ip_address()).and_then(|s| s.parse().ok()),
        instance_id: nonempty(a.instance_id()).map(|s| InstanceId(s.to_string())),
    });
    let pool = a
        .tags()
        .iter()
        .find(|t| t.key() == Some(POOL_TAG))
        .and_then(|t| t.value())
        .map(str::to_string);
    Some(Address {
        allocation_id,
        public_ip,
        association,
        pool,
    })
}

fn to_interface(n: &aws_sdk_ec2::types::NetworkInterface) -> Option<Interface> {
    let id = EniId(nonempty(n.network_interface_id())?.to_string());
    let primary_private_ip: Ipv4Addr = n.private_ip_address()?.parse().ok()?;
    let mut private_ips = vec![primary_private_ip];
    for p in n.private_ip_addresses() {
        if let Some(ip) = p.private_ip_address().and_then(|s| s.parse().ok()) {
            if !private_ips.contains(&ip) {
                private_ips.push(ip);
            }
        }
    }
    let instance_id = n
        .attachment()
        .and_then(|a| nonempty(a.instance_id()))
        .map(|s| InstanceId(s.to_string()));
    Some(Interface {
        id,
        primary_private_ip,
        private_ips,
        instance_id,
    })
}

fn map_err<E>(action: &'static str, err: SdkError<E>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("").to_string();
            let message = ctx.err().message().unwrap_or("").to_string();
            classify(action, status, code, message)
        }
        SdkError::TimeoutError(_) => Ec2Error::Transient {
            action,
            detail: "timed out".into(),
            maybe_applied: true,
        },
        SdkError::ResponseError(_) => Ec2Error::Transient {
            action,
            detail: format!("unreadable answer: {}", chain(&err)),
            maybe_applied: true,
        },
        SdkError::DispatchFailure(d) => {
            let detail = chain(&err);
            if d.is_user() || mentions_configuration(&detail) {
                Ec2Error::Configuration {
                    action,
                    message: detail,
                }
            } else {
                // A connection that never opened cannot have applied anything; one cut
                // mid-flight ("connection closed before message completed") may have.
                let maybe_applied = !detail.contains("onnection refused");
                Ec2Error::Transient {
                    action,
                    detail,
                    maybe_applied,
                }
            }
        }
        _ => Ec2Error::Configuration {
            action,
            message: chain(&err),
        },
    }
}

/// Whether an SDK failure is about missing setup (credentials, region, endpoint) rather than
/// the network.
fn mentions_configuration(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    ["credential", "region", "invalid endpoint", "no identity"]
        .iter()
        .any(|w| d.contains(w))
}

/// Map an error answer by its code and HTTP status.
fn classify(action: &'static str, status: u16, code: String, message: String) -> Ec2Error {
    match code.as_str() {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
            Ec2Error::Throttled { action }
        }
        "UnauthorizedOperation" | "AuthFailure" | "Blocked" | "OptInRequired" => {
            Ec2Error::Unauthorized { action, message }
        }
        "InvalidAllocationID.NotFound" => {
            Ec2Error::AllocationNotFound(AllocationId(extract_id(&message, "eipalloc-")))
        }
        "InvalidNetworkInterfaceID.NotFound" | "InvalidNetworkInterfaceId.Malformed" => {
            Ec2Error::InterfaceNotFound(extract_id(&message, "eni-"))
        }
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
            Ec2Error::InstanceNotFound(extract_id(&message, "i-"))
        }
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            Ec2Error::Transient {
                action,
                detail: format!("{code}: {message}"),
                maybe_applied: true,
            }
        }
        _ if status >= 500 => Ec2Error::Transient {
            action,
            detail: format!("HTTP {status} {code}: {message}"),
            maybe_applied: true,
        },
        _ => Ec2Error::Rejected {
            action,
            code,
            message,
        },
    }
}

/// The first token of `message` that starts with `prefix`, or the whole message.
fn extract_id(message: &str, prefix: &str) -> String {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with(prefix))
        .unwrap_or(message)
        .to_string()
}

/// An error and its sources on one line (the SDK's own messages span several).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_what_the_caller_does() {
        let c =
            |status, code: &str| classify("AssociateAddress", status, code.into(), "msg".into());
        assert!(matches!(
            c(503, "RequestLimitExceeded"),
            Ec2Error::Throttled { .. }
        ));
        assert!(matches!(
            c(403, "UnauthorizedOperation"),
            Ec2Error::Unauthorized { .. }
        ));
        assert!(matches!(
            c(500, "InternalError"),
            Ec2Error::Transient {
                maybe_applied: true,
                ..
            }
        ));
        assert!(matches!(c(502, "Whatever"), Ec2Error::Transient { .. }));
        assert!(matches!(
            c(400, "InvalidParameterValue"),
            Ec2Error::Rejected { .. }
        ));
        assert!(c(503, "RequestLimitExceeded").is_transient());
        assert!(!c(403, "UnauthorizedOperation").is_transient());
    }

    #[test]
    fn ids_are_pulled_out_of_aws_messages() {
        assert_eq!(
            extract_id(
                "The networkInterface ID 'eni-deadbeef' does not exist",
                "eni-"
            ),
            "eni-deadbeef"
        );
        assert_eq!(
            extract_id("Allocation ID '{'eipalloc-1f'}' not found.", "eipalloc-"),
            "eipalloc-1f"
        );
        assert_eq!(extract_id("no id here", "i-"), "no id here");
    }
}

#[cfg(test)]
mod iam {
    use std::collections::BTreeSet;

    /// deploy/iam-policy.json allows exactly the EC2 actions this module calls (plus CreateTags,
    /// which AllocateAddress with TagSpecifications needs), no more, no fewer.
    #[test]
    fn the_iam_policy_lists_exactly_the_actions_the_code_calls() {
        let code = include_str!("ec2.rs");
        let mut called: BTreeSet<String> = code
            .lines()
            .filter_map(|l| l.trim().strip_prefix("const ACTION: &str = \""))
            .filter_map(|rest| rest.split('"').next())
            .map(|a| format!("ec2:{a}"))
            .collect();
        called.insert("ec2:CreateTags".into());
        let policy: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/iam-policy.json")).unwrap();
        let mut allowed = BTreeSet::new();
        for st in policy["Statement"].as_array().unwrap() {
            match &st["Action"] {
                serde_json::Value::String(a) => {
                    allowed.insert(a.clone());
                }
                serde_json::Value::Array(list) => {
                    allowed.extend(list.iter().map(|a| a.as_str().unwrap().to_string()))
                }
                other => panic!("unexpected Action {other}"),
            }
        }
        assert_eq!(
            allowed, called,
            "deploy/iam-policy.json vs the EC2 calls in ec2.rs"
        );
    }
}

//! The EC2 client: built from the standard AWS chain with the SDK's retries off, and the one
//! `send` every call goes through (per-call timeout that grows on retries, metrics, a debug line).

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

use super::errors::{map_err, Ec2Error};
use crate::pure::address::{Address, Association, Interface, PublicMapping, POOL_TAG};
use crate::pure::address::{HolderTag, HOLDER_TAG};
use crate::support::budget::{timeout_scale, ATTEMPT};
use crate::support::metrics;

/// EC2 client with eipool's per-call timeout.
#[derive(Clone, Debug)]
pub(crate) struct Ec2 {
    pub(super) client: Client,
    call_timeout: Duration,
    region: String,
}

/// Build a client from the standard AWS chain (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`, …)
/// with SDK retries off (retrying is the caller's decision: it can tell a harmless retry from
/// one that may double-apply) and `call_timeout` on every attempt.
///
/// Returns `Err` with a message when no region can be found, so the caller can say which
/// setting is missing before any request is made.
pub(crate) async fn connect(call_timeout: Duration) -> Result<Ec2, String> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(call_timeout.min(Duration::from_secs(3)))
                // Ours (in `send`) is the real bound; it grows on retries, so the SDK's must not cut first.
                .operation_attempt_timeout(call_timeout * timeout_scale(u32::MAX))
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
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// The timeout applied to every single call.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Send with the per-call timeout on top of the SDK's own attempt timeout, so a stalled
    /// connection can never hold a caller past its budget; map the error.
    pub(super) async fn send<T, E>(
        &self,
        action: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T, Ec2Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let attempt = ATTEMPT.try_with(|a| *a).unwrap_or(0);
        let timeout = self.call_timeout * timeout_scale(attempt);
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
        metrics::global().ec2_call(action, outcome);
        let elapsed_ms = sent.elapsed().as_millis() as u64;
        tracing::debug!(action, outcome, elapsed_ms, "ec2 call");
        result
    }
}

/// A filter matching `value`.
pub(super) fn filter(name: &str, value: &str) -> Filter {
    filter_any(name, [value])
}

/// A filter matching any of `values`.
pub(super) fn filter_any<'a>(name: &str, values: impl IntoIterator<Item = &'a str>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(str::to_string).collect()))
        .build()
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// An id EC2 sent, parsed; `None` (with a warning) when EC2 sent something that is not one.
pub(super) fn id<T: std::str::FromStr>(s: Option<&str>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    let s = nonempty(s)?;
    match s.parse() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "EC2 answered a malformed id; ignoring it");
            None
        }
    }
}

pub(super) fn to_address(a: &aws_sdk_ec2::types::Address) -> Option<Address> {
    let allocation_id = id(a.allocation_id())?;
    let public_ip = a.public_ip()?.parse().ok()?;
    let association = id(a.association_id()).map(|id| Association {
        id,
        network_interface_id: self::id(a.network_interface_id()),
        private_ip: nonempty(a.private_ip_address()).and_then(|s| s.parse().ok()),
        instance_id: self::id(a.instance_id()),
    });
    let tag = |key: &str| {
        a.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    Some(Address {
        allocation_id,
        public_ip,
        association,
        pool: tag(POOL_TAG).map(str::to_string),
        holder: tag(HOLDER_TAG).and_then(HolderTag::parse),
    })
}

pub(super) fn to_interface(n: &aws_sdk_ec2::types::NetworkInterface) -> Option<Interface> {
    let id = id(n.network_interface_id())?;
    let primary_private_ip: Ipv4Addr = n.private_ip_address()?.parse().ok()?;
    let mut private_ips = vec![primary_private_ip];
    let mut public = Vec::new();
    for p in n.private_ip_addresses() {
        let Some(ip) = p.private_ip_address().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if !private_ips.contains(&ip) {
            private_ips.push(ip);
        }
        if let Some(x) = p.association() {
            if let Some(public_ip) = x.public_ip().and_then(|s| s.parse().ok()) {
                public.push(PublicMapping {
                    private_ip: ip,
                    public_ip,
                    allocation_id: self::id(x.allocation_id()),
                });
            }
        }
    }
    // The interface's own association is the primary private IP's (some answers, moto's among
    // them, give only this one).
    if let Some(x) = n.association() {
        let public_ip = x.public_ip().and_then(|s| s.parse().ok());
        if let (Some(public_ip), false) = (
            public_ip,
            public.iter().any(|m| m.private_ip == primary_private_ip),
        ) {
            public.push(PublicMapping {
                private_ip: primary_private_ip,
                public_ip,
                allocation_id: self::id(x.allocation_id()),
            });
        }
    }
    Some(Interface {
        id,
        primary_private_ip,
        private_ips,
        instance_id: n.attachment().and_then(|a| self::id(a.instance_id())),
        public,
    })
}

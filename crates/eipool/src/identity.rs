//! Who am I: the interface and private IP a claim maps its address to, from flags or IMDSv2.

use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::imds;
use tracing::{debug, instrument};

use crate::config::IdentitySource;
use crate::ec2::{Ec2, Ec2Error, EniId, InstanceId, Interface};
use crate::error::Error;

/// The claimer's interface, the private IP its address maps to, and its instance when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The interface.
    pub eni: EniId,
    /// The private IPv4 of that interface the Elastic IP maps to.
    pub private_ip: Ipv4Addr,
    /// The instance the interface is attached to.
    pub instance_id: Option<InstanceId>,
}

/// Errors finding out who we are.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// IMDSv2 could not be read (not on EC2, or the hop limit is 1 and we run in a container
    /// without hostNetwork); pass `--network-interface-id` or `--instance-id`, or raise the hop limit.
    #[error("cannot read {path} from IMDSv2: {detail}. Pass --network-interface-id or --instance-id, or, in a pod without hostNetwork, set the instance metadata hop limit to 2")]
    Imds {
        /// The metadata path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// `--private-ip` is not one of the interface's private IPs.
    #[error("--private-ip {ip} is not a private IP of {eni} (it has {have}); pick one of those")]
    NotOnInterface {
        /// The requested IP.
        ip: Ipv4Addr,
        /// The interface.
        eni: EniId,
        /// The IPs it has.
        have: String,
    },
    /// EC2 failed while describing the interface.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Ec2(Ec2Error::InterfaceNotFound(id)) => Error::Usage(format!(
                "--network-interface-id {id} does not exist in this region; check the id and AWS_REGION"
            )),
            IdentityError::Ec2(Ec2Error::InstanceNotFound(id)) => Error::Usage(format!(
                "--instance-id {id} does not exist in this region (or has no device-index-0 interface); check the id and AWS_REGION"
            )),
            IdentityError::Ec2(e) => crate::claim::ec2_failure(e, None),
            e @ IdentityError::NotOnInterface { .. } => Error::Usage(e.to_string()),
            e @ IdentityError::Imds { .. } => Error::Usage(e.to_string()),
        }
    }
}

/// Resolve the identity from flags or IMDSv2, then describe the interface (one EC2 call) to
/// learn its private IPs and check `--private-ip`.
#[instrument(skip(ec2), err(Display))]
pub async fn resolve(
    ec2: &Ec2,
    source: &IdentitySource,
    private_ip: Option<Ipv4Addr>,
) -> Result<Identity, IdentityError> {
    let iface: Interface = match source {
        IdentitySource::Interface(eni) => ec2.describe_interface(eni).await?,
        IdentitySource::Instance(id) => ec2.primary_interface_of(id).await?,
        IdentitySource::Imds => {
            let (instance, eni) = from_imds().await?;
            if private_ip.is_none() {
                // IMDSv2 already knows the primary interface's primary IP: no EC2 call, which
                // spares the describe budget a whole herd shares.
                let ip = imds_get(&imds_client(), "/latest/meta-data/local-ipv4".into()).await?;
                let ip = ip.parse().map_err(|_| IdentityError::Imds {
                    path: "/latest/meta-data/local-ipv4".into(),
                    detail: format!("answered {ip:?}, not an IPv4 address"),
                })?;
                return Ok(Identity {
                    eni,
                    private_ip: ip,
                    instance_id: Some(InstanceId(instance)),
                });
            }
            ec2.describe_interface(&eni).await?
        }
    };
    let ip = match private_ip {
        None => iface.primary_private_ip,
        Some(ip) if iface.private_ips.contains(&ip) => ip,
        Some(ip) => {
            return Err(IdentityError::NotOnInterface {
                ip,
                eni: iface.id,
                have: iface
                    .private_ips
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    Ok(Identity {
        eni: iface.id,
        private_ip: ip,
        instance_id: iface.instance_id,
    })
}

/// Whether IMDSv2 answers: the instance id, or why not (with the hop-limit hint).
pub async fn imds_instance_id() -> Result<String, IdentityError> {
    imds_get(&imds_client(), "/latest/meta-data/instance-id".into()).await
}

fn imds_client() -> imds::Client {
    imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(3)
        .build()
}

async fn imds_get(client: &imds::Client, path: String) -> Result<String, IdentityError> {
    client
        .get(path.clone())
        .await
        .map(|v| v.as_ref().trim().to_string())
        .map_err(|e| IdentityError::Imds {
            path,
            detail: e.to_string(),
        })
}

/// IMDSv2: token, then the instance id, the MAC of the primary interface, then that interface's id.
/// The endpoint follows the standard chain (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
async fn from_imds() -> Result<(String, EniId), IdentityError> {
    let client = imds_client();
    let get = |path: String| imds_get(&client, path);
    let instance = get("/latest/meta-data/instance-id".into()).await?;
    let mac = get("/latest/meta-data/mac".into()).await?;
    let eni = get(format!(
        "/latest/meta-data/network/interfaces/macs/{mac}/interface-id"
    ))
    .await?;
    debug!(%instance, %mac, %eni, "identity from IMDSv2");
    if !eni.starts_with("eni-") {
        return Err(IdentityError::Imds {
            path: format!("/latest/meta-data/network/interfaces/macs/{mac}/interface-id"),
            detail: format!("answered {eni:?}, not an interface id"),
        });
    }
    Ok((instance, EniId(eni)))
}

/// [`resolve`], with passing failures retried within `budget`.
pub async fn resolve_in(
    ec2: &Ec2,
    budget: &crate::budget::Budget,
    source: &IdentitySource,
    private_ip: Option<Ipv4Addr>,
) -> Result<Identity, Error> {
    budget
        .retry("identity", || resolve(ec2, source, private_ip))
        .await
        .map_err(|i| budget.error(i))?
        .map_err(Error::from)
}

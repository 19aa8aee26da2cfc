//! EC2's errors, by what the caller does about them: the classification of every AWS error code
//! eipool meets, whether a retry may help ([`Transient`]), and the command's error for each
//! ([`From<Ec2Error> for Error`]).

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::pure::error::Error;
use crate::support::budget::Transient;

/// Errors of EC2 calls, by what the caller does about them.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ec2Error {
    /// `Resource.AlreadyAssociated`: AssociateAddress without reassociation found the address taken; move on.
    #[error("{0} is already associated elsewhere")]
    AlreadyAssociated(String),
    /// `InvalidAllocationID.NotFound`: the address was released (or never existed in this region).
    #[error("Elastic IP {0} does not exist in this region")]
    AllocationNotFound(String),
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
    /// `AuthFailure`: EC2 does not accept the credentials (unknown, expired, or signed for
    /// another region); fix them.
    #[error("AWS rejected the credentials for ec2:{action}: {message}")]
    BadCredentials {
        /// The EC2 action.
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
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            Ec2Error::Throttled { .. } | Ec2Error::Transient { .. }
        )
    }

    /// The `outcome` label of this error in `eipool_ec2_calls_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Ec2Error::AlreadyAssociated(_) => "already_associated",
            Ec2Error::AllocationNotFound(_)
            | Ec2Error::InterfaceNotFound(_)
            | Ec2Error::InstanceNotFound(_) => "not_found",
            Ec2Error::Unauthorized { .. } | Ec2Error::BadCredentials { .. } => "unauthorized",
            Ec2Error::Configuration { .. } => "configuration",
            Ec2Error::Throttled { .. } => "throttled",
            Ec2Error::Transient { .. } => "transient",
            Ec2Error::Rejected { code, .. } if code == "DryRunOperation" => "dry_run",
            Ec2Error::Rejected { .. } => "rejected",
        }
    }

    /// Whether the request may have taken effect although no success was seen.
    pub(crate) fn maybe_applied(&self) -> bool {
        matches!(
            self,
            Ec2Error::Transient {
                maybe_applied: true,
                ..
            }
        )
    }
}

impl Transient for Ec2Error {
    fn is_transient(&self) -> bool {
        Ec2Error::is_transient(self)
    }
}

/// What a command ends with when EC2 fails in a way no retry fixes (or kept failing).
impl From<Ec2Error> for Error {
    fn from(e: Ec2Error) -> Error {
        match e {
            Ec2Error::Unauthorized { action, message } => Error::Permission { action, message },
            Ec2Error::BadCredentials { action, message } => Error::usage(format!(
                "AWS rejected the credentials for ec2:{action}: {message}. Check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the IRSA role, and AWS_REGION"
            )),
            Ec2Error::Configuration { action, message } => Error::usage(format!(
                "cannot call ec2:{action}: {message}. Check the AWS credentials and region (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, IRSA)"
            )),
            Ec2Error::InterfaceNotFound(id) => {
                Error::usage(format!("network interface {id} does not exist in this region"))
            }
            Ec2Error::InstanceNotFound(id) => {
                Error::usage(format!("instance {id} does not exist in this region"))
            }
            e @ (Ec2Error::Throttled { .. } | Ec2Error::Transient { .. }) => Error::Temporary {
                last: e.to_string(),
                timeout: None,
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

pub(super) fn map_err<E>(action: &'static str, err: SdkError<E>) -> Ec2Error
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
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" => {
            Ec2Error::BadCredentials { action, message }
        }
        "UnauthorizedOperation" | "AccessDenied" | "Blocked" | "OptInRequired" => {
            Ec2Error::Unauthorized { action, message }
        }
        // Classified here, where the call's metric takes its label, not after it.
        "Resource.AlreadyAssociated" => {
            Ec2Error::AlreadyAssociated(extract_id(&message, "eipalloc-"))
        }
        "InvalidAllocationID.NotFound" => {
            Ec2Error::AllocationNotFound(extract_id(&message, "eipalloc-"))
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
        // Not an EC2 error answer at all (a body the SDK could not read, from a proxy or a
        // broken endpoint): passing, like any unreadable answer.
        "" => Ec2Error::Transient {
            action,
            detail: format!("HTTP {status} without an EC2 error code (an unreadable answer)"),
            maybe_applied: true,
        },
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
        // Counted as `already_associated` in eipool_ec2_calls_total, as the README says.
        assert_eq!(
            c(400, "Resource.AlreadyAssociated").label(),
            "already_associated"
        );
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

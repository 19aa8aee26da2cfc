//! What the Kubernetes API answers, in the cases node mode meets (Status codes:
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#http-status-codes>), whether a
//! retry may help ([`Transient`]), and the command's error for each.

use crate::pure::error::Error;
use crate::support::budget::Transient;

/// A failed call to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeError {
    /// No usable configuration: a kubeconfig that cannot be read, or no kubeconfig and not in a
    /// cluster. The user fixes `--kubeconfig`, or runs the pod with its service account token.
    #[error("{0}")]
    Config(String),
    /// 401: the API server did not accept the credentials (an expired or revoked token). A
    /// projected token is re-read as the kubelet rotates it; otherwise fix the kubeconfig.
    #[error("the Kubernetes API refused the credentials (401 Unauthorized): {message}. Check the service account token (or --kubeconfig's user)")]
    Unauthorized {
        /// The API server's message.
        message: String,
    },
    /// 403: RBAC (or another authorizer) does not allow `verb` on `resource`. The user adds the
    /// rule to the ClusterRole bound to eipool's service account.
    #[error("403 Forbidden to {verb} {resource}: {message}")]
    Forbidden {
        /// The verb refused: `get` or `patch`.
        verb: &'static str,
        /// The resource: `nodes`.
        resource: &'static str,
        /// The API server's message (it names the user).
        message: String,
    },
    /// 404: no Node of that name (deleted meanwhile, or a wrong `--node-name`).
    #[error("no Node named {name:?} (404 Not Found)")]
    NotFound {
        /// The Node's name.
        name: String,
    },
    /// 409: the Node changed since it was read (its resourceVersion moved on). Read it again.
    #[error("the Node changed since it was read (409 Conflict): {message}")]
    Conflict {
        /// The API server's message.
        message: String,
    },
    /// 400 or 422: the API server refused the request itself (an admission policy denied it, or
    /// the patch is invalid). The message says which; a retry gets the same answer.
    #[error("the Kubernetes API refused to {verb} the Node ({code} {reason}): {message}")]
    Rejected {
        /// The verb.
        verb: &'static str,
        /// The HTTP status.
        code: u16,
        /// The Status's reason (`Invalid`, `BadRequest`, …).
        reason: String,
        /// The API server's message (an admission policy's names the policy).
        message: String,
    },
    /// The API server did not answer, answered 429 or 5xx, or the connection failed: a retry may
    /// succeed.
    #[error("the Kubernetes API did not answer to {verb} the Node: {message}")]
    Transient {
        /// The verb.
        verb: &'static str,
        /// What happened.
        message: String,
    },
}

impl Transient for KubeError {
    fn is_transient(&self) -> bool {
        matches!(
            self,
            KubeError::Transient { .. } | KubeError::Conflict { .. }
        )
    }
}

/// What a command ends with when the Kubernetes API fails in a way no retry fixes.
impl From<KubeError> for Error {
    fn from(e: KubeError) -> Error {
        match e {
            KubeError::Forbidden {
                verb,
                resource,
                message,
            } => Error::KubePermission {
                verb,
                resource,
                message,
            },
            e @ (KubeError::Transient { .. } | KubeError::Conflict { .. }) => Error::Temporary {
                last: e.to_string(),
                timeout: None,
            },
            e => Error::usage(e.to_string()),
        }
    }
}

/// The error for `verb` on the Node `name` from kube-rs's.
pub(super) fn classify(verb: &'static str, name: &str, e: ::kube::Error) -> KubeError {
    match e {
        ::kube::Error::Api(r) => match r.code {
            401 => KubeError::Unauthorized { message: r.message },
            403 => KubeError::Forbidden {
                verb,
                resource: "nodes",
                message: r.message,
            },
            404 => KubeError::NotFound { name: name.into() },
            409 => KubeError::Conflict { message: r.message },
            429 | 500..=599 => KubeError::Transient {
                verb,
                message: format!("{} {}: {}", r.code, r.reason, r.message),
            },
            code => KubeError::Rejected {
                verb,
                code,
                reason: r.reason,
                message: r.message,
            },
        },
        ::kube::Error::Auth(a) => KubeError::Config(format!(
            "cannot authenticate to the Kubernetes API: {a}. Check the service account token (or --kubeconfig's user)"
        )),
        other => KubeError::Transient {
            verb,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> ::kube::Error {
        ::kube::Error::Api(::kube::core::ErrorResponse {
            status: "Failure".into(),
            message: format!("m{code}"),
            reason: reason.into(),
            code,
        })
    }

    #[test]
    fn each_status_has_its_meaning_and_exit_code() {
        // (status, transient, exit code)
        let cases = [
            (401, false, 2),
            (403, false, 77),
            (404, false, 2),
            (409, true, 75),
            (422, false, 2),
            (400, false, 2),
            (429, true, 75),
            (500, true, 75),
            (503, true, 75),
        ];
        for (code, transient, exit) in cases {
            let e = classify("patch", "n1", api(code, "R"));
            assert_eq!(e.is_transient(), transient, "{code}: {e}");
            assert_eq!(Error::from(e).exit_code(), exit, "{code}");
        }
        let e = Error::from(classify("patch", "n1", api(403, "Forbidden"))).to_string();
        assert!(
            e.contains("verb \"patch\" on resource \"nodes\"") && e.contains("m403"),
            "{e}"
        );
    }
}

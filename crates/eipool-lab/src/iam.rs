//! IAM in moto, for running eipool with credentials limited to one role: users with a role's
//! policy, and moto's enforcement switched on (after the lab's own unauthenticated setup).
//!
//! What moto's IAM emulation checks, read from its source (moto 5.2, `iam/access_control.py`):
//! the request's signature and access key, and each policy statement's `Action` (wildcards
//! included) and `Effect`. What it does not: every EC2 request is evaluated as if on resource
//! `*`, so a statement limited to `arn:aws:ec2:*:*:elastic-ip/*` never grants; and conditions
//! get no request values, so a statement with a `Condition` turns into a deny. To run a role
//! there, [`moto_evaluable`] widens resources to `*` and drops conditions, and says what it
//! dropped; the conditions are checked against the policy files by eipool's unit tests, and on
//! AWS by `eipool doctor`'s DryRuns.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An access key pair.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: String,
}

/// `policy` in the form moto can evaluate: every `Resource` widened to `*`, every `Condition`
/// dropped; and, for each statement changed, what was dropped.
pub fn moto_evaluable(policy: &Value) -> (Value, Vec<String>) {
    let mut p = policy.clone();
    let mut dropped = Vec::new();
    for st in p["Statement"].as_array_mut().into_iter().flatten() {
        let sid = st["Sid"].as_str().unwrap_or("?").to_string();
        if st["Resource"] != Value::String("*".into()) {
            dropped.push(format!("{sid}: Resource {}", st["Resource"]));
            st["Resource"] = Value::String("*".into());
        }
        if let Some(obj) = st.as_object_mut() {
            if let Some(c) = obj.remove("Condition") {
                dropped.push(format!("{sid}: Condition {c}"));
            }
        }
    }
    (p, dropped)
}

/// One IAM Query API call to moto, unsigned (moto accepts that until enforcement is on); the
/// answer's body.
async fn iam_call(endpoint: &str, params: &[(&str, &str)]) -> Result<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Version", "2010-05-08");
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let body = form.finish();
    let req = hyper::Request::post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        // moto routes by the credential scope's service.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=lab",
        )
        .body(Full::new(Bytes::from(body)))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.context("IAM call to moto")?;
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        bail!("IAM {params:?}: HTTP {status}: {text}");
    }
    Ok(text)
}

fn field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// A user `name` with `policy` inline, and an access key for it.
pub async fn create_user(endpoint: &str, name: &str, policy: &Value) -> Result<Credentials> {
    iam_call(endpoint, &[("Action", "CreateUser"), ("UserName", name)]).await?;
    iam_call(
        endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", name),
            ("PolicyDocument", &policy.to_string()),
        ],
    )
    .await?;
    let key = iam_call(
        endpoint,
        &[("Action", "CreateAccessKey"), ("UserName", name)],
    )
    .await?;
    Ok(Credentials {
        access_key: field(&key, "AccessKeyId")
            .context("AccessKeyId")?
            .to_string(),
        secret_key: field(&key, "SecretAccessKey")
            .context("SecretAccessKey")?
            .to_string(),
    })
}

/// From now on moto checks every request's signature and its user's policies.
pub async fn enforce(endpoint: &str) -> Result<()> {
    let req = hyper::Request::post(format!(
        "{}/moto-api/reset-auth",
        endpoint.trim_end_matches('/')
    ))
    .body(Full::new(Bytes::from("0")))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await?;
    if !resp.status().is_success() {
        bail!(
            "moto did not switch IAM enforcement on: HTTP {}",
            resp.status()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_widened_for_moto_and_says_what_it_dropped() {
        let p = serde_json::json!({"Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "ec2:DescribeAddresses", "Resource": "*"},
            {"Sid": "B", "Effect": "Allow", "Action": "ec2:AssociateAddress",
             "Resource": "arn:aws:ec2:*:*:elastic-ip/*",
             "Condition": {"StringEquals": {"aws:ResourceTag/eipool:pool": "p"}}}
        ]});
        let (m, dropped) = moto_evaluable(&p);
        assert_eq!(m["Statement"][1]["Resource"], "*");
        assert!(m["Statement"][1].get("Condition").is_none());
        assert_eq!(m["Statement"][0], p["Statement"][0]);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped.iter().all(|d| d.starts_with("B: ")), "{dropped:?}");
    }
}

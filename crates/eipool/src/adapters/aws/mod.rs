//! The AWS adapter: one function per EC2 call (each traced, bounded by the per-call timeout,
//! counted in metrics, its AWS error codes mapped onto [`Ec2Error`]), DryRun permission checks,
//! and IMDSv2. The SDK's retries are off: retrying is the caller's decision.

mod addresses;
mod client;
mod dry_run;
mod errors;
mod imds;
mod interfaces;

pub(crate) use client::{connect, Ec2};
pub(crate) use dry_run::{DryRunAction, Permission};
pub(crate) use errors::Ec2Error;
pub(crate) use imds::{Imds, ImdsError};

#[cfg(test)]
mod iam {
    use std::collections::BTreeSet;

    /// deploy/iam-policy.json allows exactly the EC2 actions this adapter calls (plus
    /// CreateTags, which AllocateAddress with TagSpecifications needs), no more, no fewer.
    #[test]
    fn the_iam_policy_lists_exactly_the_actions_the_code_calls() {
        let code = [include_str!("addresses.rs"), include_str!("interfaces.rs")].concat();
        let mut called: BTreeSet<String> = code
            .lines()
            .filter_map(|l| l.trim().strip_prefix("const ACTION: &str = \""))
            .filter_map(|rest| rest.split('"').next())
            .map(|a| format!("ec2:{a}"))
            .collect();
        called.insert("ec2:CreateTags".into());
        let policy: serde_json::Value =
            serde_json::from_str(include_str!("../../../../../deploy/iam-policy.json")).unwrap();
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
            "deploy/iam-policy.json vs the EC2 calls in adapters/aws"
        );
    }
}

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
    //! The two shipped IAM roles against the code: together they allow exactly the EC2 actions
    //! this adapter calls, and each keeps the guards that moto's IAM emulation cannot check
    //! (conditions and resources; see tests/it/iam.rs for what it does check).

    use std::collections::BTreeSet;

    use serde_json::Value;

    fn role(text: &str) -> Vec<Value> {
        let policy: Value = serde_json::from_str(text).unwrap();
        policy["Statement"].as_array().unwrap().clone()
    }
    fn node() -> Vec<Value> {
        role(include_str!("../../../../../deploy/iam/node.json"))
    }
    fn operator() -> Vec<Value> {
        role(include_str!("../../../../../deploy/iam/operator.json"))
    }

    fn actions(st: &Value) -> Vec<String> {
        match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            other => panic!("unexpected Action {other}"),
        }
    }

    fn allowed(statements: &[Value]) -> BTreeSet<String> {
        statements.iter().flat_map(actions).collect()
    }

    /// The roles together allow exactly what this adapter calls, no more, no fewer.
    #[test]
    fn the_roles_allow_exactly_the_actions_the_code_calls() {
        let code = [include_str!("addresses.rs"), include_str!("interfaces.rs")].concat();
        let called: BTreeSet<String> = code
            .lines()
            .filter_map(|l| l.trim().strip_prefix("const ACTION: &str = \""))
            .filter_map(|rest| rest.split('"').next())
            .map(|a| format!("ec2:{a}"))
            .collect();
        let mut both = allowed(&node());
        both.extend(allowed(&operator()));
        assert_eq!(
            both, called,
            "deploy/iam/{{node,operator}}.json vs the EC2 calls in adapters/aws"
        );
    }

    /// Media nodes may never allocate or release a published address.
    #[test]
    fn the_node_role_cannot_allocate_or_release() {
        let node = allowed(&node());
        for a in ["ec2:AllocateAddress", "ec2:ReleaseAddress"] {
            assert!(!node.contains(a), "the node role allows {a}");
        }
        assert!(
            !allowed(&operator()).contains("ec2:AssociateAddress"),
            "operators do not claim"
        );
    }

    /// Every statement that acts on Elastic IPs is limited to the pool's addresses by tag (or,
    /// for tagging at creation, to AllocateAddress); CreateTags on a node may write only the
    /// holder tag; AllocateAddress must tag into the pool.
    #[test]
    fn the_roles_keep_their_tag_conditions() {
        for (name, statements) in [("node", node()), ("operator", operator())] {
            for st in &statements {
                let sid = st["Sid"].as_str().unwrap();
                let on_eips = st["Resource"].to_string().contains("elastic-ip/");
                let cond = &st["Condition"];
                if on_eips {
                    let pool_tag = cond["StringEquals"]["aws:ResourceTag/eipool:pool"].is_string();
                    let at_create = cond["StringEquals"]["ec2:CreateAction"] == "AllocateAddress";
                    assert!(
                        pool_tag || at_create,
                        "{name}/{sid}: Elastic IPs without the pool tag condition"
                    );
                }
                let acts = actions(st);
                if name == "node" && acts.contains(&"ec2:CreateTags".to_string()) {
                    assert_eq!(
                        cond["ForAllValues:StringEquals"]["aws:TagKeys"],
                        serde_json::json!(["eipool:holder"]),
                        "{name}/{sid}: a node may write the holder tag only"
                    );
                }
                if acts.contains(&"ec2:AllocateAddress".to_string()) {
                    assert!(
                        cond["StringEquals"]["aws:RequestTag/eipool:pool"].is_string(),
                        "{name}/{sid}: AllocateAddress must tag into the pool"
                    );
                }
            }
        }
    }
}

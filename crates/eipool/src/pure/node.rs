//! Node mode's decisions about the Kubernetes Node, pure: what a Node should show for what the
//! node holds (a label naming its public IP and no startup taint, or the taint and no label), and
//! the JSON patch (RFC 6902) that takes the Node there and nothing else.
//!
//! `Node.spec.taints` is `listType=atomic`: there is no merge key, so removing one taint writes
//! the whole list. The patch therefore replaces the list with the one observed minus (or plus)
//! eipool's taint, and carries the observed `metadata.resourceVersion`: if anything changed the
//! Node since it was read (the kubelet, Karpenter, another taint), the API server answers 409
//! Conflict instead of writing over it, and the caller reads again. Other taints, other labels
//! and every other field are never written.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

/// One taint, as `spec.taints` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taint {
    /// Its key, e.g. `eipool.io/unassigned`.
    pub(crate) key: String,
    /// Its value, usually empty.
    pub(crate) value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub(crate) effect: String,
}

/// Where node mode publishes on the Node: the label that carries the address and the taint that
/// keeps media pods away while there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marks {
    /// The label whose value is the node's public IP, e.g. `eipool.io/public-ip`.
    pub(crate) label: String,
    /// The startup taint removed once the address is held, put back when it is lost.
    pub(crate) taint: Taint,
}

/// What the Node should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desired {
    /// This node holds `ip`: the label names it and eipool's taint is gone.
    Holding(Ipv4Addr),
    /// No address: eipool's taint is there and the label is gone.
    Unassigned,
}

/// What was read of the Node: the parts node mode looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Observed {
    /// `metadata.resourceVersion`.
    pub(crate) resource_version: String,
    /// `metadata.labels` holds a map (absent on a Node without labels, which the API allows).
    pub(crate) has_labels: bool,
    /// The value of the label node mode writes, if set.
    pub(crate) label: Option<String>,
    /// `spec.taints` in order, as JSON (kept whole: fields eipool does not know, such as
    /// `timeAdded`, are written back as read). `None` when the field is absent.
    pub(crate) taints: Option<Vec<Value>>,
}

/// JSON Pointer escaping of one path segment (RFC 6901): `~` → `~0`, `/` → `~1`.
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Whether a taint of `spec.taints` is eipool's: its key (whatever its effect: one key, one owner).
fn is_ours(taint: &Value, marks: &Marks) -> bool {
    taint.get("key").and_then(Value::as_str) == Some(marks.taint.key.as_str())
}

impl Taint {
    fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if let Some(v) = &self.value {
            t["value"] = json!(v);
        }
        t
    }
}

/// The JSON patch that makes `seen` say `want` under `marks`, guarded by `seen`'s
/// resourceVersion; `None` when it says so already (nothing to write). Only eipool's label and
/// eipool's taint change; the taint list keeps every other entry, in order.
pub(crate) fn patch(seen: &Observed, want: Desired, marks: &Marks) -> Option<Vec<Value>> {
    let taints = seen.taints.clone().unwrap_or_default();
    let ours = taints.iter().filter(|t| is_ours(t, marks)).count();
    let label_path = format!("/metadata/labels/{}", pointer_segment(&marks.label));
    let mut ops = Vec::new();
    match want {
        Desired::Holding(ip) => {
            let ip = ip.to_string();
            if seen.label.as_deref() != Some(ip.as_str()) {
                ops.push(if seen.has_labels {
                    json!({"op": "add", "path": label_path, "value": ip})
                } else {
                    json!({"op": "add", "path": "/metadata/labels", "value": {marks.label.clone(): ip}})
                });
            }
            if ours > 0 {
                let rest: Vec<Value> = taints.into_iter().filter(|t| !is_ours(t, marks)).collect();
                ops.push(if rest.is_empty() {
                    json!({"op": "remove", "path": "/spec/taints"})
                } else {
                    json!({"op": "add", "path": "/spec/taints", "value": rest})
                });
            }
        }
        Desired::Unassigned => {
            if seen.label.is_some() {
                ops.push(json!({"op": "remove", "path": label_path}));
            }
            let wanted = marks.taint.to_json();
            if ours != 1 || !taints.contains(&wanted) {
                let mut list: Vec<Value> =
                    taints.into_iter().filter(|t| !is_ours(t, marks)).collect();
                list.push(wanted);
                ops.push(json!({"op": "add", "path": "/spec/taints", "value": list}));
            }
        }
    }
    if ops.is_empty() {
        return None;
    }
    // The guard: the API server compares the patched object's resourceVersion with the stored
    // one and answers 409 Conflict when they differ (a JSON patch `test` would answer 422,
    // which cannot be told from a malformed patch).
    ops.insert(
        0,
        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": seen.resource_version}),
    );
    Some(ops)
}

/// A patch that changes nothing, for the start-up check that this pod may patch its Node
/// (sent with `dryRun=All`: RBAC and admission are checked, nothing is stored).
pub(crate) fn probe_patch(seen: &Observed) -> Vec<Value> {
    vec![
        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": seen.resource_version}),
    ]
}

/// Check a label key or taint key: `[PREFIX/]NAME`, NAME 1–63 characters of letters, digits,
/// `-`, `_`, `.` starting and ending with a letter or digit; PREFIX a DNS subdomain of at most
/// 253 characters (Kubernetes' "qualified name").
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || "-_.".contains(c));
    if !name_ok {
        return Err(format!(
            "{key:?} is not a Kubernetes key: its name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. eipool.io/public-ip"
        ));
    }
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Err(format!(
                "{key:?} is not a Kubernetes key: its prefix {p:?} must be a lower-case DNS name, e.g. eipool.io"
            ));
        }
    }
    Ok(())
}

/// Parse a taint as `kubectl taint` writes one: `KEY[=VALUE]:EFFECT`.
pub(crate) fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| {
        format!(
            "{s:?} has no effect; write KEY[=VALUE]:EFFECT, e.g. eipool.io/unassigned:NoSchedule"
        )
    })?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{effect:?} is not a taint effect; use NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    check_key(key)?;
    if let Some(v) = value {
        check_value(v)?;
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.filter(|v| !v.is_empty()).map(str::to_string),
        effect: effect.to_string(),
    })
}

/// A label or taint value: at most 63 letters, digits, `-`, `_`, `.`, starting and ending with
/// a letter or digit (or empty).
fn check_value(v: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.starts_with(alnum)
            && v.ends_with(alnum)
            && v.chars().all(|c| alnum(c) || "-_.".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Check a Node name (a DNS subdomain: at most 253 lower-case letters, digits, `-` and `.`).
pub(crate) fn check_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Node name (lower-case letters, digits, '-' and '.'); set it from the downward API, fieldRef spec.nodeName"
        ))
    }
}

/// Apply `ops` to `node` the way the API server does (RFC 6902, the operations [`patch`] uses),
/// for the tests below.
#[cfg(test)]
fn apply(node: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = segments.split_last().unwrap();
        let mut at = &mut *node;
        for p in parents {
            at = at.get_mut(p.as_str()).unwrap();
        }
        let map = at.as_object_mut().unwrap();
        match op["op"].as_str().unwrap() {
            "add" | "replace" => {
                map.insert(last.clone(), op["value"].clone());
            }
            "remove" => {
                map.remove(last.as_str()).unwrap();
            }
            other => panic!("{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Marks {
        Marks {
            label: "eipool.io/public-ip".into(),
            taint: parse_taint("eipool.io/unassigned:NoSchedule").unwrap(),
        }
    }

    fn observe(node: &Value) -> Observed {
        Observed {
            resource_version: node["metadata"]["resourceVersion"].as_str().unwrap().into(),
            has_labels: node["metadata"].get("labels").is_some(),
            label: node["metadata"]["labels"]["eipool.io/public-ip"]
                .as_str()
                .map(str::to_string),
            taints: node["spec"]["taints"].as_array().cloned(),
        }
    }

    const OURS: &str = r#"{"key":"eipool.io/unassigned","effect":"NoSchedule"}"#;
    const KARPENTER: &str = r#"{"key":"karpenter.sh/disrupted","effect":"NoSchedule","timeAdded":"2026-01-01T00:00:00Z"}"#;
    const CILIUM: &str =
        r#"{"key":"node.cilium.io/agent-not-ready","value":"true","effect":"NoExecute"}"#;

    fn node(labels: Option<&str>, taints: Option<&[&str]>) -> Value {
        let mut n = json!({"metadata": {"name": "n1", "resourceVersion": "41"}, "spec": {}});
        if let Some(l) = labels {
            n["metadata"]["labels"] = serde_json::from_str(l).unwrap();
        }
        if let Some(t) = taints {
            n["spec"]["taints"] =
                Value::Array(t.iter().map(|s| serde_json::from_str(s).unwrap()).collect());
        }
        n
    }

    #[test]
    fn the_patch_changes_only_eipools_taint_and_label_and_is_guarded() {
        let ip: Ipv4Addr = "203.0.113.7".parse().unwrap();
        let held = Desired::Holding(ip);
        let zone = r#"{"topology.kubernetes.io/zone":"us-east-1a"}"#;
        let labelled =
            r#"{"topology.kubernetes.io/zone":"us-east-1a","eipool.io/public-ip":"203.0.113.7"}"#;
        let other_ip = r#"{"eipool.io/public-ip":"198.51.100.1"}"#;
        // (node before, desired, node after; None: no patch at all)
        let cases: Vec<(Value, Desired, Option<Value>)> = vec![
            // the startup taint among others: only ours goes, the rest stay in order
            (
                node(Some(zone), Some(&[KARPENTER, OURS, CILIUM])),
                held,
                Some(node(Some(labelled), Some(&[KARPENTER, CILIUM]))),
            ),
            // ours alone: the list goes
            (
                node(Some(zone), Some(&[OURS])),
                held,
                Some(node(Some(labelled), None)),
            ),
            // no labels at all
            (
                node(None, Some(&[OURS])),
                held,
                Some(node(Some(r#"{"eipool.io/public-ip":"203.0.113.7"}"#), None)),
            ),
            // drift: the label names the new address
            (
                node(Some(other_ip), None),
                held,
                Some(node(Some(r#"{"eipool.io/public-ip":"203.0.113.7"}"#), None)),
            ),
            // published already: nothing to write (a restarted pod)
            (node(Some(labelled), Some(&[CILIUM])), held, None),
            // lost: taint back (after the others), label gone
            (
                node(Some(labelled), Some(&[CILIUM])),
                Desired::Unassigned,
                Some(node(Some(zone), Some(&[CILIUM, OURS]))),
            ),
            (
                node(Some(zone), None),
                Desired::Unassigned,
                Some(node(Some(zone), Some(&[OURS]))),
            ),
            // unassigned already (the startup state): nothing to write
            (
                node(Some(zone), Some(&[KARPENTER, OURS])),
                Desired::Unassigned,
                None,
            ),
            // our key with another effect is put right
            (
                node(
                    Some(zone),
                    Some(&[r#"{"key":"eipool.io/unassigned","effect":"NoExecute"}"#]),
                ),
                Desired::Unassigned,
                Some(node(Some(zone), Some(&[OURS]))),
            ),
        ];
        for (i, (before, want, after)) in cases.into_iter().enumerate() {
            let ops = patch(&observe(&before), want, &marks());
            match (ops, after) {
                (None, None) => {}
                (Some(ops), Some(after)) => {
                    assert_eq!(
                        ops[0],
                        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": "41"}),
                        "case {i}: unguarded"
                    );
                    let mut got = before.clone();
                    apply(&mut got, &ops);
                    assert_eq!(got, after, "case {i}: {ops:?}");
                    // Applied, the Node needs nothing more.
                    assert_eq!(patch(&observe(&got), want, &marks()), None, "case {i}");
                }
                (ops, after) => panic!("case {i}: patch {ops:?}, wanted {after:?}"),
            }
        }
    }

    #[test]
    fn keys_taints_and_node_names_are_checked_as_kubernetes_does() {
        for good in [
            "eipool.io/public-ip",
            "public-ip",
            "a.b-c/x_y.z",
            "eipool.io/A1",
        ] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "eipool.io/",
            "/x",
            "Eipool.io/x",
            "x/-y",
            "a/b/c",
            &"x".repeat(64),
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        let t = parse_taint("eipool.io/unassigned:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("eipool.io/unassigned", None, "NoSchedule")
        );
        let t = parse_taint("eipool.io/unassigned=true:NoExecute").unwrap();
        assert_eq!(t.value.as_deref(), Some("true"));
        for (bad, says) in [
            ("eipool.io/unassigned", "no effect"),
            ("eipool.io/unassigned:NoWay", "not a taint effect"),
            ("eipool.io/un assigned:NoSchedule", "not a Kubernetes key"),
            ("eipool.io/unassigned=a b:NoSchedule", "label value"),
        ] {
            let e = parse_taint(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for good in ["ip-10-0-1-4.ec2.internal", "node1"] {
            assert_eq!(check_node_name(good), Ok(()));
        }
        for bad in ["", "Node1", "-a", "a_b", "a b"] {
            assert!(
                check_node_name(bad).unwrap_err().contains("spec.nodeName"),
                "{bad}"
            );
        }
    }
}

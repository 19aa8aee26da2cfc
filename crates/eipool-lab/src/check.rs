//! Invariants over EC2's final state plus every claimer's reported outcome. Each function returns
//! the violations it found (empty: the invariant holds), so a test can print all of them at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::claimer::ClaimReport;
use crate::fixture::Eip;

/// I1 no sharing: no address reported by successful claimers of two different interfaces, and
/// each success's address is associated, at the end, to that claimer's interface. (Two claims
/// for the same interface may both report its one address: the second adopts what the first
/// got, as a re-run does.)
pub fn no_sharing(
    successes: &[(String, ClaimReport)],
    state: &BTreeMap<String, Eip>,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (eni, r) in successes {
        match seen.insert(&r.allocation_id, eni) {
            Some(other) if other != eni => v.push(format!(
                "{} ({}) reported by both {other} and {eni}",
                r.allocation_id, r.public_ip
            )),
            _ => {}
        }
        if &r.network_interface_id != eni {
            v.push(format!(
                "claimer {eni} reported interface {}",
                r.network_interface_id
            ));
        }
        match state.get(&r.allocation_id) {
            Some(e) if e.eni.as_deref() == Some(eni.as_str()) => {}
            Some(e) => v.push(format!(
                "{} reported by {eni} is associated to {:?} in EC2",
                r.allocation_id, e.eni
            )),
            None => v.push(format!(
                "{} reported by {eni} is not in the pool",
                r.allocation_id
            )),
        }
    }
    v
}

/// I2 no theft: these addresses (untagged, other pool, externally associated) are exactly as they
/// were before.
pub fn untouched(before: &[Eip], after: &[Eip]) -> Vec<String> {
    let after: BTreeMap<&str, &Eip> = after
        .iter()
        .map(|e| (e.allocation_id.as_str(), e))
        .collect();
    before
        .iter()
        .filter_map(|b| match after.get(b.allocation_id.as_str()) {
            Some(a) if *a == b => None,
            Some(a) => Some(format!(
                "{} changed: before {b:?}, after {a:?}",
                b.allocation_id
            )),
            None => Some(format!("{} disappeared", b.allocation_id)),
        })
        .collect()
}

/// I3 no leak: every pool address associated at the end belongs to a claimer that reported
/// success (or is one of `expected_elsewhere`, associated outside eipool on purpose).
pub fn no_leak(
    successes: &[(String, ClaimReport)],
    state: &BTreeMap<String, Eip>,
    expected_elsewhere: &BTreeSet<String>,
) -> Vec<String> {
    let owned: BTreeSet<&str> = successes
        .iter()
        .map(|(_, r)| r.allocation_id.as_str())
        .collect();
    state
        .values()
        .filter(|e| e.association_id.is_some())
        .filter(|e| {
            !owned.contains(e.allocation_id.as_str())
                && !expected_elsewhere.contains(&e.allocation_id)
        })
        .map(|e| {
            format!(
                "{} ({}) is associated to {:?} but no claimer reported it",
                e.allocation_id, e.public_ip, e.eni
            )
        })
        .collect()
}

/// Each of these interfaces holds exactly one address of the pool at the end.
pub fn one_each(enis: &[String], state: &BTreeMap<String, Eip>) -> Vec<String> {
    enis.iter()
        .filter_map(|eni| {
            let held: Vec<&str> = state
                .values()
                .filter(|e| e.eni.as_deref() == Some(eni.as_str()))
                .map(|e| e.allocation_id.as_str())
                .collect();
            (held.len() != 1)
                .then(|| format!("{eni} holds {} pool addresses: {held:?}", held.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eip(id: &str, eni: Option<&str>) -> Eip {
        Eip {
            allocation_id: id.into(),
            public_ip: format!("198.51.100.{}", id.len()),
            association_id: eni.map(|_| format!("assoc-{id}")),
            eni: eni.map(str::to_string),
            private_ip: None,
            pool: Some("p".into()),
        }
    }

    fn report(id: &str, eni: &str) -> (String, ClaimReport) {
        (
            eni.into(),
            ClaimReport {
                public_ip: String::new(),
                allocation_id: id.into(),
                association_id: String::new(),
                network_interface_id: eni.into(),
                private_ip: String::new(),
                reused: false,
                elapsed_ms: 0,
            },
        )
    }

    #[test]
    fn the_checker_sees_sharing_leaks_and_theft() {
        let state: BTreeMap<String, Eip> = [
            eip("a", Some("eni-1")),
            eip("b", Some("eni-9")),
            eip("c", None),
        ]
        .into_iter()
        .map(|e| (e.allocation_id.clone(), e))
        .collect();
        // Two claimers report the same address; only one holds it in EC2.
        let shared = [report("a", "eni-1"), report("a", "eni-2")];
        assert_eq!(no_sharing(&shared, &state).len(), 2);
        // Two claims of one interface report its one address: that is adoption, not sharing.
        assert!(no_sharing(&[report("a", "eni-1"), report("a", "eni-1")], &state).is_empty());
        assert!(one_each(&["eni-1".into()], &state).is_empty());
        assert_eq!(one_each(&["eni-2".into()], &state).len(), 1);
        // b is associated but nobody reported it.
        assert_eq!(
            no_leak(&[report("a", "eni-1")], &state, &BTreeSet::new()).len(),
            1
        );
        assert!(no_leak(
            &[report("a", "eni-1")],
            &state,
            &BTreeSet::from(["b".to_string()])
        )
        .is_empty());
        // A changed address is caught; an unchanged one is not.
        assert_eq!(
            untouched(&[eip("c", None)], &[eip("c", Some("eni-1"))]).len(),
            1
        );
        assert!(untouched(&[eip("c", None)], &[eip("c", None)]).is_empty());
        assert!(no_sharing(&[report("a", "eni-1")], &state).is_empty());
    }
}

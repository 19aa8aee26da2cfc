//! Classifications of what EC2 shows: where an address stands relative to a claimer (claim,
//! cleanup, the agent), its state in the pool (status, the exporter), and whether anybody alive
//! can be using it (gc).

use std::collections::BTreeMap;

use super::address::{Address, InterfaceState, Occupant};
use super::holder::{HolderRecord, RedisView};
use super::identity::Identity;
use super::ids::{EniId, InstanceId};

/// Where one address stands relative to a claimer, as one DescribeAddresses showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Associated with the claimer's interface and private IP.
    Mine,
    /// Associated somewhere else.
    Elsewhere,
    /// Not associated (or the association is not visible yet).
    Free,
    /// It no longer exists (released).
    Gone,
}

/// Where `seen` (EC2's answer for one allocation id; `None`: it no longer exists) stands
/// relative to `me`.
pub fn standing(seen: Option<&Address>, me: &Identity) -> Standing {
    match seen {
        None => Standing::Gone,
        Some(a) if a.held_by_me(me) => Standing::Mine,
        Some(a) if a.association.is_some() => Standing::Elsewhere,
        Some(_) => Standing::Free,
    }
}

/// What a public IP found on our private IP means for a claim: `in_pool` is the pool address
/// with that public IP (from our listing), `eip` the account's Elastic IP with it (`None`: it is
/// not an Elastic IP, e.g. an ephemeral public IP, which AWS gives back when an Elastic IP
/// arrives), `pool` our pool's name.
pub fn occupant(in_pool: Option<&Address>, eip: Option<&Address>, pool: &str) -> Occupant {
    match (in_pool, eip) {
        (Some(a), _) => Occupant::Pool(a.allocation_id.clone()),
        (None, Some(e)) if e.pool.as_deref() == Some(pool) => {
            Occupant::Pool(e.allocation_id.clone())
        }
        (None, Some(e)) => Occupant::Foreign {
            public_ip: e.public_ip,
            allocation_id: e.allocation_id.clone(),
        },
        (None, None) => Occupant::Free,
    }
}

/// The state of one pool address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    /// Not associated, nobody claiming it.
    Free,
    /// Associated to the interface eipool assigned it to.
    Assigned,
    /// Not associated yet, but a claimer holds a Redis lease on it.
    Claiming,
    /// Associated, but not where eipool's record (the address's `eipool:holder` tag, or Redis's
    /// holder record) says eipool put it: associated by hand, moved by a plain AssociateAddress,
    /// or claimed by an eipool older than the holder tag.
    Foreign,
}

impl State {
    /// Every state, in display order.
    pub(crate) const ALL: [State; 4] = [
        State::Free,
        State::Assigned,
        State::Claiming,
        State::Foreign,
    ];

    /// The lowercase name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            State::Free => "free",
            State::Assigned => "assigned",
            State::Claiming => "claiming",
            State::Foreign => "foreign",
        }
    }
}

/// Classify one address from EC2's view (its association and holder tag) and, when there is one,
/// Redis's. EC2 alone decides assigned or foreign, so the view survives Redis losing its data;
/// Redis adds `claiming` (a live lease) and vouches for addresses claimed before the holder tag.
pub(crate) fn pool_state(a: &Address, redis: Option<&RedisView>) -> State {
    match &a.association {
        None if redis.is_some_and(|v| v.claiming.contains(&a.allocation_id)) => State::Claiming,
        None => State::Free,
        Some(x) => {
            let tagged = a.holder.as_ref().is_some_and(|t| t.matches(x));
            let recorded = redis
                .and_then(|v| v.holder_records.get(&a.allocation_id))
                .is_some_and(|h| h.matches(x));
            if tagged || recorded {
                State::Assigned
            } else {
                State::Foreign
            }
        }
    }
}

/// Instance states in which nothing on the instance can be using an address.
const DEAD: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// Why an address on `eni` cannot be in use, if it cannot.
pub(crate) fn why_dead(
    eni: &EniId,
    interfaces: &BTreeMap<EniId, InterfaceState>,
    instances: &BTreeMap<InstanceId, String>,
) -> Option<String> {
    let Some(iface) = interfaces.get(eni) else {
        return Some(format!("interface {eni} no longer exists"));
    };
    match &iface.instance_id {
        None => Some(format!(
            "interface {eni} is not attached to any instance (status {})",
            iface.status
        )),
        Some(i) => match instances.get(i) {
            None => Some(format!("instance {i} no longer exists")),
            Some(state) if DEAD.contains(&state.as_str()) => {
                Some(format!("instance {i} is {state}"))
            }
            Some(_) => None,
        },
    }
}

/// What gc does with one associated pool address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Collect {
    /// Someone alive may be using it: nothing to do.
    InUse,
    /// Nobody alive can be using it (`reason`), and eipool put it there: its holder tag names
    /// this very association. Free it.
    Free {
        /// Why nobody can be using it.
        reason: String,
    },
    /// Nobody alive seems to use it (`reason`), but eipool did not put it there (`why`): someone
    /// associated it by hand, e.g. to an interface they keep unattached or a NAT gateway's,
    /// whose use gc cannot see. Reported, never freed.
    LeaveAlone {
        /// Why it looks unused.
        reason: String,
        /// Why gc leaves it alone.
        why: String,
    },
}

/// gc's rule: free only what eipool claimed. `dead` is [`why_dead`]'s answer for the address's
/// interface; the address is freed only when its `eipool:holder` tag matches its current
/// association (`HolderTag::matches`), or, with no tag at all, when eipool's Redis holder
/// `record` names where it is (a claim by a release older than the tag); whatever the interface
/// looks like otherwise.
pub(crate) fn collect(a: &Address, dead: Option<String>, record: Option<&HolderRecord>) -> Collect {
    let (Some(x), Some(reason)) = (&a.association, dead) else {
        return Collect::InUse;
    };
    match &a.holder {
        Some(t) if t.matches(x) => Collect::Free { reason },
        Some(t) => Collect::LeaveAlone {
            reason,
            why: format!(
                "its eipool:holder tag names association {} on {}/{}, not this one: it was associated again after eipool put it there",
                t.association, t.eni, t.private_ip
            ),
        },
        None if record.is_some_and(|r| r.matches(x)) => Collect::Free {
            reason: format!("{reason} (eipool's Redis record names it there: claimed by a release older than the holder tag)"),
        },
        None => Collect::LeaveAlone {
            reason,
            why: "it carries no eipool:holder tag and no eipool record in Redis names it there: eipool did not put it there (someone associated it by hand), or the claim could not tag it".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::address::Association;
    use crate::pure::address::HolderTag;
    use crate::pure::holder::HolderRecord;

    fn addr(id: &str, on: Option<&str>) -> Address {
        Address {
            holder: None,
            allocation_id: id.parse().unwrap(),
            public_ip: "203.0.113.1".parse().unwrap(),
            association: on.map(|eni| Association {
                id: format!("eipassoc-{}", &id[9..]).parse().unwrap(),
                network_interface_id: Some(eni.parse().unwrap()),
                private_ip: Some("10.0.0.5".parse().unwrap()),
                instance_id: None,
            }),
            pool: Some("p".into()),
        }
    }

    #[test]
    fn states_from_ec2_and_redis() {
        let mut view = RedisView::default();
        view.claiming.insert("eipalloc-b".parse().unwrap());
        for id in ["eipalloc-c", "eipalloc-d"] {
            view.holder_records.insert(
                id.parse().unwrap(),
                HolderRecord {
                    at: "eni-1/10.0.0.5".into(),
                    since_ms: 1,
                    record: "eni-1/10.0.0.5|1".into(),
                },
            );
        }
        // Tagged where EC2 shows it: assigned with or without Redis (e.g. after Redis lost its data).
        let mut tagged = addr("eipalloc-f", Some("eni-1"));
        tagged.holder = Some(HolderTag {
            eni: "eni-1".parse().unwrap(),
            private_ip: "10.0.0.5".parse().unwrap(),
            association: tagged.association.as_ref().unwrap().id.clone(),
            since: "2026-11-27T00:00:00Z".into(),
        });
        // Tagged, then moved by hand: the tag no longer matches.
        let mut moved = tagged.clone();
        moved.allocation_id = "eipalloc-10".parse().unwrap();
        moved.association.as_mut().unwrap().network_interface_id = Some("eni-2".parse().unwrap());
        // (address, with redis, without redis)
        let cases = [
            (tagged, State::Assigned, State::Assigned),
            (moved, State::Foreign, State::Foreign),
            (addr("eipalloc-a", None), State::Free, State::Free),
            (addr("eipalloc-b", None), State::Claiming, State::Free),
            // assigned (Redis says) before the holder tag existed: Redis vouches for it
            (
                addr("eipalloc-c", Some("eni-1")),
                State::Assigned,
                State::Foreign,
            ),
            // moved since eipool assigned it
            (
                addr("eipalloc-d", Some("eni-2")),
                State::Foreign,
                State::Foreign,
            ),
            // never assigned by eipool
            (
                addr("eipalloc-e", Some("eni-3")),
                State::Foreign,
                State::Foreign,
            ),
        ];
        for (a, with, without) in cases {
            assert_eq!(
                pool_state(&a, Some(&view)),
                with,
                "{} with Redis",
                a.allocation_id
            );
            assert_eq!(
                pool_state(&a, None),
                without,
                "{} without Redis",
                a.allocation_id
            );
        }
    }

    #[test]
    fn what_holds_our_private_ip() {
        let ours = addr("eipalloc-1", Some("eni-1"));
        let mut other_pool = addr("eipalloc-2", Some("eni-1"));
        other_pool.pool = Some("other".into());
        let mut untagged = addr("eipalloc-3", Some("eni-1"));
        untagged.pool = None;
        // (in our listing, the account's Elastic IP, occupant)
        let cases = [
            (None, None, Occupant::Free), // nothing, or an ephemeral public IP
            (
                Some(&ours),
                Some(&ours),
                Occupant::Pool(ours.allocation_id.clone()),
            ),
            (
                None,
                Some(&ours),
                Occupant::Pool(ours.allocation_id.clone()),
            ), // listing older
            (
                None,
                Some(&other_pool),
                Occupant::Foreign {
                    public_ip: other_pool.public_ip,
                    allocation_id: other_pool.allocation_id.clone(),
                },
            ),
            (
                None,
                Some(&untagged),
                Occupant::Foreign {
                    public_ip: untagged.public_ip,
                    allocation_id: untagged.allocation_id.clone(),
                },
            ),
        ];
        for (listed, eip, want) in cases {
            assert_eq!(occupant(listed, eip, "p"), want, "{listed:?} {eip:?}");
        }
    }

    #[test]
    fn standing_relative_to_me() {
        let me = Identity {
            eni: "eni-1".parse().unwrap(),
            private_ip: "10.0.0.5".parse().unwrap(),
            instance_id: None,
            mac: None,
        };
        let cases = [
            (None, Standing::Gone),
            (Some(addr("eipalloc-a", None)), Standing::Free),
            (Some(addr("eipalloc-a", Some("eni-1"))), Standing::Mine),
            (Some(addr("eipalloc-a", Some("eni-2"))), Standing::Elsewhere),
        ];
        for (seen, want) in cases {
            assert_eq!(standing(seen.as_ref(), &me), want, "{seen:?}");
        }
    }

    #[test]
    fn gc_frees_only_what_eipool_put_there() {
        let dead = || Some("interface eni-1 is not attached to any instance".to_string());
        let mut tagged = addr("eipalloc-a", Some("eni-1"));
        tagged.holder = Some(HolderTag {
            eni: "eni-1".parse().unwrap(),
            private_ip: "10.0.0.5".parse().unwrap(),
            association: tagged.association.as_ref().unwrap().id.clone(),
            since: "2026-11-27T00:00:00Z".into(),
        });
        // Tagged by a claim, then associated again by hand (another association id).
        let mut again = tagged.clone();
        again.association.as_mut().unwrap().id = "eipassoc-0ba4d".parse().unwrap();
        let by_hand = addr("eipalloc-b", Some("eni-1"));
        let free = addr("eipalloc-c", None);
        // eipool's Redis records: where an older release put an address (no tag), and one
        // naming another interface.
        let here = HolderRecord {
            at: "eni-1/10.0.0.5".into(),
            since_ms: 1,
            record: "eni-1/10.0.0.5|1".into(),
        };
        let elsewhere = HolderRecord {
            at: "eni-9/10.0.0.5".into(),
            ..here.clone()
        };
        // (address, looks dead, Redis record, verdict: 'f' free, 'l' left alone, 'u' in use)
        let cases = [
            (&tagged, true, None, 'f'),
            (&tagged, false, None, 'u'),
            (&again, true, None, 'l'),
            // The tag outvotes a record: it was associated again since.
            (&again, true, Some(&here), 'l'),
            (&by_hand, true, None, 'l'),
            (&by_hand, true, Some(&elsewhere), 'l'),
            // No tag, but eipool's record names it there: an older release's claim.
            (&by_hand, true, Some(&here), 'f'),
            (&by_hand, false, Some(&here), 'u'),
            (&by_hand, false, None, 'u'),
            (&free, true, None, 'u'),
        ];
        for (a, looks_dead, record, want) in cases {
            let got = match collect(a, looks_dead.then(dead).flatten(), record) {
                Collect::Free { .. } => 'f',
                Collect::LeaveAlone { reason, why } => {
                    assert!(reason.contains("not attached"), "{reason}");
                    assert!(why.contains("eipool:holder"), "{why}");
                    'l'
                }
                Collect::InUse => 'u',
            };
            assert_eq!(
                got, want,
                "{a:?}, looks dead {looks_dead}, record {record:?}"
            );
        }
    }

    #[test]
    fn only_addresses_nobody_can_use_are_collected() {
        let eni = |s: &str| -> EniId { s.parse().unwrap() };
        let inst = |s: &str| -> InstanceId { s.parse().unwrap() };
        let interfaces: BTreeMap<EniId, InterfaceState> = [
            ("eni-a1", Some("i-a1"), "in-use"),    // running
            ("eni-b2", Some("i-b2"), "in-use"),    // stopped
            ("eni-c3", Some("i-c3"), "in-use"),    // terminated
            ("eni-d4", Some("i-d4"), "in-use"),    // instance gone
            ("eni-e5", None::<&str>, "available"), // detached
        ]
        .into_iter()
        .map(|(e, i, st)| {
            (
                eni(e),
                InterfaceState {
                    id: eni(e),
                    status: st.into(),
                    instance_id: i.map(inst),
                },
            )
        })
        .collect();
        let instances: BTreeMap<InstanceId, String> = [
            ("i-a1", "running"),
            ("i-b2", "stopped"),
            ("i-c3", "terminated"),
        ]
        .into_iter()
        .map(|(i, s)| (inst(i), s.to_string()))
        .collect();
        // (interface, collected?)
        let cases = [
            ("eni-a1", false),
            ("eni-b2", true),
            ("eni-c3", true),
            ("eni-d4", true),
            ("eni-e5", true),
            ("eni-f6", true), // missing
        ];
        for (e, dead) in cases {
            assert_eq!(
                why_dead(&eni(e), &interfaces, &instances).is_some(),
                dead,
                "{e}"
            );
        }
    }
}

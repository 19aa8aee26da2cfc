//! What the model checks share: a property's counterexample as a readable trace.

use std::fmt::{Debug, Display};
use std::hash::Hash;

use stateright::{Checker, HasDiscoveries, Model};

/// Check `model` until `property` has a discovery, and print the path to it: each action and
/// the state it led to. `None` when the property has none.
pub fn trace<M>(model: &M, property: &'static str) -> Option<String>
where
    M: Model + Clone + Send + Sync + 'static,
    M::State: Display + Debug + Hash + Clone + PartialEq + Send + Sync,
    M::Action: Debug + Clone + PartialEq + Send + Sync,
{
    let checker = model
        .clone()
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let path = checker.discovery(property)?;
    let mut out = format!("counterexample for {property:?}:\n");
    let states = path.clone().into_states();
    let actions = path.into_actions();
    out.push_str(&format!("  start: {}\n", states[0]));
    for (i, (a, s)) in actions.iter().zip(states.iter().skip(1)).enumerate() {
        out.push_str(&format!(
            "  {:>2}. {}\n      → {s}\n",
            i + 1,
            model.format_action(a)
        ));
    }
    Some(out)
}

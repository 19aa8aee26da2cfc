//! The exhaustive check of the waiting line's model, and the mutations of the line machine it
//! must catch. Each prints how many states it explored and, for a mutation, the counterexample.

use std::time::Instant;

use eipool::decisions::line::Mutation;
use eipool_model::line::LineModel;
use stateright::{Checker, Model};

mod common;
use common::trace;

/// Faults one run may suffer.
const FAULTS: u8 = 1;

#[test]
fn every_line_property_holds_in_every_interleaving_with_one_fault() {
    let started = Instant::now();
    let checker = LineModel::new(FAULTS)
        .checker()
        .threads(2)
        .spawn_bfs()
        .join();
    println!(
        "--- line model: {} states explored ({} unique) in {:.1} s, {FAULTS} fault per run",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64()
    );
    for (name, _) in checker.discoveries() {
        if name.starts_with("reachable: ") {
            continue; // an example found, as it must be: not a counterexample
        }
        println!(
            "{name}: {}",
            trace(&LineModel::new(FAULTS), name).unwrap_or_default()
        );
    }
    checker.assert_properties();
}

fn caught(mutation: Mutation, property: &'static str) {
    let model = LineModel::mutated(FAULTS, mutation);
    let t = trace(&model, property)
        .unwrap_or_else(|| panic!("{mutation:?} was not caught by {property:?}"));
    println!("--- {mutation:?}\n{t}");
}

#[test]
fn a_waiter_behind_the_head_claiming_is_caught() {
    caught(Mutation::AnyPlaceClaims, "only the head claims");
}

#[test]
fn a_turn_without_the_freed_count_moving_is_caught() {
    caught(
        Mutation::TurnUnmoved,
        "a turn only when an address was freed since the last try or shows free",
    );
}

#[test]
fn a_rejoin_with_a_new_ticket_is_caught() {
    caught(Mutation::RejoinAnew, "first come, first served");
}

#[test]
fn a_head_that_never_looks_at_the_pool_is_caught() {
    caught(
        Mutation::NoLook,
        "a dead waiter never blocks: no address stays free past the bound while a live waiter waits",
    );
}

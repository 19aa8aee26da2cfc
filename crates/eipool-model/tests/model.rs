//! The exhaustive check of the claim protocol's model, and the seeded mutations it must catch.
//! Each prints how many states it explored and, for a mutation, the counterexample's trace.

use std::time::Instant;

use eipool_model::{ClaimModel, Mutation};
use stateright::{Checker, Model};

mod common;
use common::trace;

/// Faults one run may suffer in the exhaustive check.
const FAULTS: u8 = 1;

#[test]
fn every_property_holds_in_every_interleaving_with_one_fault() {
    let started = Instant::now();
    let checker = ClaimModel::new(FAULTS)
        .checker()
        .threads(2)
        .spawn_bfs()
        .join();
    println!(
        "--- model: {} states explored ({} unique) in {:.1} s, {FAULTS} fault per run",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64()
    );
    for (name, path) in checker.discoveries() {
        let model = ClaimModel::new(FAULTS);
        println!("{name}: {}", trace(&model, name).unwrap_or_default());
        let _ = path;
    }
    checker.assert_properties();
}

fn caught(mutation: Mutation, property: &'static str) {
    let model = ClaimModel::mutated(FAULTS, mutation);
    let t = trace(&model, property)
        .unwrap_or_else(|| panic!("{mutation:?} was not caught by {property:?}"));
    println!("--- {mutation:?}\n{t}");
}

#[test]
fn allowing_reassociation_is_caught() {
    caught(
        Mutation::AllowReassociation,
        "no address is reported for two interfaces",
    );
}

#[test]
fn not_checking_the_fence_before_associating_is_caught() {
    caught(
        Mutation::NoFenceCheck,
        "once settled, every guarded report is on its interface in EC2",
    );
}

#[test]
fn skipping_validation_is_caught() {
    caught(
        Mutation::SkipValidation,
        "once settled, every guarded report is on its interface in EC2",
    );
}

#[test]
fn trusting_a_redis_marker_over_ec2_is_caught() {
    caught(
        Mutation::TrustMarker,
        "no exhausted while an address is free past the consistency bound",
    );
}

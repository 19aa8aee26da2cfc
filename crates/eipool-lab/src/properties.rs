//! Property tests' runner: seeded and bounded, the seed printed so that a failure replays.

use proptest::test_runner::{Config, RngSeed, TestRunner};

/// A runner for `cases` cases (unless `PROPTEST_CASES` says otherwise), seeded from
/// `PROPTEST_RNG_SEED` or at random, the seed printed: replay a failure with
/// `PROPTEST_RNG_SEED=<seed>`.
pub fn runner(name: &str, cases: u32) -> TestRunner {
    // `Config::with_cases` would override PROPTEST_CASES, which `Config::default` reads.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => rand::random(),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.failure_persistence = None;
    println!(
        "property {name}: {} cases, seed {seed} (replay: PROPTEST_RNG_SEED={seed})",
        config.cases
    );
    TestRunner::new(config)
}

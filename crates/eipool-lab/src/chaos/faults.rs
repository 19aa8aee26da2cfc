//! The faults injected into one request, decided up front by dice from [`ChaosConfig`]'s
//! probabilities (the thread-local RNG can't cross an await).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;

use super::ChaosConfig;

/// What happens to one request.
pub(super) struct Dice {
    /// Latency added before anything else.
    pub(super) delay: Duration,
    /// `RequestLimitExceeded` whatever the buckets hold.
    pub(super) throttle: bool,
    /// A 5xx answer, nothing forwarded.
    pub(super) fail_5xx: bool,
    /// A reset connection, nothing forwarded.
    pub(super) reset: bool,
    /// Forwarded, then the answer is lost.
    pub(super) lose: bool,
}

/// Throw the dice for one call of `action`; `faulty_so_far` counts the calls faults apply to
/// (for [`ChaosConfig::lose_first`]).
pub(super) fn throw(config: &ChaosConfig, action: &str, faulty_so_far: &AtomicUsize) -> Dice {
    let mut rng = rand::rng();
    let j = config.jitter.as_secs_f64();
    let delay = Duration::from_secs_f64(
        (config.latency.as_secs_f64()
            + if j > 0.0 {
                rng.random_range(-j..=j)
            } else {
                0.0
            })
        .max(0.0),
    );
    let faulty = config.fault_actions.is_empty() || config.fault_actions.contains(action);
    let lose_anyway = faulty && faulty_so_far.fetch_add(1, Ordering::Relaxed) < config.lose_first;
    Dice {
        delay,
        throttle: faulty && rng.random_bool(config.p_throttle.clamp(0.0, 1.0)),
        fail_5xx: faulty && rng.random_bool(config.p_5xx.clamp(0.0, 1.0)),
        reset: faulty && rng.random_bool(config.p_reset.clamp(0.0, 1.0)),
        lose: lose_anyway || (faulty && rng.random_bool(config.p_lose_response.clamp(0.0, 1.0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fall_only_on_the_chosen_actions() {
        let config = ChaosConfig {
            p_5xx: 1.0,
            p_reset: 1.0,
            p_throttle: 1.0,
            p_lose_response: 1.0,
            latency: Duration::from_millis(10),
            fault_actions: ["AssociateAddress".to_string()].into(),
            ..ChaosConfig::default()
        };
        let n = AtomicUsize::new(0);
        let hit = throw(&config, "AssociateAddress", &n);
        assert!(hit.fail_5xx && hit.reset && hit.throttle && hit.lose);
        let spared = throw(&config, "DescribeAddresses", &n);
        assert!(!(spared.fail_5xx || spared.reset || spared.throttle || spared.lose));
        assert_eq!(
            spared.delay,
            Duration::from_millis(10),
            "latency is not a fault"
        );
    }

    #[test]
    fn the_first_answers_are_lost_whatever_the_dice() {
        let config = ChaosConfig {
            lose_first: 2,
            fault_actions: ["AssociateAddress".to_string()].into(),
            ..ChaosConfig::default()
        };
        let n = AtomicUsize::new(0);
        assert!(!throw(&config, "DescribeAddresses", &n).lose);
        let lost: Vec<bool> = (0..4)
            .map(|_| throw(&config, "AssociateAddress", &n).lose)
            .collect();
        assert_eq!(lost, [true, true, false, false]);
    }
}

//! What happened to the calls the proxy saw, by action and outcome.

use std::collections::BTreeMap;

/// What happened to calls, by action and outcome (`ok`, `error`, `throttled`, `5xx`, `reset`,
/// `response_lost`, `stale`, and the AWS-semantics effects `displaced`, `disassociated`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats(pub BTreeMap<(String, String), u64>);

impl Stats {
    /// Count one call of `action` that ended as `outcome`.
    pub(super) fn count(&mut self, action: &str, outcome: &str) {
        *self
            .0
            .entry((action.to_string(), outcome.to_string()))
            .or_default() += 1;
    }
    /// Calls of `action` that ended as `outcome`.
    pub fn get(&self, action: &str, outcome: &str) -> u64 {
        self.0
            .get(&(action.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }
    /// All calls of `action`.
    pub fn calls(&self, action: &str) -> u64 {
        self.0
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
    /// All calls that ended as `outcome`.
    pub fn outcome(&self, outcome: &str) -> u64 {
        self.0
            .iter()
            .filter(|((_, o), _)| o == outcome)
            .map(|(_, n)| n)
            .sum()
    }
    /// One line per action: `Action: ok=… throttled=…`.
    pub fn table(&self) -> String {
        let mut by_action: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((a, o), n) in &self.0 {
            by_action.entry(a).or_default().push(format!("{o}={n}"));
        }
        by_action
            .iter()
            .map(|(a, os)| format!("  {a:<28} {}\n", os.join(" ")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_by_action_by_outcome_and_together() {
        let mut s = Stats::default();
        s.count("AssociateAddress", "ok");
        s.count("AssociateAddress", "throttled");
        s.count("AssociateAddress", "ok");
        s.count("DescribeAddresses", "throttled");
        assert_eq!(s.get("AssociateAddress", "ok"), 2);
        assert_eq!(s.calls("AssociateAddress"), 3);
        assert_eq!(s.outcome("throttled"), 2);
        assert_eq!(
            s.table(),
            format!(
                "  {:<28} ok=2 throttled=1\n  {:<28} throttled=1\n",
                "AssociateAddress", "DescribeAddresses"
            )
        );
    }
}

//! The smallest list of CIDR blocks that covers exactly a set of IPv4 addresses: what customers'
//! firewall admins allow-list. Pure.

use std::net::Ipv4Addr;

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Block {
    /// The first address.
    pub base: Ipv4Addr,
    /// The prefix length, 0–32.
    pub prefix: u8,
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Merge `ips` into the fewest aligned blocks that contain them and nothing else.
pub(crate) fn minimal_blocks(ips: &[Ipv4Addr]) -> Vec<Block> {
    let mut v: Vec<u64> = ips.iter().map(|ip| u64::from(u32::from(*ip))).collect();
    v.sort_unstable();
    v.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        // A run of consecutive addresses [start, end].
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        i += 1;
        // Cover the run with the largest aligned blocks that fit, left to right.
        let mut at = start;
        while at <= end {
            let align = if at == 0 {
                32
            } else {
                at.trailing_zeros().min(32)
            };
            let mut size_log = align;
            while (1u64 << size_log) > end - at + 1 {
                size_log -= 1;
            }
            out.push(Block {
                base: Ipv4Addr::from(at as u32),
                prefix: (32 - size_log) as u8,
            });
            at += 1u64 << size_log;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn blocks(list: &[&str]) -> Vec<String> {
        minimal_blocks(&ips(list))
            .iter()
            .map(|b| b.to_string())
            .collect()
    }

    #[test]
    fn known_sets_give_known_blocks() {
        // (addresses, minimal blocks)
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["203.0.113.7"], &["203.0.113.7/32"]),
            (
                &["203.0.113.4", "203.0.113.5", "203.0.113.6", "203.0.113.7"],
                &["203.0.113.4/30"],
            ),
            // Not aligned: 5..=8 needs 5/32, 6/31, 8/32.
            (
                &["203.0.113.5", "203.0.113.6", "203.0.113.7", "203.0.113.8"],
                &["203.0.113.5/32", "203.0.113.6/31", "203.0.113.8/32"],
            ),
            // Duplicates and order don't matter; gaps split blocks.
            (
                &[
                    "198.51.100.1",
                    "198.51.100.0",
                    "198.51.100.0",
                    "198.51.100.3",
                ],
                &["198.51.100.0/31", "198.51.100.3/32"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(blocks(input), want.to_vec(), "for {input:?}");
        }
        let whole: Vec<String> = (0..=255).map(|i| format!("192.0.2.{i}")).collect();
        let refs: Vec<&str> = whole.iter().map(String::as_str).collect();
        assert_eq!(blocks(&refs), vec!["192.0.2.0/24"]);
        // Across a /24 boundary.
        assert_eq!(
            blocks(&["192.0.2.255", "192.0.3.0"]),
            vec!["192.0.2.255/32", "192.0.3.0/32"]
        );
        assert_eq!(blocks(&["0.0.0.0", "0.0.0.1"]), vec!["0.0.0.0/31"]);
        assert_eq!(
            blocks(&["255.255.255.254", "255.255.255.255"]),
            vec!["255.255.255.254/31"]
        );
    }

    #[test]
    fn blocks_cover_exactly_the_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let base: u32 = rng.random_range(0..u32::MAX - 600);
            let set: std::collections::BTreeSet<u32> = (0..rng.random_range(1..80))
                .map(|_| base + rng.random_range(0..500))
                .collect();
            let input: Vec<Ipv4Addr> = set.iter().map(|n| Ipv4Addr::from(*n)).collect();
            let mut covered = std::collections::BTreeSet::new();
            let out = minimal_blocks(&input);
            // Minimal: no two neighbours of one size that together form an aligned bigger block.
            for w in out.windows(2) {
                let (a, b) = (w[0], w[1]);
                let size = 1u64 << (32 - u32::from(a.prefix));
                let mergeable = a.prefix == b.prefix
                    && u64::from(u32::from(a.base)) + size == u64::from(u32::from(b.base))
                    && u64::from(u32::from(a.base)) % (2 * size) == 0;
                assert!(!mergeable, "{a} and {b} should have been one block");
            }
            for b in out {
                let start = u32::from(b.base);
                let size = 1u64 << (32 - u32::from(b.prefix));
                assert_eq!(u64::from(start) % size, 0, "{b} is not aligned");
                for n in 0..size {
                    assert!(
                        covered.insert(u64::from(start) + n),
                        "{b} overlaps another block"
                    );
                }
            }
            let want: std::collections::BTreeSet<u64> = set.iter().map(|n| u64::from(*n)).collect();
            assert_eq!(covered, want, "blocks cover more or less than the input");
        }
    }

    #[test]
    fn the_blocks_cover_exactly_the_addresses_and_no_two_merge() {
        use proptest::prelude::*;
        // Clustered addresses (as an allocated range is), duplicates included, and the edges.
        let ip = prop_oneof![
            (0u32..64).prop_map(|o| 0xC633_6400 + o),
            (0u32..4).prop_map(|o| u32::MAX - o),
            (0u32..4),
            any::<u32>(),
        ];
        let set = proptest::collection::vec(ip, 0..40);
        crate::pure::tests_runner("cidr", 512)
            .run(&set, |raw| {
                let ips: Vec<Ipv4Addr> = raw.iter().map(|&n| Ipv4Addr::from(n)).collect();
                let want: std::collections::BTreeSet<u32> = raw.iter().copied().collect();
                let blocks = minimal_blocks(&ips);
                let mut got = std::collections::BTreeSet::new();
                for b in &blocks {
                    let base = u32::from(b.base);
                    let size = 1u64 << (32 - u32::from(b.prefix));
                    prop_assert_eq!(u64::from(base) % size, 0, "{} is not aligned", b);
                    for n in 0..size {
                        prop_assert!(got.insert(base + n as u32), "{} overlaps", b);
                    }
                }
                prop_assert_eq!(&got, &want);
                // Minimal: no two blocks of one size are the two halves of a larger one.
                for (a, b) in blocks.iter().zip(blocks.iter().skip(1)) {
                    let size = 1u64 << (32 - u32::from(a.prefix));
                    let halves = a.prefix == b.prefix
                        && u64::from(u32::from(b.base)) == u64::from(u32::from(a.base)) + size
                        && u64::from(u32::from(a.base)) % (2 * size) == 0;
                    prop_assert!(!halves, "{} and {} make one block", a, b);
                }
                Ok(())
            })
            .unwrap();
    }
}

//! EC2's ids as types. Each is a checked string: the only way to make one is to parse it
//! ([`FromStr`], also used when deserializing), so a malformed or empty id cannot exist, and an
//! allocation id cannot be passed where an interface id is expected.

use std::fmt;
use std::str::FromStr;

/// A string that is not the id it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {what}; expected {prefix} followed by hex digits")]
pub struct BadId {
    /// What was expected, e.g. "an interface id".
    pub what: &'static str,
    /// The prefix of such ids, e.g. `eni-`.
    pub prefix: &'static str,
    /// What was given.
    pub value: String,
}

/// Whether `s` is `prefix` followed by one or more hex digits (how EC2 spells its ids).
fn well_formed(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        !hex.is_empty() && hex.len() <= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        /// As EC2 spells it (logs and traces show ids plainly).
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            /// How these ids start.
            pub const PREFIX: &'static str = $prefix;

            /// The id as EC2 spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                if well_formed(s, $prefix) {
                    Ok($name(s.to_string()))
                } else {
                    Err(BadId {
                        what: $what,
                        prefix: $prefix,
                        value: s.to_string(),
                    })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = BadId;
            fn try_from(s: String) -> Result<Self, BadId> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An Elastic IP's allocation id, `eipalloc-…`.
    AllocationId,
    "eipalloc-",
    "an allocation id"
);
id_type!(
    /// An association of an Elastic IP with an interface, `eipassoc-…`.
    AssociationId,
    "eipassoc-",
    "an association id"
);
id_type!(
    /// A network interface id, `eni-…`.
    EniId,
    "eni-",
    "an interface id"
);
id_type!(
    /// An EC2 instance id, `i-…`.
    InstanceId,
    "i-",
    "an instance id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ids_parse() {
        // (input, parses as an interface id)
        let cases = [
            ("eni-0a1b2c3d", true),
            ("eni-139c4736395c9bd90", true),
            ("eni-", false),
            ("eni-xyz", false),
            ("eth0", false),
            ("", false),
            ("i-0a1b", false),
            ("eni-0123456789abcdef0123456789abcdef0", false), // too long
        ];
        for (s, ok) in cases {
            assert_eq!(s.parse::<EniId>().is_ok(), ok, "{s:?}");
        }
        let e = "node-1".parse::<InstanceId>().unwrap_err();
        assert!(e.to_string().contains("i- followed by hex digits"), "{e}");
    }

    #[test]
    fn deserializing_checks_too() {
        assert!(serde_json::from_str::<AllocationId>("\"eipalloc-1f\"").is_ok());
        assert!(serde_json::from_str::<AllocationId>("\"\"").is_err());
        assert!(serde_json::from_str::<AllocationId>("\"eni-1f\"").is_err());
    }

    #[test]
    fn any_string_is_an_id_exactly_when_it_is_the_prefix_and_hex() {
        use proptest::prelude::*;
        let s = prop_oneof![
            "\\PC{0,40}",
            "(eni-|eipalloc-|eipassoc-|i-|ENI-|eni)[0-9a-fA-Fg]{0,40}",
        ];
        crate::pure::tests_runner("ids", 1024)
            .run(&s, |s| {
                let hex = |p: &str| {
                    s.strip_prefix(p).is_some_and(|h| {
                        (1..=32).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
                    })
                };
                let eni = s.parse::<EniId>();
                prop_assert_eq!(eni.is_ok(), hex("eni-"));
                if let Ok(id) = eni {
                    prop_assert_eq!(id.to_string(), s.clone());
                } else if let Err(e) = eni {
                    prop_assert!(!e.to_string().contains('\n') || s.contains('\n'));
                }
                prop_assert_eq!(s.parse::<AllocationId>().is_ok(), hex("eipalloc-"));
                prop_assert_eq!(s.parse::<AssociationId>().is_ok(), hex("eipassoc-"));
                Ok(())
            })
            .unwrap();
    }
}

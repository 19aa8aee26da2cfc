//! A small on-disk cache of who is in which groups, so that the several checks of one pull
//! request comment don't each ask Okta. Entries expire after the TTL and are then never used,
//! even when Okta is down: a stale cache never turns into an allow. Each entry carries the key
//! of everything that decided it ([`key`]: the Okta org, a fingerprint of the credential, how
//! the login maps to an Okta user, the login): when any of those changes, the entry is not used.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::Group;

/// The key of an entry: SHA-256 over what decided the answer, so the credential itself is never
/// written down. `parts` are the Okta org URL, the credential, the identity mapping of this
/// login, the login.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One cached lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What decided it ([`key`]); an entry made under another key is not used.
    #[serde(default)]
    pub key: String,
    /// The GitHub login looked up.
    pub login: String,
    /// The Okta user it maps to.
    pub okta_user_id: String,
    /// Their groups (an entry from before groups had ids and types does not parse: not used).
    pub groups: Vec<Group>,
    /// When Okta answered (unix seconds).
    pub fetched_at: u64,
}

/// The cache directory and how long entries live.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    ttl: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether an entry fetched at `fetched_at` is still usable at `now` (pure).
pub fn fresh(fetched_at: u64, now: u64, ttl: Duration) -> bool {
    now >= fetched_at && now - fetched_at < ttl.as_secs().max(1)
}

impl Cache {
    /// A cache in `dir` (created on first write, mode 0700) with entries living `ttl`.
    pub fn new(dir: &Path, ttl: Duration) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
            ttl,
        }
    }

    fn path(&self, login: &str) -> PathBuf {
        // Logins are checked to be [A-Za-z0-9._-] before they get here; keep it safe anyway.
        let safe: String = login
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// A fresh entry for `login` made under `key`, if there is one.
    pub fn get(&self, login: &str, key: &str) -> Option<Entry> {
        if self.ttl.is_zero() {
            return None;
        }
        let text = crate::files::read_regular_text(&self.path(login), 1 << 20).ok()?;
        let e: Entry = serde_json::from_str(&text).ok()?;
        (e.login == login && e.key == key && fresh(e.fetched_at, now(), self.ttl)).then_some(e)
    }

    /// Store an entry (best effort: a cache that can't be written only costs Okta calls).
    pub fn put(&self, login: &str, key: &str, okta_user_id: &str, groups: &[Group]) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
            key: key.to_string(),
            login: login.to_string(),
            okta_user_id: okta_user_id.to_string(),
            groups: groups.to_vec(),
            fetched_at: now(),
        };
        let _ = self.write(login, &entry);
    }

    fn write(&self, login: &str, entry: &Entry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, entry)?;
        tmp.persist(self.path(login)).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_table() {
        let ttl = Duration::from_secs(60);
        assert!(fresh(1000, 1000, ttl));
        assert!(fresh(1000, 1059, ttl));
        assert!(!fresh(1000, 1060, ttl));
        assert!(
            !fresh(1000, 999, ttl),
            "an entry from the future is not trusted"
        );
    }

    fn group(name: &str) -> Group {
        Group {
            id: "00g1".into(),
            name: name.into(),
            kind: "OKTA_GROUP".into(),
        }
    }

    #[test]
    fn expired_entries_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path(), Duration::from_secs(60));
        c.put("octocat", "k", "00u1", &[group("engineering")]);
        assert_eq!(
            c.get("octocat", "k").unwrap().groups,
            vec![group("engineering")]
        );
        let mut e = c.get("octocat", "k").unwrap();
        e.fetched_at -= 61;
        std::fs::write(c.path("octocat"), serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(c.get("octocat", "k"), None);
        assert_eq!(
            Cache::new(dir.path(), Duration::ZERO).get("octocat", "k"),
            None
        );
    }

    #[test]
    fn an_entry_is_used_only_under_the_key_it_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path(), Duration::from_secs(60));
        let k = key(&["https://acme.okta.com", "token-1", "attr:gh", "octocat"]);
        c.put("octocat", &k, "00u1", &[group("prod")]);
        assert!(c.get("octocat", &k).is_some());
        // (what changed, key): each change misses.
        for other in [
            key(&["https://other.okta.com", "token-1", "attr:gh", "octocat"]),
            key(&["https://acme.okta.com", "token-2", "attr:gh", "octocat"]),
            key(&["https://acme.okta.com", "token-1", "user:octo@x", "octocat"]),
        ] {
            assert_eq!(c.get("octocat", &other), None);
        }
        // Parts cannot run into each other.
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        // An entry from before groups had ids and types is not used.
        let old = r#"{"key":"KEY","login":"octocat","okta_user_id":"00u1","groups":["prod"],"fetched_at":NOW}"#
            .replace("KEY", &k)
            .replace("NOW", &now().to_string());
        std::fs::write(c.path("octocat"), old).unwrap();
        assert_eq!(c.get("octocat", &k), None);
        c.put("octocat", &k, "00u1", &[group("prod")]);
        // The credential is not in the file.
        let text = std::fs::read_to_string(c.path("octocat")).unwrap();
        assert!(!text.contains("token-1"), "{text}");
    }
}

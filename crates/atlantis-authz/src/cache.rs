//! A small on-disk cache of who is in which groups, so that the several checks of one pull
//! request comment don't each ask Okta. Entries expire after the TTL and are then never used,
//! even when Okta is down: a stale cache never turns into an allow.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One cached lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The GitHub login looked up.
    pub login: String,
    /// The Okta user it maps to.
    pub okta_user_id: String,
    /// Their group names.
    pub groups: Vec<String>,
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

    /// A fresh entry for `login`, if there is one.
    pub fn get(&self, login: &str) -> Option<Entry> {
        if self.ttl.is_zero() {
            return None;
        }
        let text = std::fs::read_to_string(self.path(login)).ok()?;
        let e: Entry = serde_json::from_str(&text).ok()?;
        (e.login == login && fresh(e.fetched_at, now(), self.ttl)).then_some(e)
    }

    /// Store an entry (best effort: a cache that can't be written only costs Okta calls).
    pub fn put(&self, login: &str, okta_user_id: &str, groups: &[String]) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
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

    #[test]
    fn expired_entries_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path(), Duration::from_secs(60));
        c.put("octocat", "00u1", &["engineering".into()]);
        assert_eq!(
            c.get("octocat").unwrap().groups,
            vec!["engineering".to_string()]
        );
        let mut e = c.get("octocat").unwrap();
        e.fetched_at -= 61;
        std::fs::write(c.path("octocat"), serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(c.get("octocat"), None);
        assert_eq!(Cache::new(dir.path(), Duration::ZERO).get("octocat"), None);
    }
}

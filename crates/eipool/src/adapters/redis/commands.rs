//! Every Redis command eipool runs, in one list. The ACL rule that docs/redis.md gives, the fix
//! a NOPERM error names and doctor's probe all come from it, and the tests below check it
//! against what the code runs: a command a script or a call uses that is not listed fails them,
//! and so does a listed command nothing uses (the documented user gets no more than it needs).
//!
//! Redis checks a script's calls against the user's ACL as it checks the user's own commands, so
//! a command used only inside a script still needs its `+command`.

/// One command: its ACL name (`get`, or `cluster|info` for a subcommand) and, for a command on
/// the pool's keys, the Lua line doctor's probe runs it with (`KEYS[1]` a string key, `KEYS[2]`
/// a hash, `KEYS[3]` a sorted set, all in one slot and deleted again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Command {
    pub(crate) acl: &'static str,
    pub(crate) probe: Option<&'static str>,
}

const fn run(acl: &'static str, probe: &'static str) -> Command {
    Command {
        acl,
        probe: Some(probe),
    }
}

/// Not on the pool's keys: exercised by connecting and by doctor's other steps.
const fn meta(acl: &'static str) -> Command {
    Command { acl, probe: None }
}

/// Every command eipool runs. The probe lines run in this order.
pub(crate) const COMMANDS: &[Command] = &[
    // Scripts: EVALSHA, and SCRIPT LOAD when Redis does not know the script yet (redis-rs
    // `Script`). Doctor's probe is itself a script.
    meta("evalsha"),
    meta("script|load"),
    // Connecting: is it a cluster (CLUSTER INFO), its slots (CLUSTER SLOTS, also doctor), and
    // the ASKING a cluster client sends while a slot migrates; ROLE (a replica is refused);
    // CLUSTER KEYSLOT (doctor: which primary serves the pool); PING (health, doctor).
    meta("cluster|info"),
    meta("cluster|slots"),
    meta("cluster|keyslot"),
    meta("asking"),
    meta("role"),
    meta("ping"),
    // A URL naming a database (`redis://host:6379/2`): the client selects it on connecting.
    meta("select"),
    // Strings: leases, markers, intents, fences, the pace, the shared listing, the line's
    // counters.
    run("set", "redis.call('SET', KEYS[1], '1', 'PX', 10000)"),
    run("get", "redis.call('GET', KEYS[1])"),
    run("mget", "redis.call('MGET', KEYS[1])"),
    run("exists", "redis.call('EXISTS', KEYS[1])"),
    run("pexpire", "redis.call('PEXPIRE', KEYS[1], 10000)"),
    run("incr", "redis.call('INCR', KEYS[1])"),
    run("incrby", "redis.call('INCRBY', KEYS[1], 2)"),
    run("time", "redis.call('TIME')"),
    // Hashes: the holder records, the line's heartbeats and restarts.
    run("hset", "redis.call('HSET', KEYS[2], 'k', '1')"),
    run("hget", "redis.call('HGET', KEYS[2], 'k')"),
    run("hexists", "redis.call('HEXISTS', KEYS[2], 'k')"),
    run("hkeys", "redis.call('HKEYS', KEYS[2])"),
    run("hgetall", "redis.call('HGETALL', KEYS[2])"),
    run("hdel", "redis.call('HDEL', KEYS[2], 'k')"),
    // Sorted sets: the waiting line's tickets.
    run("zadd", "redis.call('ZADD', KEYS[3], 1, 'm')"),
    run("zscore", "redis.call('ZSCORE', KEYS[3], 'm')"),
    run("zrank", "redis.call('ZRANK', KEYS[3], 'm')"),
    run("zrange", "redis.call('ZRANGE', KEYS[3], 0, 0)"),
    run("zcard", "redis.call('ZCARD', KEYS[3])"),
    run("zrem", "redis.call('ZREM', KEYS[3], 'm')"),
    run("del", "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])"),
];

/// The ACL rule eipool's Redis user needs (after `ACL SETUSER <user> on ><password>`): the
/// pool's keys and every command of [`COMMANDS`].
pub(crate) fn acl_rule() -> String {
    let mut rule = String::from("~eipool:*");
    for c in COMMANDS {
        rule.push_str(" +");
        rule.push_str(c.acl);
    }
    rule
}

/// Doctor's probe: every command on the pool's keys, in one script, each through `pcall`. It
/// returns `ok`, or the name of the first command the ACL refuses (Redis's own error for a
/// refused command inside a script does not say which); any other error is raised as it is.
pub(crate) fn probe_script() -> String {
    let [old, new] = super::failures::REFUSED_IN_A_SCRIPT;
    let mut lua = format!(
        "local function refused(r)\n  if type(r) == 'table' and r.err then\n    if string.find(r.err, \"{old}\", 1, true) or string.find(r.err, \"{new}\", 1, true) or string.find(r.err, 'NOPERM', 1, true) then\n      return true\n    end\n    error(r)\n  end\n  return false\nend\n"
    );
    for c in COMMANDS {
        if let Some(line) = c.probe {
            let call = line.replacen("redis.call(", "redis.pcall(", 1);
            lua.push_str(&format!(
                "if refused({call}) then redis.pcall('DEL', KEYS[1], KEYS[2], KEYS[3]) return '{}' end\n",
                c.acl
            ));
        }
    }
    lua.push_str("return 'ok'\n");
    lua
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The sources that talk to Redis.
    const SOURCES: &[(&str, &str)] = &[
        ("scripts.rs", include_str!("scripts.rs")),
        ("connect.rs", include_str!("connect.rs")),
        ("diagnose.rs", include_str!("diagnose.rs")),
        ("failures.rs", include_str!("failures.rs")),
        ("leases.rs", include_str!("leases.rs")),
        ("line.rs", include_str!("line.rs")),
        ("listing.rs", include_str!("listing.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("pace.rs", include_str!("pace.rs")),
        ("records.rs", include_str!("records.rs")),
        ("target.rs", include_str!("target.rs")),
    ];

    /// The string literal starting right after `from` in `text`, if `text` starts with a quote.
    fn literal(text: &str) -> Option<&str> {
        let rest = text.strip_prefix(['"', '\''])?;
        let end = rest.find(['"', '\''])?;
        Some(&rest[..end])
    }

    /// Every command the sources run: `redis.call('NAME', …)` in the scripts, and
    /// `redis::cmd("NAME")` (with `.arg("SUB")` for a container command) in the calls.
    fn used() -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for (file, text) in SOURCES {
            for (i, _) in text.match_indices("redis.call(") {
                let name = literal(&text[i + "redis.call(".len()..])
                    .unwrap_or_else(|| panic!("{file}: redis.call( without a literal name"));
                used.insert(name.to_lowercase());
            }
            for (i, _) in text.match_indices("redis::cmd(") {
                let after = &text[i + "redis::cmd(".len()..];
                let name = literal(after)
                    .unwrap_or_else(|| panic!("{file}: redis::cmd( without a literal name"))
                    .to_lowercase();
                let rest = after[name.len() + 3..].trim_start();
                let sub = rest
                    .strip_prefix(".arg(")
                    .and_then(literal)
                    .filter(|_| matches!(name.as_str(), "cluster" | "script" | "client"));
                used.insert(match sub {
                    Some(s) => format!("{name}|{}", s.to_lowercase()),
                    None => name,
                });
            }
        }
        used
    }

    #[test]
    fn every_command_the_code_runs_is_listed_and_every_listed_one_is_run() {
        let listed: BTreeSet<String> = COMMANDS.iter().map(|c| c.acl.to_string()).collect();
        let used = used();
        // The client library runs these on our behalf (see their comments above).
        let by_the_client: BTreeSet<String> = ["evalsha", "script|load", "asking", "select"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let missing: Vec<_> = used.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "run by eipool but not in COMMANDS (the documented ACL would refuse them): {missing:?}"
        );
        let unused: Vec<_> = listed
            .iter()
            .filter(|c| !used.contains(*c) && !by_the_client.contains(*c))
            .collect();
        assert!(
            unused.is_empty(),
            "in COMMANDS but run nowhere (the documented ACL grants more than needed): {unused:?}"
        );
        // The scanner itself sees what it must: a script command, a direct call, a subcommand.
        for seen in ["zadd", "mget", "cluster|keyslot", "ping"] {
            assert!(used.contains(seen), "the scan missed {seen}: {used:?}");
        }
    }

    #[test]
    fn doctors_probe_runs_every_command_on_the_pools_keys() {
        let probe = probe_script();
        let used = used();
        for c in COMMANDS {
            match c.probe {
                Some(line) => {
                    let called = literal(&line["redis.call(".len()..])
                        .unwrap()
                        .to_lowercase();
                    assert_eq!(called, c.acl, "the probe line of {} runs {called}", c.acl);
                    assert!(probe.contains(&format!(
                        "if refused({}) then redis.pcall('DEL', KEYS[1], KEYS[2], KEYS[3]) return '{}' end",
                        line.replacen("redis.call(", "redis.pcall(", 1),
                        c.acl
                    )));
                }
                // Only what connecting and doctor's other steps run has no probe line.
                None => assert!(
                    !matches!(c.acl, "get" | "set" | "zadd" | "hset" | "del"),
                    "{} needs a probe line",
                    c.acl
                ),
            }
        }
        // Every data command a script runs is probed.
        for u in &used {
            let probed = COMMANDS.iter().any(|c| c.acl == *u && c.probe.is_some());
            let meta = COMMANDS.iter().any(|c| c.acl == *u && c.probe.is_none());
            assert!(probed || meta, "{u} is neither probed nor a meta command");
        }
        // Cleans up what it made, last.
        assert!(probe.trim_end().ends_with("return 'ok'"));
        assert!(probe.contains("'DEL', KEYS[1], KEYS[2], KEYS[3]"));
    }

    #[test]
    fn the_acl_rule_grants_the_pools_keys_and_each_command_once() {
        let rule = acl_rule();
        assert!(rule.starts_with("~eipool:* +evalsha "), "{rule}");
        let grants: Vec<&str> = rule.split_whitespace().skip(1).collect();
        let unique: BTreeSet<&str> = grants.iter().copied().collect();
        assert_eq!(grants.len(), unique.len(), "{rule}");
        assert_eq!(grants.len(), COMMANDS.len());
        assert!(grants.iter().all(|g| g.starts_with('+')), "{rule}");
    }

    #[test]
    fn docs_redis_md_gives_exactly_this_acl() {
        let doc = include_str!("../../../../../docs/redis.md");
        let want = format!("ACL SETUSER eipool on >PASSWORD {}", acl_rule());
        assert!(
            doc.lines().any(|l| l.trim() == want),
            "docs/redis.md must give the ACL eipool needs, exactly:\n  {want}"
        );
    }
}

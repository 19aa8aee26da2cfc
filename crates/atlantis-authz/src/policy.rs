//! The policy file: who may run which Atlantis command where, by Okta group. Parsing (with line
//! numbers in every error) and the decision itself, which is pure: no I/O, no clock.
//!
//! ```yaml
//! identity:
//!   github_attribute: githubUsername   # Okta profile attribute that holds the GitHub login
//!   users:                             # explicit GitHub login -> Okta login; wins over the attribute
//!     octocat: octo.cat@example.com
//! default:
//!   allow_groups: []                   # who may do what no rule matches (empty: nobody)
//! rules:                               # first match decides
//!   - name: prod-apply
//!     repos: ["acme/infra-live"]       # globs over owner/repo
//!     paths: ["live/*/*/prod/**"]      # globs over REPO_REL_PATH
//!     projects: ["*"]                  # globs over PROJECT_NAME
//!     commands: [apply]                # Atlantis command names
//!     groups: [infra-prod-admins]      # Okta groups allowed (any of them)
//! ```

use std::collections::BTreeMap;

use globset::GlobMatcher;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The Atlantis commands a rule may name.
pub const COMMANDS: &[&str] = &[
    "plan",
    "apply",
    "unlock",
    "approve_policies",
    "import",
    "state",
    "version",
];

/// A glob pattern, compiled when the policy is read (a bad one is an error with its line).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Whether `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        if source.is_empty() {
            return Err(de::Error::custom("empty glob pattern"));
        }
        let glob = globset::GlobBuilder::new(&source)
            .literal_separator(true)
            .build()
            .map_err(|e| de::Error::custom(format!("invalid glob {source:?}: {}", e.kind())))?;
        Ok(Pattern {
            source,
            matcher: glob.compile_matcher(),
        })
    }
}

/// An Atlantis command name, checked against [`COMMANDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandName(pub String);

impl<'de> Deserialize<'de> for CommandName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !COMMANDS.contains(&s.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown Atlantis command {s:?}; use one of {}",
                COMMANDS.join(", ")
            )));
        }
        Ok(CommandName(s))
    }
}

fn nonempty_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let groups = Vec::<String>::deserialize(d)?;
    if groups.is_empty() {
        return Err(de::Error::custom(
            "a rule needs at least one group in `groups`",
        ));
    }
    if let Some(g) = groups.iter().find(|g| g.trim().is_empty()) {
        return Err(de::Error::custom(format!("empty group name {g:?}")));
    }
    Ok(groups)
}

/// How a GitHub login becomes an Okta user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Okta profile attribute holding the GitHub login (searched with `profile.<attr> eq "<login>"`).
    pub github_attribute: Option<String>,
    /// Explicit GitHub login → Okta login (or user id); checked first.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// What happens when no rule matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Default {
    /// Groups allowed anything no rule covers; empty: deny.
    #[serde(default)]
    pub allow_groups: Vec<String>,
}

/// One rule: where it applies, and which groups it allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for messages and the audit log.
    pub name: String,
    /// `owner/repo` globs; absent: any repository.
    pub repos: Option<Vec<Pattern>>,
    /// `REPO_REL_PATH` globs; absent: any path.
    pub paths: Option<Vec<Pattern>>,
    /// `PROJECT_NAME` globs; absent: any project.
    pub projects: Option<Vec<Pattern>>,
    /// Atlantis commands; absent: any command.
    pub commands: Option<Vec<CommandName>>,
    /// Okta groups allowed (membership in any one suffices).
    #[serde(deserialize_with = "nonempty_groups")]
    pub groups: Vec<String>,
}

/// The whole policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Identity mapping.
    #[serde(default)]
    pub identity: Identity,
    /// The fallback.
    #[serde(default)]
    pub default: Default,
    /// Ordered rules; the first that matches decides.
    pub rules: Vec<Rule>,
}

/// A policy that could not be read: the message has the line and column.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong, with `line N column M` when known.
    pub message: String,
}

/// Parse a policy; errors say where.
pub fn parse(path: &str, text: &str) -> Result<Policy, PolicyError> {
    let err = |message: String| PolicyError {
        path: path.to_string(),
        message,
    };
    let policy: Policy = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        let msg = e.to_string();
        // serde_yaml_ng appends " at line N column M" itself; keep one location, in front.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        err(format!("{at}{msg}"))
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for r in &policy.rules {
        if !seen.insert(r.name.as_str()) {
            // Point at the second rule with that name: the duplicate.
            let needle = format!("name: {}", r.name);
            let line = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().trim_start_matches("- ").trim_end() == needle)
                .nth(1)
                .map(|(i, _)| i + 1)
                .unwrap_or(0);
            return Err(err(format!(
                "line {line}: two rules are named {:?}; names must be unique",
                r.name
            )));
        }
    }
    for r in &policy.rules {
        let never = |kind: &str, p: &Pattern, why: &str| {
            // The first line naming the glob after the rule's name.
            let name_line = text
                .lines()
                .position(|l| {
                    l.trim_start().trim_start_matches("- ").trim_end()
                        == format!("name: {}", r.name)
                })
                .unwrap_or(0);
            let line = text
                .lines()
                .enumerate()
                .skip(name_line)
                .find(|(_, l)| l.contains(&p.source))
                .map(|(i, _)| i + 1)
                .unwrap_or(0);
            err(format!(
                "line {line}: rule {:?}: {kind} glob {:?} can never match: {why}",
                r.name, p.source
            ))
        };
        for p in r.repos.iter().flatten() {
            if !p.source.contains('/') && !p.source.contains("**") {
                return Err(never(
                    "repos",
                    p,
                    "repositories are owner/repo (e.g. acme/infra-live, or acme/*)",
                ));
            }
        }
        for p in r.paths.iter().flatten() {
            if p.source.starts_with('/') {
                return Err(never(
                    "paths",
                    p,
                    "REPO_REL_PATH is relative to the repository; drop the leading /",
                ));
            }
            if p.source.split('/').any(|s| s == ".." || s == ".") {
                return Err(never(
                    "paths",
                    p,
                    "paths are matched normalised, without . or .. segments",
                ));
            }
        }
    }
    if policy.identity.github_attribute.is_none() && policy.identity.users.is_empty() {
        return Err(err("identity: set github_attribute (the Okta profile attribute with the GitHub login) or users (an explicit mapping)".into()));
    }
    if let Some(attr) = &policy.identity.github_attribute {
        if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(format!(
                "identity.github_attribute {attr:?} is not an Okta profile attribute name"
            )));
        }
    }
    Ok(policy)
}

/// What Atlantis asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The GitHub login of the commenter.
    pub user: String,
    /// `owner/repo`.
    pub repo: String,
    /// The Atlantis command.
    pub command: String,
    /// `REPO_REL_PATH` (project-level checks only).
    pub path: Option<String>,
    /// `PROJECT_NAME` (project-level checks only).
    pub project: Option<String>,
}

impl Request {
    /// Whether this is Atlantis's first, repository-wide check: no `REPO_REL_PATH` yet (with or
    /// without `PROJECT_NAME`, which `-p` may set).
    pub fn command_level(&self) -> bool {
        self.path.is_none()
    }
}

/// The verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// The rule that decided (None: the default).
    pub rule: Option<String>,
    /// One human line.
    pub reason: String,
}

fn any(patterns: &Option<Vec<Pattern>>, value: Option<&str>, ignore: bool) -> bool {
    match (patterns, value) {
        (None, _) => true,
        (Some(_), _) if ignore => true,
        (Some(ps), Some(v)) => ps.iter().any(|p| p.is_match(v)),
        (Some(_), None) => false,
    }
}

impl Rule {
    /// Whether the rule applies. At command level (no path/project known yet) path and project
    /// constraints are not checked: Atlantis checks each project again with them.
    pub fn matches(&self, req: &Request) -> bool {
        let cl = req.command_level();
        any(&self.repos, Some(&req.repo), false)
            && any(&self.paths, req.path.as_deref(), cl)
            // A project named at the first check narrows it; none named: checked per project.
            && any(&self.projects, req.project.as_deref(), cl && req.project.is_none())
            && self
                .commands
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|c| c.0 == req.command))
    }
}

/// Decide, given the user's Okta groups.
///
/// Project level: the first matching rule decides. Command level: allowed when any matching rule
/// allows one of the user's groups (the project-level checks then narrow it down).
pub fn decide(policy: &Policy, req: &Request, groups: &[String]) -> Decision {
    let has = |allowed: &[String]| allowed.iter().find(|g| groups.contains(g)).cloned();
    let matching: Vec<&Rule> = policy.rules.iter().filter(|r| r.matches(req)).collect();
    let what = match (&req.path, &req.project) {
        (Some(p), _) => format!("{} on {} path {p}", req.command, req.repo),
        (None, Some(p)) => format!("{} on {} project {p}", req.command, req.repo),
        (None, None) => format!("{} on {}", req.command, req.repo),
    };
    if req.command_level() {
        if let Some((rule, g)) = matching.iter().find_map(|r| has(&r.groups).map(|g| (r, g))) {
            return Decision {
                allowed: true,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may {what}: rule {:?} allows group {g:?} (each project is checked again)",
                    req.user, rule.name
                ),
            };
        }
        if let Some(first) = matching.first() {
            let mut needed: Vec<&String> = Vec::new();
            for g in matching.iter().flat_map(|r| &r.groups) {
                if !needed.contains(&g) {
                    needed.push(g);
                }
            }
            return Decision {
                allowed: false,
                rule: Some(first.name.clone()),
                reason: format!(
                    "{} may not {what}: not in any of the groups {needed:?} that rules allow",
                    req.user
                ),
            };
        }
    } else if let Some(rule) = matching.first() {
        return match has(&rule.groups) {
            Some(g) => Decision {
                allowed: true,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may {what}: rule {:?} allows group {g:?}",
                    req.user, rule.name
                ),
            },
            None => Decision {
                allowed: false,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may not {what}: rule {:?} needs one of the groups {:?}",
                    req.user, rule.name, rule.groups
                ),
            },
        };
    }
    match has(&policy.default.allow_groups) {
        Some(g) => Decision {
            allowed: true,
            rule: None,
            reason: format!(
                "{} may {what}: no rule matches and the default allows group {g:?}",
                req.user
            ),
        },
        None => Decision {
            allowed: false,
            rule: None,
            reason: format!(
                "{} may not {what}: no rule matches and the default denies",
                req.user
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
identity:
  github_attribute: githubUsername
rules:
  - name: plan-anything
    commands: [plan]
    groups: [engineering]
  - name: prod-apply
    repos: ["acme/*"]
    paths: ["live/*/*/prod/**"]
    commands: [apply]
    groups: [infra-prod-admins]
  - name: nonprod-apply
    repos: ["acme/*"]
    paths: ["live/**"]
    commands: [apply, unlock]
    groups: [engineering]
"#;

    fn req(command: &str, path: Option<&str>) -> Request {
        Request {
            user: "octocat".into(),
            repo: "acme/infra-live".into(),
            command: command.into(),
            path: path.map(str::to_string),
            project: path.map(|_| "p".to_string()),
        }
    }

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn decisions_table() {
        let p = parse("policy.yaml", POLICY).unwrap();
        let eng = groups(&["engineering"]);
        let prod = groups(&["infra-prod-admins"]);
        // (request, groups, allowed, deciding rule)
        let cases = [
            (
                req("plan", Some("live/123/us-east-1/prod/vpc")),
                &eng,
                true,
                Some("plan-anything"),
            ),
            (
                req("apply", Some("live/123/us-east-1/prod/vpc")),
                &eng,
                false,
                Some("prod-apply"),
            ),
            (
                req("apply", Some("live/123/us-east-1/prod/vpc")),
                &prod,
                true,
                Some("prod-apply"),
            ),
            (
                req("apply", Some("live/123/us-east-1/staging/vpc")),
                &eng,
                true,
                Some("nonprod-apply"),
            ),
            (req("apply", Some("modules/vpc")), &eng, false, None),
            (
                req("import", Some("live/123/us-east-1/staging/vpc")),
                &eng,
                false,
                None,
            ),
            // Command level: allowed when some rule would allow; projects are checked again.
            (req("apply", None), &prod, true, Some("prod-apply")),
            (
                req("apply", None),
                &groups(&["sales"]),
                false,
                Some("prod-apply"),
            ),
        ];
        for (r, g, allowed, rule) in cases {
            let d = decide(&p, &r, g);
            assert_eq!(d.allowed, allowed, "{r:?} with {g:?}: {}", d.reason);
            assert_eq!(d.rule.as_deref(), rule, "{r:?}: {}", d.reason);
        }
    }

    #[test]
    fn a_denial_names_the_rule_and_the_missing_group() {
        let p = parse("policy.yaml", POLICY).unwrap();
        let d = decide(
            &p,
            &req("apply", Some("live/1/eu-west-1/prod/db")),
            &groups(&["engineering"]),
        );
        assert!(
            d.reason.contains("prod-apply") && d.reason.contains("infra-prod-admins"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn globs_do_not_cross_directories_with_a_single_star() {
        let p = parse("policy.yaml", POLICY).unwrap();
        // live/*/*/prod/** needs exactly two levels between live and prod.
        let d = decide(
            &p,
            &req("apply", Some("live/123/prod/vpc")),
            &groups(&["engineering"]),
        );
        assert_eq!(d.rule.as_deref(), Some("nonprod-apply"), "{}", d.reason);
    }

    #[test]
    fn errors_report_line_numbers() {
        // (policy text, expected line, expected words)
        let cases: &[(&str, usize, &str)] = &[
            // The rule's line: the field's value is only judged once the rule is read.
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    commands: [plan]\n    groups: []\n", 3, "at least one group"),
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    commands: [destroy]\n    groups: [x]\n", 4, "unknown Atlantis command"),
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    paths: [\"live/[prod\"]\n    groups: [x]\n", 4, "invalid glob"),
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    group: [x]\n", 4, "unknown field"),
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    groups: [x]\n  - name: a\n    groups: [y]\n", 5, "named"),
            ("identity: {github_attribute: gh}\nrules: [\n", 3, ""),
        ];
        for (text, line, words) in cases {
            let e = parse("p.yaml", text).expect_err(text).to_string();
            assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
            assert!(e.contains(words), "{text:?}: {e}");
        }
        let e = parse("p.yaml", "rules: []\n").unwrap_err().to_string();
        assert!(e.contains("github_attribute"), "{e}");
    }

    #[test]
    fn globs_that_can_never_match_are_refused() {
        let rule = |field: &str, glob: &str| {
            format!("identity: {{github_attribute: gh}}\nrules:\n  - name: a\n    {field}: [\"{glob}\"]\n    groups: [x]\n")
        };
        // (field, glob, refused)
        let cases = [
            ("repos", "infra-live", true),
            ("repos", "acme/infra-live", false),
            ("repos", "*/infra-live", false),
            ("repos", "**", false),
            ("paths", "/live/prod/**", true),
            ("paths", "live/../prod/**", true),
            ("paths", "./live/**", true),
            ("paths", "live/*/prod/**", false),
        ];
        for (field, glob, refused) in cases {
            let r = parse("p.yaml", &rule(field, glob));
            assert_eq!(r.is_err(), refused, "{field} {glob}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.to_string().contains("line 4") && e.to_string().contains("never match"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn the_first_check_with_a_project_is_still_repository_wide() {
        let p = parse("policy.yaml", POLICY).unwrap();
        let mut r = req("apply", None);
        r.project = Some("prod-vpc".into());
        let d = decide(&p, &r, &groups(&["infra-prod-admins"]));
        assert!(d.allowed, "{}", d.reason);
    }

    #[test]
    fn a_repository_wide_denial_names_each_group_once() {
        let p = parse(
            "policy.yaml",
            "identity: {github_attribute: gh}\nrules:\n  - name: a\n    paths: [\"live/a/**\"]\n    groups: [engineering, sre]\n  - name: b\n    paths: [\"live/b/**\"]\n    groups: [engineering]\n",
        )
        .unwrap();
        let d = decide(&p, &req("apply", None), &groups(&["sales"]));
        assert!(!d.allowed);
        assert_eq!(
            d.reason.matches("\"engineering\"").count(),
            1,
            "{}",
            d.reason
        );
        assert!(d.reason.contains("\"sre\""), "{}", d.reason);
    }
}

//! The policy file: who may run which Atlantis command where, by Okta group. Parsing (with line
//! numbers in every error) and the decision itself, which is pure: no I/O, no clock.
//!
//! ```yaml
//! identity:
//!   github_attribute: githubUsername   # Okta profile attribute that holds the GitHub login
//!   users:                             # explicit GitHub login -> Okta login; wins over the attribute
//!     octocat: octo.cat@example.com
//!   group_types: [OKTA_GROUP]          # the types whose groups match by name (the default)
//! default:
//!   allow_groups: []                   # who may do what no rule matches (empty: nobody)
//! rules:                               # first match decides
//!   - name: prod-apply
//!     repos: ["acme/infra-live"]       # globs over owner/repo
//!     paths: ["live/*/*/prod/**"]      # globs over REPO_REL_PATH (`dir/**` covers dir too)
//!     projects: ["*"]                  # globs over PROJECT_NAME
//!     commands: [apply]                # Atlantis command names
//!     groups: [infra-prod-admins]      # Okta groups allowed (any of them): by name, or by id
//! ```
//!
//! A group entry that is an Okta group id (`00g` and 17 letters or digits) matches that group
//! whatever its type; any other entry is a name, and matches only groups of
//! `identity.group_types` (by default `OKTA_GROUP`: an `APP_GROUP` synced from another directory
//! under the same name is a different group).

use globset::GlobMatcher;

use crate::glob;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// The Atlantis commands a rule may name. `policy_check` is not typed by anyone: with policy
/// checks on, a comment's `plan` adds one such entry per project, judged exactly as `plan`
/// (see [`judged_as`]). `cancel` (Atlantis ≥ 0.39), like `unlock`, is asked about at the first,
/// repository-wide check only.
pub const COMMANDS: &[&str] = &[
    "plan",
    "policy_check",
    "apply",
    "unlock",
    "approve_policies",
    "import",
    "state",
    "version",
    "cancel",
];

/// A glob pattern, compiled when the policy is read (a bad one is an error with its line).
/// In `repos` and `paths`, `*` stays within a directory; `dir/**` covers everything under `dir`
/// and `dir` itself (a project at `live/1/us-east-1/prod` is as much prod as one below it). In
/// `projects`, `*` matches any name: Atlantis allows `/` in one, and the empty name is that of
/// an unnamed project.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    matcher: GlobMatcher,
    /// For `dir/**`: `dir`.
    dir: Option<GlobMatcher>,
}

impl Pattern {
    /// Whether `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s) || self.dir.as_ref().is_some_and(|d| d.is_match(s))
    }

    /// Whether it matches every project name, judged by what it matches (the empty name, with
    /// `/`, …), not by its spelling: `*`, `**`, `*{,}` all do.
    fn matches_every_name(&self) -> bool {
        SAMPLE_NAMES
            .iter()
            .chain(&["prod-vpc", "live/1/us-east-1/prod/vpc", "a.b_c-d"])
            .all(|n| self.is_match(n))
    }
}

/// What a glob is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobKind {
    /// `owner/repo`: `*` stays within the owner or the name, and case does not matter (GitHub's
    /// repository names are case-insensitive).
    Repo,
    /// `REPO_REL_PATH`: `*` stays within a directory.
    Path,
    /// `PROJECT_NAME`: a name, where `*` matches anything (`/` included).
    Name,
}

fn compile(source: &str, kind: GlobKind) -> Result<GlobMatcher, String> {
    globset::GlobBuilder::new(source)
        .literal_separator(kind != GlobKind::Name)
        .case_insensitive(kind == GlobKind::Repo)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob {source:?}: {}", e.kind()))
}

impl Pattern {
    fn new(source: String, kind: GlobKind) -> Result<Pattern, String> {
        if source.is_empty() {
            return Err("empty glob pattern".into());
        }
        let matcher = compile(&source, kind)?;
        let dir = match source.strip_suffix("/**") {
            Some(d) if !d.is_empty() && kind != GlobKind::Name => Some(compile(d, kind)?),
            _ => None,
        };
        Ok(Pattern {
            source,
            matcher,
            dir,
        })
    }
}

/// A key that is present has a value: YAML reads `key:` with every entry commented out as
/// null, which must not pass for "any" (a rule's list) or for an empty list.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, key: &str) -> Result<T, D::Error> {
    Option::<T>::deserialize(d)?.ok_or_else(|| {
        de::Error::custom(format!(
            "`{key}` has no value (are all its entries commented out?): write its entries, or leave `{key}` out"
        ))
    })
}

/// A rule's list, when present: at least one entry (absent means any; empty would be read as
/// nothing, or as any at the first check).
fn listed<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    key: &str,
) -> Result<Option<Vec<T>>, D::Error> {
    let list: Vec<T> = present(d, key)?;
    if list.is_empty() {
        return Err(de::Error::custom(format!(
            "`{key}` is empty: name at least one, or leave `{key}` out to mean any"
        )));
    }
    Ok(Some(list))
}

/// One glob of a list, compiled as it is read (so that an error points at its line).
struct Glob<const KIND: u8>(Pattern);

const REPO: u8 = 0;
const PATH: u8 = 1;
const NAME: u8 = 2;

impl<'de, const KIND: u8> Deserialize<'de> for Glob<KIND> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let kind = match KIND {
            REPO => GlobKind::Repo,
            PATH => GlobKind::Path,
            _ => GlobKind::Name,
        };
        Pattern::new(String::deserialize(d)?, kind)
            .map(Glob)
            .map_err(de::Error::custom)
    }
}

/// A rule's list of globs, when present.
fn globs<'de, D: Deserializer<'de>, const KIND: u8>(
    d: D,
    key: &str,
) -> Result<Option<Vec<Pattern>>, D::Error> {
    let list = listed::<_, Glob<KIND>>(d, key)?;
    Ok(list.map(|l| l.into_iter().map(|g| g.0).collect()))
}

fn repo_globs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Pattern>>, D::Error> {
    globs::<_, REPO>(d, "repos")
}

fn path_globs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Pattern>>, D::Error> {
    globs::<_, PATH>(d, "paths")
}

fn command_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<CommandName>>, D::Error> {
    listed(d, "commands")
}

/// `projects`: globs over names (see [`Pattern`]).
fn project_globs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Pattern>>, D::Error> {
    globs::<_, NAME>(d, "projects")
}

fn allow_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    present(d, "allow_groups")
}

/// `identity.users` in the file's order, every mapping kept: [`parse`] refuses a login mapped
/// twice (GitHub logins ignore case), which a map would have settled by keeping the last.
fn users<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Mappings;
    impl<'de> de::Visitor<'de> for Mappings {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of GitHub login to Okta login")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom(
                "`users` has no value (are all its entries commented out?): write its entries, or leave `users` out",
            ))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, String>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Mappings)
}

fn group_types<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GroupType>, D::Error> {
    present(d, "group_types")
}

fn rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Rule>, D::Error> {
    Option::<Vec<Rule>>::deserialize(d)?.ok_or_else(|| {
        de::Error::custom(
            "`rules` has no value (are all its rules commented out?): write them, or `rules: []` for none",
        )
    })
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
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

/// The commands Atlantis asks about at its first check only: they act on the whole pull
/// request (its locks, its queue), with no project for a rule's paths or the default to decide.
pub const PULL_REQUEST_WIDE: &[&str] = &["unlock", "cancel"];

/// The Okta group types (`type` of a group).
pub const GROUP_TYPES: &[&str] = &["OKTA_GROUP", "APP_GROUP", "BUILT_IN"];

/// One of the user's Okta groups, as Okta lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Okta's id (`00g…`).
    pub id: String,
    /// Its name (`profile.name`).
    pub name: String,
    /// Its type: `OKTA_GROUP`, `APP_GROUP` (pushed from an app or directory), `BUILT_IN`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (id {}, type {})", self.name, self.id, self.kind)
    }
}

/// Whether a policy's group entry is an Okta group id: `00g` and 17 letters or digits.
pub fn is_group_id(entry: &str) -> bool {
    entry.len() == 20
        && entry.starts_with("00g")
        && entry.chars().all(|c| c.is_ascii_alphanumeric())
}

/// An Okta group type, checked against [`GROUP_TYPES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupType(pub String);

impl<'de> Deserialize<'de> for GroupType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !GROUP_TYPES.contains(&s.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown Okta group type {s:?}; use one of {}",
                GROUP_TYPES.join(", ")
            )));
        }
        Ok(GroupType(s))
    }
}

fn okta_groups_only() -> Vec<GroupType> {
    vec![GroupType("OKTA_GROUP".into())]
}

fn nonempty_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let groups: Vec<String> = present(d, "groups")?;
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

/// How a GitHub login becomes an Okta user, and which of their groups a name matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Okta profile attribute holding the GitHub login (searched with `profile.<attr> eq "<login>"`).
    pub github_attribute: Option<String>,
    /// Explicit GitHub login → Okta login (or user id), in the file's order; checked first
    /// ([`Identity::okta_login`]).
    #[serde(default, deserialize_with = "users")]
    pub users: Vec<(String, String)>,
    /// The group types whose groups a policy's group *names* match (default: `OKTA_GROUP`);
    /// group ids match whatever the type.
    #[serde(default = "okta_groups_only", deserialize_with = "group_types")]
    pub group_types: Vec<GroupType>,
}

impl Identity {
    /// The Okta login explicitly mapped to a GitHub login, whatever its case.
    pub fn okta_login(&self, github_login: &str) -> Option<&String> {
        self.users
            .iter()
            .find(|(gh, _)| gh.eq_ignore_ascii_case(github_login))
            .map(|(_, okta)| okta)
    }
}

impl std::default::Default for Identity {
    fn default() -> Identity {
        Identity {
            github_attribute: None,
            users: Vec::new(),
            group_types: okta_groups_only(),
        }
    }
}

/// What happens when no rule matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Default {
    /// Groups allowed anything no rule covers; empty: deny.
    #[serde(default, deserialize_with = "allow_groups")]
    pub allow_groups: Vec<String>,
}

/// One rule: where it applies, and which groups it allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for messages and the audit log.
    pub name: String,
    /// `owner/repo` globs, case-insensitive as GitHub's names; absent: any repository.
    #[serde(default, deserialize_with = "repo_globs")]
    pub repos: Option<Vec<Pattern>>,
    /// `REPO_REL_PATH` globs; absent: any path.
    #[serde(default, deserialize_with = "path_globs")]
    pub paths: Option<Vec<Pattern>>,
    /// `PROJECT_NAME` globs; absent: any project. At the per-project check an unnamed project
    /// has the empty name, which `*` matches.
    #[serde(default, deserialize_with = "project_globs")]
    pub projects: Option<Vec<Pattern>>,
    /// Atlantis commands; absent: any command.
    #[serde(default, deserialize_with = "command_names")]
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
    #[serde(deserialize_with = "rules")]
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
    // Before serde_yaml_ng sees it: it would expand every alias in full.
    crate::yaml::refuse_aliases_and_depth(text).map_err(err)?;
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
            err(format!(
                "line {}: rule {:?}: {kind} glob {:?} can never match: {why}",
                rule_line(text, &r.name, &p.source),
                r.name,
                p.source
            ))
        };
        let named = |c: &str| r.commands.iter().flatten().any(|n| n.0 == c);
        if let Some(c) = PULL_REQUEST_WIDE.iter().find(|c| r.scoped() && named(c)) {
            return Err(err(format!(
                "line {}: rule {:?} names {c} but selects projects (paths or projects): {c} acts on the whole pull request, with no path or project, so this rule could never decide it; move {c} to a rule without paths and projects",
                rule_line(text, &r.name, c),
                r.name
            )));
        }
        if named("policy_check") && !named("plan") {
            return Err(err(format!(
                "line {}: rule {:?} names policy_check without plan: policy_check is judged exactly as plan (Atlantis drops a denied policy_check, so conftest would not run on a plan someone was allowed to make), so this rule could never decide it alone; add plan to its commands, or remove policy_check",
                rule_line(text, &r.name, "policy_check"),
                r.name
            )));
        }
        for p in r.repos.iter().flatten() {
            if let Some(why) = dead_repo_glob(&p.source) {
                return Err(never("repos", p, &why));
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
            // Exactly `.` is the repository's root, as REPO_REL_PATH normalises it.
            if p.source != "." && p.source.split('/').any(|s| s == ".." || s == ".") {
                return Err(never(
                    "paths",
                    p,
                    "paths are matched normalised, without . or .. segments (exactly \".\" is the repository's root)",
                ));
            }
            if p.source.ends_with('/') {
                return Err(never(
                    "paths",
                    p,
                    "paths are matched normalised, without a trailing / (write dir/** for a directory and everything under it)",
                ));
            }
            if p.source.contains("//") {
                return Err(never(
                    "paths",
                    p,
                    "paths are matched normalised, without empty segments (//)",
                ));
            }
        }
    }
    // Each login once, whatever its case: a set keyed by the lowercased login (comparing each
    // mapping with every earlier one took minutes for 72,000 logins).
    let mut mapped: std::collections::HashMap<String, &String> =
        std::collections::HashMap::with_capacity(policy.identity.users.len());
    for (login, okta) in &policy.identity.users {
        let Some(first) = mapped.insert(login.to_ascii_lowercase(), okta) else {
            continue;
        };
        return Err(err(format!(
            "line {}: GitHub login {login:?} is mapped twice in identity.users (to {first:?}, then to {okta:?}; GitHub logins ignore case): keep one mapping",
            second_key_line(text, login)
        )));
    }
    if policy.identity.github_attribute.is_none() && policy.identity.users.is_empty() {
        return Err(err("identity: set github_attribute (the Okta profile attribute with the GitHub login) or users (an explicit mapping)".into()));
    }
    if policy.identity.group_types.is_empty() {
        return Err(err(
            "identity.group_types is empty: no group would match by name (leave it out for OKTA_GROUP)".into(),
        ));
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

/// Why a repository glob can never match `owner/name` as GitHub spells them, if it cannot:
/// each alternative of its braces must be `**` or two `/`-separated parts of GitHub's name
/// characters (letters, digits, `-` `_` `.`) and glob characters.
fn dead_repo_glob(source: &str) -> Option<String> {
    let Some(alternatives) = glob::alternatives(source) else {
        return Some(format!(
            "it has more than {} alternatives, which are not checked: write several globs",
            glob::MAX_ALTERNATIVES
        ));
    };
    let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    for alt in alternatives {
        if alt == "**" {
            continue;
        }
        let outside = glob::classes_as_any(&alt);
        if let Some(c) = alt
            .chars()
            .find(|&c| !name(c) && !matches!(c, '*' | '?' | '[' | ']' | '!' | '^' | '/'))
            .or_else(|| {
                outside
                    .chars()
                    .find(|&c| !name(c) && !matches!(c, '*' | '?' | '/'))
            })
        {
            return Some(format!(
                "{c:?} is in no GitHub owner or repository name (letters, digits, - _ . and glob characters only)"
            ));
        }
        let parts = glob::parts(&alt);
        if parts.len() != 2 || parts.iter().any(String::is_empty) {
            return Some(format!(
                "repositories are owner/name, two parts with none empty (e.g. acme/infra-live, acme/*, or ** for any), and {alt:?} is not"
            ));
        }
    }
    None
}

/// The line (from 1) of the second place, after `users:`, where `login` (in any case) is written
/// as a key, in a block or a flow mapping; 0 when not found.
fn second_key_line(text: &str, login: &str) -> usize {
    let lower = text.to_ascii_lowercase();
    let key = login.to_ascii_lowercase();
    let from = lower.find("users:").unwrap_or(0);
    let bytes = lower.as_bytes();
    let is_key = |at: usize| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let starts = before.is_none_or(|b| b.is_ascii_whitespace() || b"{,\"'".contains(&b));
        let rest = lower[at + key.len()..].trim_start_matches(['"', '\'']);
        starts && rest.trim_start_matches([' ', '\t']).starts_with(':')
    };
    lower[from..]
        .match_indices(&key)
        .map(|(i, _)| from + i)
        .filter(|&at| is_key(at))
        .nth(1)
        .map_or(0, |at| 1 + lower[..at].matches('\n').count())
}

/// The line (from 1) of the first line holding `needle` from rule `name`'s `name:` line on; 0
/// when not found.
fn rule_line(text: &str, name: &str, needle: &str) -> usize {
    let name_line = text
        .lines()
        .position(|l| l.trim_start().trim_start_matches("- ").trim_end() == format!("name: {name}"))
        .unwrap_or(0);
    text.lines()
        .enumerate()
        .skip(name_line)
        .find(|(_, l)| l.contains(needle))
        .map_or(0, |(i, _)| i + 1)
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
    /// The user's group that allowed (None: denied).
    pub group: Option<Group>,
    /// One human line.
    pub reason: String,
}

/// Whether two optional lists may both apply to one request: either is absent (any), or some
/// entry of one matches some entry of the other (a heuristic for globs, exact for commands).
fn overlap(a: &Option<Vec<Pattern>>, b: &Option<Vec<Pattern>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|x| {
            b.iter()
                .any(|y| x.is_match(&y.source) || y.is_match(&x.source))
        }),
        _ => true,
    }
}

impl Policy {
    /// What `check-policy` warns about: a path glob of a rule that leaves part of its directory
    /// (the directory itself, or what lies deeper) to a later rule or the default, for the
    /// same repositories and commands. E.g. `live/*/*/prod/*` covers `live/1/r/prod/vpc` but
    /// not `live/1/r/prod` nor `live/1/r/prod/vpc/x`, where a later `live/**` would decide; and
    /// `live/*/*/prod` covers nothing below `prod` (warned even when nothing decides there: a
    /// pattern ending in a plain name is a directory tree written without `/**`). Judged on
    /// concrete paths (`glob::sample`: `live/*/*/prod/**/*` is tried on `live/x/x/prod`), never
    /// on the glob's own text, which it matches literally. And each rule that selects by project
    /// name, which the pull request's author chooses.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, a) in self.rules.iter().enumerate() {
            // What decides at `probe` when rule `a` does not: a later rule, the default.
            let decider = |probe: &str| {
                let later = self.rules[i + 1..].iter().find(|b| {
                    overlap(&a.repos, &b.repos)
                        && commands_overlap(&a.commands, &b.commands)
                        && b.paths
                            .as_ref()
                            .is_none_or(|ps| ps.iter().any(|p| p.is_match(probe)))
                });
                match later {
                    Some(b) => Some(format!("rule {:?} decides there", b.name)),
                    None if !self.default.allow_groups.is_empty() => {
                        Some("the default (which allows some groups) decides there".to_string())
                    }
                    None => None,
                }
            };
            let covered = |probe: &str| a.paths.iter().flatten().any(|p| p.is_match(probe));
            for g in a.paths.iter().flatten() {
                // Judged on concrete paths: each alternative's parts written as literals (a
                // glob matches its own text, so the text proves nothing).
                let Some(alternatives) = glob::alternatives(&g.source) else {
                    out.push(format!(
                        "rule {:?}: paths glob {:?} has more than {} alternatives: what it leaves to later rules is not checked",
                        a.name, g.source, glob::MAX_ALTERNATIVES
                    ));
                    continue;
                };
                for alt in alternatives {
                    let parts = glob::parts(&alt);
                    let (last, dir) = parts.split_last().expect("split yields a part");
                    // The directory as written, less a trailing `**` (its sample drops it: `**`
                    // may match no directory at all).
                    let mut shown = dir;
                    while let Some((l, rest)) = shown.split_last() {
                        if l != "**" {
                            break;
                        }
                        shown = rest;
                    }
                    let dir_text = shown.join("/");
                    let unchecked = || {
                        format!(
                            "rule {:?}: paths glob {:?}: no path it matches could be written out (a class that takes none of {:?}?), so what it leaves to later rules is not checked",
                            a.name, g.source, glob::CANDIDATES
                        )
                    };
                    // A path it matches, and one below that.
                    let (Some(whole), Some(dir_path)) = (glob::sample(&parts), glob::sample(dir))
                    else {
                        out.push(unchecked());
                        continue;
                    };
                    let below = match whole.as_str() {
                        "" | "." => "x".to_string(),
                        w => format!("{w}/x"),
                    };
                    if last == "**" {
                        // The directory itself (everything below it is covered).
                        if dir_path.is_empty() {
                            continue;
                        }
                        if !g.is_match(&below) {
                            out.push(unchecked());
                            continue;
                        }
                        if covered(&dir_path) {
                            continue;
                        }
                        if let Some(decider) = decider(&dir_path) {
                            out.push(format!(
                                "rule {:?}: paths glob {:?} does not cover the directory {dir_text} itself; {decider} (write {dir_text}/** for the directory and everything under it)",
                                a.name, g.source
                            ));
                        }
                        continue;
                    }
                    if !g.is_match(&whole) {
                        out.push(unchecked());
                        continue;
                    }
                    if !glob::is_pattern(last) {
                        // A plain name last: that directory only.
                        if covered(&below) {
                            continue;
                        }
                        let decider = match decider(&below) {
                            Some(d) => d,
                            None if alt.split('/').any(glob::is_pattern) => {
                                "no rule covers it, so the default denies there".to_string()
                            }
                            None => continue,
                        };
                        out.push(format!(
                            "rule {:?}: paths glob {:?} covers nothing below {}; {decider} (write {alt}/** for the directory and everything under it)",
                            a.name,
                            g.source,
                            if alt == g.source { "it".to_string() } else { alt.clone() }
                        ));
                        continue;
                    }
                    // A pattern last: neither the directory itself nor what lies deeper.
                    let (deeper, advice) = if dir_text.is_empty() {
                        (
                            "what lies deeper than the repository's top level".to_string(),
                            "write ** for everything".to_string(),
                        )
                    } else {
                        (
                            format!("what lies deeper under {dir_text}"),
                            format!(
                                "write {dir_text}/** for the directory and everything under it"
                            ),
                        )
                    };
                    let mut probes = vec![(below, deeper)];
                    if !dir_path.is_empty() {
                        probes.insert(0, (dir_path, format!("the directory {dir_text} itself")));
                    }
                    for (probe, what) in probes {
                        if covered(&probe) {
                            continue;
                        }
                        let Some(decider) = decider(&probe) else {
                            continue;
                        };
                        out.push(format!(
                            "rule {:?}: paths glob {:?} does not cover {what}; {decider} ({advice})",
                            a.name, g.source
                        ));
                    }
                }
            }
        }
        for r in &self.rules {
            let Some(ps) = &r.projects else { continue };
            if ps.iter().any(Pattern::matches_every_name) {
                continue;
            }
            let globs: Vec<&str> = ps.iter().map(|p| p.source.as_str()).collect();
            out.push(format!(
                "rule {:?} selects by project name ({globs:?}): PROJECT_NAME comes from the pull request's own atlantis.yaml, so its author can name a project to match this rule or to dodge it (an unnamed project's name is empty); select what must be protected by paths",
                r.name
            ));
        }
        out.dedup();
        out
    }

    /// Whether the group entry `entry` (of a rule's or the default's `groups`) names `g`: an id
    /// matches that group, a name matches a group of that name among `identity.group_types`.
    pub fn names(&self, entry: &str, g: &Group) -> bool {
        if is_group_id(entry) {
            g.id == entry
        } else {
            g.name == entry && self.identity.group_types.iter().any(|t| t.0 == g.kind)
        }
    }

    /// How a group entry is matched, for `check-policy`: `name (by name, OKTA_GROUP)`.
    pub fn describe_entry(&self, entry: &str) -> String {
        if is_group_id(entry) {
            format!("{entry} (by id)")
        } else {
            let types: Vec<&str> = self
                .identity
                .group_types
                .iter()
                .map(|t| t.0.as_str())
                .collect();
            format!("{entry} (by name, {})", types.join(" or "))
        }
    }

    /// The first of the user's groups that an entry of `allowed` names (in the policy's order).
    fn allowing(&self, allowed: &[String], groups: &[Group]) -> Option<Group> {
        allowed
            .iter()
            .find_map(|e| groups.iter().find(|g| self.names(e, g)))
            .cloned()
    }

    /// For a denial: the user's groups named like an entry of `allowed` that did not count
    /// because of their type.
    fn near_misses(&self, allowed: &[&String], groups: &[Group]) -> String {
        let near: Vec<String> = groups
            .iter()
            .filter(|g| {
                allowed
                    .iter()
                    .any(|e| !is_group_id(e) && g.name == **e && !self.names(e, g))
            })
            .map(|g| g.to_string())
            .collect();
        if near.is_empty() {
            return String::new();
        }
        let types: Vec<&str> = self
            .identity
            .group_types
            .iter()
            .map(|t| t.0.as_str())
            .collect();
        format!(
            "; the user's group {} does not count: names match {} groups only (name it by id, or add its type to identity.group_types)",
            near.join(", "),
            types.join(" or ")
        )
    }
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
    ///
    /// A rule with `paths` or `projects` never matches a [`PULL_REQUEST_WIDE`] command: those
    /// act on the whole pull request, with no path or project for it to judge ([`parse`]
    /// refuses such a rule that names one).
    pub fn matches(&self, req: &Request) -> bool {
        if self.scoped() && PULL_REQUEST_WIDE.contains(&req.command.as_str()) {
            return false;
        }
        let cl = req.command_level();
        any(&self.repos, Some(&req.repo), false)
            && any(&self.paths, req.path.as_deref(), cl)
            // A project named at the first check narrows it; none named: checked per project.
            && any(&self.projects, req.project.as_deref(), cl && req.project.is_none())
            && covers(&self.commands, &req.command)
    }
}

impl Rule {
    /// Whether it selects projects (by `paths` or `projects`).
    fn scoped(&self) -> bool {
        self.paths.is_some() || self.projects.is_some()
    }
}

/// Project paths (`REPO_REL_PATH`, normalised) tried at the first check to show that a project
/// can be left to the default: the root and a few depths.
const SAMPLE_PATHS: &[&str] = &[".", "x", "x/x", "x/x/x"];

/// Project names tried likewise: the unnamed project's, a name, one with `/`.
const SAMPLE_NAMES: &[&str] = &["", "x", "x/x"];

/// At the first check: a project (a path and a name; the name named at the check, if any)
/// that none of the `matching` rules would match at its own check, so that the default would
/// decide it. `None` when the rules cover every sample: the default is then not counted (it
/// might be counted wrongly only the other way, denying, never allowing, at the first check).
fn left_to_default(matching: &[&Rule], req: &Request) -> Option<Request> {
    let named = req.project.as_deref().map(|n| vec![n]);
    for path in SAMPLE_PATHS {
        for name in named.as_deref().unwrap_or(SAMPLE_NAMES) {
            let project = Request {
                path: Some(path.to_string()),
                project: Some(name.to_string()),
                ..req.clone()
            };
            if !matching.iter().any(|r| r.matches(&project)) {
                return Some(project);
            }
        }
    }
    None
}

/// The command a request is judged as: `policy_check` as `plan`. Atlantis drops a denied
/// `policy_check` entry, so conftest would not run on a plan the user was allowed to make and
/// apply's `policies_passed` requirement would count it as passed: whoever may plan a project
/// may have it checked, and nobody else ([`parse`] refuses a rule naming `policy_check`
/// without `plan`, which could never decide it alone).
pub fn judged_as(command: &str) -> &str {
    if command == "policy_check" {
        "plan"
    } else {
        command
    }
}

/// Whether a rule's `commands` (absent: any) cover `command`, judged as [`judged_as`] says.
pub fn covers(commands: &Option<Vec<CommandName>>, command: &str) -> bool {
    let judged = judged_as(command);
    commands
        .as_ref()
        .is_none_or(|cs| cs.iter().any(|c| c.0 == judged))
}

/// Whether some command asked about per project is covered by both lists ([`PULL_REQUEST_WIDE`]
/// ones have no path for a rule's `paths` to decide).
fn commands_overlap(a: &Option<Vec<CommandName>>, b: &Option<Vec<CommandName>>) -> bool {
    COMMANDS
        .iter()
        .filter(|c| !PULL_REQUEST_WIDE.contains(c))
        .any(|c| covers(a, c) && covers(b, c))
}

/// Decide, given the user's Okta groups.
///
/// Project level: the first matching rule decides. Command level: allowed when any matching rule
/// allows one of the user's groups, or when the default does and a project is shown to be left
/// to it (a sample path and name no matching rule matches; not for [`PULL_REQUEST_WIDE`]
/// commands, which have no projects); the project-level checks then narrow it down.
pub fn decide(policy: &Policy, req: &Request, groups: &[Group]) -> Decision {
    let mut d = judge(policy, req, groups);
    if !d.allowed && req.command == "policy_check" {
        d.reason.push_str(
            "; Atlantis drops a denied policy_check: conftest does not run on this project's plan (policy_check is judged as plan: whoever may plan here may have it checked)",
        );
    }
    d
}

fn judge(policy: &Policy, req: &Request, groups: &[Group]) -> Decision {
    let has = |allowed: &[String]| policy.allowing(allowed, groups);
    let matching: Vec<&Rule> = policy.rules.iter().filter(|r| r.matches(req)).collect();
    let what = match (&req.path, &req.project) {
        (Some(p), _) => format!("{} on {} path {p}", req.command, req.repo),
        (None, Some(p)) => format!("{} on {} project {p}", req.command, req.repo),
        (None, None) => format!("{} on {}", req.command, req.repo),
    };
    if req.command_level() {
        let per_project = !PULL_REQUEST_WIDE.contains(&req.command.as_str());
        let again = if per_project {
            " (each project is checked again)"
        } else {
            ""
        };
        if let Some((rule, g)) = matching.iter().find_map(|r| has(&r.groups).map(|g| (r, g))) {
            return Decision {
                allowed: true,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may {what}: rule {:?} allows group {g}{}",
                    req.user, rule.name, again
                ),
                group: Some(g),
            };
        }
        if let Some(first) = matching.first() {
            // The default decides the projects no rule covers; it counts here only where a
            // project is shown to be left to it.
            let left = left_to_default(&matching, req);
            let by_default = has(&policy.default.allow_groups);
            if let (Some(_), Some(g), true) = (&left, &by_default, per_project) {
                return Decision {
                    allowed: true,
                    rule: None,
                    reason: format!(
                        "{} may {what}: no rule for it allows the user's groups, but the default allows group {g} wherever no rule decides{again}",
                        req.user
                    ),
                    group: by_default,
                };
            }
            let mut needed: Vec<&String> = Vec::new();
            for g in matching.iter().flat_map(|r| &r.groups) {
                if !needed.contains(&g) {
                    needed.push(g);
                }
            }
            let unreached = match (left, by_default, per_project) {
                (None, Some(_), true) => format!(
                    " (the default, which allows one of them, never decides here: the rules for {} cover every project)",
                    req.command
                ),
                _ => String::new(),
            };
            return Decision {
                allowed: false,
                rule: Some(first.name.clone()),
                reason: format!(
                    "{} may not {what}: not in any of the groups {needed:?} that rules allow{unreached}{}",
                    req.user,
                    policy.near_misses(&needed, groups)
                ),
                group: None,
            };
        }
    } else if let Some(rule) = matching.first() {
        return match has(&rule.groups) {
            Some(g) => Decision {
                allowed: true,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may {what}: rule {:?} allows group {g}",
                    req.user, rule.name
                ),
                group: Some(g),
            },
            None => Decision {
                allowed: false,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "{} may not {what}: rule {:?} needs one of the groups {:?}{}",
                    req.user,
                    rule.name,
                    rule.groups,
                    policy.near_misses(&rule.groups.iter().collect::<Vec<_>>(), groups)
                ),
                group: None,
            },
        };
    }
    match has(&policy.default.allow_groups) {
        Some(g) => Decision {
            allowed: true,
            rule: None,
            reason: format!(
                "{} may {what}: no rule matches and the default allows group {g}",
                req.user
            ),
            group: Some(g),
        },
        None => Decision {
            allowed: false,
            rule: None,
            reason: format!(
                "{} may not {what}: no rule matches and the default denies",
                req.user
            ),
            group: None,
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
    commands: [apply, state]
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

    /// `OKTA_GROUP`s named `g`, or `TYPE:name`.
    fn groups(g: &[&str]) -> Vec<Group> {
        g.iter()
            .enumerate()
            .map(|(i, s)| {
                let (kind, name) = s.split_once(':').unwrap_or(("OKTA_GROUP", s));
                Group {
                    id: format!("00g{i:017}"),
                    name: name.into(),
                    kind: kind.into(),
                }
            })
            .collect()
    }

    #[test]
    fn names_match_okta_groups_and_ids_match_any_group() {
        let p = parse("policy.yaml", POLICY).unwrap();
        let prod = req("apply", Some("live/1/eu-west-1/prod/db"));
        // (the user's groups, allowed)
        let cases = [
            (groups(&["infra-prod-admins"]), true),
            (groups(&["APP_GROUP:infra-prod-admins"]), false),
            (groups(&["BUILT_IN:infra-prod-admins"]), false),
            (
                groups(&["engineering", "APP_GROUP:infra-prod-admins"]),
                false,
            ),
        ];
        for (g, allowed) in cases {
            let d = decide(&p, &prod, &g);
            assert_eq!(d.allowed, allowed, "{g:?}: {}", d.reason);
        }
        let d = decide(&p, &prod, &groups(&["APP_GROUP:infra-prod-admins"]));
        assert!(
            d.reason.contains("APP_GROUP") && d.reason.contains("by id"),
            "{}",
            d.reason
        );

        // By id: that group, whatever its type; a group *named* like an id does not match.
        let id = "00g00000000000000001";
        let by_id = parse(
            "p.yaml",
            &POLICY.replace("[infra-prod-admins]", &format!("[{id}]")),
        )
        .unwrap();
        let app = groups(&["engineering", "APP_GROUP:x"]);
        let d = decide(&by_id, &prod, &app);
        assert!(d.allowed, "{}", d.reason);
        assert_eq!(d.group.as_ref().map(|g| g.id.as_str()), Some(id));
        let named_like_the_id = vec![Group {
            id: "00gother0000000000000".into(),
            name: id.into(),
            kind: "OKTA_GROUP".into(),
        }];
        assert!(!decide(&by_id, &prod, &named_like_the_id).allowed);

        // Opting in another type by name.
        let both = parse(
            "p.yaml",
            &POLICY.replace(
                "github_attribute: githubUsername",
                "github_attribute: githubUsername\n  group_types: [OKTA_GROUP, APP_GROUP]",
            ),
        )
        .unwrap();
        assert!(decide(&both, &prod, &groups(&["APP_GROUP:infra-prod-admins"])).allowed);
        assert!(!decide(&both, &prod, &groups(&["BUILT_IN:infra-prod-admins"])).allowed);
        for bad in ["group_types: []", "group_types: [GROUP]"] {
            let text = POLICY.replace(
                "github_attribute: githubUsername",
                &format!("github_attribute: githubUsername\n  {bad}"),
            );
            assert!(parse("p.yaml", &text).is_err(), "{bad}");
        }
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
    fn a_directory_glob_covers_the_directory_itself() {
        let p = parse("policy.yaml", POLICY).unwrap();
        let eng = groups(&["engineering"]);
        // (path, deciding rule): the prod directory itself is prod.
        for (path, rule) in [
            ("live/1/us-east-1/prod", "prod-apply"),
            ("live/1/us-east-1/prod/vpc", "prod-apply"),
            ("live/1/us-east-1/production", "nonprod-apply"),
            ("live/1/us-east-1/staging", "nonprod-apply"),
            ("live", "nonprod-apply"),
        ] {
            let d = decide(&p, &req("apply", Some(path)), &eng);
            assert_eq!(d.rule.as_deref(), Some(rule), "{path}: {}", d.reason);
        }
    }

    #[test]
    fn check_policy_warns_when_a_glob_leaves_part_of_its_directory_to_a_later_rule() {
        assert_eq!(
            parse("p.yaml", POLICY).unwrap().warnings(),
            Vec::<String>::new()
        );
        let one_level = POLICY.replace("live/*/*/prod/**", "live/*/*/prod/*");
        let w = parse("p.yaml", &one_level).unwrap().warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("\"prod-apply\"")
                && w[0].contains("does not cover the directory live/*/*/prod itself;")
                && w[0].contains("\"nonprod-apply\" decides"),
            "{w:?}"
        );
        // Not when the later rule is for other commands or repositories.
        let other_commands = one_level.replace("commands: [apply, state]", "commands: [state]");
        assert!(parse("p.yaml", &other_commands)
            .unwrap()
            .warnings()
            .is_empty());
        let other_repos = one_level.replace(
            "    repos: [\"acme/*\"]\n    paths: [\"live/**\"]",
            "    repos: [\"other/*\"]\n    paths: [\"live/**\"]",
        );
        assert!(parse("p.yaml", &other_repos).unwrap().warnings().is_empty());
        // The default decides when it allows someone.
        let by_default = format!("{}default: {{allow_groups: [engineering]}}\n", one_level.replace("  - name: nonprod-apply\n    repos: [\"acme/*\"]\n    paths: [\"live/**\"]\n    commands: [apply, state]\n    groups: [engineering]\n", ""));
        let w = parse("p.yaml", &by_default).unwrap().warnings();
        assert!(w.iter().any(|w| w.contains("the default")), "{w:?}");
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
            ("identity: {github_attribute: gh}\nrules:\n  - name: a\n    commands: [approve_policies,\n      policy_check]\n    groups: [x]\n", 5, "without plan"),
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
            ("paths", ".", false),
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

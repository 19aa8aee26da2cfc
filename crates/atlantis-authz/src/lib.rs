//! atlantis-authz: the command Atlantis runs (server-side repo config `team_authz`) to decide
//! whether a user may run a command on a project, from Okta group membership.
//!
//! `request` checks what Atlantis asks before anything else (pure); `yaml` refuses a policy
//! holding YAML aliases or deep nesting (pure); `glob` takes a glob's text apart, so that the policy's checks
//! judge globs by what they match (pure); `policy` parses the rules and decides (pure); `okta`
//! asks Okta who the user is and which groups they are in; `cache` keeps those answers briefly
//! on disk, keyed by everything that decides them; `files` reads and appends files without
//! ever blocking; `cli` is the command line; `run` ties them together and fails closed: only
//! an allow prints `pass`.

pub mod cache;
pub mod cli;
pub mod files;
mod glob;
pub mod okta;
pub mod policy;
pub mod request;
pub mod run;
pub mod yaml;

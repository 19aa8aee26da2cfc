//! atlantis-authz invoked exactly as Atlantis does (`sh -c` with arguments and environment)
//! against a fake Okta HTTP server; `adversarial` attacks it that way (issue #27), with a second
//! fake Okta as the attacker's host.

mod adversarial;
mod atlantis;
mod edges;
mod okta;
mod properties;

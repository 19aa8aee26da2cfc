//! atlantis-authz invoked exactly as Atlantis does (`sh -c` with arguments and environment)
//! against a fake Okta HTTP server.

mod adversarial;
mod atlantis;
mod edges;
mod okta;

//! The Okta Users API: find the user behind a GitHub login, then list their groups, following
//! `Link: <…>; rel="next"` pagination. Every call has a timeout; a 429 waits for
//! `X-Rate-Limit-Reset` when that fits in the budget; auth is an API token (`SSWS`) or OAuth 2.0
//! client credentials with a private-key JWT.
//!
//! Only the configured org is trusted: every request (the OAuth token request and every `next`
//! page included) must go to its scheme, host and port, or it is not sent; redirects are not
//! followed (a 3xx is an error that names it); the org URL is https (plain http only to a
//! loopback address, for tests, with [`org_url`]'s `allow_http`); no answer is read past
//! [`MAX_BODY`].

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, LINK, LOCATION};
use reqwest::{Client, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::policy::{Group, Identity};
use crate::request::shown;

/// The most of one Okta answer that is read (a page of 200 groups is a few hundred KiB).
pub const MAX_BODY: usize = 2 << 20;

/// Why Okta could not answer; every variant denies.
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// The GitHub login maps to no Okta user.
    #[error("no Okta user for GitHub login {0:?}")]
    UnknownUser(String),
    /// The GitHub login maps to several Okta users.
    #[error("{count} Okta users match GitHub login {login:?}; make the attribute unique or map the login in identity.users")]
    Ambiguous {
        /// The login.
        login: String,
        /// How many matched.
        count: usize,
    },
    /// The user exists but is not active (or Okta gave no status).
    #[error("Okta user {login:?} is not ACTIVE ({status})")]
    Inactive {
        /// The Okta login.
        login: String,
        /// Okta's status, or `no status`.
        status: String,
    },
    /// A login that cannot safely go into an Okta search expression.
    #[error("GitHub login {0:?} has characters a GitHub login cannot have")]
    BadLogin(String),
    /// Okta did not answer within the time allowed.
    #[error("Okta did not answer within {0:?}")]
    Timeout(Duration),
    /// Okta kept answering 429 beyond the budget.
    #[error("Okta rate limit: reset is {0:?} away, beyond the time allowed")]
    RateLimited(Duration),
    /// Okta could not be reached or answered an error.
    #[error("Okta is unavailable: {0}")]
    Unavailable(String),
    /// Okta answered 404 Not Found.
    #[error("Okta has no such resource")]
    NotFound,
    /// Okta refused our credentials.
    #[error("Okta refused the credentials (HTTP {0}); check OKTA_API_TOKEN or the OAuth client")]
    Unauthorized(u16),
    /// An answer that points away from the org (a redirect, a `next` link to another host) or
    /// is larger than [`MAX_BODY`]: not followed, not read.
    #[error("Okta's answer is not trusted: {0}")]
    Untrusted(String),
}

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: SSWS <token>`.
    ApiToken(String),
    /// OAuth 2.0 client credentials with a private-key JWT (`private_key_jwt`).
    PrivateKeyJwt {
        /// The OAuth app's client id.
        client_id: String,
        /// Its private key, PEM (RSA).
        pem: Vec<u8>,
        /// The key id (`kid`) registered with the app, if any.
        key_id: Option<String>,
    },
}

/// An Okta client bound to one org.
pub struct Okta {
    base: Url,
    http: Client,
    auth: Auth,
    bearer: Option<String>,
    deadline: Instant,
    call_timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    status: Option<String>,
    profile: Profile,
}

#[derive(Debug, Deserialize)]
struct Profile {
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OktaGroup {
    id: String,
    /// Okta always sends it; a group without one matches no name.
    #[serde(rename = "type", default)]
    kind: String,
    profile: GroupProfile,
}

#[derive(Debug, Deserialize)]
struct GroupProfile {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Token {
    access_token: String,
}

#[derive(serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (url, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
                .then(|| {
                    url.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
}

/// The Okta org URL as given (`--okta-url`): `https://<host>[:port]` and nothing more. Plain
/// `http` only when `allow_http` and only to a loopback address (127.0.0.0/8, `[::1]`): the fake
/// Okta of a test; a name is not resolved to find out. The `Err` is a line for the user.
pub fn org_url(url: &str, allow_http: bool) -> Result<Url, String> {
    let u = Url::parse(url).map_err(|e| format!("--okta-url {} is not a URL: {e}", shown(url)))?;
    let extra = !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !matches!(u.path(), "" | "/");
    if extra || u.host_str().is_none() {
        return Err(format!(
            "--okta-url {} must be the org URL alone, like https://acme.okta.com",
            shown(url)
        ));
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if allow_http => {
            let host = u.host_str().unwrap_or("");
            let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
            if ip.is_ok_and(|ip| ip.is_loopback()) {
                Ok(u)
            } else {
                Err(format!(
                    "--okta-url {}: Okta is asked over https; --okta-allow-http allows plain http to a loopback address only (127.0.0.0/8 or [::1]), not {host:?}",
                    shown(url)
                ))
            }
        }
        "http" => Err(format!(
            "--okta-url {}: Okta is asked over https only (plain http is for tests against a loopback address, with --okta-allow-http)",
            shown(url)
        )),
        _ => Err(format!(
            "--okta-url {} is not an https URL",
            shown(url)
        )),
    }
}

/// Read a whole answer, refusing one larger than [`MAX_BODY`] before or while it arrives.
async fn body(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, OktaError> {
    let too_big = || {
        OktaError::Untrusted(format!(
            "the {what} answer is larger than {} MiB; not read",
            MAX_BODY >> 20
        ))
    };
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len().saturating_add(chunk.len()) > MAX_BODY {
                    return Err(too_big());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) if e.is_timeout() => {
                return Err(OktaError::Unavailable(format!(
                    "the {what} answer did not arrive in time"
                )))
            }
            Err(e) => return Err(OktaError::Unavailable(format!("{what} answer: {e}"))),
        }
    }
}

/// Read and parse a JSON answer (at most [`MAX_BODY`]).
async fn json<T: DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T, OktaError> {
    let bytes = body(resp, what).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OktaError::Unavailable(format!("{what} answer: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Okta {
    /// A client for the org at `base` (from [`org_url`]), finishing by `deadline`, each call
    /// bounded by `call_timeout`. It follows no redirect, and speaks https only unless `base`
    /// is plain http (which [`org_url`] allows for a loopback test only).
    pub fn new(
        base: Url,
        auth: Auth,
        deadline: Instant,
        call_timeout: Duration,
    ) -> Result<Okta, OktaError> {
        let http = Client::builder()
            .connect_timeout(call_timeout)
            .timeout(call_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(base.scheme() == "https")
            .user_agent(concat!("atlantis-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OktaError::Unavailable(e.to_string()))?;
        Ok(Okta {
            base,
            http,
            auth,
            bearer: None,
            deadline,
            call_timeout,
        })
    }

    /// `path_and_query` on the org, e.g. `/api/v1/users?search=…`.
    fn at(&self, path_and_query: &str) -> Result<Url, OktaError> {
        self.on_org(path_and_query, "a request")
    }

    /// `url` (absolute, or relative to the org) when it is on the org's scheme, host and port.
    fn on_org(&self, url: &str, what: &str) -> Result<Url, OktaError> {
        let u = self.base.join(url).map_err(|e| {
            OktaError::Untrusted(format!("{what} to {} is not a URL: {e}", shown(url)))
        })?;
        let same = u.scheme() == self.base.scheme()
            && u.host_str() == self.base.host_str()
            && u.port_or_known_default() == self.base.port_or_known_default();
        if !same {
            return Err(OktaError::Untrusted(format!(
                "{what} to {} is not on the Okta org {}; not followed",
                shown(url),
                self.base.as_str().trim_end_matches('/')
            )));
        }
        Ok(u)
    }

    async fn authorization(&mut self) -> Result<String, OktaError> {
        match &self.auth {
            Auth::ApiToken(t) => Ok(format!("SSWS {t}")),
            Auth::PrivateKeyJwt {
                client_id,
                pem,
                key_id,
            } => {
                if let Some(b) = &self.bearer {
                    return Ok(b.clone());
                }
                let token_url = self.at("/oauth2/v1/token")?;
                let now = unix_now();
                let claims = Assertion {
                    iss: client_id,
                    sub: client_id,
                    aud: token_url.as_str(),
                    iat: now,
                    exp: now.saturating_add(300),
                    jti: format!("{:032x}", rand::random::<u128>()),
                };
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|e| {
                    OktaError::Unavailable(format!(
                        "the OAuth private key is not an RSA PEM key: {e}"
                    ))
                })?;
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = key_id.clone();
                let assertion = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| {
                    OktaError::Unavailable(format!("cannot sign the client assertion: {e}"))
                })?;
                let form = [
                    ("grant_type", "client_credentials"),
                    ("scope", "okta.users.read okta.groups.read"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ];
                let req = self.http.post(token_url).form(&form);
                let resp = self.send(req).await?;
                let token: Token = json(resp, "token").await?;
                let bearer = format!("Bearer {}", token.access_token);
                self.bearer = Some(bearer.clone());
                Ok(bearer)
            }
        }
    }

    /// Send, waiting out 429s while the budget allows; map failures.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, OktaError> {
        let mut attempt = 0u32;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OktaError::Timeout(self.call_timeout));
            }
            // None only for a request that could not be built (a header value no header can
            // hold): an error, never a panic, and the value is not shown (it may be a secret).
            let r = req
                .try_clone()
                .ok_or_else(|| {
                    OktaError::Unavailable(
                        "the request could not be built (a credential holds a character no HTTP header can)".into(),
                    )
                })?
                .timeout(left.min(self.call_timeout));
            let resp = match r.send().await {
                Ok(resp) => resp,
                Err(e) if e.is_timeout() => {
                    return Err(OktaError::Timeout(left.min(self.call_timeout)))
                }
                Err(e) => return Err(OktaError::Unavailable(e.to_string())),
            };
            match resp.status() {
                s if s.is_success() => return Ok(resp),
                s if s.is_redirection() => {
                    let to = resp
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nowhere");
                    return Err(OktaError::Untrusted(format!(
                        "a redirect (HTTP {s} to {}) is not followed",
                        shown(to)
                    )));
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let reset = resp
                        .headers()
                        .get("x-rate-limit-reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or_else(|| unix_now().saturating_add(1));
                    // Any reset, even u64::MAX: compared with what is left, never added.
                    let wait = Duration::from_secs(reset.saturating_sub(unix_now()))
                        .max(Duration::from_millis(200));
                    if wait >= self.deadline.saturating_duration_since(Instant::now()) {
                        return Err(OktaError::RateLimited(wait));
                    }
                    tokio::time::sleep(wait).await;
                }
                s if s.is_server_error() && attempt < 2 => {
                    attempt += 1;
                    let wait = Duration::from_millis(200 * u64::from(attempt));
                    if wait >= self.deadline.saturating_duration_since(Instant::now()) {
                        return Err(OktaError::Unavailable(format!("HTTP {s}")));
                    }
                    tokio::time::sleep(wait).await;
                }
                StatusCode::NOT_FOUND => return Err(OktaError::NotFound),
                s if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
                    return Err(OktaError::Unauthorized(s.as_u16()))
                }
                s => return Err(OktaError::Unavailable(format!("HTTP {s}"))),
            }
        }
    }

    async fn get(&mut self, url: Url) -> Result<reqwest::Response, OktaError> {
        let auth = self.authorization().await?;
        let req = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .header("accept", "application/json");
        self.send(req).await
    }

    /// The Okta user id of a GitHub login.
    pub async fn find_user(
        &mut self,
        identity: &Identity,
        login: &str,
    ) -> Result<String, OktaError> {
        if login.is_empty()
            || !login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(OktaError::BadLogin(login.to_string()));
        }
        let users: Vec<User> = if let Some(okta_login) = identity.okta_login(login) {
            let url = self.at(&format!("/api/v1/users/{}", urlencode(okta_login)))?;
            match self.get(url).await {
                Ok(r) => vec![json(r, "user").await?],
                Err(OktaError::NotFound) => Vec::new(),
                Err(e) => return Err(e),
            }
        } else if let Some(attr) = &identity.github_attribute {
            let search = format!("profile.{attr} eq \"{login}\"");
            let url = self.at(&format!("/api/v1/users?search={}", urlencode(&search)))?;
            let resp = self.get(url).await?;
            json(resp, "user search").await?
        } else {
            Vec::new()
        };
        match users.as_slice() {
            [] => Err(OktaError::UnknownUser(login.to_string())),
            // Only a user Okta says is ACTIVE: no status is not a status.
            [u] => match u.status.as_deref() {
                Some("ACTIVE") => Ok(u.id.clone()),
                other => Err(OktaError::Inactive {
                    login: u.profile.login.clone().unwrap_or_else(|| login.to_string()),
                    status: other.map_or("no status".to_string(), |s| s.to_string()),
                }),
            },
            many => Err(OktaError::Ambiguous {
                login: login.to_string(),
                count: many.len(),
            }),
        }
    }

    /// The user's groups (id, name, type), every page.
    pub async fn groups(&mut self, user_id: &str) -> Result<Vec<Group>, OktaError> {
        let mut url = Some(self.at(&format!(
            "/api/v1/users/{}/groups?limit=200",
            urlencode(user_id)
        ))?);
        let mut names = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > 100 {
                return Err(OktaError::Unavailable(
                    "more than 100 pages of groups".into(),
                ));
            }
            let resp = match self.get(u).await {
                Err(OktaError::NotFound) => {
                    return Err(OktaError::UnknownUser(user_id.to_string()))
                }
                r => r?,
            };
            url = next_link(resp.headers())
                .map(|next| self.on_org(&next, "a Link rel=\"next\""))
                .transpose()?;
            let page: Vec<OktaGroup> = json(resp, "groups").await?;
            names.extend(page.into_iter().map(|g| Group {
                id: g.id,
                name: g.profile.name,
                kind: g.kind,
            }));
        }
        Ok(names)
    }
}

/// Percent-encode a path segment or query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_links_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://o/api/v1/users/1/groups?limit=2>; rel=\"self\""),
        );
        h.append(
            LINK,
            HeaderValue::from_static(
                "<https://o/api/v1/users/1/groups?after=x&limit=2>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://o/api/v1/users/1/groups?after=x&limit=2")
        );
        let mut one = HeaderMap::new();
        one.insert(
            LINK,
            HeaderValue::from_static("<https://a>; rel=\"self\", <https://b>; rel=\"next\""),
        );
        assert_eq!(next_link(&one).as_deref(), Some("https://b"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn the_org_url_is_https_or_a_loopback_test() {
        // (url, allow_http, accepted)
        let cases = [
            ("https://acme.okta.com", false, true),
            ("https://acme.okta.com/", false, true),
            ("https://acme.okta.com:8443", false, true),
            ("http://acme.okta.com", false, false),
            ("http://acme.okta.com", true, false),
            ("http://127.0.0.1:8080", false, false),
            ("http://127.0.0.1:8080", true, true),
            ("http://[::1]:8080", true, true),
            ("http://localhost:8080", true, false),
            ("https://acme.okta.com/api", false, false),
            ("https://acme.okta.com/?x=1", false, false),
            ("https://user:pw@acme.okta.com", false, false),
            ("ftp://acme.okta.com", true, false),
            ("acme.okta.com", false, false),
        ];
        for (url, allow_http, accepted) in cases {
            assert_eq!(
                org_url(url, allow_http).is_ok(),
                accepted,
                "{url} (allow_http {allow_http}): {:?}",
                org_url(url, allow_http)
            );
        }
    }

    #[test]
    fn only_urls_on_the_org_are_followed() {
        let okta = Okta::new(
            org_url("https://acme.okta.com", false).unwrap(),
            Auth::ApiToken("t".into()),
            Instant::now(),
            Duration::from_secs(1),
        )
        .unwrap();
        // (url, followed)
        let cases = [
            ("https://acme.okta.com/api/v1/users/1/groups?after=x", true),
            ("https://acme.okta.com:443/api/v1/users/1/groups", true),
            ("/api/v1/users/1/groups?after=x", true),
            ("http://acme.okta.com/api/v1/users/1/groups", false),
            ("https://acme.okta.com:8443/api/v1/users/1/groups", false),
            ("https://evil.example/api/v1/users/1/groups", false),
            (
                "https://acme.okta.com.evil.example/api/v1/users/1/groups",
                false,
            ),
            ("//evil.example/api/v1/users/1/groups", false),
        ];
        for (url, followed) in cases {
            assert_eq!(okta.on_org(url, "a link").is_ok(), followed, "{url}");
        }
    }

    #[test]
    fn search_values_are_encoded() {
        assert_eq!(
            urlencode("profile.gh eq \"a-b\""),
            "profile.gh%20eq%20%22a-b%22"
        );
    }
}

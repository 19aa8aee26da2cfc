//! Secrets in what eipool prints: a URL's password never reaches a log line or an error message.

/// `url` with the password of its user-info replaced by `***` (`redis://user:***@host:6379`); a
/// user-info without a `:` is all secret (`redis://***@host`, an AUTH token given as the user).
/// Works on strings that do not parse as URLs too (a raw `#` or `/` in the password), which is
/// when the error message needs it most: everything up to the last `@` is user-info.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_bare(url);
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

/// Without a scheme there is no telling a host from a secret: show only that something was given.
fn redact_bare(s: &str) -> String {
    if s.contains('@') {
        "<a value with '@' (redacted)>".to_string()
    } else {
        s.to_string()
    }
}

/// Characters that cut a URL's password short unless percent-encoded, with their encoding.
pub(crate) const URL_RESERVED: &[(char, &str)] = &[
    ('#', "%23"),
    ('/', "%2F"),
    ('?', "%3F"),
    ('@', "%40"),
    (':', "%3A"),
    ('%', "%25"),
];

/// The hint for a URL that did not parse: percent-encode the password's reserved characters.
pub(crate) fn percent_encoding_hint() -> String {
    let pairs: Vec<String> = URL_RESERVED
        .iter()
        .map(|(c, enc)| format!("{c} as {enc}"))
        .collect();
    format!(
        "if the user name or password contains reserved characters, percent-encode them ({})",
        pairs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_survives() {
        for (given, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "rediss://user:s3cret@host:6379/0",
                "rediss://user:***@host:6379/0",
            ),
            ("redis://:s3cret@host:6379", "redis://:***@host:6379"),
            ("redis://tok3n@host", "redis://***@host"),
            // A raw '#', '/', '?' or '@' in the password: the URL does not parse, the redaction still holds.
            ("redis://user:pa#ss@host:6379", "redis://user:***@host:6379"),
            ("redis://user:pa/ss@host:6379", "redis://user:***@host:6379"),
            ("redis://user:p@ss@host:6379", "redis://user:***@host:6379"),
            ("http://user:pw@host", "http://user:***@host"),
            ("user:pw@host:6379", "<a value with '@' (redacted)>"),
            ("host:6379", "host:6379"),
        ] {
            let got = redact_url(given);
            assert_eq!(got, shown, "{given}");
            assert!(!got.contains("s3cret") && !got.contains("pa#ss") && !got.contains("tok3n"));
        }
    }

    #[test]
    fn the_hint_names_each_reserved_character() {
        let hint = percent_encoding_hint();
        for (c, enc) in URL_RESERVED {
            assert!(hint.contains(&format!("{c} as {enc}")), "{hint}");
        }
    }
}

//! A glob's text taken apart, for the checks that judge a policy by what its globs match rather
//! than by how they are spelled: its alternatives (`{a,b}` expanded), its `/`-separated parts,
//! and a concrete value it matches (each part written as a literal). The syntax is globset's
//! (`*`, `?`, `[…]`, `[!…]`, `{…,…}` nested, `\` escapes, `**` as a whole part); every sample
//! is checked against the compiled glob by its callers, so a misreading here shows as a sample
//! that does not match, never as a silent pass. Pure: no I/O.

/// The most alternatives a glob is expanded into.
pub(crate) const MAX_ALTERNATIVES: usize = 64;

/// The index just past the class opening at `open` (`s[open] == '['`), as globset reads it: an
/// optional `!` or `^`, then a first `]` taken literally, then up to the next `]`. `None` when
/// it is not closed (globset refuses that).
fn class_end(s: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(s.get(i), Some('!' | '^')) {
        i += 1;
    }
    if s.get(i) == Some(&']') {
        i += 1;
    }
    while i < s.len() {
        if s[i] == ']' {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The glob with every `{…,…}` expanded (nested ones included), in order; `None` when there
/// would be more than [`MAX_ALTERNATIVES`] or the braces do not pair up.
pub(crate) fn alternatives(glob: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = Vec::new();
    expand(&chars, &mut out)?;
    Some(out)
}

fn expand(s: &[char], out: &mut Vec<String>) -> Option<()> {
    // The first `{` outside a class or an escape, its matching `}`, and the top-level commas
    // between them.
    let mut i = 0;
    let mut open = None;
    let mut depth = 0usize;
    let mut commas = Vec::new();
    while i < s.len() {
        match s[i] {
            '\\' => i += 1,
            '[' => {
                i = class_end(s, i)?;
                continue;
            }
            '{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            ',' if depth == 1 => commas.push(i),
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open?;
                    let mut bounds = vec![start];
                    bounds.extend(&commas);
                    bounds.push(i);
                    for w in bounds.windows(2) {
                        let mut next: Vec<char> = s[..start].to_vec();
                        next.extend(&s[w[0] + 1..w[1]]);
                        next.extend(&s[i + 1..]);
                        expand(&next, out)?;
                    }
                    return Some(());
                }
            }
            '}' => return None,
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return None;
    }
    if out.len() == MAX_ALTERNATIVES {
        return None;
    }
    out.push(s.iter().collect());
    Some(())
}

/// An alternative (no braces) cut at each `/` outside a class or an escape.
pub(crate) fn parts(alternative: &str) -> Vec<String> {
    let s: Vec<char> = alternative.chars().collect();
    let mut out = vec![String::new()];
    let mut i = 0;
    while i < s.len() {
        let end = match s[i] {
            '\\' => (i + 2).min(s.len()),
            '[' => class_end(&s, i).unwrap_or(i + 1),
            _ => i + 1,
        };
        if s[i] == '/' {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.extend(&s[i..end]);
        }
        i = end;
    }
    out
}

/// The alternative with each class (`[…]`) written as `?`: what is left outside them.
pub(crate) fn classes_as_any(alternative: &str) -> String {
    let s: Vec<char> = alternative.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' => {
                out.extend(&s[i..(i + 2).min(s.len())]);
                i += 2;
            }
            '[' => {
                let end = class_end(&s, i).unwrap_or(s.len());
                out.push('?');
                i = end;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether a part (of [`parts`]) holds anything but literal characters.
pub(crate) fn is_pattern(part: &str) -> bool {
    part.contains(['*', '?', '[', '\\'])
}

/// Characters tried for `?` and a class, in order.
pub(crate) const CANDIDATES: &str = "xa0_-.Az9";

/// A literal that `part` matches: `*` is written `x`, `?` and a class as the first of
/// [`CANDIDATES`] they accept, an escaped character as itself; `**` (a whole part) as nothing,
/// since it may match no directory at all. `None` when a class accepts none of the candidates.
fn literal(part: &str) -> Option<String> {
    if part == "**" {
        return Some(String::new());
    }
    let s: Vec<char> = part.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' => {
                if let Some(c) = s.get(i + 1) {
                    out.push(*c);
                }
                i += 2;
            }
            '*' => {
                out.push('x');
                i += 1;
            }
            '?' => {
                out.push('x');
                i += 1;
            }
            '[' => {
                let end = class_end(&s, i)?;
                let class: String = s[i..end].iter().collect();
                let matcher = globset::GlobBuilder::new(&class)
                    .literal_separator(true)
                    .build()
                    .ok()?
                    .compile_matcher();
                let c = CANDIDATES
                    .chars()
                    .find(|c| matcher.is_match(c.to_string()))?;
                out.push(c);
                i = end;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A concrete path the parts match, each written as a [`literal`] and `**` dropped; empty when
/// nothing is left (the repository's root).
pub(crate) fn sample(parts: &[String]) -> Option<String> {
    let mut kept = Vec::new();
    for p in parts {
        let l = literal(p)?;
        if !l.is_empty() || p != "**" {
            kept.push(l);
        }
    }
    Some(kept.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_expand_every_brace_group() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("live/*/prod/**", Some(&["live/*/prod/**"])),
            (
                "live/*/*/prod/{*,*/*}",
                Some(&["live/*/*/prod/*", "live/*/*/prod/*/*"]),
            ),
            ("{a,b{c,d}}/x", Some(&["a/x", "bc/x", "bd/x"])),
            ("*{,}", Some(&["*", "*"])),
            ("[{]a", Some(&["[{]a"])),
            ("\\{a,b\\}", Some(&["\\{a,b\\}"])),
            ("{a,b", None),
            ("{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}", None),
        ];
        for (glob, want) in cases {
            let got = alternatives(glob);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{glob}");
        }
    }

    #[test]
    fn samples_are_matched_by_their_glob() {
        // (glob, sample of the whole, parts)
        let cases = [
            ("live/*/*/prod/**/*", "live/x/x/prod/x", 6),
            ("live/*/*/prod/**/?", "live/x/x/prod/x", 6),
            ("a/[!xa0]/b", "a/_/b", 3),
            ("**", "", 1),
            ("a\\*b/c", "a*b/c", 2),
        ];
        for (glob, want, n) in cases {
            let p = parts(glob);
            assert_eq!(p.len(), n, "{glob}: {p:?}");
            let s = sample(&p).unwrap();
            assert_eq!(s, want, "{glob}");
            let m = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .unwrap()
                .compile_matcher();
            if !s.is_empty() {
                assert!(m.is_match(&s), "{glob} does not match {s}");
            }
        }
        assert_eq!(sample(&parts("[!xa0_.Az9-]")), None);
        // A class holding `/` stays within its part; no path matches it.
        assert_eq!(parts("a/[/]x"), ["a", "[/]x"]);
        assert_eq!(sample(&parts("a/[/]x")), None);
        assert_eq!(classes_as_any("a[!b]c/[]x]"), "a?c/?");
    }
}

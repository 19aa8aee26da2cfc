//! The policy's YAML checked before it is deserialized: no alias, no deep nesting.
//! serde_yaml_ng expands every alias (`*name`, `<<: *name`) in full, so a file far under the
//! size cap can stand for tens of gigabytes (a large anchored value and many aliases to it);
//! and libyaml's scanner takes time in proportion to the nesting for each token, so 100,000
//! levels (`[[[…]]]`, 200 KB) take minutes, and the size cap allows about an hour. The check
//! runs the very parser serde_yaml_ng reads with (libyaml, `unsafe-libyaml`), so the two cannot
//! disagree about what is an alias, and it stops at the first value nested deeper than
//! [`MAX_DEPTH`], before the cost grows. Pure: no I/O.

use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_yaml;

/// The deepest nesting of sequences and mappings accepted. A policy needs five levels (the
/// document, `rules`, a rule, its `paths`); 64 leaves room and keeps the scan linear.
pub const MAX_DEPTH: usize = 64;

/// What the scan found first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// An alias, at this line and column (from 1).
    Alias(u64, u64),
    /// A sequence or mapping nested deeper than [`MAX_DEPTH`], starting here.
    TooDeep(u64, u64),
}

/// Refuse `text` if it holds an alias or nests deeper than [`MAX_DEPTH`]: `Err` says where
/// (`line N column M`) and what to do.
///
/// A document libyaml cannot parse is scanned up to its error: serde_yaml_ng, reading with the
/// same parser, sees no event past it either, and then refuses the document.
pub fn refuse_aliases_and_depth(text: &str) -> Result<(), String> {
    match first_refused(text) {
        Some(None) => Ok(()),
        Some(Some(Found::Alias(line, column))) => Err(format!(
            "line {line} column {column}: YAML aliases (*name, <<: *name) are not accepted in a policy: write the value out (each alias is expanded in full, so a few can stand for gigabytes)"
        )),
        Some(Some(Found::TooDeep(line, column))) => Err(format!(
            "line {line} column {column}: lists and maps nested deeper than {MAX_DEPTH} are not accepted in a policy (one needs five levels; reading deeper nesting takes time that grows with its square)"
        )),
        None => Err("the policy could not be checked for YAML aliases (libyaml did not start)".into()),
    }
}

/// The first alias, or value nested deeper than [`MAX_DEPTH`], if any; `None` if the parser
/// could not start.
fn first_refused(text: &str) -> Option<Option<Found>> {
    // libyaml's parser keeps pointers into itself and into `text`: it lives on the heap, is
    // not moved while in use, and is deleted before `text` can go.
    let mut parser = Box::new(MaybeUninit::<unsafe_yaml::yaml_parser_t>::uninit());
    let parser = parser.as_mut_ptr();
    // SAFETY: `parser` points to memory owned by the box above, initialised by
    // yaml_parser_initialize before any other use and deleted exactly once at the end; the
    // input outlives the parser; each event is read only after yaml_parser_parse filled it, and
    // deleted once, after its type and mark are copied out.
    unsafe {
        if unsafe_yaml::yaml_parser_initialize(parser).fail {
            return None;
        }
        unsafe_yaml::yaml_parser_set_encoding(parser, unsafe_yaml::YAML_UTF8_ENCODING);
        unsafe_yaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        let mut found = None;
        let mut depth = 0usize;
        loop {
            let mut event = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
            if unsafe_yaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break;
            }
            let event = event.as_mut_ptr();
            let kind = (*event).type_;
            let mark = (*event).start_mark;
            unsafe_yaml::yaml_event_delete(event);
            let at = (mark.line + 1, mark.column + 1);
            if kind == unsafe_yaml::YAML_ALIAS_EVENT {
                found = Some(Found::Alias(at.0, at.1));
                break;
            }
            if kind == unsafe_yaml::YAML_SEQUENCE_START_EVENT
                || kind == unsafe_yaml::YAML_MAPPING_START_EVENT
            {
                depth += 1;
                if depth > MAX_DEPTH {
                    found = Some(Found::TooDeep(at.0, at.1));
                    break;
                }
            }
            if kind == unsafe_yaml::YAML_SEQUENCE_END_EVENT
                || kind == unsafe_yaml::YAML_MAPPING_END_EVENT
            {
                depth = depth.saturating_sub(1);
            }
            if kind == unsafe_yaml::YAML_STREAM_END_EVENT {
                break;
            }
        }
        unsafe_yaml::yaml_parser_delete(parser);
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_found_where_libyaml_sees_them() {
        // (text, the first alias's line and column)
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            // (line, column) of an alias
            ("a: 1\n", None),
            ("a: &x [1]\n", None),
            ("a: &x [1]\nb: *x\n", Some((2, 4))),
            ("a: &x {k: v}\nb:\n  <<: *x\n", Some((3, 7))),
            ("paths: [\"live/*/*/prod/**\", live/*/x]\n", None),
            ("a: '*x'\nb: \"*y\"\nc: x*y\n", None),
            ("a: &x 1\nb: [*x, 2\n", Some((2, 5))),
            ("a: [\nb: *x\n", Some((2, 4))),
            // A syntax error before it: serde_yaml_ng never reaches it either.
            ("a: b: c\nd: &x 1\ne: *x\n", None),
            ("a: 1\n---\nb: &y 2\nc: *y\n", Some((4, 4))),
        ];
        for (text, want) in cases {
            let want = want.map(|(l, c)| Found::Alias(l, c));
            assert_eq!(first_refused(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_found_where_it_starts() {
        let nested = |n: usize| format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        // The document's mapping is one level: `a`'s value may nest MAX_DEPTH - 1 deep.
        assert_eq!(first_refused(&nested(MAX_DEPTH - 1)), Some(None));
        assert_eq!(
            first_refused(&nested(MAX_DEPTH)),
            Some(Some(Found::TooDeep(1, 4 + MAX_DEPTH as u64 - 1)))
        );
        let block = format!("a:\n{}x\n", "- ".repeat(MAX_DEPTH));
        assert_eq!(
            first_refused(&block),
            Some(Some(Found::TooDeep(2, 1 + 2 * (MAX_DEPTH as u64 - 1))))
        );
        // Siblings do not add up.
        let wide = format!("a: [{}]\n", vec!["[[1]]"; 1000].join(", "));
        assert_eq!(first_refused(&wide), Some(None));
    }
}

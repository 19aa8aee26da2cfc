//! The policy's YAML checked before it is deserialized: no alias. serde_yaml_ng expands every
//! alias (`*name`, `<<: *name`) in full, so a file far under the size cap can stand for tens of
//! gigabytes (a large anchored value and many aliases to it). The check runs the very parser
//! serde_yaml_ng reads with (libyaml, `unsafe-libyaml`), so the two cannot disagree about what
//! is an alias. Pure: no I/O.

use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_yaml;

/// Refuse `text` if it holds an alias: `Err` says where (`line N column M`) and what to do.
///
/// A document libyaml cannot parse is scanned up to its error: serde_yaml_ng, reading with the
/// same parser, sees no event past it either, and then refuses the document.
pub fn refuse_aliases(text: &str) -> Result<(), String> {
    match first_alias(text) {
        Some(None) => Ok(()),
        Some(Some((line, column))) => Err(format!(
            "line {line} column {column}: YAML aliases (*name, <<: *name) are not accepted in a policy: write the value out (each alias is expanded in full, so a few can stand for gigabytes)"
        )),
        None => Err("the policy could not be checked for YAML aliases (libyaml did not start)".into()),
    }
}

/// Line and column (from 1) of the first alias event, if any; `None` if the parser could not
/// start.
fn first_alias(text: &str) -> Option<Option<(u64, u64)>> {
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
        loop {
            let mut event = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
            if unsafe_yaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break;
            }
            let event = event.as_mut_ptr();
            let kind = (*event).type_;
            let mark = (*event).start_mark;
            unsafe_yaml::yaml_event_delete(event);
            if kind == unsafe_yaml::YAML_ALIAS_EVENT {
                found = Some((mark.line + 1, mark.column + 1));
                break;
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
            assert_eq!(first_alias(text), Some(*want), "{text:?}");
        }
    }
}

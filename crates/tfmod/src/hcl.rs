//! The `terraform { source = "…" }` of a `terragrunt.hcl`: found with hcl-edit's parser, and
//! rewritten by splicing only the string's bytes (its span), so every comment, blank line and
//! alignment stays as written. [`read_file`] reads what tfmod follows of a Terragrunt file: its
//! `include` blocks, its `locals`, and its `terraform { source }` as a small expression tree
//! ([`Expr`]) for the caller to evaluate. Pure: text in, text out.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::{Expression, TraversalOperator};
use hcl_edit::template::Element;
use hcl_edit::Span;

/// The file's module source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAttr {
    /// No `terraform { source }`: nothing for tfmod to do.
    Absent,
    /// A plain string literal, and where it is (quotes included).
    Literal { value: String, span: Range<usize> },
    /// An expression or interpolation: tfmod cannot know or pin its value.
    Computed,
}

/// Finds the top-level `terraform` block's `source` attribute. The error is hcl-edit's message
/// (line and column).
pub fn find_source(text: &str) -> Result<SourceAttr, String> {
    let body = hcl_edit::parser::parse_body(text).map_err(|e| position_only(&e))?;
    let Some(block) = body.get_blocks("terraform").next() else {
        return Ok(SourceAttr::Absent);
    };
    let Some(attr) = block.body.get_attribute("source") else {
        return Ok(SourceAttr::Absent);
    };
    match &attr.value {
        Expression::String(s) => {
            let span = s
                .span()
                .ok_or_else(|| "the source string has no position".to_string())?;
            Ok(SourceAttr::Literal {
                value: s.value().clone(),
                span,
            })
        }
        _ => Ok(SourceAttr::Computed),
    }
}

/// The part of an HCL expression tfmod can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A string literal, and where it is when it is the whole expression (quotes included).
    Str(String, Option<Range<usize>>),
    /// A template: its parts, concatenated.
    Template(Vec<Expr>),
    /// A function call (no namespace).
    Call(String, Vec<Expr>),
    /// A variable and its attributes: `local.common.locals.source`.
    Path(Vec<String>),
    /// Anything else (conditionals, operators, for-expressions, directives…).
    Other,
}

/// An `include` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// Its label (`include "root"`), empty for the bare `include {}`.
    pub name: String,
    pub path: Expr,
    /// `merge_strategy = "no_merge"` keeps the included file's blocks out of the unit.
    pub merged: bool,
}

/// A `generate` block: a file Terragrunt writes into the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub name: String,
    pub path: Expr,
}

/// What tfmod follows of a Terragrunt file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// `terraform { source }`, or `None` when absent.
    pub source: Option<Expr>,
    pub includes: Vec<Include>,
    pub locals: BTreeMap<String, Expr>,
    pub generates: Vec<Generate>,
}

/// Parses a Terragrunt file; the error is hcl-edit's message (line and column).
pub fn read_file(text: &str) -> Result<File, String> {
    let body = hcl_edit::parser::parse_body(text).map_err(|e| position_only(&e))?;
    let source = body
        .get_blocks("terraform")
        .find_map(|b| b.body.get_attribute("source"))
        .map(|a| expr(&a.value));
    let includes = body
        .get_blocks("include")
        .map(|b| Include {
            name: b
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default(),
            path: b
                .body
                .get_attribute("path")
                .map(|a| expr(&a.value))
                .unwrap_or(Expr::Other),
            merged: !matches!(
                b.body.get_attribute("merge_strategy").map(|a| expr(&a.value)),
                Some(Expr::Str(s, _)) if s == "no_merge"
            ),
        })
        .collect();
    let mut locals = BTreeMap::new();
    for block in body.get_blocks("locals") {
        for attr in block.body.attributes() {
            locals.insert(attr.key.as_str().to_string(), expr(&attr.value));
        }
    }
    let generates = body
        .get_blocks("generate")
        .map(|b| Generate {
            name: b
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default(),
            path: b
                .body
                .get_attribute("path")
                .map(|a| expr(&a.value))
                .unwrap_or(Expr::Other),
        })
        .collect();
    Ok(File {
        source,
        includes,
        locals,
        generates,
    })
}

/// Reads a `terragrunt.hcl.json` (HCL's JSON syntax) as far as tfmod follows it: `terraform`'s
/// `source`, `include` blocks (labelled, or bare with a `path`) and `locals`. A JSON string is a
/// template in HCL's JSON syntax: one with `${` or `%{` is not a literal ([`Expr::Other`]).
/// Literals carry no span (tfmod does not rewrite JSON). The error is serde_json's (line and
/// column, never the text).
pub fn read_json_file(text: &str) -> Result<File, String> {
    use serde_json::Value;
    let root: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "line {}, column {}: not valid JSON ({:?})",
            e.line(),
            e.column(),
            e.classify()
        )
    })?;
    let Value::Object(top) = root else {
        return Err("not a JSON object".into());
    };
    let str_expr = |v: &Value| match v {
        Value::String(s) if !s.contains("${") && !s.contains("%{") => Expr::Str(s.clone(), None),
        _ => Expr::Other,
    };
    // A block is an object, or an array of objects.
    let blocks = |v: Option<&Value>| -> Vec<serde_json::Map<String, Value>> {
        match v {
            Some(Value::Object(o)) => vec![o.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_object().cloned()).collect(),
            _ => Vec::new(),
        }
    };
    let source = blocks(top.get("terraform"))
        .iter()
        .find_map(|b| b.get("source").map(str_expr));
    let mut includes = Vec::new();
    for b in blocks(top.get("include")) {
        let labelled: Vec<(String, serde_json::Map<String, Value>)> = if b.contains_key("path") {
            vec![(String::new(), b.clone())]
        } else {
            b.iter()
                .flat_map(|(name, v)| blocks(Some(v)).into_iter().map(move |o| (name.clone(), o)))
                .collect()
        };
        for (name, o) in labelled {
            includes.push(Include {
                name,
                path: o.get("path").map(str_expr).unwrap_or(Expr::Other),
                merged: !matches!(o.get("merge_strategy"), Some(Value::String(s)) if s == "no_merge"),
            });
        }
    }
    let mut locals = BTreeMap::new();
    for b in blocks(top.get("locals")) {
        for (k, v) in &b {
            locals.insert(k.clone(), str_expr(v));
        }
    }
    let mut generates = Vec::new();
    for b in blocks(top.get("generate")) {
        for (name, v) in &b {
            for o in blocks(Some(v)) {
                generates.push(Generate {
                    name: name.clone(),
                    path: o.get("path").map(str_expr).unwrap_or(Expr::Other),
                });
            }
        }
    }
    Ok(File {
        source,
        includes,
        locals,
        generates,
    })
}

/// The `module` blocks of a Terraform file: (label, source), the source `None` when it is not a
/// literal string (Terraform requires one).
pub fn module_sources(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let body = hcl_edit::parser::parse_body(text).map_err(|e| position_only(&e))?;
    Ok(body
        .get_blocks("module")
        .map(|b| {
            let name = b
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            let source = match b.body.get_attribute("source").map(|a| &a.value) {
                Some(Expression::String(s)) => Some(s.value().clone()),
                _ => None,
            };
            (name, source)
        })
        .collect())
}

/// [`module_sources`] of a `.tf.json` file.
pub fn module_sources_json(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    use serde_json::Value;
    let root: Value = serde_json::from_str(text)
        .map_err(|e| format!("line {}, column {}: not valid JSON", e.line(), e.column()))?;
    let mut out = Vec::new();
    let tops: Vec<&Value> = match root.get("module") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    for top in tops {
        let Value::Object(named) = top else {
            out.push((String::new(), None));
            continue;
        };
        for (name, v) in named {
            let blocks: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for b in blocks {
                let source = match b.get("source") {
                    Some(Value::String(s)) if !s.contains("${") => Some(s.clone()),
                    _ => None,
                };
                out.push((name.clone(), source));
            }
        }
    }
    Ok(out)
}

/// hcl-edit's error without the source line it quotes (which may hold a password, or the
/// first line of a host file an include names): the line, the column and what was expected.
fn position_only(e: &hcl_edit::parser::Error) -> String {
    let l = e.location();
    format!(
        "line {}, column {}: {}",
        l.line(),
        l.column(),
        e.message().split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

fn expr(e: &Expression) -> Expr {
    match e {
        Expression::String(s) => Expr::Str(s.value().clone(), s.span()),
        Expression::StringTemplate(t) => Expr::Template(
            t.iter()
                .map(|el| match el {
                    Element::Literal(l) => Expr::Str(l.value().clone(), None),
                    Element::Interpolation(i) => expr(&i.expr),
                    Element::Directive(_) => Expr::Other,
                })
                .collect(),
        ),
        Expression::Parenthesis(p) => expr(p.inner()),
        Expression::FuncCall(c) if c.name.namespace.is_empty() => Expr::Call(
            c.name.name.as_str().to_string(),
            c.args.iter().map(expr).collect(),
        ),
        Expression::Variable(v) => Expr::Path(vec![v.as_str().to_string()]),
        Expression::Traversal(t) => {
            let Expr::Path(mut path) = expr(&t.expr) else {
                return Expr::Other;
            };
            for op in &t.operators {
                match op.value() {
                    TraversalOperator::GetAttr(id) => path.push(id.as_str().to_string()),
                    TraversalOperator::Index(Expression::String(s)) => path.push(s.value().clone()),
                    _ => return Expr::Other,
                }
            }
            Expr::Path(path)
        }
        _ => Expr::Other,
    }
}

/// Replaces the string literal at `span` (quotes included) with `new`, quoted.
pub fn splice(text: &str, span: Range<usize>, new: &str) -> String {
    let mut out = String::with_capacity(text.len() + new.len());
    out.push_str(&text[..span.start]);
    out.push_str(&quote(new));
    out.push_str(&text[span.end..]);
    out
}

/// Replaces the literal source with `new`; `Ok(None)` when there is no literal to replace.
pub fn rewrite_source(text: &str, new: &str) -> Result<Option<String>, String> {
    let SourceAttr::Literal { span, .. } = find_source(text)? else {
        return Ok(None);
    };
    let mut out = String::with_capacity(text.len() + new.len());
    out.push_str(&text[..span.start]);
    out.push_str(&quote(new));
    out.push_str(&text[span.end..]);
    Ok(Some(out))
}

/// An HCL string literal: quotes, `\` and `"` escaped, `${`/`%{` not read as templates.
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip";
    const NEW: &str = "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.3.0.zip";

    /// Shaped like the terragrunt.hcl files of a live repository: include, locals, comments of
    /// both kinds, aligned attributes, dependency blocks, a heredoc.
    const STAGE_VPC: &str = r#"# live/prod-account/eu-west-1/staging/vpc/terragrunt.hcl
# Owned by the network team. Ask in #infra before changing the CIDRs.

include "root" {
  path   = find_in_parent_folders("root.hcl")
  expose = true
}

locals {
  env_vars = read_terragrunt_config(find_in_parent_folders("env.hcl"))
  env      = local.env_vars.locals.environment # "staging"
}

terraform {
  # Pinned by `tfmod pin`; promote with `tfmod promote vpc X.Y.Z --from dev --to staging`.
  source = "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip" // pinned

  extra_arguments "retry_lock" {
    commands  = get_terraform_commands_that_need_locking()
    arguments = ["-lock-timeout=20m"]
  }
}

dependency "kms" {
  config_path = "../kms"
  mock_outputs = {
    key_arn = "arn:aws:kms:eu-west-1:111111111111:key/mock"
  }
}

inputs = {
  name       = "core-${local.env}"
  cidr_block = "10.20.0.0/16"   /* a /16 per stage */
  kms_key    = dependency.kms.outputs.key_arn
  tags = {
    Stage = local.env
  }
  policy = <<-EOT
    {"Version": "2012-10-17"}
  EOT
}
"#;

    #[test]
    fn golden_rewrite_changes_only_the_source_string() {
        assert_eq!(
            find_source(STAGE_VPC).unwrap(),
            SourceAttr::Literal {
                value: OLD.into(),
                span: {
                    let s = STAGE_VPC.find(&format!("\"{OLD}\"")).unwrap();
                    s..s + OLD.len() + 2
                }
            }
        );
        let out = rewrite_source(STAGE_VPC, NEW).unwrap().unwrap();
        assert_eq!(out, STAGE_VPC.replace(OLD, NEW));
        // And it stays idempotent and parseable.
        assert_eq!(rewrite_source(&out, NEW).unwrap().unwrap(), out);
    }

    #[test]
    fn golden_rewrite_keeps_subdir_layout_and_crlf() {
        let crlf = "terraform {\r\n  source = \"s3::https://b.s3.eu-west-1.amazonaws.com/app/1.0.0.zip//modules/api\"\r\n}\r\n# end\r\n";
        let out = rewrite_source(
            crlf,
            "s3::https://b.s3.eu-west-1.amazonaws.com/app/1.1.0.zip//modules/api",
        )
        .unwrap()
        .unwrap();
        assert_eq!(out, crlf.replace("1.0.0", "1.1.0"));
    }

    #[test]
    fn absent_computed_and_broken() {
        assert_eq!(find_source("inputs = {}\n").unwrap(), SourceAttr::Absent);
        assert_eq!(
            find_source("terraform {\n  extra_arguments \"x\" {}\n}\n").unwrap(),
            SourceAttr::Absent
        );
        let computed = "locals { v = \"1.0.0\" }\nterraform {\n  source = \"s3::https://b.s3.eu-west-1.amazonaws.com/vpc/${local.v}.zip\"\n}\n";
        assert_eq!(find_source(computed).unwrap(), SourceAttr::Computed);
        assert_eq!(rewrite_source(computed, NEW).unwrap(), None);
        let e = find_source("terraform {\n  source = \n").unwrap_err();
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn a_nested_source_is_not_the_module_source() {
        // `source` inside another block (a generate block's contents, a module call) is not
        // Terragrunt's module source.
        let text = "generate \"x\" {\n  source = \"nope\"\n}\n";
        assert_eq!(find_source(text).unwrap(), SourceAttr::Absent);
    }

    #[test]
    fn includes_locals_and_source_expressions_are_read() {
        let f = read_file(
            "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\ninclude \"env\" {\n  path = \"${dirname(find_in_parent_folders(\"root.hcl\"))}/_envcommon/vpc.hcl\"\n  merge_strategy = \"no_merge\"\n}\nlocals {\n  common = read_terragrunt_config(\"../c.hcl\")\n  v = \"x\"\n}\nterraform {\n  source = local.common.locals[\"source\"]\n}\n",
        )
        .unwrap();
        assert_eq!(f.includes.len(), 2);
        assert_eq!(f.includes[0].name, "root");
        assert!(f.includes[0].merged && !f.includes[1].merged);
        assert!(matches!(&f.includes[0].path, Expr::Call(n, a)
            if n == "find_in_parent_folders" && matches!(&a[..], [Expr::Str(s, _)] if s == "root.hcl")));
        assert!(matches!(&f.includes[1].path, Expr::Template(p) if p.len() == 2));
        assert_eq!(
            f.source,
            Some(Expr::Path(
                ["local", "common", "locals", "source"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        assert!(matches!(&f.locals["v"], Expr::Str(v, Some(_)) if v == "x"));
    }

    #[test]
    fn quoting_escapes_what_hcl_would_read() {
        assert_eq!(quote(r#"a"b\c${d}%{e}"#), r#""a\"b\\c$${d}%%{e}""#);
    }
}

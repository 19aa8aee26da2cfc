//! Terragrunt's view of a unit: which module source it uses and where that string is written,
//! following `include` blocks and `read_terragrunt_config` as Terragrunt does. Reads files (and
//! nothing else); the parsing is [`crate::hcl`]'s.
//!
//! Followed: the unit's own `terraform { source }`; else the last merged `include` that has one
//! (Terragrunt merges included files under the unit, the unit's own attributes winning); a
//! source written as `local.X` (a literal), `local.X.locals.Y` or `local.X.terraform.source`
//! where `local.X = read_terragrunt_config(PATH)`, or `include.NAME.locals.Y` /
//! `include.NAME.terraform.source`. Paths are evaluated with `find_in_parent_folders`,
//! `get_terragrunt_dir`, `get_parent_terragrunt_dir`, `get_repo_root`, `dirname`, templates and
//! locals. Anything else is reported, never passed: tfmod cannot check what it cannot read.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::hcl::{self, Expr};

/// A source string and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub value: String,
    pub file: PathBuf,
    /// The string literal's bytes in `file`, quotes included.
    pub span: Range<usize>,
}

const MAX_DEPTH: usize = 16;

/// Reads Terragrunt files once each.
#[derive(Default)]
pub struct Reader {
    files: HashMap<PathBuf, Result<Rc<hcl::File>, String>>,
}

/// The unit being evaluated: Terragrunt evaluates functions in included files for the unit.
struct Ctx<'a> {
    unit_dir: &'a Path,
    depth: usize,
}

impl Ctx<'_> {
    fn deeper(&self) -> Result<Ctx<'_>, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "includes or locals nested deeper than {MAX_DEPTH} (a cycle?)"
            ));
        }
        Ok(Ctx {
            unit_dir: self.unit_dir,
            depth: self.depth + 1,
        })
    }
}

impl Reader {
    /// The module source the unit `terragrunt.hcl` uses, `None` when it has none. The error is
    /// one line saying what could not be read or followed.
    pub fn unit_source(&mut self, unit: &Path) -> Result<Option<Located>, String> {
        let unit = normalize(unit);
        let dir = unit.parent().unwrap_or(Path::new(".")).to_path_buf();
        let ctx = Ctx {
            unit_dir: &dir,
            depth: 0,
        };
        self.source_of(&unit, &ctx)
    }

    /// Parses (once) the file at `path`.
    pub fn file(&mut self, path: &Path) -> Result<Rc<hcl::File>, String> {
        let path = normalize(path);
        self.files
            .entry(path.clone())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                hcl::read_file(&text)
                    .map(Rc::new)
                    .map_err(|e| format!("{}: cannot parse: {e}", path.display()))
            })
            .clone()
    }

    fn source_of(&mut self, file: &Path, ctx: &Ctx) -> Result<Option<Located>, String> {
        let f = self.file(file)?;
        if let Some(e) = &f.source {
            return self.literal(e, file, &f, ctx).map(Some);
        }
        for inc in f.includes.iter().rev().filter(|i| i.merged) {
            let path = self.path(&inc.path, file, &f, ctx).map_err(|why| {
                format!(
                    "include \"{}\": cannot follow its path ({why}), so a source it holds would go unchecked: write the path with literals, find_in_parent_folders, get_repo_root, get_terragrunt_dir or dirname",
                    inc.name
                )
            })?;
            if let Some(found) = self.source_of(&path, &ctx.deeper()?)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The string literal `e` (in `file`) stands for, wherever it is written.
    fn literal(
        &mut self,
        e: &Expr,
        file: &Path,
        f: &hcl::File,
        ctx: &Ctx,
    ) -> Result<Located, String> {
        let computed = || {
            "terraform.source is computed, so tfmod cannot check it: write the source as a literal string (in the unit, a local, or a file it includes or reads)".to_string()
        };
        let p: Vec<&str> = match e {
            Expr::Str(value, Some(span)) => {
                return Ok(Located {
                    value: value.clone(),
                    file: normalize(file),
                    span: span.clone(),
                })
            }
            Expr::Path(p) => p.iter().map(String::as_str).collect(),
            _ => return Err(computed()),
        };
        let deeper = ctx.deeper()?;
        match p.as_slice() {
            ["local", x] => {
                let e = f.locals.get(*x).ok_or_else(|| format!("no local {x:?}"))?;
                self.literal(e, file, f, &deeper)
            }
            ["local", x, what @ ..] => {
                let e = f.locals.get(*x).ok_or_else(|| format!("no local {x:?}"))?;
                let Expr::Call(name, args) = e else {
                    return Err(computed());
                };
                if name != "read_terragrunt_config" || args.is_empty() {
                    return Err(computed());
                }
                let target = self.path(&args[0], file, f, ctx)?;
                self.member(&target, what, &deeper)
                    .map_err(|_| computed())?
            }
            ["include", name, what @ ..] => {
                let inc = f
                    .includes
                    .iter()
                    .find(|i| i.name == *name)
                    .ok_or_else(|| format!("no include {name:?}"))?;
                let target = self.path(&inc.path, file, f, ctx)?;
                self.member(&target, what, &deeper)
                    .map_err(|_| computed())?
            }
            _ => Err(computed()),
        }
    }

    /// `locals.Y` or `terraform.source` of another file.
    fn member(
        &mut self,
        target: &Path,
        what: &[&str],
        ctx: &Ctx,
    ) -> Result<Result<Located, String>, ()> {
        let tf = match self.file(target) {
            Ok(tf) => tf,
            Err(e) => return Ok(Err(e)),
        };
        match what {
            ["locals", y] => match tf.locals.get(*y) {
                Some(e) => Ok(self.literal(e, target, &tf, ctx)),
                None => Ok(Err(format!("{} has no local {y:?}", target.display()))),
            },
            ["terraform", "source"] => Ok(self.source_of(target, ctx).and_then(|s| {
                s.ok_or_else(|| format!("{} has no terraform.source", target.display()))
            })),
            _ => Err(()),
        }
    }

    /// A path expression, evaluated; relative paths are relative to `file`'s directory.
    fn path(&mut self, e: &Expr, file: &Path, f: &hcl::File, ctx: &Ctx) -> Result<PathBuf, String> {
        let s = self.string(e, file, f, ctx)?;
        let p = PathBuf::from(s);
        Ok(normalize(&if p.is_absolute() {
            p
        } else {
            file.parent().unwrap_or(Path::new(".")).join(p)
        }))
    }

    fn string(
        &mut self,
        e: &Expr,
        file: &Path,
        f: &hcl::File,
        ctx: &Ctx,
    ) -> Result<String, String> {
        let deeper = ctx.deeper()?;
        let arg = |r: &mut Reader, args: &[Expr], i: usize| -> Result<Option<String>, String> {
            args.get(i)
                .map(|a| r.string(a, file, f, &deeper))
                .transpose()
        };
        match e {
            Expr::Str(s, _) => Ok(s.clone()),
            Expr::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    out.push_str(&self.string(p, file, f, &deeper)?);
                }
                Ok(out)
            }
            Expr::Path(p) if p.len() == 2 && p[0] == "local" => {
                let e = f
                    .locals
                    .get(&p[1])
                    .ok_or_else(|| format!("no local {:?}", p[1]))?;
                self.string(e, file, f, &deeper)
            }
            Expr::Call(name, args) => match (name.as_str(), args.len()) {
                ("find_in_parent_folders", 0..=2) => {
                    let name = arg(self, args, 0)?.unwrap_or_else(|| "terragrunt.hcl".into());
                    let fallback = arg(self, args, 1)?;
                    let found = ctx
                        .unit_dir
                        .ancestors()
                        .skip(1)
                        .map(|d| d.join(&name))
                        .find(|p| p.exists());
                    match (found, fallback) {
                        (Some(p), _) => Ok(p.display().to_string()),
                        (None, Some(fb)) => Ok(fb),
                        (None, None) => Err(format!(
                            "find_in_parent_folders({name:?}) finds nothing above {}",
                            ctx.unit_dir.display()
                        )),
                    }
                }
                ("get_terragrunt_dir", 0) => Ok(ctx.unit_dir.display().to_string()),
                ("get_parent_terragrunt_dir", 0) => Ok(file
                    .parent()
                    .unwrap_or(Path::new("."))
                    .display()
                    .to_string()),
                ("get_repo_root", 0) => ctx
                    .unit_dir
                    .ancestors()
                    .find(|d| d.join(".git").exists())
                    .map(|d| d.display().to_string())
                    .ok_or_else(|| "get_repo_root(): not in a git repository".to_string()),
                ("dirname", 1) => {
                    let p = arg(self, args, 0)?.unwrap_or_default();
                    Ok(Path::new(&p)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .display()
                        .to_string())
                }
                _ => Err(format!("{name}() is not a function tfmod evaluates")),
            },
            _ => Err("an expression tfmod does not evaluate".into()),
        }
    }
}

/// `path` absolute (from the current directory) with `.` and `..` resolved lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

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

/// A `generate` block for a unit: the file it is written in, its name, and the path it writes
/// (or why that path cannot be evaluated).
pub type Generated = (PathBuf, String, Result<String, String>);

const MAX_DEPTH: usize = 16;

/// Where an expression is evaluated, as Terragrunt's parsing context has it.
#[derive(Debug, Clone)]
struct Ctx {
    /// The file whose expressions these are: its locals, where its literals are written.
    file: PathBuf,
    /// Terragrunt's `TerragruntConfigPath`: `get_terragrunt_dir()`, `find_in_parent_folders` and
    /// relative paths start from its directory. The unit for the unit and for the files it
    /// includes (include.go parses them in the child's context); the file itself for a file read
    /// with `read_terragrunt_config` (config_helpers.go `ParseTerragruntConfig` →
    /// `WithConfigPath(target)`).
    config: PathBuf,
    /// `OriginalTerragruntConfigPath`: the unit, for `get_original_terragrunt_dir()`.
    original: PathBuf,
    /// `file` is included by `config`: `get_parent_terragrunt_dir()` is its directory.
    included: bool,
    depth: usize,
}

fn dir_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

impl Ctx {
    fn deeper(&self) -> Result<Ctx, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "includes or locals nested deeper than {MAX_DEPTH} (a cycle?)"
            ));
        }
        Ok(Ctx {
            depth: self.depth + 1,
            ..self.clone()
        })
    }

    /// An included file, evaluated for the including unit.
    fn include(&self, path: PathBuf) -> Result<Ctx, String> {
        Ok(Ctx {
            file: path,
            included: true,
            ..self.deeper()?
        })
    }

    /// A file read with `read_terragrunt_config`, evaluated as itself.
    fn read(&self, path: PathBuf) -> Result<Ctx, String> {
        Ok(Ctx {
            file: path.clone(),
            config: path,
            included: false,
            ..self.deeper()?
        })
    }
}

/// The most evaluation steps one unit may take, and the longest string an expression may
/// yield: paths and sources are short, and a file of locals that double each other must not
/// take minutes or gigabytes (each local is evaluated once per context, too).
const MAX_STEPS: usize = 100_000;
const MAX_STRING: usize = 16 * 1024;

/// Reads Terragrunt files once each.
#[derive(Default)]
pub struct Reader {
    files: HashMap<PathBuf, Result<Rc<hcl::File>, String>>,
    /// (file, config, included, local) → its value.
    locals: HashMap<(PathBuf, PathBuf, bool, String), Result<String, String>>,
    steps: usize,
    /// The unit's git repository (canonical), when it is in one: no file outside it is read.
    root: Option<PathBuf>,
}

impl Reader {
    /// The module source the unit `terragrunt.hcl` uses, `None` when it has none. The error is
    /// one line saying what could not be read or followed.
    pub fn unit_source(&mut self, unit: &Path) -> Result<Option<Located>, String> {
        let ctx = self.start(unit);
        self.source_of(&ctx)
    }

    /// The unit's context; the step count and the repository root set for it.
    fn start(&mut self, unit: &Path) -> Ctx {
        let unit = normalize(unit);
        self.steps = 0;
        self.root = dir_of(&unit)
            .ancestors()
            .find(|d| d.join(".git").exists())
            .and_then(|d| d.canonicalize().ok());
        Ctx {
            file: unit.clone(),
            config: unit.clone(),
            original: unit,
            included: false,
            depth: 0,
        }
    }

    /// The `generate` blocks Terragrunt applies for the unit: its own and those of the files it
    /// includes with a merge (paths evaluated in Terragrunt's context): (file, name, path), or
    /// (file, name, why not) when a path cannot be evaluated.
    pub fn unit_generates(&mut self, unit: &Path) -> Result<Vec<Generated>, String> {
        let ctx = self.start(unit);
        let mut out = Vec::new();
        self.generates_of(&ctx, &mut out)?;
        Ok(out)
    }

    fn generates_of(&mut self, ctx: &Ctx, out: &mut Vec<Generated>) -> Result<(), String> {
        let f = self.file(&ctx.file)?;
        for g in &f.generates {
            let path = self.string(&g.path, &f, ctx);
            out.push((ctx.file.clone(), g.name.clone(), path));
        }
        for inc in f.includes.iter().filter(|i| i.merged) {
            let path = self.include_path(&inc.path, &f, ctx)?;
            self.generates_of(&ctx.include(path)?, out)?;
        }
        Ok(())
    }

    /// Parses (once) the file at `path`.
    pub fn file(&mut self, path: &Path) -> Result<Rc<hcl::File>, String> {
        let path = normalize(path);
        if let Some(root) = &self.root {
            let real = path
                .canonicalize()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if !real.starts_with(root) {
                return Err(format!(
                    "{} is outside the repository {}: tfmod (and your review) sees only the repository's files; keep included and read files in it",
                    path.display(),
                    root.display()
                ));
            }
        }
        self.files
            .entry(path.clone())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let parsed = if is_json(&path) {
                    hcl::read_json_file(&text)
                } else {
                    hcl::read_file(&text)
                };
                parsed
                    .map(Rc::new)
                    .map_err(|e| format!("{}: cannot parse: {e}", path.display()))
            })
            .clone()
    }

    fn source_of(&mut self, ctx: &Ctx) -> Result<Option<Located>, String> {
        let f = self.file(&ctx.file)?;
        if let Some(e) = &f.source {
            return self.literal(e, &f, ctx).map(Some);
        }
        for inc in f.includes.iter().rev().filter(|i| i.merged) {
            let path = self.include_path(&inc.path, &f, ctx).map_err(|why| {
                format!(
                    "include \"{}\": cannot follow its path ({why}), so a source it holds would go unchecked: write the path with literals, find_in_parent_folders, get_repo_root, get_terragrunt_dir or dirname",
                    inc.name
                )
            })?;
            if let Some(found) = self.source_of(&ctx.include(path)?)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The string literal `e` (in `ctx.file`) stands for, wherever it is written.
    fn literal(&mut self, e: &Expr, f: &hcl::File, ctx: &Ctx) -> Result<Located, String> {
        let computed = || {
            "terraform.source is computed, so tfmod cannot check it: write the source as a literal string (in the unit, a local, or a file it includes or reads)".to_string()
        };
        let p: Vec<&str> = match e {
            Expr::Str(value, Some(span)) => {
                return Ok(Located {
                    value: value.clone(),
                    file: ctx.file.clone(),
                    span: span.clone(),
                })
            }
            // A JSON file's literal: no span (tfmod does not rewrite JSON).
            Expr::Str(value, None) if is_json(&ctx.file) => {
                return Ok(Located {
                    value: value.clone(),
                    file: ctx.file.clone(),
                    span: 0..0,
                })
            }
            Expr::Path(p) => p.iter().map(String::as_str).collect(),
            _ => return Err(computed()),
        };
        let deeper = ctx.deeper()?;
        match p.as_slice() {
            ["local", x] => {
                let e = f.locals.get(*x).ok_or_else(|| format!("no local {x:?}"))?;
                self.literal(e, f, &deeper)
            }
            ["local", x, what @ ..] => {
                let e = f.locals.get(*x).ok_or_else(|| format!("no local {x:?}"))?;
                let Expr::Call(name, args) = e else {
                    return Err(computed());
                };
                if name != "read_terragrunt_config" || args.is_empty() {
                    return Err(computed());
                }
                let target = self.read_path(&args[0], f, ctx)?;
                self.member(&ctx.read(target)?, what)
                    .map_err(|_| computed())?
            }
            ["include", name, what @ ..] => {
                let inc = f
                    .includes
                    .iter()
                    .find(|i| i.name == *name)
                    .ok_or_else(|| format!("no include {name:?}"))?;
                let target = self.include_path(&inc.path, f, ctx)?;
                self.member(&ctx.include(target)?, what)
                    .map_err(|_| computed())?
            }
            _ => Err(computed()),
        }
    }

    /// `locals.Y` or `terraform.source` of the file `ctx` evaluates.
    fn member(&mut self, ctx: &Ctx, what: &[&str]) -> Result<Result<Located, String>, ()> {
        let tf = match self.file(&ctx.file) {
            Ok(tf) => tf,
            Err(e) => return Ok(Err(e)),
        };
        match what {
            ["locals", y] => match tf.locals.get(*y) {
                Some(e) => Ok(self.literal(e, &tf, ctx)),
                None => Ok(Err(format!("{} has no local {y:?}", ctx.file.display()))),
            },
            ["terraform", "source"] => Ok(self.source_of(ctx).and_then(|s| {
                s.ok_or_else(|| format!("{} has no terraform.source", ctx.file.display()))
            })),
            _ => Err(()),
        }
    }

    /// An `include` path: relative to the directory of the config being parsed (include.go
    /// `getTrackInclude`).
    fn include_path(&mut self, e: &Expr, f: &hcl::File, ctx: &Ctx) -> Result<PathBuf, String> {
        let s = self.string(e, f, ctx)?;
        Ok(normalize(&dir_of(&ctx.config).join(s)))
    }

    /// A `read_terragrunt_config` path: relative to the directory of the config being parsed;
    /// a directory means its terragrunt.hcl.json or terragrunt.hcl (`getCleanedTargetConfigPath`).
    fn read_path(&mut self, e: &Expr, f: &hcl::File, ctx: &Ctx) -> Result<PathBuf, String> {
        let s = self.string(e, f, ctx)?;
        let p = normalize(&dir_of(&ctx.config).join(s));
        Ok(if p.is_dir() { default_config(&p) } else { p })
    }

    fn string(&mut self, e: &Expr, f: &hcl::File, ctx: &Ctx) -> Result<String, String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "more than {MAX_STEPS} evaluation steps: simplify the locals"
            ));
        }
        let deeper = ctx.deeper()?;
        let arg = |r: &mut Reader, args: &[Expr], i: usize| -> Result<Option<String>, String> {
            args.get(i).map(|a| r.string(a, f, &deeper)).transpose()
        };
        let out = match e {
            Expr::Str(s, _) => s.clone(),
            Expr::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    out.push_str(&self.string(p, f, &deeper)?);
                    if out.len() > MAX_STRING {
                        break;
                    }
                }
                out
            }
            Expr::Path(p) if p.len() == 2 && p[0] == "local" => {
                let key = (
                    ctx.file.clone(),
                    ctx.config.clone(),
                    ctx.included,
                    p[1].clone(),
                );
                if let Some(v) = self.locals.get(&key) {
                    return v.clone();
                }
                let e = f
                    .locals
                    .get(&p[1])
                    .ok_or_else(|| format!("no local {:?}", p[1]))?;
                let v = self.string(e, f, &deeper);
                self.locals.insert(key, v.clone());
                v?
            }
            Expr::Call(name, args) => match (name.as_str(), args.len()) {
                ("find_in_parent_folders", 0..=2) => {
                    let name = arg(self, args, 0)?;
                    let fallback = arg(self, args, 1)?;
                    let start = dir_of(&ctx.config);
                    let found = start.ancestors().skip(1).find_map(|d| {
                        let p = match &name {
                            Some(n) => d.join(n),
                            None => default_config(d),
                        };
                        p.exists().then_some(p)
                    });
                    match (found, fallback) {
                        (Some(p), _) => p.display().to_string(),
                        (None, Some(fb)) => fb,
                        (None, None) => {
                            return Err(format!(
                                "find_in_parent_folders({:?}) finds nothing above {}",
                                name.unwrap_or_default(),
                                start.display()
                            ))
                        }
                    }
                }
                ("get_terragrunt_dir", 0) => dir_of(&ctx.config).display().to_string(),
                ("get_original_terragrunt_dir", 0) => dir_of(&ctx.original).display().to_string(),
                ("get_parent_terragrunt_dir", 0) => if ctx.included {
                    dir_of(&ctx.file)
                } else {
                    dir_of(&ctx.config)
                }
                .display()
                .to_string(),
                ("get_repo_root", 0) => dir_of(&ctx.original)
                    .ancestors()
                    .find(|d| d.join(".git").exists())
                    .map(|d| d.display().to_string())
                    .ok_or_else(|| "get_repo_root(): not in a git repository".to_string())?,
                ("dirname", 1) => {
                    let p = arg(self, args, 0)?.unwrap_or_default();
                    Path::new(&p)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .display()
                        .to_string()
                }
                _ => return Err(format!("{name}() is not a function tfmod evaluates")),
            },
            _ => return Err("an expression tfmod does not evaluate".into()),
        };
        if out.len() > MAX_STRING {
            return Err(format!(
                "an expression yields more than {MAX_STRING} bytes: simplify the locals"
            ));
        }
        Ok(out)
    }
}

/// Whether `path` is in HCL's JSON syntax (`terragrunt.hcl.json`, `*.hcl.json`).
pub fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The config file Terragrunt reads in `dir`: terragrunt.hcl.json when it exists, else
/// terragrunt.hcl (pkg/config/config.go `DefaultTerragruntConfigPaths`, `GetDefaultConfigPath`).
pub fn default_config(dir: &Path) -> PathBuf {
    let json = dir.join("terragrunt.hcl.json");
    if json.exists() {
        json
    } else {
        dir.join("terragrunt.hcl")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each local is evaluated once per context: 40 references a level, 5 levels, evaluate in
    /// a few hundred steps (40^5 without memoising).
    #[test]
    fn locals_are_evaluated_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.hcl"), "# root\n").unwrap();
        let unit = dir.path().join("u/terragrunt.hcl");
        std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
        let mut text = String::from("locals {\n");
        for i in 0..5 {
            let r = format!("${{local.l{}}}", i + 1);
            text.push_str(&format!("  l{i} = \"{}\"\n", r.repeat(40)));
        }
        text.push_str("  l5 = \"\"\n}\ninclude \"root\" {\n  path = \"${local.l0}${find_in_parent_folders(\"root.hcl\")}\"\n}\n");
        std::fs::write(&unit, text).unwrap();
        let mut r = Reader::default();
        assert_eq!(r.unit_source(&unit), Ok(None));
    }
}

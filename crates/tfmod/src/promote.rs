//! `pin` and `promote`: rewrite the `source` strings of a stage's units and its lock, all or
//! nothing. `pin` takes a version from S3 (checked against its published checksum); `promote`
//! takes what the `--from` stage locked (its lock line: object, version, SHA-256) and refuses
//! when S3 no longer serves those bytes. Stages are the directories `ROOT/LAYOUT` names, never
//! any directory that happens to share the stage's name. Every file is read, parsed and checked
//! before the first is written; the writes then go through temporary files renamed into place.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cli_edge::out::tell;

use crate::catalog::{published, Where};
use crate::gate::{self, checked_sha, nearest_lock, read_lock, scan, store_for, Use};
use crate::hcl;
use crate::lockfile::{self, Lock, LOCK_FILE};
use crate::names::{self, ModuleName};
use crate::source::{self, Parsed, S3Source};
use crate::store::Store;
use crate::terragrunt::normalize;
use crate::Error;

/// Where promote finds stages.
pub struct Stages {
    pub root: PathBuf,
    pub layout: String,
    pub from: String,
    pub to: String,
}

/// Whether `source` is module `name` in the store `w` (any version).
fn is_module(source: &S3Source, w: &Where, name: &ModuleName) -> bool {
    source.is_in(&w.bucket, &w.prefix)
        && names::parse_archive_key(&w.prefix, &source.key).is_some_and(|(n, _)| n == *name)
}

/// The stage directories `root/layout` names for `stage`: `*` is any one non-hidden directory,
/// `{stage}` the stage's name, anything else itself.
pub fn stage_dirs(root: &Path, layout: &str, stage: &str) -> Result<Vec<PathBuf>, Error> {
    let bad_stage =
        stage.is_empty() || stage.contains('/') || stage.starts_with('.') || stage == "*";
    if bad_stage {
        return Err(Error::Usage(format!(
            "stage {stage:?}: give a stage's directory name such as staging"
        )));
    }
    let segments: Vec<&str> = layout.split('/').filter(|s| !s.is_empty()).collect();
    if !segments.contains(&"{stage}") || segments.iter().any(|s| *s == ".." || *s == ".") {
        return Err(Error::Usage(format!(
            "--layout {layout:?}: write the stage's place below --root with '/', '*' and one {{stage}}, e.g. */*/{{stage}}"
        )));
    }
    let mut dirs = vec![root.to_path_buf()];
    for seg in segments {
        let mut next = Vec::new();
        for d in &dirs {
            match seg {
                "*" => {
                    let entries = match std::fs::read_dir(d) {
                        Ok(e) => e,
                        Err(_) => continue,
                    };
                    for e in entries.flatten() {
                        let hidden = e.file_name().to_string_lossy().starts_with('.');
                        if !hidden && e.file_type().is_ok_and(|t| t.is_dir()) {
                            next.push(e.path());
                        }
                    }
                }
                s => {
                    let p = d.join(if s == "{stage}" { stage } else { s });
                    if p.is_dir() {
                        next.push(p);
                    }
                }
            }
        }
        dirs = next;
    }
    dirs.sort();
    Ok(dirs)
}

/// The new contents of files, written all together at the end.
#[derive(Default)]
struct Plan {
    /// File → edits (span of a string literal → new string).
    edits: BTreeMap<PathBuf, BTreeMap<(usize, usize), String>>,
    /// Lock file → its new entries.
    locks: BTreeMap<PathBuf, Lock>,
}

impl Plan {
    fn edit(&mut self, file: &Path, span: &Range<usize>, new: String) -> Result<(), Error> {
        if crate::terragrunt::is_json(file) {
            return Err(Error::Usage(format!(
                "{}: tfmod rewrites sources in HCL files only: edit this JSON by hand (the source is printed by tfmod publish), or write the unit as terragrunt.hcl. Nothing was written",
                file.display()
            )));
        }
        let spans = self.edits.entry(file.to_path_buf()).or_default();
        match spans.insert((span.start, span.end), new.clone()) {
            Some(other) if other != new => Err(Error::Usage(format!(
                "{}: one source string would get two values ({other} and {new}): give each unit its own source",
                file.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Writes every file: first all to temporary files beside them, then renames.
    fn apply(self) -> Result<usize, Error> {
        let mut staged = Vec::new();
        for (file, spans) in &self.edits {
            let mut text = std::fs::read_to_string(file).map_err(|e| Error::file(file, e))?;
            for ((start, end), new) in spans.iter().rev() {
                text = hcl::splice(&text, *start..*end, new);
            }
            hcl::read_file(&text)
                .map_err(|e| Error::file(file, format!("rewritten, it would not parse: {e}")))?;
            staged.push((file.clone(), text));
        }
        for (path, lock) in &self.locks {
            staged.push((path.clone(), lockfile::render(lock)));
        }
        let mut temps = Vec::new();
        for (path, text) in &staged {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".tfmod-")
                .tempfile_in(dir)
                .map_err(|e| Error::file(dir, e))?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())
                .map_err(|e| Error::file(tmp.path(), e))?;
            if let Ok(m) = std::fs::metadata(path) {
                let _ = std::fs::set_permissions(tmp.path(), m.permissions());
            }
            temps.push((tmp, path.clone()));
        }
        let n = temps.len();
        for (tmp, path) in temps {
            tmp.persist(&path)
                .map_err(|e| Error::file(&path, e.error))?;
            tell(format_args!("wrote {}", path.display()));
        }
        Ok(n)
    }
}

/// The scan of a stage for a rewrite: any problem reading it refuses the whole change.
fn scan_all(dir: &Path) -> Result<Vec<Use>, Error> {
    let s = scan(dir, None)?;
    if !s.problems.is_empty() {
        return Err(Error::Usage(format!(
            "{}: nothing was written",
            s.problems.join("; ")
        )));
    }
    Ok(s.uses)
}

/// Every `tfmod.lock` strictly below `dir` (Terragrunt's skipped directories aside).
fn locks_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && ![".git", ".terraform", ".terragrunt-cache"].contains(&name.as_str())
            {
                stack.push(e.path());
            } else if name == LOCK_FILE && d != dir {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// `path` (to be written) is inside `stage` with no symlink on the way, the stage itself
/// included: a file reached through one belongs to whatever it points at.
fn real_inside(path: &Path, stage: &Path) -> Result<(), Error> {
    let stage = normalize(stage);
    let path = normalize(path);
    let rel = path.strip_prefix(&stage).map_err(|_| {
        Error::Usage(format!(
            "{} is outside {}: nothing was written",
            path.display(),
            stage.display()
        ))
    })?;
    let mut at = stage.clone();
    let mut check = vec![stage.clone()];
    for c in rel.components() {
        at.push(c);
        check.push(at.clone());
    }
    for p in check {
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Usage(format!(
                "{}: a symlink on the way to {}: tfmod writes a stage's own files only (the link's target belongs to another place); replace the link with the file. Nothing was written",
                p.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// The literal of `u` may be rewritten only inside `stage`: a file outside it is shared.
fn owned_by(u: &Use, stage: &Path) -> Result<(), Error> {
    if u.at.file.starts_with(normalize(stage)) {
        return real_inside(&u.at.file, stage);
    }
    Err(Error::Usage(format!(
        "{}: its source is written in {}, outside {}: changing it there would change other stages too; write terraform {{ source = \"…\" }} in the unit (it overrides the include). Nothing was written",
        u.unit.display(),
        u.at.file.display(),
        stage.display()
    )))
}

pub async fn pin(
    name: &str,
    version: &str,
    dir: &Path,
    w: &Where,
    timeout: Duration,
) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    // The stage's lock: the nearest one at or above DIR (a unit's pin updates its stage's). A
    // DIR holding other stages' locks spans stages; a stage holding a nested lock is two.
    let lock_path = nearest_lock(dir).unwrap_or_else(|| dir.join(LOCK_FILE));
    let stage = lock_path.parent().unwrap_or(dir).to_path_buf();
    let below = locks_below(&stage);
    if !below.is_empty() {
        let list: Vec<String> = below.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Usage(if lock_path.is_file() {
            format!(
                "--dir {}: its stage {} holds other locks ({}), which verify uses for the units below them: remove them (tfmod lock in the stage rewrites its own). Nothing was written",
                dir.display(),
                stage.display(),
                list.join(", ")
            )
        } else {
            format!(
                "--dir {} spans {} stages (locks at {}): give one stage's directory (or a unit's) with --dir. Nothing was written",
                dir.display(),
                below.len(),
                list.join(", ")
            )
        }));
    }
    real_inside(&lock_path, &stage)?;
    let uses = scan_all(&stage)?;
    let targets: Vec<&Use> = uses
        .iter()
        .filter(|u| {
            normalize(&u.unit).starts_with(normalize(dir)) && is_module(&u.source, w, &name)
        })
        .collect();
    let store = Store::connect(timeout).await?;
    let meta = published(&store, w, &name, &version).await?;
    if targets.is_empty() {
        return Err(Error::Usage(format!(
            "no terragrunt.hcl below {} uses module {} from s3://{}/{}: nothing to pin",
            dir.display(),
            name.as_str(),
            w.bucket,
            w.prefix
        )));
    }
    let key = names::key(&w.prefix, &name, &version, "zip");
    let mut plan = Plan::default();
    let mut pinned: BTreeMap<String, String> = BTreeMap::new();
    let mut changed = 0;
    for u in &targets {
        owned_by(u, &stage)?;
        if let Some(sub) = u
            .source
            .subdir
            .as_ref()
            .filter(|s| !gate::subdir_in(&meta.files, s))
        {
            return Err(Error::Usage(format!(
                "{}: its //subdir {sub:?} is not a directory of {} {version}: fix the source. Nothing was written",
                u.unit.display(),
                name.as_str()
            )));
        }
        let new = u
            .source
            .pinned(&key, meta.version_id.as_deref(), &meta.sha256);
        pinned.insert(new.object().to_string(), meta.sha256.clone());
        if new.to_string() != u.at.value {
            plan.edit(&u.at.file, &u.at.span, new.to_string())?;
            tell(format_args!(
                "{}: {} → {version}",
                u.unit.display(),
                u.source.key
            ));
            changed += 1;
        }
    }
    // The bytes behind the new source, as S3 serves them, are the published ones.
    let mut problems = Vec::new();
    for object in pinned.keys() {
        let Ok(Parsed::S3(o)) = source::parse(object) else {
            continue;
        };
        match checked_sha(&store, &o).await? {
            Ok(sha) if sha == meta.sha256 => {}
            Ok(sha) => problems.push(format!(
                "{object}: S3 serves sha256 {sha}, not the published {}: do not pin it",
                meta.sha256
            )),
            Err(p) => problems.push(p),
        }
    }
    // The stage's new lock: the pinned objects, the old entries of the other sources, and
    // any other source not locked yet (checked as lock does).
    let old = if lock_path.is_file() {
        read_lock(&lock_path)?
    } else {
        Lock::new()
    };
    let mut lock = Lock::new();
    for u in &uses {
        let is_target = targets.iter().any(|t| t.unit == u.unit);
        let object = if is_target {
            u.source
                .pinned(&key, meta.version_id.as_deref(), &meta.sha256)
                .object()
        } else {
            u.source.object()
        };
        let text = object.to_string();
        if lock.contains_key(&text) {
            continue;
        }
        let sha = match (pinned.get(&text), old.get(&text)) {
            (Some(sha), _) | (None, Some(sha)) => sha.clone(),
            (None, None) => match checked_sha(&store, &object).await? {
                Ok(sha) => sha,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            },
        };
        lock.insert(text, sha);
    }
    gate::report(&problems)?;
    plan.locks.insert(lock_path.clone(), lock);
    tell(format_args!(
        "{changed} of {} unit(s) changed",
        targets.len()
    ));
    plan.apply()?;
    Ok(())
}

pub async fn promote(
    name: &str,
    version: &str,
    stages: &Stages,
    w: &Where,
    timeout: Duration,
) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    let from_dirs = stage_dirs(&stages.root, &stages.layout, &stages.from)?;
    let to_dirs = stage_dirs(&stages.root, &stages.layout, &stages.to)?;
    for (flag, stage, dirs) in [
        ("--from", &stages.from, &from_dirs),
        ("--to", &stages.to, &to_dirs),
    ] {
        if dirs.is_empty() {
            return Err(Error::Usage(format!(
                "{flag} {stage}: no stage directory {}/{} (--layout): check --root and --layout",
                stages.root.display(),
                stages.layout.replace("{stage}", stage)
            )));
        }
    }
    // What the --from stages tested: their lock lines for NAME X.Y.Z, which must agree.
    let mut tested: BTreeMap<String, (S3Source, String)> = BTreeMap::new();
    for d in &from_dirs {
        let path = d.join(LOCK_FILE);
        if !path.is_file() {
            continue;
        }
        for (text, sha) in read_lock(&path)? {
            let Ok(Parsed::S3(o)) = source::parse(&text) else {
                continue;
            };
            let this = is_module(&o, w, &name)
                && names::parse_archive_key(&w.prefix, &o.key).is_some_and(|(_, v)| v == version);
            if this {
                tested.insert(format!("sha256:{sha}  {text}"), (o, sha));
            }
        }
    }
    let (object, sha) = match tested.len() {
        1 => tested.into_values().next().expect("one line"),
        0 => {
            return Err(Error::Usage(format!(
                "{} has not locked {} {version} (no line in {}/{LOCK_FILE}): pin it there and test it first",
                stages.from,
                name.as_str(),
                from_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            )))
        }
        _ => {
            return Err(Error::Usage(format!(
                "the {} stages locked {} {version} differently ({}): make them agree first",
                stages.from,
                name.as_str(),
                tested.keys().cloned().collect::<Vec<_>>().join("; ")
            )))
        }
    };
    // Every --to stage, read and checked before anything is written.
    let mut plan = Plan::default();
    let mut units = 0;
    let mut moved: Vec<Use> = Vec::new();
    for stage in &to_dirs {
        if let Some(nested) = locks_below(stage).first() {
            return Err(Error::Usage(format!(
                "{}: a lock inside the stage {} (verify uses it for the units below it): remove it. Nothing was written",
                nested.display(),
                stage.display()
            )));
        }
        let uses = scan_all(stage)?;
        let lock_path = stage.join(LOCK_FILE);
        real_inside(&lock_path, stage)?;
        let mut lock = if lock_path.is_file() {
            read_lock(&lock_path)?
        } else {
            Lock::new()
        };
        let mut here = 0;
        for u in uses.iter().filter(|u| is_module(&u.source, w, &name)) {
            owned_by(u, stage)?;
            let new = S3Source {
                subdir: u.source.subdir.clone(),
                checksum: Some(sha.clone()),
                ..object.clone()
            };
            if new.to_string() != u.at.value {
                plan.edit(&u.at.file, &u.at.span, new.to_string())?;
            }
            moved.push(u.clone());
            here += 1;
        }
        if here == 0 {
            continue;
        }
        units += here;
        lock.retain(
            |text, _| !matches!(source::parse(text), Ok(Parsed::S3(o)) if is_module(&o, w, &name)),
        );
        lock.insert(object.to_string(), sha.clone());
        plan.locks.insert(lock_path, lock);
    }
    if units == 0 {
        return Err(Error::Usage(format!(
            "no unit of the {} stages uses module {} from s3://{}/{}: nothing to promote",
            stages.to,
            name.as_str(),
            w.bucket,
            w.prefix
        )));
    }
    // S3 must still serve what was tested, and each unit's //subdir be a directory of it.
    let store = Store::connect(timeout).await?;
    let s = store_for(&store, &object).map_err(Error::Usage)?;
    let mut subdir_problems = Vec::new();
    for u in &moved {
        let u = Use {
            source: S3Source {
                subdir: u.source.subdir.clone(),
                ..object.clone()
            },
            ..u.clone()
        };
        subdir_problems.extend(gate::subdir_problem(&store, &u).await?);
    }
    gate::report(&subdir_problems)?;
    let problem = match s.fetch(&object.bucket, &object.key, object.version_id.as_deref()).await? {
        None => Some(format!("{object}: not in S3 any more; {} locked sha256 {sha}: do not promote", stages.from)),
        Some(got) if got.sha256 != sha => Some(format!(
            "{object}: S3 serves sha256 {}, not the {sha} {} tested: do not promote; publish a new version and test it",
            got.sha256, stages.from
        )),
        Some(_) => None,
    };
    gate::report(&problem.into_iter().collect::<Vec<_>>())?;
    let n = plan.apply()?;
    tell(format_args!(
        "promoted {} {version} from {} to {}: {units} unit(s), {n} file(s)",
        name.as_str(),
        stages.from,
        stages.to
    ));
    Ok(())
}

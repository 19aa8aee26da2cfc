//! The gate: `lock` and `verify`, and the scan of a live tree they share with `pin` and
//! `promote`. Orchestration over [`crate::terragrunt`] (which source each unit uses, where it is
//! written), [`crate::source`] (what go-getter reads it as) and [`crate::store`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cli_edge::out::{say, tell};

use crate::lockfile::{self, Lock, LOCK_FILE};
use crate::source::{self, redact, Endpoint, Parsed, S3Source};
use crate::store::Store;
use crate::terragrunt::{normalize, Located, Reader};
use crate::Error;

/// The files Terragrunt reads in a unit directory, the JSON one first when both exist
/// (pkg/config/config.go `DefaultTerragruntConfigPaths`).
pub const TERRAGRUNT_FILE: &str = "terragrunt.hcl";
pub const TERRAGRUNT_JSON_FILE: &str = "terragrunt.hcl.json";

/// One unit's S3 module source.
#[derive(Debug, Clone)]
pub struct Use {
    /// The unit's `terragrunt.hcl`, as found below the directory scanned.
    pub unit: PathBuf,
    /// Where the source string is written (the unit, or a file it includes or reads).
    pub at: Located,
    pub source: S3Source,
}

impl Use {
    /// ` (written in FILE)` when the string is not in the unit itself.
    pub fn written_in(&self) -> String {
        if self.at.file == normalize(&self.unit) {
            String::new()
        } else {
            format!(" (written in {})", self.at.file.display())
        }
    }
}

/// The trusted store, when `--bucket` is given.
#[derive(Debug, Clone)]
pub struct Trust {
    pub bucket: String,
    pub prefix: String,
    /// Canonical unit directories and HCL files whose local code is allowed (`--allow-local-code`).
    pub allow_local_code: Vec<PathBuf>,
}

impl Trust {
    fn allows(&self, p: &Path) -> bool {
        p.canonicalize()
            .is_ok_and(|c| self.allow_local_code.contains(&c))
    }
}

/// Whether Terraform reads a file of this name as configuration, or it is an override file.
fn terraform_code(name: &str) -> bool {
    name.ends_with(".tf") || name.ends_with(".tf.json") || name.contains("override")
}

/// With `--bucket`, the code of a unit's own directory: a unit without a source runs its own
/// files (a local source); Terragrunt copies the unit directory's files over the downloaded
/// module (internal/runner/run/download_source.go, `CopyFolderContents`), so a .tf or override
/// file there (at any depth) changes the module; a generate block writing a .tf file adds code.
fn unit_code(reader: &mut Reader, unit: &Path, has_source: bool, t: &Trust) -> Vec<String> {
    let shown = unit.display();
    let dir = unit.parent().unwrap_or(Path::new("."));
    let how = "or name it in --allow-local-code (the hook's configuration) to leave it to review";
    let mut out = Vec::new();
    if !t.allows(dir) {
        if !has_source {
            out.push(format!(
                "{shown}: no terraform.source, so Terraform runs the unit directory's own files (a local source tfmod does not check): use a module from the trusted store, {how}"
            ));
        }
        let mut files = Vec::new();
        code_files(dir, &mut files);
        files.sort();
        for f in files {
            out.push(format!(
                "{}: Terraform code in a unit directory: Terragrunt copies it over the module, so it runs unchecked: move it into a published module, {how}",
                f.display()
            ));
        }
    }
    match reader.unit_generates(unit) {
        Err(_) => {} // the source's own reading reports it
        Ok(gens) => {
            for (file, name, path) in gens {
                if t.allows(&file) {
                    continue;
                }
                let name_of = |p: &str| {
                    Path::new(p)
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default()
                };
                match path {
                    Ok(p) if !terraform_code(&name_of(&p)) => {}
                    Ok(p) => out.push(format!(
                        "{shown}: generate \"{name}\" in {} writes {p:?}, Terraform code tfmod does not check: generate no .tf file (put the code in a published module), {how}",
                        file.display()
                    )),
                    Err(why) => out.push(format!(
                        "{shown}: generate \"{name}\" in {}: cannot tell the file it writes ({why}): write its path as a literal, {how}",
                        file.display()
                    )),
                }
            }
        }
    }
    out
}

/// Every file below `dir` Terraform would read as code (not in [`SKIPPED`] directories).
fn code_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                code_files(&e.path(), out);
            }
        } else if terraform_code(&name) {
            out.push(e.path());
        }
    }
}

/// What a scan found: the S3 sources, and one line per problem.
#[derive(Debug, Default)]
pub struct Scan {
    pub uses: Vec<Use>,
    pub problems: Vec<String>,
}

/// The unit config of every directory below `dir` (terragrunt.hcl.json where it exists, else
/// terragrunt.hcl), sorted. Like Terragrunt's discovery (internal/util/file.go
/// `SkipDirIfIgnorable`), only `.git`, `.terraform` and `.terragrunt-cache` are skipped: a unit
/// in another hidden directory is a unit.
pub fn terragrunt_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    walk_dirs(dir, &mut |d| {
        let f = crate::terragrunt::default_config(d);
        if f.is_file() {
            out.push(f);
        }
    })?;
    out.sort();
    Ok(out)
}

/// Directories Terragrunt never discovers units in.
const SKIPPED: [&str; 3] = [".git", ".terraform", ".terragrunt-cache"];

/// Calls `f` on `dir` and every directory below it but [`SKIPPED`] (not following symlinks).
fn walk_dirs(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<(), Error> {
    f(dir);
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))? {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let skipped = SKIPPED.contains(&entry.file_name().to_string_lossy().as_ref());
        if !skipped && entry.file_type().map_err(|e| Error::file(dir, e))?.is_dir() {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for d in subdirs {
        walk_dirs(&d, f)?;
    }
    Ok(())
}

/// The part of `rel` (a `/`-separated path) that must not be in the repository: a Terragrunt
/// cache or Terraform data directory (Terragrunt runs a cache whose
/// `.terragrunt-source-version` matches instead of downloading; `terraform init` keeps modules
/// `.terraform/modules` lists), a `.terragrunt-source-version`, or a `terragrunt.stack.hcl`
/// (units generated from sources tfmod does not read).
fn forbidden(rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    if let Some(i) = parts
        .iter()
        .position(|p| *p == ".terragrunt-cache" || *p == ".terraform")
    {
        return Some(parts[..=i].join("/"));
    }
    let name = *parts.last()?;
    (name == ".terragrunt-source-version" || name == "terragrunt.stack.hcl")
        .then(|| rel.to_string())
}

/// One problem per forbidden path below `dir`: those git tracks when `dir` is in a repository
/// (a cache a Terragrunt run left is not committed, and not a problem), else those present.
fn committed_caches(dir: &Path) -> Result<Vec<String>, Error> {
    let tracked = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-z", "--cached", "--", "."])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    let found: BTreeSet<String> = match tracked {
        Some(paths) => paths.iter().filter_map(|p| forbidden(p)).collect(),
        None => {
            let mut all = BTreeSet::new();
            present(dir, "", &mut all)?;
            all
        }
    };
    Ok(found
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            if rel.ends_with("terragrunt.stack.hcl") {
                format!(
                    "{}: a Terragrunt stack generates units from sources tfmod does not read: not supported; write the units",
                    p.display()
                )
            } else {
                format!(
                    "{}: a committed Terragrunt or Terraform cache: Terragrunt and Terraform run what is in it instead of downloading the checked module; remove it from the repository (and run Terragrunt with TG_SOURCE_UPDATE=true)",
                    p.display()
                )
            }
        })
        .collect())
}

/// Outside git: every forbidden path present below `dir` (`rel` is `dir`'s path so far).
fn present(dir: &Path, rel: &str, out: &mut BTreeSet<String>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))? {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if let Some(f) = forbidden(&r) {
            out.insert(f);
            continue;
        }
        let ft = entry.file_type().map_err(|e| Error::file(dir, e))?;
        if ft.is_dir() && name != ".git" {
            present(&entry.path(), &r, out)?;
        }
    }
    Ok(())
}

/// Reads every unit below `dir` as Terragrunt would. With `trust`, every source that is not an
/// object of that store is a problem (git, registry, local paths, other buckets).
pub fn scan(dir: &Path, trust: Option<&Trust>) -> Result<Scan, Error> {
    let mut reader = Reader::default();
    let mut out = Scan {
        problems: committed_caches(dir)?,
        ..Scan::default()
    };
    for unit in terragrunt_files(dir)? {
        let shown = unit.display();
        let hcl_beside = unit.with_file_name(TERRAGRUNT_FILE);
        if unit.ends_with(TERRAGRUNT_JSON_FILE) && hcl_beside.is_file() {
            out.problems.push(format!(
                "{shown}: Terragrunt reads it and ignores {TERRAGRUNT_FILE} beside it: keep one of the two"
            ));
        }
        let at = match reader.unit_source(&unit) {
            Err(why) => {
                // The unit's own parse error names it already.
                let own = format!("{}: ", normalize(&unit).display());
                let why = why.strip_prefix(&own).unwrap_or(&why);
                out.problems.push(format!("{shown}: {why}"));
                continue;
            }
            Ok(None) => {
                if let Some(t) = trust {
                    out.problems.extend(unit_code(&mut reader, &unit, false, t));
                }
                continue;
            }
            Ok(Some(at)) => at,
        };
        if let Some(t) = trust {
            out.problems.extend(unit_code(&mut reader, &unit, true, t));
        }
        let from = if at.file == normalize(&unit) {
            String::new()
        } else {
            format!(" (written in {})", at.file.display())
        };
        let not_trusted = |t: &Trust| {
            format!(
                "{shown}: source {} is not from the trusted store s3://{}/{}{from}: only modules published there may run",
                redact(&at.value),
                t.bucket,
                t.prefix
            )
        };
        match source::parse(&at.value) {
            Err(e) => out.problems.push(format!("{shown}: {e}{from}")),
            Ok(Parsed::Other) => {
                if let Some(t) = trust {
                    out.problems.push(not_trusted(t));
                }
            }
            Ok(Parsed::S3(source)) => {
                if let Some(t) = trust.filter(|t| !source.is_in(&t.bucket, &t.prefix)) {
                    out.problems.push(not_trusted(t));
                    continue;
                }
                out.uses.push(Use { unit, at, source });
            }
        }
    }
    Ok(out)
}

/// The client for a source, or a problem line when tfmod would read another place than
/// go-getter will.
pub fn store_for(store: &Store, src: &S3Source) -> Result<Store, String> {
    match (&src.endpoint, &store.endpoint) {
        (Endpoint::Aws { region }, Endpoint::Aws { .. }) => Ok(store.with_region(region)),
        (Endpoint::Custom { base, .. }, Endpoint::Custom { base: ours, .. }) if base == ours => {
            Ok(store.clone())
        }
        (Endpoint::Custom { base, .. }, _) => Err(format!(
            "{src}: its endpoint {} is not the one tfmod reads (set AWS_ENDPOINT_URL_S3 to it)",
            redact(base)
        )),
        (Endpoint::Aws { .. }, Endpoint::Custom { base, .. }) => Err(format!(
            "{src}: an AWS S3 source, but AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL points tfmod at {base}: unset it"
        )),
    }
}

/// The metadata key beside an archive key (`….zip` → `….json`).
pub fn metadata_key(zip_key: &str) -> Option<String> {
    zip_key.strip_suffix(".zip").map(|k| format!("{k}.json"))
}

/// The SHA-256 of an object as S3 serves it now, checked against the checksum recorded when it
/// was published (when there is a record); a problem line otherwise.
pub async fn checked_sha(
    store: &Store,
    object: &S3Source,
) -> Result<Result<String, String>, Error> {
    let s = match store_for(store, object) {
        Ok(s) => s,
        Err(p) => return Ok(Err(p)),
    };
    let Some(got) = s
        .fetch(&object.bucket, &object.key, object.version_id.as_deref())
        .await?
    else {
        return Ok(Err(format!(
            "{object}: not in S3: publish it, or fix the source"
        )));
    };
    if let Some(meta_key) = metadata_key(&object.key) {
        match crate::catalog::read_metadata(&s, &object.bucket, &meta_key).await {
            Ok(Some(meta)) if meta.sha256 != got.sha256 => {
                return Ok(Err(format!(
                    "{object}: sha256 {} differs from {} recorded when it was published: the object was changed; do not lock it",
                    got.sha256, meta.sha256
                )))
            }
            Ok(_) => {}
            Err(Error::Exists(damaged)) => return Ok(Err(damaged)),
            Err(e) => return Err(e),
        }
    }
    Ok(Ok(got.sha256))
}

/// Whether `sub` (a `//subdir`) is a directory of an archive holding `files`.
pub fn subdir_in(files: &[String], sub: &str) -> bool {
    let dir = format!("{}/", sub.trim_end_matches('/'));
    files.iter().any(|f| f.starts_with(&dir))
}

/// A problem line when the `//subdir` of `u` is not a directory of the published archive (as its
/// metadata lists the files), or when there is no metadata to tell.
pub async fn subdir_problem(store: &Store, u: &Use) -> Result<Option<String>, Error> {
    let Some(sub) = &u.source.subdir else {
        return Ok(None);
    };
    let object = u.source.object();
    let s = match store_for(store, &object) {
        Ok(s) => s,
        Err(p) => return Ok(Some(p)),
    };
    let files = match metadata_key(&object.key) {
        None => None,
        Some(k) => match crate::catalog::read_metadata(&s, &object.bucket, &k).await {
            Ok(m) => m.map(|m| m.files),
            Err(Error::Exists(damaged)) => return Ok(Some(damaged)),
            Err(e) => return Err(e),
        },
    };
    Ok(match files {
        Some(f) if subdir_in(&f, sub) => None,
        Some(_) => Some(format!(
            "{}: its //subdir {sub:?} is not a directory of {object}{}: fix the source",
            u.unit.display(),
            u.written_in()
        )),
        None => Some(format!(
            "{}: {object} has no tfmod metadata, so its //subdir {sub:?} cannot be checked{}: use a published module",
            u.unit.display(),
            u.written_in()
        )),
    })
}

/// Prints each problem on stdout; `Problems` when there was any.
pub fn report(problems: &[String]) -> Result<(), Error> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in problems {
        say(format_args!("{p}"));
    }
    Err(Error::Problems(problems.len()))
}

pub async fn lock(dir: &Path, trust: Option<&Trust>, store: impl AsyncStore) -> Result<(), Error> {
    let Scan { uses, mut problems } = scan(dir, trust)?;
    let objects: BTreeMap<String, S3Source> = uses
        .iter()
        .map(|u| (u.source.object().to_string(), u.source.object()))
        .collect();
    let mut lock = Lock::new();
    if !objects.is_empty() {
        let store = store.get().await?;
        for u in &uses {
            problems.extend(subdir_problem(&store, u).await?);
        }
        for (text, object) in &objects {
            match checked_sha(&store, object).await? {
                Err(p) => problems.push(p),
                Ok(sha) => {
                    for u in uses
                        .iter()
                        .filter(|u| &u.source.object().to_string() == text)
                    {
                        if let Some(c) = u.source.checksum.as_ref().filter(|c| **c != sha) {
                            problems.push(format!(
                                "{}: its ?checksum=sha256:{c} is not the sha256 {sha} S3 serves{}: terraform init would refuse it; pin it again",
                                u.unit.display(),
                                u.written_in()
                            ));
                        }
                    }
                    lock.insert(text.clone(), sha);
                }
            }
        }
    }
    report(&problems)?;
    let path = dir.join(LOCK_FILE);
    std::fs::write(&path, lockfile::render(&lock)).map_err(|e| Error::file(&path, e))?;
    tell(format_args!(
        "locked {} source(s) in {}",
        lock.len(),
        path.display()
    ));
    Ok(())
}

/// The nearest `tfmod.lock` in `dir` or above.
pub fn nearest_lock(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(LOCK_FILE))
        .find(|p| p.is_file())
}

/// Reads a lock file.
pub fn read_lock(path: &Path) -> Result<Lock, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    lockfile::parse(&text).map_err(|e| Error::file(path, e))
}

pub async fn verify(
    dir: &Path,
    trust: Option<&Trust>,
    store: impl AsyncStore,
) -> Result<(), Error> {
    let Scan { uses, mut problems } = scan(dir, trust)?;
    let mut locks: BTreeMap<PathBuf, Lock> = BTreeMap::new();
    let mut used: BTreeSet<(PathBuf, String)> = BTreeSet::new();
    // Object → (object, locked sha); one download per object even if many units use it.
    let mut to_check: BTreeMap<(String, String), S3Source> = BTreeMap::new();
    let mut with_subdir: Vec<&Use> = Vec::new();
    for u in &uses {
        let shown = u.unit.display();
        let from = u.written_in();
        let Some(lock_path) = nearest_lock(u.unit.parent().unwrap_or(Path::new("."))) else {
            problems.push(format!(
                "{shown}: no {LOCK_FILE} in its directory or above: run tfmod lock in the stage directory"
            ));
            continue;
        };
        if !locks.contains_key(&lock_path) {
            locks.insert(lock_path.clone(), read_lock(&lock_path)?);
        }
        let key = u.source.object().to_string();
        let Some(locked) = locks[&lock_path].get(&key) else {
            problems.push(format!(
                "{shown}: source {key} is not in {}{from}: run tfmod lock there and review the change",
                lock_path.display()
            ));
            continue;
        };
        used.insert((lock_path.clone(), key.clone()));
        match &u.source.checksum {
            None => problems.push(format!(
                "{shown}: its source has no ?checksum=, so terraform init would not check the bytes{from}: pin it again (tfmod pin NAME X.Y.Z --dir STAGE)"
            )),
            Some(c) if c != locked => problems.push(format!(
                "{shown}: its ?checksum=sha256:{c} differs from the locked {locked}{from}: pin it again, or review the change"
            )),
            Some(_) => {}
        }
        to_check.insert((key, locked.clone()), u.source.object());
        with_subdir.push(u);
    }
    // Entries no unit below uses (only for locks whose whole directory was scanned).
    let root = normalize(dir);
    for (lock_path, lock) in &locks {
        let lock_dir = normalize(lock_path.parent().unwrap_or(Path::new(".")));
        if !lock_dir.starts_with(&root) {
            continue;
        }
        for src in lock.keys() {
            if !used.contains(&(lock_path.clone(), src.clone())) {
                problems.push(format!(
                    "{}: {src} is locked but no terragrunt.hcl below uses it: run tfmod lock there",
                    lock_path.display()
                ));
            }
        }
    }
    if !to_check.is_empty() {
        let store = store.get().await?;
        for u in with_subdir.iter().filter(|u| u.source.subdir.is_some()) {
            problems.extend(subdir_problem(&store, u).await?);
        }
        for ((text, locked), object) in &to_check {
            let s = match store_for(&store, object) {
                Ok(s) => s,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            match s
                .fetch(&object.bucket, &object.key, object.version_id.as_deref())
                .await?
            {
                None => problems.push(format!(
                    "{text}: not in S3 any more (locked sha256 {locked})"
                )),
                Some(got) if &got.sha256 != locked => problems.push(format!(
                    "{text}: sha256 {} differs from the locked {locked}: the object was changed after locking; do not apply",
                    got.sha256
                )),
                Some(_) => {}
            }
        }
    }
    report(&problems)?;
    say(format_args!(
        "ok: {} unit(s), {} archive(s) match their locks and checksums",
        uses.len(),
        to_check.len()
    ));
    Ok(())
}

/// A store connected on first use (commands that find nothing to check never connect).
pub trait AsyncStore {
    fn get(self) -> impl std::future::Future<Output = Result<Store, Error>>;
}

/// Connects with this timeout when asked.
pub struct Connect(pub std::time::Duration);

impl AsyncStore for Connect {
    async fn get(self) -> Result<Store, Error> {
        Ok(Store::connect(self.0).await?)
    }
}

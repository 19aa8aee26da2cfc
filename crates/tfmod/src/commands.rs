//! The commands: orchestration over [`crate::store`], [`crate::archive`] and the pure modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::{self, sha256_hex};
use crate::cli::{Command, StoreArgs, TrustArgs};
use crate::hcl::{self, SourceAttr};
use crate::lockfile::{self, LOCK_FILE};
use crate::names::{self, ModuleName};
use crate::source::{Endpoint, S3Source};
use crate::store::{Put, Store};
use crate::Error;

/// The file Terragrunt reads in each component directory.
pub const TERRAGRUNT_FILE: &str = "terragrunt.hcl";

/// What is stored beside each archive, as `NAME/X.Y.Z.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    /// Lowercase hex SHA-256 of the archive's bytes.
    pub sha256: String,
    pub size: u64,
    pub files: Vec<String>,
    pub git_revision: String,
    pub published_by: String,
    pub published_at: String,
    pub source: String,
    pub tfmod_version: String,
}

pub async fn run(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Publish {
            dir,
            name,
            module_version,
            store,
            git_revision,
            publisher,
        } => {
            publish(
                &dir,
                &name,
                &module_version,
                &store,
                git_revision,
                publisher,
            )
            .await
        }
        Command::Versions { name, store } => versions(&name, &store).await,
        Command::Show { spec, store } => show(&spec, &store).await,
        Command::Pin {
            name,
            version,
            dir,
            store,
        } => pin(&name, &version, &[dir], &store).await,
        Command::Promote {
            name,
            version,
            stage,
            root,
            store,
        } => {
            let stages = stage_dirs(&root, &stage)?;
            if stages.is_empty() {
                return Err(Error::Usage(format!(
                    "--stage {stage:?}: no directory of that name under {} (expected {}/<account>/<region>/{stage})",
                    root.display(),
                    root.display()
                )));
            }
            pin(&name, &version, &stages, &store).await
        }
        Command::Lock { dir, trust } => lock(&dir, &trust).await,
        Command::Verify { dir, trust } => verify(&dir, &trust).await,
    }
}

/// Validated store flags.
struct Where {
    bucket: String,
    prefix: String,
}

fn where_(s: &StoreArgs) -> Result<Where, Error> {
    Ok(Where {
        bucket: names::parse_bucket(&s.bucket)?,
        prefix: names::parse_prefix(&s.prefix)?,
    })
}

async fn publish(
    dir: &Path,
    name: &str,
    version: &str,
    store_args: &StoreArgs,
    git_revision: Option<String>,
    publisher: Option<String>,
) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    let w = where_(store_args)?;
    let archive = archive::build(dir)?;
    let store = Store::connect().await?;
    let zip_key = names::key(&w.prefix, &name, &version, "zip");
    let meta_key = names::key(&w.prefix, &name, &version, "json");
    let source = S3Source {
        endpoint: store.endpoint.clone(),
        bucket: w.bucket.clone(),
        key: zip_key.clone(),
        subdir: None,
    };
    let label = format!("{} {version}", name.as_str());
    let at = format!("s3://{}/{zip_key}", w.bucket);

    // HEAD first: a store that ignores If-None-Match must not get the chance to overwrite.
    let created = match store.head(&w.bucket, &zip_key).await? {
        Some(_) => false,
        None => match store
            .put_new(
                &w.bucket,
                &zip_key,
                archive.bytes.clone(),
                "application/zip",
                &[("tfmod-sha256", &archive.sha256)],
            )
            .await?
        {
            Put::Created => true,
            Put::Exists => false,
        },
    };
    if created {
        // Verified write: read it back, and a versioned key must have exactly one version
        // (more means someone wrote it too, on a store that did not enforce the condition).
        let back = store.get(&w.bucket, &zip_key).await?.unwrap_or_default();
        let versions = store.version_count(&w.bucket, &zip_key).await?;
        if sha256_hex(&back) != archive.sha256 || versions > 1 {
            return Err(Error::Exists(format!(
                "{at} was written by someone else while publishing {label} ({versions} version(s), sha256 {} now, {} ours): the store did not enforce If-None-Match; check the object and publish a new version",
                sha256_hex(&back),
                archive.sha256
            )));
        }
    } else {
        let existing = store.get(&w.bucket, &zip_key).await?.ok_or_else(|| {
            Error::S3(format!("{at} existed a moment ago and is gone now: retry"))
        })?;
        let there = sha256_hex(&existing);
        if there != archive.sha256 {
            return Err(Error::Exists(format!(
                "{label} is already published with different bytes (sha256 {there} in {at}, {} from {}): versions are immutable; publish a new version",
                archive.sha256,
                dir.display()
            )));
        }
    }

    let meta = Metadata {
        name: name.as_str().to_string(),
        version: version.to_string(),
        sha256: archive.sha256.clone(),
        size: archive.bytes.len() as u64,
        files: archive.paths.clone(),
        git_revision: git_revision.unwrap_or_else(|| git_revision_of(dir)),
        published_by: publisher
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into()),
        published_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        source: source.to_string(),
        tfmod_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    if store
        .put_new(&w.bucket, &meta_key, json, "application/json", &[])
        .await?
        == Put::Exists
    {
        let theirs = read_metadata(&store, &w.bucket, &meta_key).await?;
        if theirs.as_ref().map(|m| m.sha256.as_str()) != Some(archive.sha256.as_str()) {
            return Err(Error::Exists(format!(
                "s3://{}/{meta_key} records another checksum than the archive: inspect it; publish a new version",
                w.bucket
            )));
        }
    }
    if created {
        eprintln!("published {label} (sha256 {})", archive.sha256);
    } else {
        eprintln!("{label} is already published with these bytes: nothing to do");
    }
    println!("{source}");
    Ok(())
}

/// `git rev-parse HEAD` in `dir`, `-dirty` when `dir` has uncommitted changes; "unknown"
/// outside git.
fn git_revision_of(dir: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => match git(&["status", "--porcelain", "--", "."]) {
            Some(s) if s.is_empty() => rev,
            _ => format!("{rev}-dirty"),
        },
        _ => "unknown".into(),
    }
}

async fn read_metadata(store: &Store, bucket: &str, key: &str) -> Result<Option<Metadata>, Error> {
    match store.get(bucket, key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::S3(format!("s3://{bucket}/{key} is not tfmod metadata: {e}"))),
    }
}

async fn versions(name: &str, store_args: &StoreArgs) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let w = where_(store_args)?;
    let store = Store::connect().await?;
    let dir = if w.prefix.is_empty() {
        format!("{}/", name.as_str())
    } else {
        format!("{}/{}/", w.prefix, name.as_str())
    };
    let mut found: Vec<semver::Version> = store
        .list(&w.bucket, &dir)
        .await?
        .iter()
        .filter_map(|k| names::parse_archive_key(&w.prefix, k))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect();
    if found.is_empty() {
        return Err(Error::NotFound(format!(
            "no version of {} in s3://{}/{dir}: check --bucket and --prefix",
            name.as_str(),
            w.bucket
        )));
    }
    found.sort();
    for v in found {
        println!("{v}");
    }
    Ok(())
}

async fn show(spec: &str, store_args: &StoreArgs) -> Result<(), Error> {
    let (name, version) = spec
        .split_once('@')
        .ok_or_else(|| Error::Usage(format!("{spec:?}: write NAME@X.Y.Z, e.g. vpc@1.2.0")))?;
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    let w = where_(store_args)?;
    let store = Store::connect().await?;
    let meta = published(&store, &w, &name, &version).await?;
    let zip_key = names::key(&w.prefix, &name, &version, "zip");
    let now = store
        .get(&w.bucket, &zip_key)
        .await?
        .map(|b| sha256_hex(&b));
    println!("name: {}", meta.name);
    println!("version: {}", meta.version);
    println!("sha256: {}", meta.sha256);
    println!("size: {} bytes, {} files", meta.size, meta.files.len());
    println!("git_revision: {}", meta.git_revision);
    println!("published_by: {}", meta.published_by);
    println!("published_at: {}", meta.published_at);
    println!("source: {}", meta.source);
    match now {
        Some(sha) if sha == meta.sha256 => {
            println!("archive: intact");
            Ok(())
        }
        Some(sha) => {
            println!("archive: CHANGED since publishing (sha256 {sha} now)");
            Err(Error::Problems(1))
        }
        None => {
            println!("archive: MISSING (s3://{}/{zip_key})", w.bucket);
            Err(Error::Problems(1))
        }
    }
}

/// The metadata of a published version, or NotFound.
async fn published(
    store: &Store,
    w: &Where,
    name: &ModuleName,
    version: &semver::Version,
) -> Result<Metadata, Error> {
    let meta_key = names::key(&w.prefix, name, version, "json");
    read_metadata(store, &w.bucket, &meta_key)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} {version} is not published (no s3://{}/{meta_key}): publish it first, or check --bucket and --prefix",
                name.as_str(),
                w.bucket
            ))
        })
}

/// Every `terragrunt.hcl` below `dir`, sorted; hidden directories (`.terragrunt-cache`,
/// `.terraform`, `.git`) are skipped.
pub fn terragrunt_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    walk_dirs(dir, &mut |d| {
        let f = d.join(TERRAGRUNT_FILE);
        if f.is_file() {
            out.push(f);
        }
        true
    })?;
    out.sort();
    Ok(out)
}

/// Directories named `stage` below `root` (not below a matched one).
fn stage_dirs(root: &Path, stage: &str) -> Result<Vec<PathBuf>, Error> {
    if stage.is_empty() || stage.contains('/') || stage.starts_with('.') {
        return Err(Error::Usage(format!(
            "--stage {stage:?}: give a directory name such as staging"
        )));
    }
    let mut out = Vec::new();
    walk_dirs(root, &mut |d| {
        if d != root && d.file_name().and_then(|n| n.to_str()) == Some(stage) {
            out.push(d.to_path_buf());
            return false;
        }
        true
    })?;
    out.sort();
    Ok(out)
}

/// Calls `f` on `dir` and every non-hidden directory below it (not following symlinks);
/// `f` returns whether to descend.
fn walk_dirs(dir: &Path, f: &mut dyn FnMut(&Path) -> bool) -> Result<(), Error> {
    if !f(dir) {
        return Ok(());
    }
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))? {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(|e| Error::file(dir, e))?.is_dir() {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for d in subdirs {
        walk_dirs(&d, f)?;
    }
    Ok(())
}

async fn pin(
    name: &str,
    version: &str,
    dirs: &[PathBuf],
    store_args: &StoreArgs,
) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    let w = where_(store_args)?;
    let store = Store::connect().await?;
    published(&store, &w, &name, &version).await?;
    let new_key = names::key(&w.prefix, &name, &version, "zip");
    let mut changed = 0;
    let mut uses = 0;
    for dir in dirs {
        for file in terragrunt_files(dir)? {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::file(&file, e))?;
            let SourceAttr::Literal { value, .. } =
                hcl::find_source(&text).map_err(|e| Error::file(&file, e))?
            else {
                continue;
            };
            let Ok(Some(src)) = S3Source::parse(&value) else {
                continue;
            };
            let ours = src.bucket == w.bucket
                && names::parse_archive_key(&w.prefix, &src.key).is_some_and(|(n, _)| n == name);
            if !ours {
                continue;
            }
            uses += 1;
            let new = src.with_key(&new_key).to_string();
            if new == value {
                continue;
            }
            let out = hcl::rewrite_source(&text, &new)
                .map_err(|e| Error::file(&file, e))?
                .expect("a literal source was found above");
            std::fs::write(&file, out).map_err(|e| Error::file(&file, e))?;
            eprintln!("{}: {} → {version}", file.display(), src.key);
            changed += 1;
        }
    }
    if uses == 0 {
        return Err(Error::Usage(format!(
            "no terragrunt.hcl below {} uses module {} from s3://{}/{}: nothing to pin",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            name.as_str(),
            w.bucket,
            w.prefix
        )));
    }
    eprintln!("{changed} of {uses} file(s) changed");
    let trust = TrustArgs {
        bucket: Some(w.bucket.clone()),
        prefix: w.prefix.clone(),
    };
    for dir in dirs {
        lock(dir, &trust).await?;
    }
    Ok(())
}

/// A module source found in a file.
struct Found {
    file: PathBuf,
    source: S3Source,
}

/// Reads the s3:: sources below `dir`; problems (unparsable files, computed or untrusted
/// sources) are returned as lines.
fn scan(dir: &Path, trust: &TrustArgs) -> Result<(Vec<Found>, Vec<String>), Error> {
    let bucket = trust
        .bucket
        .as_deref()
        .map(names::parse_bucket)
        .transpose()?;
    let prefix = names::parse_prefix(&trust.prefix)?;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for file in terragrunt_files(dir)? {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::file(&file, e))?;
        let shown = file.display();
        match hcl::find_source(&text) {
            Err(e) => problems.push(format!("{shown}: cannot parse: {}", one_line(&e))),
            Ok(SourceAttr::Absent) => {}
            Ok(SourceAttr::Computed) => problems.push(format!(
                "{shown}: terraform.source is computed, so tfmod cannot check it: write the s3:: source as a literal string"
            )),
            Ok(SourceAttr::Literal { value, .. }) => match S3Source::parse(&value) {
                Err(e) => problems.push(format!("{shown}: {e}")),
                Ok(None) => {}
                Ok(Some(source)) => {
                    if let Some(b) = &bucket {
                        let under = prefix.is_empty() || source.key.starts_with(&format!("{prefix}/"));
                        if &source.bucket != b || !under {
                            problems.push(format!(
                                "{shown}: source {value} is not in the trusted store s3://{b}/{prefix}"
                            ));
                            continue;
                        }
                    }
                    found.push(Found { file, source });
                }
            },
        }
    }
    Ok((found, problems))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The client for a source, or a problem line when tfmod would read another place than
/// go-getter will.
fn store_for(store: &Store, src: &S3Source) -> Result<Store, String> {
    match (&src.endpoint, &store.endpoint) {
        (Endpoint::Aws { region }, Endpoint::Aws { .. }) => Ok(store.with_region(region)),
        (Endpoint::Custom { base, .. }, Endpoint::Custom { base: ours, .. }) if base == ours => {
            Ok(store.clone())
        }
        (Endpoint::Custom { base, .. }, _) => Err(format!(
            "{src}: its endpoint {base} is not the one tfmod reads (set AWS_ENDPOINT_URL_S3={base})"
        )),
        (Endpoint::Aws { .. }, Endpoint::Custom { base, .. }) => Err(format!(
            "{src}: an AWS S3 source, but AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL points tfmod at {base}: unset it"
        )),
    }
}

async fn lock(dir: &Path, trust: &TrustArgs) -> Result<(), Error> {
    let (found, mut problems) = scan(dir, trust)?;
    let sources: BTreeMap<String, S3Source> = found
        .iter()
        .map(|f| (f.source.archive().to_string(), f.source.archive()))
        .collect();
    let mut lock = lockfile::Lock::new();
    if !sources.is_empty() {
        let store = Store::connect().await?;
        for (text, src) in &sources {
            let s = match store_for(&store, src) {
                Ok(s) => s,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let Some(bytes) = s.get(&src.bucket, &src.key).await? else {
                problems.push(format!("{text}: not in S3: publish it, or fix the source"));
                continue;
            };
            let sha = sha256_hex(&bytes);
            if let Some(meta_key) = src.key.strip_suffix(".zip").map(|k| format!("{k}.json")) {
                if let Some(meta) = read_metadata(&s, &src.bucket, &meta_key).await? {
                    if meta.sha256 != sha {
                        problems.push(format!(
                            "{text}: sha256 {sha} differs from {} recorded when it was published: the object was changed; do not lock it",
                            meta.sha256
                        ));
                        continue;
                    }
                }
            }
            lock.insert(text.clone(), sha);
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("{p}");
        }
        return Err(Error::Problems(problems.len()));
    }
    let path = dir.join(LOCK_FILE);
    std::fs::write(&path, lockfile::render(&lock)).map_err(|e| Error::file(&path, e))?;
    eprintln!("locked {} source(s) in {}", lock.len(), path.display());
    Ok(())
}

/// The nearest `tfmod.lock` in `file`'s directory or above.
fn nearest_lock(file: &Path) -> Option<PathBuf> {
    file.parent()?
        .ancestors()
        .map(|d| d.join(LOCK_FILE))
        .find(|p| p.is_file())
}

async fn verify(dir: &Path, trust: &TrustArgs) -> Result<(), Error> {
    let (found, mut problems) = scan(dir, trust)?;
    let mut locks: BTreeMap<PathBuf, lockfile::Lock> = BTreeMap::new();
    let mut used: BTreeSet<(PathBuf, String)> = BTreeSet::new();
    // Source text → (source, locked sha); one check per archive even if many files use it.
    let mut to_check: BTreeMap<(String, String), S3Source> = BTreeMap::new();
    for f in &found {
        let shown = f.file.display();
        let Some(lock_path) = nearest_lock(&f.file) else {
            problems.push(format!(
                "{shown}: no {LOCK_FILE} in its directory or above: run tfmod lock in the stage directory"
            ));
            continue;
        };
        if !locks.contains_key(&lock_path) {
            let text =
                std::fs::read_to_string(&lock_path).map_err(|e| Error::file(&lock_path, e))?;
            let parsed = lockfile::parse(&text).map_err(|e| Error::file(&lock_path, e))?;
            locks.insert(lock_path.clone(), parsed);
        }
        let key = f.source.archive().to_string();
        match locks[&lock_path].get(&key) {
            None => problems.push(format!(
                "{shown}: source {key} is not in {}: run tfmod lock there and review the change",
                lock_path.display()
            )),
            Some(sha) => {
                used.insert((lock_path.clone(), key.clone()));
                to_check.insert((key, sha.clone()), f.source.archive());
            }
        }
    }
    // Entries no file below uses (only for locks whose whole directory was scanned).
    for (lock_path, lock) in &locks {
        let lock_dir = lock_path.parent().unwrap_or(Path::new("."));
        if !lock_dir.starts_with(dir) {
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
        let store = Store::connect().await?;
        for ((text, locked), src) in &to_check {
            let s = match store_for(&store, src) {
                Ok(s) => s,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            match s.get(&src.bucket, &src.key).await? {
                None => problems.push(format!(
                    "{text}: not in S3 any more (locked sha256 {locked})"
                )),
                Some(bytes) => {
                    let now = sha256_hex(&bytes);
                    if &now != locked {
                        problems.push(format!(
                            "{text}: sha256 {now} differs from the locked {locked}: the object was changed after locking; do not apply"
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("{p}");
        }
        return Err(Error::Problems(problems.len()));
    }
    println!(
        "ok: {} file(s), {} archive(s) match their locks",
        found.len(),
        to_check.len()
    );
    Ok(())
}

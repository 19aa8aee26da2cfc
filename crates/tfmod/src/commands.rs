//! The commands: publish, versions, show, delete, and dispatch to [`crate::gate`] (lock,
//! verify) and [`crate::promote`] (pin, promote). Orchestration over [`crate::store`],
//! [`crate::archive`] and the pure modules.

use std::path::Path;
use std::time::Duration;

use cli_edge::out::{say, tell};

use crate::archive;
use crate::catalog::{published, read_metadata, Metadata, Tombstone, Where};
use crate::cli::{Command, StoreArgs, TrustArgs};
use crate::gate::{self, Connect, Trust};
use crate::hcl;
use crate::names::{self, ModuleName};
use crate::promote;
use crate::source::S3Source;
use crate::store::{Put, Store};
use crate::Error;

pub async fn run(cmd: Command, timeout: Duration) -> Result<(), Error> {
    match cmd {
        Command::Publish {
            dir,
            name,
            module_version,
            store,
            git_revision,
            publisher,
            allow_module_source,
        } => {
            let who = Who {
                git_revision,
                publisher,
                allow_module_source,
            };
            publish(&dir, &name, &module_version, &store, who, timeout).await
        }
        Command::Versions { name, store } => versions(&name, &store, timeout).await,
        Command::Show { spec, store } => show(&spec, &store, timeout).await,
        Command::Delete { spec, store } => delete(&spec, &store, timeout).await,
        Command::Pin {
            name,
            version,
            dir,
            store,
        } => promote::pin(&name, &version, &dir, &where_(&store)?, timeout).await,
        Command::Promote {
            name,
            version,
            from,
            to,
            root,
            layout,
            store,
        } => {
            let stages = promote::Stages {
                root,
                layout,
                from,
                to,
            };
            promote::promote(&name, &version, &stages, &where_(&store)?, timeout).await
        }
        Command::Lock { dir, trust } => {
            gate::lock(&dir, trust_of(&trust)?.as_ref(), Connect(timeout)).await
        }
        Command::Verify { dir, trust } => {
            gate::verify(&dir, trust_of(&trust)?.as_ref(), Connect(timeout)).await
        }
    }
}

fn where_(s: &StoreArgs) -> Result<Where, Error> {
    Ok(Where {
        bucket: names::parse_bucket(&s.bucket)?,
        prefix: names::parse_prefix(&s.prefix)?,
    })
}

fn trust_of(t: &TrustArgs) -> Result<Option<Trust>, Error> {
    let prefix = names::parse_prefix(&t.prefix)?;
    let mut allow_local_code = Vec::new();
    for p in &t.allow_local_code {
        allow_local_code.push(p.canonicalize().map_err(|e| {
            Error::Usage(format!(
                "--allow-local-code {}: {e}: give an existing unit directory or HCL file",
                p.display()
            ))
        })?);
    }
    Ok(match &t.bucket {
        None if !allow_local_code.is_empty() => {
            return Err(Error::Usage(
                "--allow-local-code is meaningful only with --bucket: give the trusted store"
                    .into(),
            ))
        }
        None => None,
        Some(b) => Some(Trust {
            bucket: names::parse_bucket(b)?,
            prefix,
            allow_local_code,
        }),
    })
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn user(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// publish's other flags.
struct Who {
    git_revision: Option<String>,
    publisher: Option<String>,
    allow_module_source: Vec<String>,
}

/// Why the nested module source `source` (of module `name` in the packed file `file`) may not
/// be published, if it may not: it must be inside the archive (`./`, `../` to a packed
/// directory), or start with an allowed prefix; an S3 source must carry `?checksum=`, and be in
/// the store or allowed. Terraform fetches these when the module is used, so a branch, a
/// version range or an unchecked object would run other code than was published.
fn nested_problem(
    file: &str,
    name: &str,
    source: Option<&str>,
    packed: &[String],
    w: &Where,
    allow: &[String],
) -> Option<String> {
    let at = format!("{file}: module \"{name}\"");
    let Some(source) = source else {
        return Some(format!("{at}: its source is not a literal string"));
    };
    let shown = crate::source::redact(source);
    if source.starts_with("./") || source.starts_with("../") {
        let mut path: Vec<&str> = file.split('/').collect();
        path.pop();
        for seg in source.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    if path.pop().is_none() {
                        return Some(format!(
                            "{at}: source {shown} leaves the module's archive: Terraform would read files outside what is published; keep it inside"
                        ));
                    }
                }
                s => path.push(s),
            }
        }
        let dir = path.join("/");
        return (!gate::subdir_in(packed, &dir)).then(|| {
            format!("{at}: source {shown} is not a directory of the archive (left out, or missing)")
        });
    }
    let allowed = allow
        .iter()
        .any(|p| !p.is_empty() && source.starts_with(p.as_str()));
    let how = "vendor it into the module (a ./ path), or publish it with tfmod and use its s3:: source with ?checksum=; or allow its prefix with --allow-module-source";
    match crate::source::parse(source) {
        Err(e) => Some(format!("{at}: {e}")),
        Ok(crate::source::Parsed::S3(s)) if s.checksum.is_none() => Some(format!(
            "{at}: source {shown} has no ?checksum=, so terraform init would not check its bytes: {how}"
        )),
        Ok(crate::source::Parsed::S3(s)) if s.is_in(&w.bucket, &w.prefix) || allowed => None,
        Ok(_) if allowed => None,
        Ok(_) => Some(format!(
            "{at}: source {shown} is fetched from elsewhere when the module is used (a branch or version range can change under it): {how}"
        )),
    }
}

/// Every nested module source of the packed files that may not be published.
fn nested_problems(
    dir: &Path,
    packed: &[String],
    w: &Where,
    allow: &[String],
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for rel in packed {
        let parse = if rel.ends_with(".tf") {
            hcl::module_sources
        } else if rel.ends_with(".tf.json") {
            hcl::module_sources_json
        } else {
            continue;
        };
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
        let blocks = parse(&text).map_err(|e| Error::file(&path, format!("cannot parse: {e}")))?;
        for (name, source) in blocks {
            out.extend(nested_problem(
                rel,
                &name,
                source.as_deref(),
                packed,
                w,
                allow,
            ));
        }
    }
    Ok(out)
}

async fn publish(
    dir: &Path,
    name: &str,
    version: &str,
    store_args: &StoreArgs,
    who: Who,
    timeout: Duration,
) -> Result<(), Error> {
    let Who {
        git_revision,
        publisher,
        allow_module_source,
    } = who;
    let name = ModuleName::parse(name)?;
    let version = names::parse_version(version)?;
    let w = where_(store_args)?;
    let archive = archive::build(dir)?;
    let nested = nested_problems(dir, &archive.paths, &w, &allow_module_source)?;
    if !nested.is_empty() {
        return Err(Error::Usage(format!(
            "{}: nothing was published: {}",
            dir.display(),
            nested.join("; ")
        )));
    }
    let store = Store::connect(timeout).await?;
    let zip_key = names::key(&w.prefix, &name, &version, "zip");
    let meta_key = names::key(&w.prefix, &name, &version, "json");
    let tomb_key = names::key(&w.prefix, &name, &version, "deleted");
    let label = format!("{} {version}", name.as_str());
    let at = format!("s3://{}/{zip_key}", w.bucket);

    // HEAD first: a store that ignores If-None-Match must not get the chance to overwrite.
    let current = store.head(&w.bucket, &zip_key).await?;
    match store.versioned(&w.bucket).await? {
        Some(true) => {}
        Some(false) => tell(format_args!(
            "warning: bucket {} is not versioned: a version deleted or overwritten outside tfmod leaves no trace and cannot be undone; enable versioning",
            w.bucket
        )),
        None => tell(format_args!(
            "warning: cannot tell whether bucket {} is versioned (s3:GetBucketVersioning refused)",
            w.bucket
        )),
    }
    // A version number is used once: any history of it (a tombstone, a delete marker, an old
    // version) refuses it, whatever the bytes.
    let stem = zip_key.strip_suffix("zip").unwrap_or(&zip_key);
    let history = store.history(&w.bucket, stem).await?;
    let ours = |k: &str| k == zip_key || k == meta_key || k == tomb_key;
    let used_once = "a version number is used once; publish a new version";
    if history.versions.iter().any(|(k, _)| *k == tomb_key) {
        return Err(Error::Exists(format!(
            "{label} was deleted (s3://{}/{tomb_key}): {used_once}",
            w.bucket
        )));
    }
    let markers = history.delete_markers.iter().filter(|k| ours(k)).count();
    let versions = history.versions.iter().filter(|(k, _)| ours(k)).count();
    if current.is_none() && (markers > 0 || versions > 0) {
        return Err(Error::Exists(format!(
            "{label} has S3 history but no archive ({versions} object version(s), {markers} delete marker(s) under s3://{}/{stem}*): {used_once}",
            w.bucket
        )));
    }

    let (created, version_id) = match current {
        Some(_) => (false, None),
        None => match store
            .put_new_file(
                &w.bucket,
                &zip_key,
                archive.path(),
                "application/zip",
                &[("tfmod-sha256", &archive.sha256)],
            )
            .await?
        {
            Put::Created(v) => (true, v),
            Put::Exists => (false, None),
        },
    };
    let version_id = if created {
        // Verified write: read it back, and the key must have exactly one version (more means
        // someone wrote it too, on a store that did not enforce the condition).
        let back = store
            .fetch(&w.bucket, &zip_key, version_id.as_deref())
            .await?;
        let count = store
            .history(&w.bucket, &zip_key)
            .await?
            .versions
            .iter()
            .filter(|(k, _)| *k == zip_key)
            .count();
        let back_sha = back.as_ref().map(|b| b.sha256.clone()).unwrap_or_default();
        if back_sha != archive.sha256 || count > 1 {
            return Err(Error::Exists(format!(
                "{at} was written by someone else while publishing {label} ({count} version(s), sha256 {back_sha} now, {} ours): the store did not enforce If-None-Match; check the object and publish a new version",
                archive.sha256
            )));
        }
        version_id
    } else {
        let existing = store
            .fetch(&w.bucket, &zip_key, None)
            .await?
            .ok_or_else(|| {
                Error::Exists(format!(
                    "{at} existed a moment ago and is gone now: {used_once}"
                ))
            })?;
        if existing.sha256 != archive.sha256 {
            return Err(Error::Exists(format!(
                "{label} is already published with different bytes (sha256 {} in {at}, {} from {}): versions are immutable; publish a new version",
                existing.sha256,
                archive.sha256,
                dir.display()
            )));
        }
        // The version the published metadata names, else the one S3 serves now.
        match read_metadata(&store, &w.bucket, &meta_key).await? {
            Some(m) if m.sha256 == archive.sha256 => m.version_id.or(existing.version_id),
            _ => existing.version_id,
        }
    };

    let source = S3Source {
        endpoint: store.endpoint.clone(),
        bucket: w.bucket.clone(),
        key: zip_key.clone(),
        subdir: None,
        version_id: version_id.clone(),
        checksum: Some(archive.sha256.clone()),
    };
    let meta = Metadata {
        name: name.as_str().to_string(),
        version: version.to_string(),
        sha256: archive.sha256.clone(),
        size: archive.size,
        files: archive.paths.clone(),
        git_revision: git_revision.unwrap_or_else(|| git_revision_of(dir, &archive.paths)),
        published_by: user(publisher),
        published_at: now(),
        source: source.to_string(),
        tfmod_version: env!("CARGO_PKG_VERSION").to_string(),
        version_id,
    };
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    if store
        .put_new_bytes(&w.bucket, &meta_key, json, "application/json")
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
    if !archive.left_out.is_empty() {
        let list: Vec<String> = archive
            .left_out
            .iter()
            .map(|(p, why)| format!("{p} ({why})"))
            .collect();
        tell(format_args!(
            "left out, never published: {}",
            list.join(", ")
        ));
    }
    if created {
        tell(format_args!(
            "published {label} (sha256 {})",
            archive.sha256
        ));
    } else {
        tell(format_args!(
            "{label} is already published with these bytes: nothing to do"
        ));
    }
    say(format_args!("{source}"));
    Ok(())
}

/// `git rev-parse HEAD` in `dir`, `-dirty` when what is packed is not what HEAD holds: a packed
/// file modified, staged or untracked, or a file of HEAD deleted; "unknown" outside git.
fn git_revision_of(dir: &Path, packed: &[String]) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(rev) = git(&["rev-parse", "HEAD"]).map(|r| r.trim().to_string()) else {
        return "unknown".into();
    };
    let prefix = git(&["rev-parse", "--show-prefix"]).unwrap_or_default();
    let prefix = prefix.trim();
    let Some(status) = git(&[
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=all",
        "--",
        ".",
    ]) else {
        return format!("{rev}-dirty");
    };
    let packed: std::collections::BTreeSet<&str> = packed.iter().map(String::as_str).collect();
    let mut entries = status.split('\0').filter(|e| !e.is_empty());
    let mut dirty = false;
    while let Some(entry) = entries.next() {
        let (xy, path) = entry.split_at(3.min(entry.len()));
        if xy.starts_with('R') || xy.starts_with('C') {
            entries.next(); // the old path of a rename or copy
        }
        let rel = path.strip_prefix(prefix).unwrap_or(path);
        let deleted = xy.contains('D') && archive::never_packed(rel).is_none();
        if packed.contains(rel) || deleted {
            dirty = true;
            break;
        }
    }
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

async fn versions(name: &str, store_args: &StoreArgs, timeout: Duration) -> Result<(), Error> {
    let name = ModuleName::parse(name)?;
    let w = where_(store_args)?;
    let store = Store::connect(timeout).await?;
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
        say(format_args!("{v}"));
    }
    Ok(())
}

fn parse_spec(spec: &str) -> Result<(ModuleName, semver::Version), Error> {
    let (name, version) = spec
        .split_once('@')
        .ok_or_else(|| Error::Usage(format!("{spec:?}: write NAME@X.Y.Z, e.g. vpc@1.2.0")))?;
    Ok((ModuleName::parse(name)?, names::parse_version(version)?))
}

async fn show(spec: &str, store_args: &StoreArgs, timeout: Duration) -> Result<(), Error> {
    let (name, version) = parse_spec(spec)?;
    let w = where_(store_args)?;
    let store = Store::connect(timeout).await?;
    let meta = published(&store, &w, &name, &version).await?;
    let zip_key = names::key(&w.prefix, &name, &version, "zip");
    let now = store.fetch(&w.bucket, &zip_key, None).await?;
    say(format_args!("name: {}", meta.name));
    say(format_args!("version: {}", meta.version));
    say(format_args!("sha256: {}", meta.sha256));
    say(format_args!(
        "size: {} bytes, {} files",
        meta.size,
        meta.files.len()
    ));
    say(format_args!("git_revision: {}", meta.git_revision));
    say(format_args!("published_by: {}", meta.published_by));
    say(format_args!("published_at: {}", meta.published_at));
    say(format_args!("source: {}", meta.source));
    match now {
        Some(got) if got.sha256 == meta.sha256 => {
            say(format_args!("archive: intact"));
            Ok(())
        }
        Some(got) => {
            say(format_args!(
                "archive: CHANGED since publishing (sha256 {} now)",
                got.sha256
            ));
            Err(Error::Problems(1))
        }
        None => {
            say(format_args!(
                "archive: MISSING (s3://{}/{zip_key})",
                w.bucket
            ));
            Err(Error::Problems(1))
        }
    }
}

async fn delete(spec: &str, store_args: &StoreArgs, timeout: Duration) -> Result<(), Error> {
    let (name, version) = parse_spec(spec)?;
    let w = where_(store_args)?;
    let store = Store::connect(timeout).await?;
    let zip_key = names::key(&w.prefix, &name, &version, "zip");
    let meta_key = names::key(&w.prefix, &name, &version, "json");
    let tomb_key = names::key(&w.prefix, &name, &version, "deleted");
    let meta = read_metadata(&store, &w.bucket, &meta_key)
        .await
        .ok()
        .flatten();
    if meta.is_none() && store.head(&w.bucket, &zip_key).await?.is_none() {
        return Err(Error::NotFound(format!(
            "{} {version} is not published (no s3://{}/{zip_key}): nothing to delete",
            name.as_str(),
            w.bucket
        )));
    }
    // The tombstone first: if the deletion stops half-way, the number is used all the same.
    let tomb = Tombstone {
        name: name.as_str().to_string(),
        version: version.to_string(),
        sha256: meta.map(|m| m.sha256),
        deleted_by: user(None),
        deleted_at: now(),
    };
    let json = serde_json::to_vec_pretty(&tomb).expect("tombstone serialises");
    store
        .put_new_bytes(&w.bucket, &tomb_key, json, "application/json")
        .await?;
    store
        .delete(&w.bucket, &[zip_key.clone(), meta_key.clone()])
        .await?;
    tell(format_args!(
        "deleted {} {version}; s3://{}/{tomb_key} keeps the number used (never published again)",
        name.as_str(),
        w.bucket
    ));
    Ok(())
}

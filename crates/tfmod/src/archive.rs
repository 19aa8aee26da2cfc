//! The module archive: a zip whose bytes depend on the tree's paths, contents and executable
//! bits alone. Entries sorted by path, every time 1980-01-01 00:00 (zip's epoch), mode 0644 or
//! 0755, stored (uncompressed: no compressor version can change the bytes). The module's files
//! sit at the archive's root, where Terraform looks for them after go-getter unpacks it.
//!
//! What goes in is the module and nothing that must stay local: the `.gitignore` files of the
//! tree (and of its parents up to the repository) are honoured, and [`never_packed`] files are
//! left out whatever `.gitignore` says (state, plans, override files, crash logs, auto-loaded
//! variable files, Terraform's working directories). The archive is written to a temporary file
//! and hashed from it: memory does not grow with its size.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::Error;

/// A built archive, in a temporary file removed when this is dropped.
#[derive(Debug)]
pub struct Archive {
    file: tempfile::NamedTempFile,
    /// Lowercase hex SHA-256 of the archive's bytes.
    pub sha256: String,
    pub size: u64,
    /// The archived paths, in order.
    pub paths: Vec<String>,
    /// Files left out by [`never_packed`] (not by `.gitignore`), with the reason.
    pub left_out: LeftOut,
}

impl Archive {
    /// The archive's file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Why a path (relative, `/`-separated) never goes into an archive, if it does not: Terraform's
/// and Terragrunt's working files, `.git`, state and plans, override files (Terraform merges them
/// into every configuration that uses the module), crash logs, auto-loaded variable files (often
/// secrets), and tests (`tests/` at the top, `*.tftest.hcl`/`*.tftest.json`).
pub fn never_packed(rel: &str) -> Option<&'static str> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.first() == Some(&"tests") && parts.len() > 1 {
        return Some("tests");
    }
    let (dirs, name) = parts.split_at(parts.len() - 1);
    let name = name[0];
    if dirs
        .iter()
        .chain(std::iter::once(&name))
        .any(|p| p.starts_with(".terraform") || *p == ".terragrunt-cache" || *p == ".git")
    {
        return Some("a working directory");
    }
    let ends = |s: &[&str]| s.iter().any(|x| name.ends_with(x));
    if name.ends_with(".tfstate") || name.contains(".tfstate.") {
        Some("state")
    } else if ends(&[".tfplan"]) || name.contains(".tfplan.") {
        Some("a plan")
    } else if matches!(name, "override.tf" | "override.tf.json")
        || ends(&["_override.tf", "_override.tf.json"])
    {
        Some("an override file")
    } else if name == "crash.log" || (name.starts_with("crash.") && name.ends_with(".log")) {
        Some("a crash log")
    } else if ends(&[".auto.tfvars", ".auto.tfvars.json"])
        || matches!(name, "terraform.tfvars" | "terraform.tfvars.json")
    {
        Some("auto-loaded variables")
    } else if matches!(name, ".terraformrc" | "terraform.rc") {
        Some("CLI configuration")
    } else if secret(name) {
        Some("a secret")
    } else if ends(&[".tftest.hcl", ".tftest.json"]) {
        Some("tests")
    } else {
        None
    }
}

/// Names that hold secrets, committed or not: `.env*`, `*.pem`, `*.key`, SSH keys (`id_*` without
/// an extension, or `.pub`), `.netrc`, and variable files (`*.tfvars[.json]`) but examples.
fn secret(name: &str) -> bool {
    let tfvars = name.ends_with(".tfvars") || name.ends_with(".tfvars.json");
    name.starts_with(".env")
        || name.ends_with(".pem")
        || name.ends_with(".key")
        || (name.starts_with("id_") && (!name.contains('.') || name.ends_with(".pub")))
        || name == ".netrc"
        || (tfvars && !name.contains("example"))
}

/// Builds the archive of `dir`. Refuses symlinks (their target is outside the archive's
/// control) and a tree without a `.tf` or `.tf.json` file at its top.
pub fn build(dir: &Path) -> Result<Archive, Error> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::file(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{}: not a directory: give the module's directory",
            dir.display()
        )));
    }
    let (mut files, left_out) = walk(dir)?;
    files.sort();
    if !files
        .iter()
        .any(|(rel, _)| !rel.contains('/') && (rel.ends_with(".tf") || rel.ends_with(".tf.json")))
    {
        return Err(Error::Usage(format!(
            "{}: no .tf file at the top of the module: Terraform reads the module from the archive's root; give the module's own directory",
            dir.display()
        )));
    }
    let mut tmp = tempfile::NamedTempFile::new()
        .map_err(|e| Error::file(std::env::temp_dir(), format!("a temporary file: {e}")))?;
    let out = tmp.reopen().map_err(|e| Error::file(tmp.path(), e))?;
    let mut zip = ZipWriter::new(BufWriter::new(out));
    let mut paths = Vec::with_capacity(files.len());
    for (rel, path) in &files {
        let mut src = File::open(path).map_err(|e| Error::file(path, e))?;
        let len = src.metadata().map_err(|e| Error::file(path, e))?.len();
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .unix_permissions(if is_executable(path)? { 0o755 } else { 0o644 })
            .large_file(len >= u32::MAX as u64);
        let zerr = |e: zip::result::ZipError| Error::file(path, format!("archiving: {e}"));
        zip.start_file(rel.as_str(), opts).map_err(zerr)?;
        std::io::copy(&mut src, &mut zip).map_err(|e| Error::file(path, e))?;
        paths.push(rel.clone());
    }
    let mut w = zip
        .finish()
        .map_err(|e| Error::file(dir, format!("archiving: {e}")))?;
    w.flush().map_err(|e| Error::file(tmp.path(), e))?;
    drop(w);
    let (sha256, size) = hash_file(tmp.as_file_mut()).map_err(|e| Error::file(dir, e))?;
    Ok(Archive {
        file: tmp,
        sha256,
        size,
        paths,
        left_out,
    })
}

fn hash_file(f: &mut File) -> std::io::Result<(String, u64)> {
    use std::io::Seek;
    f.rewind()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

type Files = Vec<(String, PathBuf)>;
type LeftOut = Vec<(String, &'static str)>;

/// `git ls-files` in `dir` (paths relative to it), `None` outside a git work tree.
fn git_ls(dir: &Path, args: &[&str]) -> Option<Vec<String>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .arg("ls-files")
        .arg("-z")
        .args(args)
        .args(["--", "."])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Inside git: the files git tracks (as they are in the work tree), never what it ignores
/// (.gitignore, .git/info/exclude, the global excludes file). An untracked file that would be
/// packed is refused: the archive would hold what the repository does not. `None` outside git.
fn walk_git(dir: &Path) -> Option<Result<(Files, LeftOut), Error>> {
    let tracked = git_ls(dir, &["--cached"])?;
    let untracked = git_ls(dir, &["--others", "--exclude-standard"])?;
    let mut files = Vec::new();
    let mut left_out = Vec::new();
    let mut refused = Vec::new();
    let hidden = |rel: &str| {
        rel.split('/')
            .any(|p| p == ".git" || p.starts_with(".terraform") || p == ".terragrunt-cache")
    };
    for (rel, is_tracked) in tracked
        .into_iter()
        .map(|r| (r, true))
        .chain(untracked.into_iter().map(|r| (r, false)))
    {
        if let Some(why) = never_packed(&rel) {
            if !hidden(&rel) && !left_out.iter().any(|(r, _)| *r == rel) {
                left_out.push((rel, why));
            }
            continue;
        }
        if !is_tracked {
            refused.push(rel);
            continue;
        }
        let path = dir.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // deleted in the work tree: not packed (the revision says dirty)
        };
        if meta.file_type().is_symlink() {
            return Some(Err(Error::file(
                path,
                "a symlink: tfmod archives regular files only; replace it with the file",
            )));
        }
        if !meta.is_file() {
            return Some(Err(Error::file(
                path,
                "not a regular file (a git submodule?): tfmod archives regular files only",
            )));
        }
        files.push((rel, path));
    }
    if !refused.is_empty() {
        return Some(Err(Error::Usage(format!(
            "{}: untracked files would be published that the repository does not hold ({}): commit them, delete them, or make git ignore them",
            dir.display(),
            refused.join(", ")
        ))));
    }
    Some(Ok((files, left_out)))
}

/// The files of `dir` that go in (relative path, path), and those [`never_packed`] left out.
fn walk(dir: &Path) -> Result<(Files, LeftOut), Error> {
    if let Some(found) = walk_git(dir) {
        return found;
    }
    let mut files = Vec::new();
    let mut left_out = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .git_ignore(true)
        .require_git(false)
        .parents(true)
        .follow_links(false)
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let path = entry.path();
        if path == dir {
            continue;
        }
        let rel = path
            .strip_prefix(dir)
            .map_err(|e| Error::file(path, e))?
            .to_str()
            .ok_or_else(|| Error::file(path, "the name is not UTF-8; rename it"))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        let ft = entry
            .file_type()
            .ok_or_else(|| Error::file(path, "cannot tell its type"))?;
        if ft.is_dir() {
            continue;
        }
        if let Some(why) = never_packed(&rel) {
            if !rel
                .split('/')
                .any(|p| p == ".git" || p.starts_with(".terraform") || p == ".terragrunt-cache")
            {
                left_out.push((rel, why));
            }
            continue;
        }
        if ft.is_symlink() {
            return Err(Error::file(
                path,
                "a symlink: tfmod archives regular files only; replace it with the file",
            ));
        }
        if ft.is_file() {
            files.push((rel, path.to_path_buf()));
        }
    }
    Ok((files, left_out))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    Ok(m.permissions().mode() & 0o100 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> Result<bool, Error> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_never_goes_in() {
        for out in [
            ".terraform/modules/x.tf",
            ".terraform.lock.hcl",
            "sub/.terraform/x",
            ".git/config",
            ".terragrunt-cache/a/b.tf",
            "tests/basic.tftest.hcl",
            "tests/fixtures/main.tf",
            "main.tftest.hcl",
            "terraform.tfstate",
            "x/terraform.tfstate.backup",
            "terraform.tfstate.1700000000.backup",
            "plan.tfplan",
            "crash.log",
            "crash.20240101.log",
            "override.tf",
            "sub/override.tf.json",
            "dev_override.tf",
            "secrets.auto.tfvars",
            "prod.auto.tfvars.json",
            "terraform.tfvars",
            ".terraformrc",
            ".envrc",
            ".env.prod",
            "certs/ca.pem",
            "tls.key",
            "id_rsa",
            "id_ed25519.pub",
            ".netrc",
            "prod.tfvars",
            "prod.tfvars.json",
        ] {
            assert!(never_packed(out).is_some(), "{out}");
        }
        for keep in [
            "main.tf",
            "modules/sub/main.tf",
            "files/tests/x.json",
            "README.md",
            ".gitignore",
            "tests",
            "overrides.tf",
            "example.tfvars",
            "prod.tfvars.example",
            "id_generator.tf",
            "keys.tf",
        ] {
            assert_eq!(never_packed(keep), None, "{keep}");
        }
    }
}

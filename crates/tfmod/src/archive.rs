//! The module archive: a zip whose bytes depend on the tree's paths, contents and executable
//! bits alone. Entries sorted by path, every time 1980-01-01 00:00 (zip's epoch), mode 0644 or
//! 0755, stored (uncompressed: no compressor version can change the bytes). The module's files
//! sit at the archive's root, where Terraform looks for them after go-getter unpacks it.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::Error;

/// A built archive.
#[derive(Debug)]
pub struct Archive {
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The archived paths, in order.
    pub paths: Vec<String>,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a path (relative, `/`-separated) stays out of the archive: Terraform's and
/// Terragrunt's working files (`.terraform*`, `.terragrunt-cache`), `.git`, state files, and
/// tests (`tests/` at the top, `*.tftest.hcl`/`*.tftest.json`).
pub fn excluded(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.first() == Some(&"tests") && parts.len() > 1 {
        return true;
    }
    parts.iter().any(|p| {
        p.starts_with(".terraform")
            || *p == ".terragrunt-cache"
            || *p == ".git"
            || p.ends_with(".tfstate")
            || p.ends_with(".tfstate.backup")
            || p.ends_with(".tftest.hcl")
            || p.ends_with(".tftest.json")
    })
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
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
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
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let mut paths = Vec::with_capacity(files.len());
    for (rel, path) in &files {
        let content = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let exec = is_executable(path)?;
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .unix_permissions(if exec { 0o755 } else { 0o644 })
            .large_file(content.len() as u64 >= u32::MAX as u64);
        let zerr = |e: zip::result::ZipError| Error::file(path, format!("archiving: {e}"));
        zip.start_file(rel.as_str(), opts).map_err(zerr)?;
        zip.write_all(&content).map_err(|e| Error::file(path, e))?;
        paths.push(rel.clone());
    }
    let bytes = zip
        .finish()
        .map_err(|e| Error::file(dir, format!("archiving: {e}")))?
        .into_inner();
    Ok(Archive {
        sha256: sha256_hex(&bytes),
        bytes,
        paths,
    })
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| Error::file(&path, "the name is not UTF-8; rename it"))?;
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().map_err(|e| Error::file(&path, e))?;
        if ft.is_dir() {
            if !excluded(&format!("{child}/x")) {
                walk(&path, &child, out)?;
            }
        } else if excluded(&child) {
            continue;
        } else if ft.is_symlink() {
            return Err(Error::file(
                &path,
                "a symlink: tfmod archives regular files only; replace it with the file",
            ));
        } else if ft.is_file() {
            out.push((child, path));
        }
    }
    Ok(())
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
    fn exclusions() {
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
        ] {
            assert!(excluded(out), "{out}");
        }
        for keep in [
            "main.tf",
            "modules/sub/main.tf",
            "files/tests/x.json",
            "README.md",
            ".gitignore",
            "tests",
        ] {
            assert!(!excluded(keep), "{keep}");
        }
    }
}

//! Which files a load reads (folders walked in sorted order) and how much of them: any
//! file at most [`MAX_FILE_BYTES`], a swarm secret's or config's content at most 500 KiB.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Files larger than this are rejected before they are parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Swarm refuses secrets and configs larger than this (`MaxSecretSize`, `MaxConfigSize`).
const MAX_SWARM_OBJECT_BYTES: usize = 500 * 1024;

/// Adds `path` to `files`: a file whatever its extension, a folder's `*.yaml`, `*.yml` and
/// `*.json` files recursively, in sorted order.
pub(super) fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot read: {err}"))?;
    if !metadata.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .and_then(|dir| dir.map(|entry| entry.map(|e| e.path())).collect())
        .map_err(|err| format!("cannot list folder: {err}"))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"))
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads a file, refusing one over [`MAX_FILE_BYTES`] before reading it.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "{} is larger than the {} MiB limit",
            path.display(),
            MAX_FILE_BYTES >> 20
        )
    };
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(too_big());
    }
    // The size can change between stat and read (or be 0 for a pipe): cap the read too.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Reads the content of a swarm secret or config, which the swarm caps at 500 KiB.
pub(super) fn read_swarm_object(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read_limited(path)?;
    if bytes.len() > MAX_SWARM_OBJECT_BYTES {
        return Err(format!(
            "{} is larger than 500 KiB, the swarm's limit for a secret or config",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Reads a text file, refusing one over [`MAX_FILE_BYTES`].
pub(super) fn read_text(path: &Path) -> Result<String, String> {
    utf8(path, read_limited(path)?)
}

/// `bytes` as text, or a message naming `path`.
pub(super) fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::fixtures::{folder, load_one};

    #[test]
    fn oversized_files_are_rejected_before_parsing() {
        let dir = folder(&[]);
        let path = dir.path().join("big.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let err = load_one(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("big.yaml is larger than the 4 MiB limit"),
            "{err}"
        );
        let secret = folder(&[(
            "s.yaml",
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: s}\nspec:\n  value: {file: big.bin}\n",
        )]);
        std::fs::write(secret.path().join("big.bin"), vec![b'x'; 600 * 1024]).unwrap();
        let err = load_one(&secret.path().join("s.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("(Secret/s): spec.value.file: ")
                && err.to_string().ends_with(
                    "big.bin is larger than 500 KiB, the swarm's limit for a secret or config"
                ),
            "{err}"
        );
    }
}

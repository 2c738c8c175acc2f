//! A folder of resources as `kubectl apply -f DIR` reads it: its `.yaml`,
//! `.yml` and `.json` files, in name order.

use std::path::{Path, PathBuf};

/// The folder's resource files, sorted.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Each resource file's name and text; files that cannot be read are
/// left out (the folder controller reports them).
pub fn read(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    Ok(files(dir)?
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            Some((file_name(&path), text))
        })
        .collect())
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

//! Bounded access to the workspace, from inside the agent: a listing capped in entries and depth
//! ([`list_files`]), a file's text capped with a marker ([`read_text`]), the files a prompt shows
//! ([`bundle`]), and writes that stay inside the stage's globs ([`write_file`], [`apply_blocks`]).
//!
//! `root` is where the workspace is seen: `/` inside the sandbox (the policy's `**` grant
//! preopens the workspace root there), a temporary folder in tests. Symbolic links are neither
//! followed nor written through: a link out of the grant would kill the agent at the host.

use std::io::Read;
use std::path::Path;

use crate::paths::{Globs, PathError, check_path};
use crate::reply::FileBlocks;
use crate::stages::Refused;

/// Most entries a listing visits (files and folders), whatever it keeps.
pub const MAX_VISITS: usize = 5000;
/// Deepest folder a listing enters.
pub const MAX_LIST_DEPTH: usize = 12;
/// The marker after a file's text that was cut.
pub const CUT_MARKER: &str = "\n[… cut: the file is longer …]\n";

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is not a normal relative one.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Missing, a folder, or a link.
    #[error("`{0}` is not a regular file in the workspace")]
    NotAFile(String),
    /// Has a NUL byte or is not UTF-8 in its first bytes.
    #[error("`{0}` is not text")]
    Binary(String),
    /// The read failed.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Why a file was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The path is outside the stage's globs or not normal.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A folder on the way is missing and the globs do not allow creating it, or is not a folder.
    #[error("folder `{0}` does not exist and this stage may not create it")]
    NoFolder(String),
    /// The target or a folder on the way is a symbolic link or not a regular file.
    #[error("`{0}` is a link or not a regular file; not written through")]
    NotRegular(String),
    /// The write failed.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// The workspace's files below `root`: relative paths, sorted, hidden files and folders and
/// links left out, at most `max`; `true` when more were left out.
pub fn list_files(root: &Path, max: usize) -> (Vec<String>, bool) {
    let mut files = Vec::new();
    let mut visits = 0;
    let mut more = false;
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for e in entries.flatten() {
            visits += 1;
            if visits > MAX_VISITS {
                more = true;
                break;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() && depth < MAX_LIST_DEPTH => stack.push((rel, depth + 1)),
                Ok(t) if t.is_file() => files.push(rel),
                _ => {}
            }
        }
    }
    files.sort();
    if files.len() > max {
        files.truncate(max);
        more = true;
    }
    (files, more)
}

/// The text of `rel` below `root`, at most `cap` bytes (cut on a character boundary, followed by
/// [`CUT_MARKER`]); `true` when it was cut.
///
/// # Errors
///
/// [`ReadError`]: a path that is not normal, not a regular file, not text, or unreadable.
pub fn read_text(root: &Path, rel: &str, cap: usize) -> Result<(String, bool), ReadError> {
    let rel = check_path(rel)?;
    let path = root.join(&rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Err(ReadError::NotAFile(rel)),
    }
    let io = |source| ReadError::Io {
        path: rel.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .map_err(io)?
        .take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io {
            path: rel.clone(),
            source: e,
        })?;
    let cut = bytes.len() > cap;
    bytes.truncate(cap);
    if bytes.contains(&0) {
        return Err(ReadError::Binary(rel));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        // A cut may split the last character: up to three bytes of it may be dropped.
        Err(e) if cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut b = e.into_bytes();
            b.truncate(valid);
            String::from_utf8(b).map_err(|_| ReadError::Binary(rel.clone()))?
        }
        Err(_) => return Err(ReadError::Binary(rel)),
    };
    Ok(if cut {
        (format!("{text}{CUT_MARKER}"), true)
    } else {
        (text, false)
    })
}

/// The files a prompt shows, with their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// `(path, text)` in the order chosen.
    pub files: Vec<(String, String)>,
    /// Files chosen but left out (unreadable, not text, over the total).
    pub skipped: Vec<String>,
}

impl Bundle {
    /// The files as prompt text: each under a `FILE: <path>` line in a fence.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (path, text) in &self.files {
            let fence = if text.contains("```") { "````" } else { "```" };
            out.push_str(&format!("FILE: {path}\n{fence}\n{text}"));
            if !text.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(fence);
            out.push_str("\n\n");
        }
        out
    }
}

/// The files to show a model: those of `listed` that `mentions` names (by path or file name),
/// then, when `listed` has at most `all_below` files, the rest; each read with [`read_text`] up to
/// `per_file` bytes, until `total` bytes are taken. Paths that are not normal are skipped.
pub fn bundle(
    root: &Path,
    listed: &[String],
    mentions: &str,
    all_below: usize,
    per_file: usize,
    total: usize,
) -> Bundle {
    let named = |p: &str| {
        let name = p.rsplit('/').next().unwrap_or(p);
        mentions.contains(p) || (name.len() > 2 && mentions.contains(name))
    };
    let mut order: Vec<&String> = listed.iter().filter(|p| named(p)).collect();
    if listed.len() <= all_below {
        order.extend(listed.iter().filter(|p| !named(p)));
    }
    let mut out = Bundle::default();
    let mut used = 0;
    for path in order.into_iter().take(200) {
        match read_text(root, path, per_file) {
            Ok((text, _)) if used + text.len() <= total => {
                used += text.len();
                out.files.push((path.clone(), text));
            }
            _ => out.skipped.push(crate::clip(path, 512)),
        }
    }
    out
}

/// Write `content` to `raw` below `root`, if `globs` allow it: missing folders on the way are
/// created only where the globs allow writing them; links are never written through. Returns the
/// normal path written.
///
/// # Errors
///
/// [`WriteError`]: outside the globs, not normal, a folder that may not be made, a link, an I/O
/// failure.
pub fn write_file(
    root: &Path,
    raw: &str,
    content: &str,
    globs: &Globs,
) -> Result<String, WriteError> {
    let rel = globs.check(raw)?;
    let parts: Vec<&str> = rel.split('/').collect();
    for i in 1..parts.len() {
        let dir = parts[..i].join("/");
        let host = root.join(&dir);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(WriteError::NotRegular(dir)),
            Err(_) if globs.matches(&dir) => {
                std::fs::create_dir(&host).map_err(|source| WriteError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            Err(_) => return Err(WriteError::NoFolder(dir)),
        }
    }
    let path = root.join(&rel);
    if let Ok(m) = std::fs::symlink_metadata(&path)
        && !m.is_file()
    {
        return Err(WriteError::NotRegular(rel));
    }
    std::fs::write(&path, content).map_err(|source| WriteError::Io {
        path: rel.clone(),
        source,
    })?;
    Ok(rel)
}

/// Write every block of `blocks` that `globs` allow ([`write_file`]); the problems of the reply
/// and the refused writes come back as [`Refused`] entries. Returns (written paths, refused).
pub fn apply_blocks(
    root: &Path,
    blocks: &FileBlocks,
    globs: &Globs,
) -> (Vec<String>, Vec<Refused>) {
    let mut written = Vec::new();
    let mut refused: Vec<Refused> = blocks
        .problems
        .iter()
        .map(|p| Refused {
            path: p.path.clone(),
            reason: p.reason.clone(),
        })
        .collect();
    for b in &blocks.blocks {
        match write_file(root, &b.path, &b.content, globs) {
            Ok(path) => written.push(path),
            Err(e) => refused.push(Refused {
                path: crate::clip(&b.path, 512),
                reason: e.to_string(),
            }),
        }
    }
    (written, refused)
}

#[cfg(test)]
mod tests;

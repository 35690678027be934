//! Guest path resolution, free of any I/O: a path the guest names relative to one of its open
//! folders becomes a normalized workspace path, or a refusal when it is absolute or climbs out
//! of the folder it was granted through. Symlinks are the capability's to check on the host.

/// Resolve `path`, named from the open folder whose guest path is `base`, where `base` lies in
/// the preopened folder `floor` (a guest path such as `/notes`, or `/` for the workspace root).
/// Returns the workspace-relative path, `/`-separated, without `.` or `..` (`""` is the root).
///
/// # Errors
///
/// A sentence saying why the path leaves the grant: absolute, a NUL byte, or `..` past `floor`.
pub fn resolve(base: &str, floor: &str, path: &str) -> Result<String, String> {
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(format!("absolute path `{}`", path.escape_debug()));
    }
    if path.contains('\0') {
        return Err(format!(
            "path `{}` contains a NUL byte",
            path.escape_debug()
        ));
    }
    let components = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let floor = components(floor);
    let mut parts = components(base);
    // `base` and `floor` come from the host's own bookkeeping; anything but a normalized base
    // inside its floor is refused rather than interpreted.
    let normalized = |p: &[String]| p.iter().all(|c| c != "." && c != "..");
    if !normalized(&parts) || !normalized(&floor) || !parts.starts_with(&floor) {
        return Err(format!(
            "`{}` named from `{base}`, which is not a normalized folder inside `/{}`",
            path.escape_debug(),
            floor.join("/")
        ));
    }
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.len() <= floor.len() {
                    return Err(format!(
                        "`{}` climbs out of `/{}` with `..`",
                        path.escape_debug(),
                        floor.join("/")
                    ));
                }
                parts.pop();
            }
            c => parts.push(c.to_string()),
        }
    }
    Ok(parts.join("/"))
}

/// `path` with `.` dropped and `..` taken back where it can be (`/..` is `/`): what it names
/// unless links say otherwise (a host path, not a guest's: no I/O, links are not followed).
pub fn lexical(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};

    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn resolve_table() {
        let ok = [
            ("/data", "/data", "in.txt", "data/in.txt"),
            ("/data", "/data", "./out/../in.txt", "data/in.txt"),
            ("/data", "/data", "", "data"),
            ("/data/out", "/data", "..", "data"),
            ("/", "/", "a/b", "a/b"),
            ("/", "/", "a/..", ""),
        ];
        for (base, floor, path, want) in ok {
            assert_eq!(resolve(base, floor, path).unwrap(), want, "{base} + {path}");
        }
        let bad = [
            ("/data", "/data", "/etc/passwd"),
            ("/data", "/data", ".."),
            ("/data", "/data", "../secret/key"),
            ("/data", "/data", "out/../../secret"),
            ("/data/out", "/data", "../../secret"),
            ("/", "/", ".."),
            ("/data", "/data", "a\0b"),
            ("/data", "/data", "\\server\\share"),
            ("/../x", "/", "a"),
            ("/x/./y", "/x", "a"),
            ("/other", "/data", "a"),
        ];
        for (base, floor, path) in bad {
            assert!(
                resolve(base, floor, path).is_err(),
                "{base} + {path} must be refused"
            );
        }
    }
}

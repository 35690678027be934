//! Which folder a caller may name as a task's workspace: an existing folder of this host that is
//! not the server's own. The server's data directory (its keys, state store and audit log) and
//! its agents folders are refused, and so is anything inside them or any folder that holds them
//! (`/` holds everything): a client could otherwise point an agent granted broad file access at
//! the server's signing key or ledger, or let one write an agent of its own into the folder
//! served. The path is resolved first (`..`, links), and the resolved folder is the one used.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;

use super::ApiError;

/// `dir` resolved, if it is a folder that neither lies inside nor holds any of `guarded`.
///
/// # Errors
///
/// 400 `bad-workspace` when `dir` is not an existing folder; 403 `workspace-refused` when it is,
/// holds or lies inside one of `guarded`.
pub(super) fn checked(dir: &Path, guarded: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let resolved = std::fs::canonicalize(dir)
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad-workspace",
                "the workspace is not a folder on this host; name an existing folder, or none",
            )
        })?;
    for own in guarded {
        // A folder that cannot be resolved does not exist, so nothing can lie inside it.
        let Ok(own) = std::fs::canonicalize(own) else {
            continue;
        };
        if resolved.starts_with(&own) || own.starts_with(&resolved) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "workspace-refused",
                "the workspace is, holds or lies inside this server's own files (its data \
                 directory or agents folder); name a folder of its own",
            ));
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_folders_their_insides_and_their_holders_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let agents = root.path().join("agents");
        let work = root.path().join("work");
        for d in [&data, &agents, &work, &data.join("keys")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&data, root.path().join("link")).unwrap();
        let guarded = [data.clone(), agents.clone(), root.path().join("gone")];
        let code = |dir: &Path| checked(dir, &guarded).map_err(|e| e.code);
        assert_eq!(code(&work), Ok(std::fs::canonicalize(&work).unwrap()));
        for refused in [
            data.clone(),
            data.join("keys"),
            agents.clone(),
            root.path().to_path_buf(),
            PathBuf::from("/"),
            work.join("..").join("data"),
            root.path().join("link"),
        ] {
            assert_eq!(code(&refused), Err("workspace-refused"), "{refused:?}");
        }
        assert_eq!(code(&root.path().join("nowhere")), Err("bad-workspace"));
        let file = work.join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(code(&file), Err("bad-workspace"));
    }
}

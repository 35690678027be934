//! Which folder a caller may name as a task's workspace: deny by default, only one of the
//! server's workspace roots (`[server] workspaces`; without the key, the server's own default
//! workspace, its current folder) or a folder inside one, and never the server's own. A folder
//! outside every root is `403 workspace-not-allowed`, whether it exists or not, and the roots
//! are never told. Inside a root, the server's data directory (its keys, state store and audit
//! log) and its agents folders are still refused, and so is anything inside them or any folder
//! that holds them: a client could otherwise point an agent granted broad file access at the
//! server's signing key or ledger, or let one write an agent of its own into the folder served.
//! A root that resolves to `/` is no root, nor is the default one when it is, holds or lies
//! inside the server's own folders (a server started in `/` or a home folder allows nothing
//! until told). The path is resolved first (`..`, links), and the resolved folder is the one
//! used.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use warden_policy::ServerSettings;
use warden_policy::path::lexical;

use super::ApiError;

/// The most characters of a refused workspace's path an audit record keeps.
const SHOWN_CHARS: usize = 256;

/// The folders clients may name a workspace in, as configured (absolute, not yet resolved:
/// links are followed at each request, so a root created or moved later counts as it is then).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Roots {
    paths: Vec<PathBuf>,
    /// Whether `paths` is the default (the current folder), not the operator's list.
    default: bool,
    /// Folders the operator named on the command line (`warden mcp --workspace DIR`).
    named: Vec<PathBuf>,
}

impl Roots {
    /// The roots `settings` lists, a relative one against `current` (the server's current
    /// folder); without the key, `current` alone (none if it is unknown).
    pub(crate) fn of(settings: &ServerSettings, current: Option<&Path>) -> Self {
        let listed = match &settings.workspaces {
            Some(list) => list.clone(),
            None => current.map(Path::to_path_buf).into_iter().collect(),
        };
        Roots {
            named: Vec::new(),
            default: settings.workspaces.is_none(),
            paths: listed
                .into_iter()
                .filter_map(|r| match (r.is_absolute(), current) {
                    (true, _) => Some(r),
                    (false, Some(c)) => Some(c.join(r)),
                    // A relative root with no current folder names nothing.
                    (false, None) => None,
                })
                .collect(),
        }
    }

    /// The roots resolved that exist and are not `/`; the default root only if it neither is,
    /// holds nor lies inside one of `guarded` (already resolved).
    fn resolved(&self, guarded: &[PathBuf]) -> Vec<PathBuf> {
        let real = |r: &PathBuf| {
            std::fs::canonicalize(r)
                .ok()
                .filter(|r| r.parent().is_some())
        };
        let paths = self.paths.iter().filter_map(real);
        paths
            .filter(|r| !(self.default && clashes(r, guarded)))
            .chain(self.named.iter().filter_map(real))
            .collect()
    }

    /// These roots and `dir`, a folder the operator named (`warden mcp --workspace DIR`): it
    /// counts as a root unless it resolves to `/`, the server's own folders still refused.
    pub(crate) fn and_named(&self, dir: PathBuf) -> Self {
        let mut roots = self.clone();
        roots.named.push(dir);
        roots
    }
}

/// Whether `dir` is, holds or lies inside one of `guarded`.
fn clashes(dir: &Path, guarded: &[PathBuf]) -> bool {
    guarded
        .iter()
        .any(|own| dir.starts_with(own) || own.starts_with(dir))
}

/// `dir` resolved, if it is an existing folder that is one of `roots` or lies inside one, and
/// neither lies inside nor holds any of `guarded`.
///
/// # Errors
///
/// 403 `workspace-not-allowed` when it lies outside every root (whether it exists or not); 403
/// `workspace-refused` when, inside a root, it is, holds or lies inside one of `guarded`; 400
/// `bad-workspace` when, inside a root, it is not an existing folder.
pub(super) fn checked(dir: &Path, roots: &Roots, guarded: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad-workspace",
            "the workspace is not a folder on this host; name an existing folder, or none",
        )
    };
    // A folder that cannot be resolved does not exist, so nothing can lie inside it.
    let guarded: Vec<PathBuf> = guarded
        .iter()
        .filter_map(|own| std::fs::canonicalize(own).ok())
        .collect();
    let allowed = roots.resolved(&guarded);
    let inside = |path: &Path| allowed.iter().any(|root| path.starts_with(root));
    let Ok(resolved) = std::fs::canonicalize(dir) else {
        // Missing: inside a root it is a bad workspace, outside every root not allowed (which
        // tells nothing of what exists out there), judged against the same roots.
        return Err(match inside(&resolved_as_far_as_it_exists(dir)) {
            true => bad(),
            false => not_allowed(),
        });
    };
    if !inside(&resolved) {
        return Err(not_allowed());
    }
    if clashes(&resolved, &guarded) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "workspace-refused",
            "the workspace is, holds or lies inside this server's own files (its data \
             directory or agents folder); name a folder of its own",
        ));
    }
    if !resolved.is_dir() {
        return Err(bad());
    }
    Ok(resolved)
}

/// `dir`, which does not exist, with its nearest existing folder resolved (links followed) and
/// the rest as written (`.` and `..` taken lexically): where it would be if it were made.
fn resolved_as_far_as_it_exists(dir: &Path) -> PathBuf {
    let absolute = lexical(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
    let mut missing = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return missing
                .iter()
                .rev()
                .fold(real, |path, name| path.join(name));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// 403 `workspace-not-allowed`: what to do, never the roots (the host's layout is not the
/// client's to learn).
fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "workspace-not-allowed",
        "the workspace is not one this server lets clients name: name a folder under one of the \
         server's workspace roots (its operator lists them in `[server] workspaces` of the host \
         configuration), or none",
    )
}

/// `dir` as an audit record keeps it: escaped and at most 256 characters (`…` after a cut).
pub(super) fn shown(dir: &Path) -> String {
    let text = dir.to_string_lossy();
    let line = crate::terminal::line(&text);
    let mut chars = line.chars();
    let mut kept: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() {
        kept.push('…');
    }
    kept
}

impl super::ServerState {
    /// `dir` resolved, if a task may name it as its workspace on this server (one of its roots
    /// or inside one, never its own files):
    /// the error a task naming it would get otherwise (nothing audited: no task asked).
    ///
    /// # Errors
    ///
    /// As a task's: 403 `workspace-not-allowed` or `workspace-refused`, 400 `bad-workspace`.
    pub fn check_workspace(&self, dir: &Path) -> Result<PathBuf, ApiError> {
        checked(dir, &self.workspace_roots, &self.own_folders()?)
    }

    /// `dir`, a queued task's workspace taken up again at a start, if the server's roots still
    /// allow it; else why not (the task is refused).
    pub(super) fn readmitted_workspace(&self, dir: &Path) -> Result<PathBuf, String> {
        let own = self.own_folders().map_err(|e| e.message)?;
        checked(dir, &self.workspace_roots, &own).map_err(|e| format!("{}: {}", e.code, e.message))
    }

    /// `dir` resolved if `caller` may name it as `agent`'s workspace ([`checked`]); a
    /// `403` refusal (outside the roots, or the server's own folders) is audited `task-refused`
    /// with why and the path asked for (escaped, bounded).
    pub(super) async fn checked_workspace(
        &self,
        caller: &super::Caller,
        agent: &str,
        dir: &std::path::Path,
    ) -> Result<std::path::PathBuf, ApiError> {
        let refused = match checked(dir, &self.workspace_roots, &self.own_folders()?) {
            Err(e) if e.status == StatusCode::FORBIDDEN => e,
            checked => return checked,
        };
        let detail = serde_json::json!({"why": refused.code, "workspace": shown(dir)});
        self.audit_refusal(agent, &caller.user.subject, detail)
            .await?;
        Err(refused)
    }
}

#[cfg(test)]
mod tests;

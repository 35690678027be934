//! The file capability's decision logic, free of wasmtime: where the policy's folders are mounted,
//! how a guest path (relative to one of its open directories) maps to a workspace path, and
//! whether the grant allows the operation. Where a path leads once its symlinks are followed is
//! [`super::resolve`]'s to find; the result is judged here as well.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::policy::{FsGrant, UserGrant};

/// What an operation does to the path it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a file, list a directory, or read metadata.
    Read,
    /// Create, modify, rename, link or delete.
    Write,
}

/// One preopened folder: where the guest sees it and where it is on the host.
#[derive(Debug, Clone)]
pub struct MountPoint {
    /// Workspace-relative folder ("" = the workspace root).
    pub rel: String,
    /// The folder's path in the guest: "/" + rel.
    pub guest: String,
    /// Canonical host path of the folder.
    pub host: PathBuf,
    /// Whether any write pattern lies inside it.
    pub writable: bool,
}

/// Why a mount could not be set up (the run does not start).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A granted folder does not exist in the workspace.
    #[error(
        "the policy grants `{rel}` but {host} is not a folder in the workspace; create it or fix the policy"
    )]
    Missing {
        /// Workspace-relative folder.
        rel: String,
        /// Host path tried.
        host: PathBuf,
    },
    /// The granted folder resolves outside the workspace (a symlink planted on the host).
    #[error(
        "the granted folder `{rel}` resolves to {host}, outside the workspace {workspace}; refusing to mount it"
    )]
    Escapes {
        /// Workspace-relative folder.
        rel: String,
        /// Where it resolved.
        host: PathBuf,
        /// The workspace.
        workspace: PathBuf,
    },
}

/// The file grant of one run, bound to a workspace on the host.
#[derive(Debug, Clone)]
pub struct FsScope {
    grant: FsGrant,
    mounts: Vec<MountPoint>,
    user: Option<Arc<UserGrant>>,
}

impl FsScope {
    /// Bind `grant` to `workspace`: resolve every mount and check it stays inside.
    ///
    /// # Errors
    ///
    /// [`MountError`] when a granted folder is missing or resolves outside the workspace.
    pub fn bind(grant: &FsGrant, workspace: &Path) -> Result<Self, MountError> {
        let workspace = workspace.canonicalize().map_err(|_| MountError::Missing {
            rel: String::new(),
            host: workspace.to_path_buf(),
        })?;
        let mut mounts = Vec::new();
        for m in grant.mounts() {
            let host = workspace.join(&m.dir);
            let canonical = match host.canonicalize() {
                Ok(c) if c.is_dir() => c,
                _ => {
                    return Err(MountError::Missing {
                        rel: m.dir.clone(),
                        host,
                    });
                }
            };
            if !canonical.starts_with(&workspace) {
                return Err(MountError::Escapes {
                    rel: m.dir.clone(),
                    host: canonical,
                    workspace,
                });
            }
            mounts.push(MountPoint {
                guest: format!("/{}", m.dir),
                rel: m.dir.clone(),
                host: canonical,
                writable: m.writable,
            });
        }
        Ok(FsScope {
            grant: grant.clone(),
            mounts,
            user: None,
        })
    }

    /// The grant with no folder mounted: every path is refused.
    pub fn unbound(grant: &FsGrant) -> Self {
        FsScope {
            grant: grant.clone(),
            mounts: Vec::new(),
            user: None,
        }
    }

    /// The folders to preopen.
    pub fn mounts(&self) -> &[MountPoint] {
        &self.mounts
    }

    /// Serve the writable mount at `original` from `staged` instead (its staging copy).
    ///
    /// # Errors
    ///
    /// When `staged` cannot be resolved.
    pub fn restage(&mut self, original: &Path, staged: &Path) -> std::io::Result<()> {
        let staged = staged.canonicalize()?;
        for m in self.mounts.iter_mut().filter(|m| m.host == original) {
            m.host = staged.clone();
        }
        Ok(())
    }

    /// Resolve `path`, named relative to the open directory whose guest path is `base`, to a
    /// workspace-relative path, refusing absolute paths and `..` that climb out of the mount.
    ///
    /// # Errors
    ///
    /// A sentence saying why the path leaves the grant.
    pub fn resolve(&self, base: &str, path: &str) -> Result<(String, &MountPoint), String> {
        let mount = self
            .mount_of(base)
            .ok_or_else(|| format!("`{path}` named from an unknown directory `{base}`"))?;
        let rel = crate::policy::path::resolve(base, &mount.guest, path)?;
        Ok((rel, mount))
    }

    fn mount_of(&self, guest: &str) -> Option<&MountPoint> {
        // The longest mount that is `guest` or one of its ancestors.
        self.mounts
            .iter()
            .filter(|m| {
                guest == m.guest || m.guest == "/" || guest.starts_with(&format!("{}/", m.guest))
            })
            .max_by_key(|m| m.guest.len())
    }

    /// Hold every access to what `user` may do as well (the agent acts for that user).
    pub fn for_user(mut self, user: Option<Arc<UserGrant>>) -> Self {
        self.user = user;
        self
    }

    /// Whether both the agent's grant and the user's allow `access` to `rel`.
    pub fn allows(&self, access: Access, rel: &str, is_dir: bool) -> bool {
        self.decide(access, rel, is_dir).is_ok()
    }

    /// Decide `access` to the workspace path `rel` (`is_dir`: it names a folder); the refusal
    /// says whose grant is missing.
    ///
    /// # Errors
    ///
    /// A sentence naming the path and whether the agent's policy or the user's roles refuse it.
    pub fn decide(&self, access: Access, rel: &str, is_dir: bool) -> Result<(), String> {
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        if !self.agent_allows(access, rel, is_dir) {
            return Err(format!(
                "{verb} `{rel}` is not granted by the agent's policy"
            ));
        }
        let user_ok = self.user.as_ref().is_none_or(|u| match access {
            Access::Read => u.allows_read(rel, is_dir),
            Access::Write => u.allows_write(rel),
        });
        if !user_ok {
            return Err(format!(
                "{verb} `{rel}` is not allowed to the user the agent acts for"
            ));
        }
        Ok(())
    }

    fn agent_allows(&self, access: Access, rel: &str, is_dir: bool) -> bool {
        match access {
            Access::Write => self.grant.allows_write(rel),
            Access::Read if is_dir => {
                self.grant.allows_read(rel) || self.grant.allows_traverse(rel)
            }
            Access::Read => self.grant.allows_read(rel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn scope(toml_fs: &str) -> (tempfile::TempDir, FsScope) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["data/out", "secret"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("secret/key"), "k").unwrap();
        std::fs::write(dir.path().join("data/in.txt"), "i").unwrap();
        let text = format!("[agent]\nname = \"t\"\n[fs]\n{toml_fs}\n");
        let policy = Policy::parse("t.toml", &text).unwrap();
        let scope = FsScope::bind(&policy.fs, dir.path()).unwrap();
        (dir, scope)
    }

    #[test]
    fn mounts_follow_the_static_prefix() {
        let (_d, s) = scope("read = [\"data/**\"]\nwrite = [\"data/out/**\"]");
        let m: Vec<_> = s
            .mounts()
            .iter()
            .map(|m| (m.guest.as_str(), m.writable))
            .collect();
        assert_eq!(m, vec![("/data", true)]);
    }

    #[test]
    fn resolve_table() {
        let (_d, s) = scope("read = [\"data/**\"]");
        let ok = [
            ("/data", "in.txt", "data/in.txt"),
            ("/data", "./out/../in.txt", "data/in.txt"),
            ("/data", "", "data"),
            ("/data/out", "..", "data"),
        ];
        for (base, path, want) in ok {
            assert_eq!(s.resolve(base, path).unwrap().0, want, "{base} + {path}");
        }
        let bad = [
            ("/data", "/etc/passwd"),
            ("/data", ".."),
            ("/data", "../secret/key"),
            ("/data", "out/../../secret"),
            ("/data/out", "../../secret"),
            ("/nowhere", "x"),
        ];
        for (base, path) in bad {
            assert!(
                s.resolve(base, path).is_err(),
                "{base} + {path} must be refused"
            );
        }
    }

    #[test]
    fn allows_reads_and_writes_by_pattern() {
        let (_d, s) = scope("read = [\"data/**\"]\nwrite = [\"data/out/**\"]");
        assert!(s.allows(Access::Read, "data/in.txt", false));
        assert!(!s.allows(Access::Write, "data/in.txt", false));
        assert!(s.allows(Access::Write, "data/out/x", false));
        assert!(s.allows(Access::Read, "data/out/x", false));
        assert!(!s.allows(Access::Read, "secret/key", false));
        assert!(s.allows(Access::Read, "data", true));
    }
}

//! `[server] workspaces`: the folders a remote client may name as a task's workspace (one of
//! them, or a folder inside one). Deny by default: without the key the server's only root is its
//! own default workspace (its current folder; `docs/server.md`), and `workspaces = []` allows
//! none. Paths are taken as `host.data_dir` and `[agents] dir` are: as written, a relative one
//! against the server's current folder; a leading `~` is the home folder (`$HOME`). A root that
//! is `/`, or that is, holds or lies inside the data directory or the agents folder as the file
//! names them, is refused here at its place; what only the host knows (links, the default data
//! directory) is checked again when a task names a workspace.

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::diagnostic::Source;
use crate::path::lexical;
use crate::{PolicyError, PolicyErrorKind};

/// The most roots a host may list.
const MAX_ROOTS: usize = 256;

/// What a root must be, for the errors' hint.
const HINT: &str = "a folder the server's clients may name as a task's workspace (or a folder inside it), such as \"/srv/work\" or \"~/projects\"; never `/`, the data directory or an agents folder";

/// The roots of `raw`, each checked; `data_dir` and `agents_dir` are the host's own folders as
/// the same file names them (if it does).
pub(super) fn roots(
    source: &Source<'_>,
    raw: Vec<Spanned<String>>,
    data_dir: Option<&Path>,
    agents_dir: Option<&Path>,
    home: Option<&Path>,
) -> Result<Vec<PathBuf>, PolicyError> {
    let mut roots = Vec::with_capacity(raw.len().min(MAX_ROOTS));
    for (n, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        let fail = |what: String| {
            Err(source.error(
                span.clone(),
                PolicyErrorKind::InvalidPath,
                what,
                Some(HINT.to_owned()),
            ))
        };
        if n == MAX_ROOTS {
            return fail(format!(
                "server.workspaces lists more than {MAX_ROOTS} folders"
            ));
        }
        let text = entry.into_inner();
        let path = match expand(&text, home) {
            Ok(p) => p,
            Err(why) => return fail(format!("server.workspaces: `{text}` {why}")),
        };
        let normal = lexical(&path);
        if normal == Path::new("/") {
            return fail(format!(
                "server.workspaces: `{text}` is `/`, which would let a client name any folder of the host"
            ));
        }
        for (own, name) in [(data_dir, "host.data_dir"), (agents_dir, "agents.dir")] {
            let Some(own) = own.map(lexical) else {
                continue;
            };
            // Only paths of the same kind can be compared before the server starts.
            if own.is_absolute() == normal.is_absolute()
                && (own.starts_with(&normal) || normal.starts_with(&own))
            {
                return fail(format!(
                    "server.workspaces: `{text}` is, holds or lies inside the server's own folder `{name}`; a client could point an agent at its keys, ledger or agents"
                ));
            }
        }
        roots.push(path);
    }
    Ok(roots)
}

/// `text` as a path, a leading `~` (alone or before `/`) the home folder.
fn expand(text: &str, home: Option<&Path>) -> Result<PathBuf, &'static str> {
    if text.is_empty() {
        return Err("is empty: name a folder");
    }
    if text.contains('\0') {
        return Err("holds a NUL character");
    }
    let rest = match text.strip_prefix('~') {
        None => return Ok(PathBuf::from(text)),
        Some("") => "",
        Some(r) if r.starts_with('/') => r.trim_start_matches('/'),
        Some(_) => return Err("names another user's home (`~name`): write the full path"),
    };
    let home = home.ok_or("starts with `~` but the host has no $HOME: write the full path")?;
    Ok(if rest.is_empty() {
        home.to_path_buf()
    } else {
        home.join(rest)
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{expand, lexical};
    use crate::{HostConfig, PolicyErrorKind};

    #[test]
    fn a_list_of_roots_is_read_in_order_and_none_without_the_key() {
        assert_eq!(
            HostConfig::parse("w.toml", "").unwrap().server.workspaces,
            None
        );
        let none = HostConfig::parse("w.toml", "[server]\nworkspaces = []\n").unwrap();
        assert_eq!(none.server.workspaces, Some(vec![]));
        let c = HostConfig::parse(
            "w.toml",
            "[host]\ndata_dir = \"/var/lib/warden\"\n[agents]\ndir = \"/srv/agents\"\n[server]\nworkspaces = [\"/srv/work\", \"work.d\", \"/var/lib/other\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.server.workspaces,
            Some(vec![
                PathBuf::from("/srv/work"),
                PathBuf::from("work.d"),
                PathBuf::from("/var/lib/other"),
            ])
        );
    }

    #[test]
    fn the_home_folder_is_expanded_and_another_users_refused() {
        let home = Path::new("/home/ann");
        assert_eq!(expand("~", Some(home)), Ok(PathBuf::from("/home/ann")));
        assert_eq!(
            expand("~/projects", Some(home)),
            Ok(PathBuf::from("/home/ann/projects"))
        );
        assert_eq!(expand("./w", Some(home)), Ok(PathBuf::from("./w")));
        assert!(expand("~bob/x", Some(home)).is_err());
        assert!(expand("~/x", None).is_err());
        assert!(expand("", Some(home)).is_err());
        assert_eq!(lexical(Path::new("/srv/./a/../b")), PathBuf::from("/srv/b"));
        assert_eq!(lexical(Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(lexical(Path::new("../a/..")), PathBuf::from(".."));
    }

    #[test]
    fn the_whole_host_and_the_servers_own_folders_are_refused_at_their_place() {
        for (text, line) in [
            ("[server]\nworkspaces = [\"/\"]\n", 2),
            (
                "[server]\nworkspaces = [\n  \"/srv/work\",\n  \"/srv/..\",\n]\n",
                4,
            ),
            ("[server]\n\nworkspaces = [\"//./\"]\n", 3),
            ("[server]\nworkspaces = [\"\"]\n", 2),
            ("[server]\nworkspaces = [\"~bob\"]\n", 2),
            (
                "[host]\ndata_dir = \"/var/lib/warden\"\n[server]\nworkspaces = [\"/var/lib\"]\n",
                4,
            ),
            (
                "[host]\ndata_dir = \"/var/lib/warden\"\n[server]\nworkspaces = [\"/var/lib/warden/x\"]\n",
                4,
            ),
            (
                "[agents]\ndir = \"agents.d\"\n[server]\nworkspaces = [\"./agents.d\"]\n",
                4,
            ),
            (
                "[agents]\ndir = \"agents.d\"\n[server]\nworkspaces = [\".\"]\n",
                4,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!(
                (e.line, e.kind),
                (line, PolicyErrorKind::InvalidPath),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn anything_but_a_list_of_strings_is_refused_at_its_place() {
        for text in [
            "[server]\nworkspaces = \"/srv/work\"\n",
            "[server]\nworkspaces = [\"/srv/work\", 3]\n",
            "[server]\nworkspaces = [[\"/srv/work\"]]\n",
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!(
                (e.line, e.kind),
                (2, PolicyErrorKind::WrongType),
                "{text}: {e}"
            );
        }
    }
}

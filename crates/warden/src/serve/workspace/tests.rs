use std::os::unix::fs::symlink;

use super::*;

/// A tempdir with the server's own folders (`data`, `agents`) and work folders.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["data/keys", "agents", "work/a/deep", "other", "second"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Host { dir }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn guarded(&self) -> Vec<PathBuf> {
        vec![self.at("data"), self.at("agents"), self.at("gone")]
    }

    fn roots(&self, rels: &[&str]) -> Roots {
        let settings = ServerSettings {
            workspaces: Some(rels.iter().map(|r| self.at(r)).collect()),
            ..ServerSettings::default()
        };
        Roots::of(&settings, None)
    }

    fn code(&self, roots: &Roots, dir: &Path) -> Result<PathBuf, &'static str> {
        checked(dir, roots, &self.guarded()).map_err(|e| e.code)
    }
}

fn real(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

#[test]
fn a_root_and_the_folders_inside_it_are_accepted_resolved() {
    let h = Host::new();
    let roots = h.roots(&["work"]);
    for ok in ["work", "work/a", "work/a/deep", "work/a/../a/./deep"] {
        let want = real(&h.at(ok));
        assert_eq!(h.code(&roots, &h.at(ok)), Ok(want), "{ok}");
    }
    // A link inside the root to a folder inside it is the folder it names.
    symlink(h.at("work/a/deep"), h.at("work/short")).unwrap();
    assert_eq!(
        h.code(&roots, &h.at("work/short")),
        Ok(real(&h.at("work/a/deep")))
    );
}

#[test]
fn a_folder_outside_every_root_is_not_allowed_whether_it_exists_or_not() {
    let h = Host::new();
    let roots = h.roots(&["work"]);
    for outside in [
        h.at("other"),
        h.at("work/.."),
        h.at("work/../other"),
        h.at("work/a/../../second"),
        h.at("nowhere"),
        h.at("other/nowhere"),
        PathBuf::from("/etc"),
        PathBuf::from("/usr/../etc"),
    ] {
        assert_eq!(
            h.code(&roots, &outside),
            Err("workspace-not-allowed"),
            "{outside:?}"
        );
    }
    // Inside a root, a missing folder or a file is a bad workspace, as before.
    assert_eq!(h.code(&roots, &h.at("work/nowhere")), Err("bad-workspace"));
    std::fs::write(h.at("work/f"), "x").unwrap();
    assert_eq!(h.code(&roots, &h.at("work/f")), Err("bad-workspace"));
    // A file outside is not allowed, not told apart from a missing one.
    std::fs::write(h.at("other/f"), "x").unwrap();
    assert_eq!(
        h.code(&roots, &h.at("other/f")),
        Err("workspace-not-allowed")
    );
}

#[test]
fn a_link_inside_a_root_pointing_outside_it_is_not_allowed() {
    let h = Host::new();
    let roots = h.roots(&["work"]);
    symlink(h.at("other"), h.at("work/escape")).unwrap();
    symlink("/etc", h.at("work/etc")).unwrap();
    symlink(h.at("data"), h.at("work/data")).unwrap();
    assert_eq!(
        h.code(&roots, &h.at("work/escape")),
        Err("workspace-not-allowed")
    );
    assert_eq!(
        h.code(&roots, &h.at("work/etc")),
        Err("workspace-not-allowed")
    );
    // The server's own folder, outside the roots: not told apart from any other.
    assert_eq!(
        h.code(&roots, &h.at("work/data")),
        Err("workspace-not-allowed")
    );
}

#[test]
fn with_two_roots_either_and_only_they_are_allowed() {
    let h = Host::new();
    let roots = h.roots(&["work/a", "second"]);
    assert!(h.code(&roots, &h.at("work/a/deep")).is_ok());
    assert!(h.code(&roots, &h.at("second")).is_ok());
    assert_eq!(h.code(&roots, &h.at("work")), Err("workspace-not-allowed"));
    assert_eq!(h.code(&roots, &h.at("other")), Err("workspace-not-allowed"));
    // None listed: nothing is allowed.
    let none = h.roots(&[]);
    assert_eq!(h.code(&none, &h.at("work")), Err("workspace-not-allowed"));
}

#[test]
fn inside_a_root_the_servers_own_folders_their_insides_and_holders_are_refused() {
    let h = Host::new();
    // A root the operator listed that holds the data directory (a `--data-dir` inside it):
    // its other folders are allowed, the server's own are not.
    let holder = h.roots(&[""]);
    assert!(h.code(&holder, &h.at("other")).is_ok());
    assert!(h.code(&holder, &h.at("work/a")).is_ok());
    for refused in [
        h.at(""),
        h.at("data"),
        h.at("data/keys"),
        h.at("agents"),
        h.at("work/../data"),
    ] {
        assert_eq!(
            h.code(&holder, &refused),
            Err("workspace-refused"),
            "{refused:?}"
        );
    }
    symlink(h.at("data"), h.at("work/data")).unwrap();
    assert_eq!(
        h.code(&holder, &h.at("work/data")),
        Err("workspace-refused")
    );
    assert_eq!(
        h.code(&holder, Path::new("/")),
        Err("workspace-not-allowed")
    );
}

#[test]
fn slash_is_no_root_nor_a_default_root_that_holds_the_servers_own_folders() {
    let h = Host::new();
    let slash = Roots {
        paths: vec![PathBuf::from("/")],
        default: false,
        named: Vec::new(),
    };
    assert_eq!(h.code(&slash, &h.at("other")), Err("workspace-not-allowed"));
    symlink("/", h.at("work/slash")).unwrap();
    let linked = h.roots(&["work/slash"]);
    assert_eq!(
        h.code(&linked, Path::new("/etc")),
        Err("workspace-not-allowed")
    );
    // A server started in a folder that holds its data directory (a home folder) has no root.
    let default = Roots::of(&ServerSettings::default(), Some(h.dir.path()));
    assert_eq!(
        h.code(&default, &h.at("other")),
        Err("workspace-not-allowed")
    );
    // A missing folder there too: the dropped root tells nothing (no `bad-workspace`).
    assert_eq!(
        h.code(&default, &h.at("nowhere/deeper")),
        Err("workspace-not-allowed")
    );
    let started_inside = Roots::of(&ServerSettings::default(), Some(&h.at("data")));
    assert_eq!(
        h.code(&started_inside, &h.at("data/keys")),
        Err("workspace-not-allowed")
    );
}

#[test]
fn the_default_root_is_the_current_folder_and_a_relative_root_is_against_it() {
    let h = Host::new();
    let current = h.at("work");
    let default = Roots::of(&ServerSettings::default(), Some(&current));
    assert_eq!(default.paths, vec![current.clone()]);
    assert!(default.default);
    assert!(h.code(&default, &h.at("work/a")).is_ok());
    assert!(h.code(&default, &h.at("work")).is_ok());
    assert_eq!(
        h.code(&default, &h.at("other")),
        Err("workspace-not-allowed")
    );
    assert!(Roots::of(&ServerSettings::default(), None).paths.is_empty());
    let relative = ServerSettings {
        workspaces: Some(vec![PathBuf::from("a"), PathBuf::from("/srv/w")]),
        ..ServerSettings::default()
    };
    let listed = Roots::of(&relative, Some(&current));
    assert_eq!(
        listed.paths,
        vec![current.join("a"), PathBuf::from("/srv/w")]
    );
    assert!(!listed.default);
    assert_eq!(
        Roots::of(&relative, None).paths,
        vec![PathBuf::from("/srv/w")]
    );
}

#[test]
fn a_refused_path_is_shown_escaped_and_bounded() {
    assert_eq!(shown(Path::new("/srv/w")), "/srv/w");
    let long = format!("/{}", "x".repeat(1000));
    let s = shown(Path::new(&long));
    assert_eq!(s.chars().count(), SHOWN_CHARS + 1);
    assert!(s.ends_with('…'));
    assert!(!shown(Path::new("/a\u{1b}[2J\nb")).contains(['\u{1b}', '\n']));
}

#[test]
fn a_folder_the_operator_named_is_a_root_besides_the_others() {
    let h = Host::new();
    // A default root that allows nothing (it holds the data directory), and the operator's.
    let roots = Roots::of(&ServerSettings::default(), Some(h.dir.path())).and_named(h.at("work"));
    assert!(h.code(&roots, &h.at("work/a")).is_ok());
    assert_eq!(h.code(&roots, &h.at("other")), Err("workspace-not-allowed"));
    assert_eq!(h.code(&roots, &h.at("work/nowhere")), Err("bad-workspace"));
    // Its own folders still refused, `/` no root.
    let wide = h.roots(&[]).and_named(h.dir.path().to_path_buf());
    assert_eq!(h.code(&wide, &h.at("data")), Err("workspace-refused"));
    assert!(h.code(&wide, &h.at("other")).is_ok());
    let slash = h.roots(&[]).and_named(PathBuf::from("/"));
    assert_eq!(
        h.code(&slash, Path::new("/etc")),
        Err("workspace-not-allowed")
    );
}

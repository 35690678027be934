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
            Err(if outside == h.at("work/..") {
                // It holds the data directory: the own-folder guard answers first.
                "workspace-refused"
            } else {
                "workspace-not-allowed"
            }),
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
    assert_eq!(h.code(&roots, &h.at("work/data")), Err("workspace-refused"));
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
fn a_root_that_is_holds_or_lies_inside_the_servers_own_folders_is_no_root() {
    let h = Host::new();
    // The tempdir holds the data directory: as a root it allows nothing, not even `other`.
    let holder = h.roots(&[""]);
    assert_eq!(
        h.code(&holder, &h.at("other")),
        Err("workspace-not-allowed")
    );
    let inside = h.roots(&["data/keys"]);
    assert_eq!(
        h.code(&inside, &h.at("data/keys")),
        Err("workspace-refused")
    );
    // `/` (as written, or through a link) is no root either.
    let slash = Roots(vec![PathBuf::from("/")]);
    assert_eq!(h.code(&slash, &h.at("other")), Err("workspace-not-allowed"));
    symlink("/", h.at("work/slash")).unwrap();
    let linked = h.roots(&["work/slash"]);
    assert_eq!(
        h.code(&linked, Path::new("/etc")),
        Err("workspace-not-allowed")
    );
    // The own-folder guard still applies inside a root: its own folders, their insides and
    // holders are refused.
    let wide = h.roots(&["work", "other"]);
    for refused in [
        h.at("data"),
        h.at("data/keys"),
        h.at("agents"),
        PathBuf::from("/"),
    ] {
        assert_eq!(
            h.code(&wide, &refused),
            Err("workspace-refused"),
            "{refused:?}"
        );
    }
}

#[test]
fn the_default_root_is_the_current_folder_and_a_relative_root_is_against_it() {
    let h = Host::new();
    let current = h.at("work");
    let default = Roots::of(&ServerSettings::default(), Some(&current));
    assert_eq!(default, Roots(vec![current.clone()]));
    assert!(h.code(&default, &h.at("work/a")).is_ok());
    assert!(h.code(&default, &h.at("work")).is_ok());
    assert_eq!(
        h.code(&default, &h.at("other")),
        Err("workspace-not-allowed")
    );
    assert_eq!(Roots::of(&ServerSettings::default(), None), Roots(vec![]));
    let relative = ServerSettings {
        workspaces: Some(vec![PathBuf::from("a"), PathBuf::from("/srv/w")]),
        ..ServerSettings::default()
    };
    assert_eq!(
        Roots::of(&relative, Some(&current)),
        Roots(vec![current.join("a"), PathBuf::from("/srv/w")])
    );
    assert_eq!(
        Roots::of(&relative, None),
        Roots(vec![PathBuf::from("/srv/w")])
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

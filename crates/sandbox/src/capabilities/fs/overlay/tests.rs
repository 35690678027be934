//! The overlay's own cases: what is materialized, copied up and whited out, and that links in
//! the workspace are recreated, never followed.

use std::path::{Path, PathBuf};

use super::*;

/// A workspace folder `out/` with a file, a folder and a nested file; an overlay over it.
fn setup() -> (tempfile::TempDir, PathBuf, Overlay) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ws/out");
    fs::create_dir_all(out.join("sub/deep")).unwrap();
    fs::write(out.join("a.txt"), "alpha").unwrap();
    fs::write(out.join("sub/deep/c.txt"), "gamma").unwrap();
    fs::write(dir.path().join("secret"), "SECRET").unwrap();
    let staged = dir.path().join("stage");
    fs::create_dir(&staged).unwrap();
    let overlay = Overlay::new(vec![StagedFolder {
        original: out.clone(),
        rel: "out".into(),
        staged,
    }]);
    (dir, out, overlay)
}

fn staged(o: &Overlay) -> &Path {
    &o.folders()[0].staged
}

/// Every path in the staging folder, sorted.
fn entries(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn an_entry_brings_its_ancestors_unlisted_and_itself_as_a_link() {
    let (_d, out, o) = setup();
    let s = o.stage(0, "sub/deep/c.txt", Need::Entry).unwrap();
    assert_eq!(s.entry.as_deref(), Some("sub/deep/c.txt"));
    assert_eq!(s.target, s.entry);
    assert_eq!(entries(staged(&o)), ["sub", "sub/deep", "sub/deep/c.txt"]);
    let linked = fs::metadata(staged(&o).join("sub/deep/c.txt")).unwrap();
    let original = fs::metadata(out.join("sub/deep/c.txt")).unwrap();
    assert_eq!(
        file_id(&linked),
        file_id(&original),
        "a hard link, not a copy"
    );

    // A missing entry stages only its ancestors; a missing ancestor stops the walk.
    let s = o.stage(0, "sub/new.txt", Need::Entry).unwrap();
    assert_eq!(s.entry.as_deref(), Some("sub/new.txt"));
    let s = o.stage(0, "nope/x", Need::Entry).unwrap();
    assert_eq!(s, Staged::default());
    assert_eq!(entries(staged(&o)), ["sub", "sub/deep", "sub/deep/c.txt"]);
}

#[test]
fn a_listing_stages_one_level() {
    let (_d, _out, o) = setup();
    o.stage(0, "", Need::Listing).unwrap();
    assert_eq!(entries(staged(&o)), ["a.txt", "sub"]);
    assert!(o.record().listed.contains("out"));
    o.stage(0, "sub", Need::Tree).unwrap();
    assert_eq!(
        entries(staged(&o)),
        ["a.txt", "sub", "sub/deep", "sub/deep/c.txt"]
    );
}

#[test]
fn copy_up_leaves_the_original_inode_alone() {
    let (_d, out, o) = setup();
    o.stage(0, "a.txt", Need::Entry).unwrap();
    let file = fs::File::open(staged(&o).join("a.txt")).unwrap();
    assert!(o.is_original(&file).unwrap());
    o.copy_up(0, "a.txt").unwrap();
    let copy = fs::File::open(staged(&o).join("a.txt")).unwrap();
    assert!(!o.is_original(&copy).unwrap());
    // The descriptor opened before still holds the original: the host refuses its set-times.
    assert!(o.is_original(&file).unwrap());
    fs::write(staged(&o).join("a.txt"), "changed").unwrap();
    assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "alpha");
    // Copying up again, or a file the agent made, changes nothing.
    o.copy_up(0, "a.txt").unwrap();
    o.copy_up(0, "missing").unwrap();
    assert_eq!(
        fs::read_to_string(staged(&o).join("a.txt")).unwrap(),
        "changed"
    );
}

#[test]
fn a_renamed_link_is_still_copied_up() {
    let (_d, out, o) = setup();
    o.stage(0, "a.txt", Need::Tree).unwrap();
    fs::rename(staged(&o).join("a.txt"), staged(&o).join("b.txt")).unwrap();
    o.remove(0, "a.txt");
    o.copy_up(0, "b.txt").unwrap();
    fs::write(staged(&o).join("b.txt"), "changed").unwrap();
    assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "alpha");
}

#[test]
fn whiteouts_keep_removed_originals_from_coming_back() {
    let (_d, _out, o) = setup();
    o.stage(0, "a.txt", Need::Entry).unwrap();
    fs::remove_file(staged(&o).join("a.txt")).unwrap();
    o.remove(0, "a.txt");
    o.stage(0, "", Need::Listing).unwrap();
    o.stage(0, "a.txt", Need::Entry).unwrap();
    assert_eq!(entries(staged(&o)), ["sub"]);
    assert!(o.is_removed(0, "a.txt"));
    assert_eq!(o.removed_children(0, ""), ["a.txt"]);

    // A removed folder's content stays removed even once a folder of that name is made again.
    o.stage(0, "sub", Need::Tree).unwrap();
    fs::remove_dir_all(staged(&o).join("sub")).unwrap();
    o.remove(0, "sub");
    fs::create_dir(staged(&o).join("sub")).unwrap();
    o.stage(0, "sub/deep/c.txt", Need::Listing).unwrap();
    assert_eq!(entries(staged(&o)), ["sub"]);
    assert!(o.is_removed(0, "sub/deep"));

    // Removing what the workspace never had records nothing.
    o.remove(0, "never-there");
    assert_eq!(o.record().whiteouts.len(), 2);
}

#[cfg(unix)]
#[test]
fn links_are_recreated_and_resolved_by_name_never_followed() {
    use std::os::unix::fs::symlink;
    let (d, out, o) = setup();
    symlink(d.path().join("secret"), out.join("abs-leak")).unwrap();
    symlink("../../secret", out.join("rel-leak")).unwrap();
    symlink("/etc", out.join("etc")).unwrap();
    symlink("a.txt", out.join("alias")).unwrap();
    symlink("sub/deep", out.join("deep-alias")).unwrap();
    symlink("loop2", out.join("loop1")).unwrap();
    symlink("loop1", out.join("loop2")).unwrap();

    for leak in ["abs-leak", "rel-leak", "etc/passwd", "loop1"] {
        o.stage(0, leak, Need::Listing).unwrap();
    }
    for link in ["abs-leak", "rel-leak", "etc", "loop1", "loop2"] {
        let meta = fs::symlink_metadata(staged(&o).join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is staged as a link");
    }
    // Nothing reached through a link that leaves the folder was staged or read.
    let all = entries(staged(&o));
    assert_eq!(all, ["abs-leak", "etc", "loop1", "loop2", "rel-leak"]);

    // Links inside the folder are followed by name: what they point at is staged too.
    let s = o.stage(0, "alias", Need::Entry).unwrap();
    assert_eq!(
        (s.entry.as_deref(), s.target.as_deref()),
        (Some("alias"), Some("a.txt"))
    );
    assert_eq!(
        fs::read_to_string(staged(&o).join("alias")).unwrap(),
        "alpha"
    );
    let s = o.stage(0, "deep-alias/c.txt", Need::Entry).unwrap();
    assert_eq!(s.entry.as_deref(), Some("sub/deep/c.txt"));
    let s = o.stage(0, "deep-alias", Need::Listing).unwrap();
    assert_eq!(s.target.as_deref(), Some("sub/deep"));
}

#[cfg(unix)]
#[test]
fn a_workspace_folder_swapped_for_a_link_is_not_followed() {
    use std::os::unix::fs::symlink;
    let (d, out, o) = setup();
    fs::create_dir(d.path().join("elsewhere")).unwrap();
    fs::write(d.path().join("elsewhere/x"), "outside").unwrap();
    fs::create_dir(out.join("swap")).unwrap();
    o.stage(0, "swap", Need::Entry).unwrap();
    // After `swap` was staged as a folder, the workspace's becomes a link out.
    fs::remove_dir(out.join("swap")).unwrap();
    symlink(d.path().join("elsewhere"), out.join("swap")).unwrap();
    o.stage(0, "swap/x", Need::Listing).unwrap();
    assert!(!staged(&o).join("swap/x").exists());
}

#[cfg(unix)]
#[test]
fn copy_up_never_writes_through_a_link_at_its_scratch_name() {
    use std::os::unix::fs::symlink;
    let (d, _out, o) = setup();
    o.stage(0, "a.txt", Need::Entry).unwrap();
    // The guest plants links where a copy-up would prepare its copy.
    for n in 0..3 {
        symlink(
            d.path().join("secret"),
            staged(&o).join(format!(".a.txt.warden-copy{n}")),
        )
        .unwrap();
    }
    o.copy_up(0, "a.txt").unwrap();
    assert_eq!(
        fs::read_to_string(d.path().join("secret")).unwrap(),
        "SECRET"
    );
    let file = fs::File::open(staged(&o).join("a.txt")).unwrap();
    assert!(!o.is_original(&file).unwrap());
    assert_eq!(
        fs::read_to_string(staged(&o).join("a.txt")).unwrap(),
        "alpha"
    );
}

//! Staging areas end to end, with the agent's calls played by hand: what the gated host does
//! before each call (stage, copy up, remove) and then the call itself on the staging folder.

use std::path::{Path, PathBuf};

use super::*;
use crate::capabilities::fs::Need;

/// A workspace with `out/` (keep.txt, change.txt, sub/delete.txt) beside a canary.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let ws = tempfile::tempdir().unwrap();
    let out = ws.path().join("out");
    fs::create_dir_all(out.join("sub")).unwrap();
    fs::write(out.join("keep.txt"), "same").unwrap();
    fs::write(out.join("change.txt"), "old\nline\n").unwrap();
    fs::write(out.join("sub/delete.txt"), "bye").unwrap();
    fs::write(ws.path().join("canary"), "CANARY").unwrap();
    (ws, out)
}

fn folders(out: &Path) -> Vec<(PathBuf, String)> {
    vec![(out.to_path_buf(), "out".to_string())]
}

/// The agent writes `inner` (creating or truncating it).
fn write(s: &Staging, inner: &str, text: &str) {
    let o = s.overlay();
    let at = o.stage(0, inner, Need::Entry).unwrap();
    o.copy_up(0, at.target.as_deref().unwrap()).unwrap();
    fs::write(s.folders()[0].staged.join(inner), text).unwrap();
}

/// The agent deletes the file `inner`.
fn unlink(s: &Staging, inner: &str) {
    let o = s.overlay();
    let at = o.stage(0, inner, Need::Entry).unwrap();
    fs::remove_file(s.folders()[0].staged.join(inner)).unwrap();
    o.remove(0, at.entry.as_deref().unwrap());
}

/// The agent reads `inner`.
fn read(s: &Staging, inner: &str) -> String {
    s.overlay().stage(0, inner, Need::Entry).unwrap();
    fs::read_to_string(s.folders()[0].staged.join(inner)).unwrap()
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            1 + if fs::symlink_metadata(&p).unwrap().is_dir() {
                count(&p)
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn apply_writes_back_and_drop_discards() {
    let (_ws, out) = workspace();
    let discarded = Staging::new(&folders(&out)).unwrap();
    let staged = discarded.staged_path(&out).unwrap().to_path_buf();
    write(&discarded, "change.txt", "never applied");
    drop(discarded);
    assert_eq!(
        fs::read_to_string(out.join("change.txt")).unwrap(),
        "old\nline\n"
    );
    assert!(!staged.exists());

    let staging = Staging::new(&folders(&out)).unwrap();
    assert_eq!(read(&staging, "keep.txt"), "same");
    write(&staging, "change.txt", "new\nline\n");
    write(&staging, "created.txt", "hi");
    unlink(&staging, "sub/delete.txt");
    let diff = staging.diff().unwrap();
    assert_eq!(diff.created, ["out/created.txt"]);
    assert_eq!(diff.modified, ["out/change.txt"]);
    assert_eq!(diff.removed, ["out/sub/delete.txt"]);
    let text = diff.render(&staging);
    assert!(
        text.contains(
            "--- a/out/change.txt\n+++ b/out/change.txt\n@@ -1,2 +1,2 @@\n-old\n+new\n line\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("+++ b/out/created.txt\n@@ -0,0 +1 @@\n+hi"),
        "{text}"
    );
    assert!(text.contains("removed out/sub/delete.txt"), "{text}");

    let changes = staging.apply().unwrap();
    assert_eq!(changes.written, ["out/change.txt", "out/created.txt"]);
    assert_eq!(changes.removed, ["out/sub/delete.txt"]);
    assert_eq!(
        fs::read_to_string(out.join("change.txt")).unwrap(),
        "new\nline\n"
    );
    assert_eq!(fs::read_to_string(out.join("created.txt")).unwrap(), "hi");
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "same");
    assert!(!out.join("sub/delete.txt").exists());
    assert!(out.join("sub").is_dir());
}

#[test]
fn an_unchanged_copy_is_not_a_change() {
    let (_ws, out) = workspace();
    let staging = Staging::new(&folders(&out)).unwrap();
    write(&staging, "keep.txt", "same");
    staging.overlay().stage(0, "", Need::Listing).unwrap();
    assert!(staging.diff().unwrap().is_empty());
    assert_eq!(staging.apply().unwrap(), AppliedChanges::default());
}

#[test]
fn a_persistent_area_survives_the_process_and_is_discarded_on_demand() {
    let (ws, out) = workspace();
    let root = ws.path().join("data/staging/7");
    let staging = Staging::create(&root, &folders(&out)).unwrap();
    assert!(Staging::create(&root, &folders(&out)).is_err(), "not empty");
    write(&staging, "change.txt", "new\nline\n");
    unlink(&staging, "sub/delete.txt");
    staging.seal().unwrap();
    let before = staging.diff().unwrap();
    drop(staging);
    assert!(root.join("tree/0/change.txt").exists(), "kept after drop");

    let reopened = Staging::open(&root).unwrap();
    assert_eq!(reopened.diff().unwrap(), before);
    assert_eq!(before.removed, ["out/sub/delete.txt"]);
    reopened.discard().unwrap();
    assert!(!root.exists());
    assert_eq!(
        fs::read_to_string(out.join("sub/delete.txt")).unwrap(),
        "bye"
    );

    let staging = Staging::create(&root, &folders(&out)).unwrap();
    unlink(&staging, "sub/delete.txt");
    staging.seal().unwrap();
    drop(staging);
    let applied = Staging::open(&root).unwrap().apply().unwrap();
    assert_eq!(applied.removed, ["out/sub/delete.txt"]);
    assert!(!out.join("sub/delete.txt").exists());
    assert!(!root.exists());
}

#[test]
fn an_unfinished_area_can_only_be_discarded() {
    let (ws, out) = workspace();
    let root = ws.path().join("staging");
    let staging = Staging::create(&root, &folders(&out)).unwrap();
    write(&staging, "created.txt", "half done");
    drop(staging);
    let reopened = Staging::open(&root).unwrap();
    assert!(reopened.diff().is_err());
    let err = Staging::open(&root).unwrap().apply().unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert!(!out.join("created.txt").exists());
    reopened.discard().unwrap();
}

#[test]
fn a_tampered_manifest_is_refused() {
    let (ws, out) = workspace();
    let root = ws.path().join("staging");
    Staging::create(&root, &folders(&out))
        .unwrap()
        .seal()
        .unwrap();
    let manifest = root.join(MANIFEST);
    let good = fs::read_to_string(&manifest).unwrap();
    let bad = [
        good.replace("\"whiteouts\": []", "\"whiteouts\": [\"out/../canary\"]"),
        good.replace("\"whiteouts\": []", "\"whiteouts\": [\"elsewhere/x\"]"),
        good.replace("\"rel\": \"out\"", "\"rel\": \"../out\""),
        good.replace("\"version\": 1", "\"version\": 9"),
        good.replace("\"sealed\": true", "\"sealed\": true, \"extra\": 1"),
    ];
    for text in bad {
        assert_ne!(text, good);
        fs::write(&manifest, &text).unwrap();
        assert!(Staging::open(&root).is_err(), "{text}");
    }
    fs::write(&manifest, &good).unwrap();
    assert!(Staging::open(&root).is_ok());
}

#[test]
fn staging_costs_what_the_agent_touches() {
    let ws = tempfile::tempdir().unwrap();
    let big = ws.path().join("big");
    for d in 0..100 {
        let dir = big.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f}.txt")), "x").unwrap();
        }
    }
    let root = ws.path().join("staging");
    let staging = Staging::create(&root, &[(big.clone(), String::new())]).unwrap();
    let tree = staging.folders()[0].staged.clone();
    assert_eq!(count(&tree), 0, "nothing is copied up front");
    write(&staging, "d42/f7.txt", "changed");
    write(&staging, "new.txt", "new");
    assert_eq!(read(&staging, "d99/f99.txt"), "x");
    // d42, d42/f7.txt, new.txt, d99, d99/f99.txt
    assert_eq!(count(&tree), 5);
    let diff = staging.diff().unwrap();
    assert_eq!(diff.created, ["new.txt"]);
    assert_eq!(diff.modified, ["d42/f7.txt"]);
    assert!(diff.removed.is_empty());
    staging.seal().unwrap();
    let applied = staging.apply().unwrap();
    assert_eq!(applied.written, ["d42/f7.txt", "new.txt"]);
    assert_eq!(
        fs::read_to_string(big.join("d42/f7.txt")).unwrap(),
        "changed"
    );
    assert_eq!(fs::read_to_string(big.join("d42/f8.txt")).unwrap(), "x");
}

#[test]
fn renamed_and_replaced_folders() {
    let (_ws, out) = workspace();
    let staging = Staging::new(&folders(&out)).unwrap();
    let o = staging.overlay();
    let root = staging.folders()[0].staged.clone();
    // mv sub moved; then a new, empty `sub`; and a file becomes a folder.
    let from = o.stage(0, "sub", Need::Tree).unwrap();
    let to = o.stage(0, "moved", Need::Listing).unwrap();
    fs::rename(root.join("sub"), root.join("moved")).unwrap();
    o.remove(0, from.entry.as_deref().unwrap());
    o.remove(0, to.entry.as_deref().unwrap());
    o.stage(0, "sub", Need::Entry).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    unlink(&staging, "keep.txt");
    fs::create_dir(root.join("keep.txt")).unwrap();

    let diff = staging.diff().unwrap();
    assert_eq!(
        diff.created,
        ["out/keep.txt/", "out/moved/", "out/moved/delete.txt"]
    );
    assert_eq!(diff.removed, ["out/keep.txt", "out/sub/delete.txt"]);
    assert!(diff.modified.is_empty());
    staging.apply().unwrap();
    assert_eq!(
        fs::read_to_string(out.join("moved/delete.txt")).unwrap(),
        "bye"
    );
    assert!(out.join("keep.txt").is_dir());
    assert_eq!(fs::read_dir(out.join("sub")).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn apply_replaces_files_instead_of_writing_through_their_links() {
    // A workspace file hard-linked to one outside the writable folder: the agent's change
    // replaces the name it wrote, never the shared inode.
    let (ws, out) = workspace();
    let outside = ws.path().join("outside.txt");
    fs::hard_link(out.join("change.txt"), &outside).unwrap();
    let staging = Staging::new(&folders(&out)).unwrap();
    write(&staging, "change.txt", "agent");
    staging.apply().unwrap();
    assert_eq!(fs::read_to_string(out.join("change.txt")).unwrap(), "agent");
    assert_eq!(fs::read_to_string(&outside).unwrap(), "old\nline\n");
}

#[cfg(unix)]
#[test]
fn planted_links_are_staged_and_applied_as_links() {
    let (ws, out) = workspace();
    std::os::unix::fs::symlink(ws.path().join("canary"), out.join("leak")).unwrap();
    let staging = Staging::new(&folders(&out)).unwrap();
    staging.overlay().stage(0, "leak", Need::Listing).unwrap();
    let staged = staging.staged_path(&out).unwrap();
    let meta = fs::symlink_metadata(staged.join("leak")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(count(staged), 1, "the link's target was not staged");
    std::os::unix::fs::symlink("keep.txt", staged.join("alias")).unwrap();
    let applied = staging.apply().unwrap();
    assert_eq!(applied.written, ["out/alias"]);
    assert_eq!(
        fs::read_link(out.join("alias")).unwrap(),
        Path::new("keep.txt")
    );
    assert_eq!(
        fs::read_to_string(ws.path().join("canary")).unwrap(),
        "CANARY"
    );
}

#[test]
fn a_file_only_read_never_reverts_another_tasks_change() {
    let (ws, out) = workspace();
    let root = ws.path().join("staging-b");
    let b = Staging::create(&root, &folders(&out)).unwrap();
    assert_eq!(read(&b, "change.txt"), "old\nline\n");
    b.overlay().stage(0, "", Need::Listing).unwrap();
    write(&b, "b.txt", "from b");
    b.seal().unwrap();
    drop(b);

    let a = Staging::new(&folders(&out)).unwrap();
    write(&a, "change.txt", "from a");
    a.apply().unwrap();

    // B still holds the old file, untouched: that is no change of B's.
    let b = Staging::open(&root).unwrap();
    assert_eq!(b.diff().unwrap().created, ["out/b.txt"]);
    assert!(b.diff().unwrap().modified.is_empty());
    b.apply().unwrap();
    assert_eq!(
        fs::read_to_string(out.join("change.txt")).unwrap(),
        "from a"
    );
    assert_eq!(fs::read_to_string(out.join("b.txt")).unwrap(), "from b");
}

#[cfg(unix)]
#[test]
fn apply_never_writes_through_a_link_at_its_scratch_name() {
    let (ws, out) = workspace();
    // A link a past task left where apply prepares the new file.
    std::os::unix::fs::symlink(
        ws.path().join("canary"),
        out.join(".change.txt.warden-apply0"),
    )
    .unwrap();
    let outside = ws.path().join("outside.txt");
    fs::hard_link(out.join("change.txt"), &outside).unwrap();
    let staging = Staging::new(&folders(&out)).unwrap();
    write(&staging, "change.txt", "agent");
    // Give the staged file a second name, so apply must copy rather than move it.
    fs::hard_link(
        staging.folders()[0].staged.join("change.txt"),
        staging.root().join("pin"),
    )
    .unwrap();
    staging.apply().unwrap();
    assert_eq!(fs::read_to_string(out.join("change.txt")).unwrap(), "agent");
    assert_eq!(
        fs::read_to_string(ws.path().join("canary")).unwrap(),
        "CANARY"
    );
}

#[test]
fn the_host_stages_its_own_changes_which_apply_like_an_agents() {
    let (ws, out) = workspace();
    let root = tempfile::tempdir().unwrap();
    let s = Staging::create(&root.path().join("s"), &folders(&out)).unwrap();
    s.put_file("out/change.txt", b"new\n").unwrap();
    s.put_file("out/deep/er/new.txt", b"created").unwrap();
    s.remove_file("out/sub/delete.txt").unwrap();
    for bad in ["../x", "/etc/passwd", "canary", "out/../canary", ""] {
        let e = s.put_file(bad, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
    // Nothing reached the workspace before the apply.
    assert_eq!(
        fs::read_to_string(out.join("change.txt")).unwrap(),
        "old\nline\n"
    );
    s.seal().unwrap();
    let reopened = Staging::open(&root.path().join("s")).unwrap();
    let diff = reopened.diff().unwrap().render(&reopened);
    assert!(
        diff.contains("+new") && diff.contains("deep/er/new.txt"),
        "{diff}"
    );
    let applied = reopened.apply().unwrap();
    assert!(
        applied.written.contains(&"out/change.txt".to_string()),
        "{applied:?}"
    );
    assert!(
        applied.removed.contains(&"out/sub/delete.txt".to_string()),
        "{applied:?}"
    );
    assert_eq!(fs::read_to_string(out.join("change.txt")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(out.join("deep/er/new.txt")).unwrap(),
        "created"
    );
    assert!(!out.join("sub/delete.txt").exists());
    assert_eq!(
        fs::read_to_string(ws.path().join("canary")).unwrap(),
        "CANARY"
    );
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "same");
}

#[test]
fn a_listed_workspace_root_reopens() {
    let (ws, _) = workspace();
    let root = tempfile::tempdir().unwrap();
    let s = Staging::create(
        &root.path().join("s"),
        &[(ws.path().to_path_buf(), String::new())],
    )
    .unwrap();
    // The agent lists the workspace root, then writes a file there.
    s.overlay().stage(0, "", Need::Listing).unwrap();
    s.put_file("new.txt", b"n").unwrap();
    s.seal().unwrap();
    let reopened = Staging::open(&root.path().join("s")).unwrap();
    assert!(!reopened.diff().unwrap().is_empty());
}

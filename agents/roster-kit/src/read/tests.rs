//! Bounded reads and writes on a temporary workspace, with the escape cases named.

use super::*;

/// A test of which error came back.
type Is<E> = fn(&E) -> bool;

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("src/deep")).unwrap();
    std::fs::create_dir_all(p.join(".git")).unwrap();
    std::fs::write(p.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
    std::fs::write(p.join("README.md"), "# Calc\n").unwrap();
    std::fs::write(p.join("src/deep/x.rs"), "fn x() {}\n").unwrap();
    std::fs::write(p.join(".git/config"), "secret").unwrap();
    std::fs::write(p.join(".env"), "KEY=1").unwrap();
    std::fs::write(p.join("blob.bin"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(p.join("latin1.txt"), [b'c', b'a', b'f', 0xE9, b'!']).unwrap();
    dir
}

#[test]
fn listing_is_sorted_without_hidden_entries_and_capped() {
    let ws = workspace();
    let (files, more) = list_files(ws.path(), 100);
    assert_eq!(
        files,
        [
            "README.md",
            "blob.bin",
            "calc.py",
            "latin1.txt",
            "src/deep/x.rs"
        ]
    );
    assert!(!more);
    let (files, more) = list_files(ws.path(), 2);
    assert_eq!((files.len(), more), (2, true));
    let (files, _) = list_files(&ws.path().join("missing"), 10);
    assert!(files.is_empty());
}

#[test]
fn text_is_read_capped_with_a_marker_and_binaries_are_refused() {
    let ws = workspace();
    let (text, cut) = read_text(ws.path(), "calc.py", 1024).unwrap();
    assert_eq!(
        (text.as_str(), cut),
        ("def add(a, b):\n    return a - b\n", false)
    );
    let (text, cut) = read_text(ws.path(), "calc.py", 5).unwrap();
    assert_eq!((text, cut), (format!("def a{CUT_MARKER}"), true));
    // A cut inside a multi-byte character drops the partial character.
    std::fs::write(ws.path().join("e.txt"), "aé").unwrap();
    assert_eq!(
        read_text(ws.path(), "e.txt", 2).unwrap().0,
        format!("a{CUT_MARKER}")
    );
    let table: &[(&str, Is<ReadError>)] = &[
        ("blob.bin", |e| matches!(e, ReadError::Binary(_))),
        ("latin1.txt", |e| matches!(e, ReadError::Binary(_))),
        ("missing.py", |e| matches!(e, ReadError::NotAFile(_))),
        ("src", |e| matches!(e, ReadError::NotAFile(_))),
        ("../etc/passwd", |e| {
            matches!(e, ReadError::Path(PathError::Climbs(_)))
        }),
        ("/etc/passwd", |e| {
            matches!(e, ReadError::Path(PathError::Absolute(_)))
        }),
        (".env", |e| {
            matches!(e, ReadError::Path(PathError::Hidden(_)))
        }),
    ];
    for (path, is) in table {
        let e = read_text(ws.path(), path, 1024).expect_err(path);
        assert!(is(&e), "{path}: {e:?}");
    }
}

#[cfg(unix)]
#[test]
fn links_are_neither_read_nor_written_through() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("target"), "outside").unwrap();
    std::os::unix::fs::symlink(outside.path().join("target"), ws.path().join("link.py")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("dirlink")).unwrap();
    assert!(matches!(
        read_text(ws.path(), "link.py", 100),
        Err(ReadError::NotAFile(_))
    ));
    let all = Globs::new(&["**"]);
    assert!(matches!(
        write_file(ws.path(), "link.py", "x", &all),
        Err(WriteError::NotRegular(_))
    ));
    assert!(matches!(
        write_file(ws.path(), "dirlink/new.py", "x", &all),
        Err(WriteError::NotRegular(_))
    ));
    assert_eq!(
        std::fs::read_to_string(outside.path().join("target")).unwrap(),
        "outside"
    );
    assert!(!outside.path().join("new.py").exists());
    assert!(
        !list_files(ws.path(), 100)
            .0
            .iter()
            .any(|f| f.contains("link"))
    );
}

#[test]
fn writes_stay_inside_the_globs_and_make_only_allowed_folders() {
    let ws = workspace();
    let tester = Globs::new(&["tests", "tests/**", "**/test_*.py"]);
    assert_eq!(
        write_file(ws.path(), "tests/unit/test_a.py", "ok\n", &tester).unwrap(),
        "tests/unit/test_a.py"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("tests/unit/test_a.py")).unwrap(),
        "ok\n"
    );
    assert_eq!(
        write_file(ws.path(), "./test_b.py", "b", &tester).unwrap(),
        "test_b.py"
    );
    let table: &[(&str, Is<WriteError>)] = &[
        ("calc.py", |e| {
            matches!(e, WriteError::Path(PathError::OutsideGrant { .. }))
        }),
        (
            "pkg/test_c.py",
            |e| matches!(e, WriteError::NoFolder(d) if d == "pkg"),
        ),
        ("../test_x.py", |e| {
            matches!(e, WriteError::Path(PathError::Climbs(_)))
        }),
        ("/etc/test_passwd.py", |e| {
            matches!(e, WriteError::Path(PathError::Absolute(_)))
        }),
        (".git/test_hook.py", |e| {
            matches!(e, WriteError::Path(PathError::Hidden(_)))
        }),
    ];
    for (path, is) in table {
        let e = write_file(ws.path(), path, "x", &tester).expect_err(path);
        assert!(is(&e), "{path}: {e:?}");
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join("calc.py")).unwrap(),
        "def add(a, b):\n    return a - b\n"
    );
    assert!(!ws.path().join("pkg").exists());
}

#[test]
fn a_bundle_puts_mentioned_files_first_and_keeps_to_its_budget() {
    let ws = workspace();
    let (listed, _) = list_files(ws.path(), 100);
    let b = bundle(
        ws.path(),
        &listed,
        "fix the failing test in calc.py",
        10,
        1024,
        4096,
    );
    assert_eq!(b.files[0].0, "calc.py");
    let paths: Vec<&str> = b.files.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"README.md") && !paths.contains(&"blob.bin"),
        "{paths:?}"
    );
    assert!(b.skipped.contains(&"blob.bin".to_string()));
    // Few mentioned, many listed: only the mentioned ones.
    let b = bundle(ws.path(), &listed, "calc.py", 2, 1024, 4096);
    assert_eq!(b.files.len(), 1);
    // The total bound.
    let b = bundle(ws.path(), &listed, "", 10, 1024, 10);
    assert!(b.files.iter().map(|(_, t)| t.len()).sum::<usize>() <= 10);
    // Hostile names from the host's listing are skipped, not read.
    let hostile = vec!["../../etc/passwd".to_string(), "/etc/passwd".to_string()];
    let b = bundle(ws.path(), &hostile, "/etc/passwd", 10, 1024, 4096);
    assert!(b.files.is_empty() && b.skipped.len() == 2);
    let rendered = bundle(ws.path(), &listed, "calc.py", 1, 1024, 4096).render();
    assert_eq!(
        rendered,
        "FILE: calc.py\n```\ndef add(a, b):\n    return a - b\n```\n\n"
    );
}

#[test]
fn a_hostile_reply_writes_only_its_allowed_blocks() {
    let ws = workspace();
    let reply = "FILE: calc.py\n```\nfixed\n```\nFILE: ../x\n```\nx\n```\nFILE: /etc/passwd\n```\nroot\n```\n\
                 FILE: .git/hooks/pre-commit\n```\nrm -rf /\n```\nFILE: half.py\n```\nno end\n";
    let blocks = crate::parse_file_blocks(reply);
    let (written, refused) = apply_blocks(ws.path(), &blocks, &Globs::new(&["**"]));
    assert_eq!(written, ["calc.py"]);
    let paths: Vec<&str> = refused.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["half.py", "../x", "/etc/passwd", ".git/hooks/pre-commit"]
    );
    assert!(refused[0].reason.contains("never closed"), "{refused:?}");
    assert!(refused[1].reason.contains(".."), "{refused:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("calc.py")).unwrap(),
        "fixed\n"
    );
    assert!(!ws.path().join(".git/hooks").exists());
    assert!(!ws.path().join("half.py").exists());
}

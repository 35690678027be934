//! The walk's cases on a real folder: every route out of the mount stops the same way, every
//! route that stays in reaches what the kernel would, and every bound holds.

use std::os::unix::fs::symlink;

use super::*;

/// A mount `m/` with folders `a/b/c`, files `f.txt` and `a/g.txt`, and links of every kind.
fn mount() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    fs::create_dir_all(m.join("a/b/c")).unwrap();
    fs::write(m.join("f.txt"), "f").unwrap();
    fs::write(m.join("a/g.txt"), "g").unwrap();
    fs::write(dir.path().join("outside"), "o").unwrap();
    let links = [
        ("up", ".."),         // at the root: out
        ("a/up", ".."),       // to the root
        ("a/upup", "../.."),  // out
        ("a/b/dot", "."),     // to a/b
        ("a/esc", "up/.."),   // through a/up, then out
        ("abs", "/etc"),      // absolute
        ("chain1", "chain2"), // chain2 -> a/up -> root
        ("chain2", "a/up"),
        ("loop1", "loop2"),
        ("loop2", "loop1"),
        ("alias", "a/g.txt"),
        ("dangling", "nothere"),
        ("broken", "nodir/x"),
    ];
    for (link, target) in links {
        symlink(target, m.join(link)).unwrap();
    }
    dir
}

fn named(dir: &tempfile::TempDir, base: &str, path: &str) -> Result<Named, Stop> {
    name(
        &mut Plain {
            root: &dir.path().join("m"),
        },
        base,
        path,
    )
}

/// (base, path, the entry it names, where that leads) for paths that stay in the mount.
#[test]
fn routes_that_stay_in_reach_what_the_kernel_reaches() {
    let d = mount();
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("", "a/b", "a/b", Some("a/b")),
        ("", "./a//b/", "a/b", Some("a/b")),
        ("a", "../f.txt", "f.txt", Some("f.txt")),
        ("a/b/c", "../../g.txt", "a/g.txt", Some("a/g.txt")),
        ("", "a/up/f.txt", "f.txt", Some("f.txt")),
        ("", "a/b/dot/../g.txt", "a/g.txt", Some("a/g.txt")),
        ("", "chain1/a/g.txt", "a/g.txt", Some("a/g.txt")),
        ("", "alias", "alias", Some("a/g.txt")),
        ("", "a/up", "a/up", Some("")),
        ("", "new.txt", "new.txt", Some("new.txt")),
        ("", "dangling", "dangling", Some("nothere")),
        ("", "broken", "broken", None),
    ];
    for (base, path, entry, target) in cases {
        let n = named(&d, base, path).unwrap_or_else(|e| panic!("{base} + {path}: {e:?}"));
        assert_eq!(n.entry.0, *entry, "{base} + {path}");
        assert_eq!(n.target.map(|t| t.0).as_deref(), *target, "{base} + {path}");
    }
}

/// (base, path) for every route out: `..`, `link/..`, chains, a link to `..`, absolute links.
#[test]
fn every_route_out_stops_as_an_escape() {
    let d = mount();
    let cases = [
        ("", ".."),
        ("a", "../.."),
        ("", "up"),
        ("", "up/x"),
        ("", "a/up/.."),
        ("", "a/up/../outside"),
        ("", "a/upup"),
        ("", "a/esc"),
        ("", "a/esc/outside"),
        ("", "a/b/dot/../../.."),
        ("", "chain1/.."),
        ("a/b", "../../a/up/../m"),
        ("", "abs"),
        ("", "abs/passwd"),
    ];
    for (base, path) in cases {
        match named(&d, base, path) {
            Err(stop) if stop.escapes() => {
                let said = stop.describe(path, "/m");
                assert!(said.contains("/m"), "{said}");
            }
            other => panic!("{base} + {path} must escape, got {other:?}"),
        }
    }
}

/// (path, the stop it gets): errors the kernel would give, not escapes.
#[test]
fn errors_are_the_kernels() {
    let d = mount();
    let long = "x".repeat(MAX_PATH_BYTES + 1);
    let dots = "./".repeat(MAX_STEPS + 1);
    type Want = fn(&Stop) -> bool;
    let cases: Vec<(&str, Want)> = vec![
        ("loop1", |s| matches!(s, Stop::Loop)),
        ("nodir/x", |s| matches!(s, Stop::NotFound)),
        ("f.txt/x", |s| matches!(s, Stop::NotADirectory)),
        (&long, |s| matches!(s, Stop::TooLong)),
        (&dots, |s| matches!(s, Stop::TooLong)),
    ];
    for (path, want) in cases {
        match named(&d, "", path) {
            Err(stop) => {
                assert!(want(&stop), "{}: {stop:?}", &path[..path.len().min(20)]);
                assert!(!stop.escapes());
            }
            Ok(n) => panic!("{path} must stop, named {:?}", n.entry),
        }
    }
}

#[test]
fn a_walk_goes_no_deeper_than_its_bound() {
    let d = mount();
    let deepest = vec!["d"; MAX_DEPTH].join("/");
    fs::create_dir_all(d.path().join("m").join(&deepest)).unwrap();
    // The deepest folder allowed, and an entry in the folder above it, are reachable...
    let above = vec!["d"; MAX_DEPTH - 1].join("/");
    assert!(named(&d, "", &format!("{above}/new")).is_ok());
    assert!(named(&d, "", &deepest).is_ok());
    // ...one level more is not, named from the root or from a folder deep down.
    assert!(matches!(
        named(&d, "", &format!("{deepest}/x")),
        Err(Stop::TooLong)
    ));
    assert!(matches!(named(&d, &above, "d/x"), Err(Stop::TooLong)));
    assert!(named(&d, &deepest, "").is_ok());
    assert!(matches!(named(&d, &deepest, "x"), Err(Stop::TooLong)));
}

#[test]
fn a_base_that_is_no_longer_a_folder_is_not_walked_from() {
    let d = mount();
    assert!(matches!(named(&d, "a/up", "f.txt"), Err(Stop::NotFound)));
    assert!(matches!(named(&d, "gone", "x"), Err(Stop::NotFound)));
    assert!(named(&d, "a/b", "c").is_ok());
}

//! End-to-end: untrusted text never drives the operator's terminal. A hostile agent (its
//! `describe()`, output, logs, errors, staged file names and contents, tool inputs, the names and
//! paths it is killed for), a hostile token subject, policy and key file names, a policy file's
//! own lines and a host tool's output put terminal control sequences in every field; every
//! command that prints them runs (see `terminal/hostile.rs`), and neither its stdout nor its
//! stderr may carry a raw control, C1, bidi or invisible format character.

#[path = "terminal/hostile.rs"]
mod hostile;

use hostile::{CASES, Host, Walk, case};

#[test]
fn no_command_lets_untrusted_text_drive_the_terminal() {
    let host = Host::new();
    let mut walk = Walk::default();
    for name in CASES {
        case(&host, &mut walk, name);
    }
    assert!(
        walk.checked.len() >= 80,
        "walked only {} commands",
        walk.checked.len()
    );
    assert!(
        walk.dirty.is_empty(),
        "untrusted text reached the terminal raw:\n{}",
        walk.dirty.join("\n")
    );
}

/// The walk can fail: the same check on output that carries the hazards raw finds each of them.
#[test]
fn the_walk_sees_raw_hazards() {
    let raw = hostile::raw_hazards(hostile::HOSTILE);
    for c in [
        '\u{1b}', '\u{7}', '\u{9b}', '\u{9d}', '\u{202e}', '\u{2066}', '\u{7f}', '\r',
    ] {
        assert!(raw.contains(&c), "{c:?} not seen");
    }
    assert!(hostile::raw_hazards("plain text\n\twith a tab").is_empty());
}

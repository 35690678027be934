//! Whole-policy tests.
use super::*;
#[test]
fn probe() {
    for t in ["[agent]\nname = files\n", "[agent]\nname = hello\n", "[agent]\nname = \"x\n", "[agent]\nname = \"x\" junk\n", "[agent]\nname\n", "[agent]\n[agent]\n", "{", "[agent]\nname = \"a\"\n[fs]\nread = [\"a\",\n", "[agent]\nname = \"x\"\n[limits]\ntables = 1.5\n", "[agent]\nname = \"x\"\n[limits]\ntables = 99999999999999999999\n", "[agent]\nname = \"x\"\n[[fs]]\n"] {
        let e = Policy::parse("t", t).unwrap_err();
        println!("{:?} => {:?} {}:{} | {} | {:?}", t, e.kind, e.line, e.column, e.message, e.expected);
    }
}

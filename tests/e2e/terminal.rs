//! End-to-end: untrusted text never drives the operator's terminal. A hostile agent (its
//! `describe()`, output, logs, errors, staged file names and contents, tool inputs, the paths it
//! is killed for), a hostile token subject, policy and key file names, a policy file's own lines
//! and a host tool's output put terminal control sequences in every field; every command that
//! prints them runs, and neither its stdout nor its stderr may carry a raw control, C1, bidi or
//! invisible format character. Fields printed inside a line may not start a line of their own.

use std::path::Path;
use std::process::Command;

use warden_tests::{agent, root, warden_bin};

/// Every way text drives or deceives a terminal, and a forged line after a newline.
const HOSTILE: &str = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{1b}]8;;http://evil\u{1b}\\\u{9b}31m\u{9d}0;pwned\u{9c}\u{202e}exe.txt\u{2066}\u{7f}\u{200b}\u{e0041}\u{85}\u{2028}\r\nFORGED";

/// What a staged file's name can hold of `HOSTILE`.
const STAGED_NAME: &str = "\u{202e}exe.txt\u{2066}\u{200b}\u{e0041}\u{2028}FORGED";

/// `HOSTILE` as a file name (no `/`).
fn hostile_name() -> String {
    HOSTILE.replace('/', "_")
}

/// `HOSTILE` as JSON text (C0 escaped by JSON, the rest raw).
fn hostile_json() -> String {
    serde_json::to_string(HOSTILE).unwrap()
}

fn warden_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("data"))
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(args)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The characters that may reach the terminal raw: everything but the hazards, and the line
/// breaks and tabs of multi-line blocks.
fn raw_hazards(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| warden::terminal::is_hazard(*c) && *c != '\n' && *c != '\t')
        .collect()
}

/// What the walk saw: each command, and whether its output was clean.
#[derive(Default)]
struct Walk {
    checked: Vec<String>,
    dirty: Vec<String>,
}

impl Walk {
    /// Run `args` in `dir`; its output must carry no raw hazard, and when `lines` is set no
    /// line may begin with the forged text (every hostile field it prints is a one-line field).
    fn check(&mut self, dir: &Path, args: &[&str], lines: bool) -> (i32, String, String) {
        let (code, out, err) = warden_in(dir, args);
        let what = args
            .iter()
            .map(|a| warden::terminal::line(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        for (stream, text) in [("stdout", &out), ("stderr", &err)] {
            let raw = raw_hazards(text);
            if !raw.is_empty() {
                self.dirty
                    .push(format!("`{what}` {stream}: raw {raw:?} in {text:?}"));
            }
            if lines && text.lines().any(|l| l.starts_with("FORGED")) {
                self.dirty
                    .push(format!("`{what}` {stream}: a forged line in {text:?}"));
            }
        }
        self.checked.push(what);
        (code, out, err)
    }
}

/// A component whose `describe()` returns `text` in all five fields and whose `run` returns it
/// as its output, or as a `failed` error when the task's second byte is `e` (the JSON `"e"`).
fn hostile_component(text: &str) -> String {
    let data: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    let len = text.len();
    assert!(len < 3000, "the text fits below the heap");
    let fields: String = (0..5)
        .map(|i| {
            format!(
                "(i32.store (i32.const {}) (i32.const 256)) (i32.store (i32.const {}) (i32.const {len}))\n",
                128 + 8 * i,
                132 + 8 * i
            )
        })
        .collect();
    format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (data (i32.const 256) "{data}")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (global.get $heap) (local.get 3)))
      (local.get $p))
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      (if (i32.and (i32.gt_u (local.get $len) (i32.const 1))
                   (i32.eq (i32.load8_u offset=1 (local.get $ptr)) (i32.const 101)))
        (then
          (i32.store (i32.const 0) (i32.const 1))
          (i32.store (i32.const 4) (i32.const 1))
          (i32.store (i32.const 8) (i32.const 256))
          (i32.store (i32.const 12) (i32.const {len}))
          (return (i32.const 0))))
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const 256))
      (i32.store (i32.const 8) (i32.const {len}))
      (i32.const 0))
    (func (export "describe") (result i32)
      {fields}
      (i32.const 128))
  )
  (core instance $i (instantiate $m))
  (type $err' (variant (case "invalid-input" string) (case "failed" string)))
  (export $err "agent-error" (type $err'))
  (type $desc' (record (field "name" string) (field "version" string) (field "summary" string)
                       (field "accepts" string) (field "returns" string)))
  (export $desc "description" (type $desc'))
  (func $run (param "task" string) (result (result string (error $err)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "run" (func $run))
  (func $describe (result $desc)
    (canon lift (core func $i "describe") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "describe" (func $describe))
)
"#
    )
}

/// Keys, roles, a host configuration with a token issuer and an irreversible tool whose output
/// is hostile, a workspace, and a token whose subject is hostile. Returns the token.
fn host(d: &Path) -> String {
    std::fs::create_dir_all(d.join("ws/notes/out")).unwrap();
    std::fs::write(d.join("ws/notes/a.md"), "a note\n").unwrap();
    let (code, rita, err) = warden_in(d, &["keygen", "rita"]);
    assert_eq!(code, 0, "{err}");
    let (code, sso, err) = warden_in(d, &["keygen", "sso"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        d.join("roles.toml"),
        format!(
            "[person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[role.reviewer]\nreview = true\napprove = [\"deploy\"]\n[role.dev]\nfs.write = [\"**\"]\ntools.allow = [\"deploy\", \"echo\"]\n",
            rita.trim()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("warden.toml"),
        format!(
            "[host]\nroles = \"roles.toml\"\n[[issuers]]\nname = \"sso\"\nkey = \"{}\"\naudience = \"warden\"\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >/dev/null; printf '\\\\033]52;c;ZXZpbA==\\\\007\\\\033[2J done'\"]\n",
            sso.trim()
        ),
    )
    .unwrap();
    let (code, token, err) = warden_in(
        d,
        &[
            "token",
            "issue",
            "--key",
            "sso.key",
            "--issuer",
            "sso",
            "--subject",
            HOSTILE,
            "--role",
            "dev",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(raw_hazards(&token).is_empty(), "{token:?}");
    token.trim().to_string()
}

#[test]
fn no_command_lets_untrusted_text_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = host(d);
    let mut walk = Walk::default();
    let probe = agent("probe");
    let probe = probe.to_str().unwrap();
    // The policy's own file name is hostile: it is printed as the policy's source.
    let policy_name = format!("probe{}.toml", hostile_name());
    std::fs::write(
        d.join(&policy_name),
        "[agent]\nname = \"probe\"\n[fs]\nread = [\"notes/**\"]\nwrite = [\"notes/out/**\"]\n[tools]\nallow = [\"deploy\", \"echo\"]\n[trust]\npromote_after = 2\n",
    )
    .unwrap();
    let h = hostile_json();
    let run = |walk: &mut Walk, task: &str, json: bool| {
        let mut args = vec![
            "--config",
            "warden.toml",
            "run",
            probe,
            "--policy",
            &policy_name,
            "--workspace",
            "ws",
            "--token",
            &token,
            "--input",
            task,
        ];
        if json {
            args.push("--json");
        }
        walk.check(d, &args, false)
    };

    // 1. A staged file with a hostile name and content (level 1: proposed). Policies never
    // match a path with a control character or a backslash, so the name holds the rest: bidi
    // controls, invisible characters, a line separator.
    let write = format!(r#"{{"op":"write","path":"/notes/out/x{STAGED_NAME}.txt","text":{h}}}"#);
    let (code, _, err) = run(&mut walk, &write, false);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("proposed"), "{err}");
    // 2. Hostile output, stdout, stderr and log; the run promotes the agent to level 2.
    let (code, out, _) = run(&mut walk, &format!(r#"{{"op":"echo","text":{h}}}"#), false);
    assert_eq!(code, 0);
    assert!(
        out.contains("\\u{1b}]52;c;ZXZpbA=="),
        "shown, escaped: {out}"
    );
    run(&mut walk, &format!(r#"{{"op":"log","text":{h}}}"#), false);
    run(&mut walk, &format!(r#"{{"op":"print","text":{h}}}"#), true);
    run(&mut walk, r#"{"op":"escapes","depth":2}"#, false);
    // 3. An irreversible tool with a hostile input: held for approval.
    let (code, out, err) = run(
        &mut walk,
        &format!(r#"{{"op":"tool","name":"deploy","input":{h}}}"#),
        false,
    );
    assert_eq!(code, 0, "{out}{err}");
    let pending: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let action = pending["action"].to_string();
    // 4. Killed for a hostile tool name, then for a hostile path: demoted and held.
    let (code, out, err) = run(
        &mut walk,
        &format!(r#"{{"op":"tool","name":{h},"input":"x"}}"#),
        false,
    );
    assert_eq!(code, 3, "{out}{err}");
    let (code, _, err) = run(
        &mut walk,
        &format!(r#"{{"op":"read","path":"/notes/../secret{STAGED_NAME}"}}"#),
        true,
    );
    assert_eq!(code, 3, "{err}");

    // 5. A hostile component: describe(), output and error.
    std::fs::write(d.join("hostile.wat"), hostile_component(HOSTILE)).unwrap();
    std::fs::write(d.join("hostile.toml"), "[agent]\nname = \"hostile\"\n").unwrap();
    let (code, out, err) = walk.check(d, &["inspect", "hostile.wat"], true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("describe: \\u{1b}]52"), "{out}");
    for task in [r#""ok""#, r#""e""#] {
        for json in [false, true] {
            let mut args = vec![
                "--config",
                "warden.toml",
                "run",
                "hostile.wat",
                "--policy",
                "hostile.toml",
                "--token",
                &token,
                "--input",
                task,
            ];
            if json {
                args.push("--json");
            }
            walk.check(d, &args, false);
        }
    }
    walk.check(d, &["inspect", probe, "--policy", &policy_name], true);

    // 6. Every command that prints what those runs left behind.
    let config = ["--config", "warden.toml"];
    let with = |args: &[&'static str]| [&config[..], args].concat();
    walk.check(d, &["task", "list"], true);
    walk.check(d, &["task", "list", "--json"], true);
    for id in 1..=12u32 {
        let id = id.to_string();
        for sub in ["show", "trace"] {
            walk.check(d, &["task", sub, &id], false);
        }
    }
    let (code, diff, err) = walk.check(d, &["task", "diff", "1"], false);
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("\\u{1b}]52") && diff.contains("x\\u{202e}exe.txt"),
        "the staged name and content, escaped: {diff}"
    );
    walk.check(d, &["trust", "list"], true);
    walk.check(d, &["trust", "review", "probe"], true);
    walk.check(d, &with(&["approve", "--list"]), true);
    let (code, _, err) = walk.check(
        d,
        &[
            "--config",
            "warden.toml",
            "approve",
            &action,
            "--key",
            "rita.key",
            "--save",
            "approval.json",
        ],
        true,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = walk.check(d, &with(&["approve", "--submit", "approval.json"]), false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\\u{1b}]52;c;ZXZpbA==\\u{7}"), "{out}");
    walk.check(d, &["audit", "tail", "-n", "500"], false);
    walk.check(d, &["audit", "verify"], true);

    // 7. A batch of hostile tasks.
    let batch = format!(
        "{{\"agent\":\"hostile.wat\",\"policy\":\"hostile.toml\",\"input\":\"ok\"}}\n{{\"agent\":\"hostile.wat\",\"policy\":\"hostile.toml\",\"input\":\"e\"}}\n{{\"agent\":\"{probe}\",\"policy\":{},\"input\":{{\"op\":\"echo\",\"text\":{h}}},\"workspace\":\"ws\"}}\n",
        serde_json::to_string(&policy_name).unwrap()
    );
    std::fs::write(d.join("tasks.jsonl"), batch).unwrap();
    let (code, out, err) = walk.check(
        d,
        &[
            "--config",
            "warden.toml",
            "batch",
            "tasks.jsonl",
            "--token",
            &token,
        ],
        true,
    );
    assert_eq!(code, 1, "{out}{err}");

    // 8. Policies: a diagnostic quotes the file's own lines; explain prints its entries.
    std::fs::write(
        d.join("bad-name.toml"),
        "[agent]\nname = \"probe\u{9b}31m\u{202e}\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bad-syntax.toml"),
        "[agent]\nname = \"probe\" # \u{1b}]52;c;ZXZpbA==\u{7}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("odd-paths.toml"),
        "[agent]\nname = \"probe\"\n[fs]\nread = [\"notes\u{202e}/**\"]\n",
    )
    .unwrap();
    for file in [
        "bad-name.toml",
        "bad-syntax.toml",
        "odd-paths.toml",
        &policy_name,
    ] {
        walk.check(d, &["policy", "check", file], false);
        walk.check(d, &["inspect", probe, "--policy", file], false);
        walk.check(
            d,
            &[
                "policy",
                "explain",
                file,
                "--as",
                "dev",
                "--roles-file",
                "roles.toml",
            ],
            true,
        );
    }

    // 9. Error paths that quote what they were given, and file names printed back.
    let hostile_file = format!("x{}", hostile_name());
    std::fs::copy(d.join("rita.key"), d.join(format!("{hostile_file}.key"))).unwrap();
    std::fs::write(d.join(&hostile_file), b"\0asm").unwrap();
    let at_file = format!("@{hostile_file}.missing");
    let hostile_key = format!("{hostile_file}.key");
    let hostile_stem = format!("k{hostile_file}");
    let hf = hostile_file.as_str();
    let errors: Vec<Vec<&str>> = vec![
        vec!["run", hf, "--policy", "hostile.toml"],
        vec!["run", hf, "--policy", hf],
        vec![
            "run",
            "hostile.wat",
            "--policy",
            "hostile.toml",
            "--input",
            &at_file,
        ],
        vec![
            "--config",
            "warden.toml",
            "run",
            "hostile.wat",
            "--policy",
            "hostile.toml",
            "--token",
            &at_file,
        ],
        vec!["inspect", hf],
        vec!["task", "diff", "9999"],
        vec!["trust", "review", HOSTILE],
        vec!["sign", hf, "--key", &hostile_key],
        vec!["keygen", &hostile_stem],
        vec!["approve", "--submit", hf],
        vec!["policy", "check", hf],
    ];
    for args in &errors {
        walk.check(d, args, false);
    }

    assert!(
        walk.checked.len() >= 60,
        "walked {} commands",
        walk.checked.len()
    );
    assert!(
        walk.dirty.is_empty(),
        "untrusted text reached the terminal raw:\n{}",
        walk.dirty.join("\n")
    );
}

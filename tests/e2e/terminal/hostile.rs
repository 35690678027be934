//! Hostile text for the operator's terminal, shared by the end-to-end walk (`tests/e2e/terminal.rs`)
//! and the red-team suite's `terminal` class: a host whose agent, token, policies, file names and
//! tool put terminal control sequences in every field, and the cases that make each command
//! print them. A case is clean when no stdout or stderr carries a raw control, C1, bidi or
//! invisible format character, and no one-line field starts a line of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_tests::{agent, root, warden_bin};

/// Every way text drives or deceives a terminal, and a forged line after a newline.
pub const HOSTILE: &str = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{1b}]8;;http://evil\u{1b}\\\u{9b}31m\u{9d}0;pwned\u{9c}\u{202e}exe.txt\u{2066}\u{7f}\u{200b}\u{e0041}\u{85}\u{2028}\r\nFORGED";

/// What a path can hold of `HOSTILE`: policies never match a path with a control character or a
/// backslash, so a staged file's name holds the rest (bidi controls, invisible characters, a line
/// separator).
pub const PATH_SAFE: &str = "\u{202e}exe.txt\u{2066}\u{200b}\u{e0041}\u{2028}FORGED";

/// The cases, each a group of commands that print one kind of untrusted text.
pub const CASES: &[&str] = &[
    "describe",
    "agent-output",
    "token-subject",
    "staged-file",
    "tool-input",
    "kill-detail",
    "policy-text",
    "file-names",
];

/// `HOSTILE` as a file name (no `/`).
fn hostile_name() -> String {
    HOSTILE.replace('/', "_")
}

/// `text` as JSON text (C0 escaped by JSON, the rest raw).
fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The characters that reached the terminal raw: the hazards, less the line breaks and tabs of
/// multi-line blocks.
pub fn raw_hazards(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| warden::terminal::is_hazard(*c) && *c != '\n' && *c != '\t')
        .collect()
}

/// What a walk saw: each command, and what was not clean.
#[derive(Default)]
pub struct Walk {
    /// The commands run.
    pub checked: Vec<String>,
    /// What reached the terminal raw, or a forged line.
    pub dirty: Vec<String>,
}

impl Walk {
    /// Run `args` in `dir`; its output must carry no raw hazard, and when `lines` is set no
    /// line may begin with the forged text (every hostile field it prints is a one-line field).
    pub fn check(&mut self, dir: &Path, args: &[&str], lines: bool) -> (i32, String, String) {
        let (code, out, err) = warden_in(dir, args);
        let what = args
            .iter()
            .map(|a| warden::terminal::line(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        for (stream, text) in [("stdout", &out), ("stderr", &err)] {
            let raw = raw_hazards(text);
            if !raw.is_empty() {
                self.dirty.push(format!(
                    "`{what}` {stream}: raw {raw:?} in {}",
                    warden::terminal::block(text)
                ));
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

/// Run `warden` in `dir` with its own data directory and no ambient configuration or token.
pub fn warden_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("data"))
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .env_remove("WARDEN_LOG")
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

/// A component whose `describe()` returns `text` as its name, version and summary, and a valid
/// JSON Schema whose description is `text` as both schemas; whose `run` returns `text` as its
/// output, or as a `failed` error when the task's second byte is `e` (the JSON `"e"`).
pub fn hostile_component(text: &str) -> String {
    let data: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    let len = text.len();
    assert!(len < 3000, "the text fits below the schema");
    let schema = format!(
        r#"{{"description": {}}}"#,
        serde_json::to_string(text).expect("a string")
    );
    let schema_data: String = schema.bytes().map(|b| format!("\\{b:02x}")).collect();
    let schema_len = schema.len();
    assert!(schema_len < 12000, "the schema fits below the heap");
    let fields: String = (0..5)
        .map(|i| {
            let (at, n) = if i < 3 { (256, len) } else { (4096, schema_len) };
            format!(
                "(i32.store (i32.const {}) (i32.const {at})) (i32.store (i32.const {}) (i32.const {n}))\n",
                128 + 8 * i,
                132 + 8 * i
            )
        })
        .collect();
    format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 16384))
    (data (i32.const 256) "{data}")
    (data (i32.const 4096) "{schema_data}")
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
                       (field "input-schema" string) (field "output-schema" string)))
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

/// A host in a temporary folder: keys (rita reviews and approves), roles, a configuration with a
/// token issuer and an irreversible tool whose output is hostile, a workspace, a token whose
/// subject is hostile, the probe under a policy whose file name is hostile, and a hostile
/// component.
pub struct Host {
    dir: tempfile::TempDir,
    token: String,
    policy: String,
    probe: PathBuf,
}

impl Host {
    /// Set it up.
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("ws/notes/out")).unwrap();
        std::fs::write(d.join("ws/notes/a.md"), "a note\n").unwrap();
        let (code, rita, err) = warden_in(d, &["keygen", "rita"]);
        assert_eq!(code, 0, "{err}");
        let (code, sso, err) = warden_in(d, &["keygen", "sso"]);
        assert_eq!(code, 0, "{err}");
        std::fs::write(
            d.join("roles.toml"),
            format!(
                "[person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[role.reviewer]\nagents = [\"*\"]\nreview = true\napprove = [\"deploy\"]\n[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\ntools.allow = [\"deploy\", \"echo\"]\n",
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
        // The policy's own file name is hostile: it is printed as the policy's source.
        let policy = format!("probe{}.toml", hostile_name());
        std::fs::write(
            d.join(&policy),
            "[agent]\nname = \"probe\"\n[fs]\nread = [\"notes/**\"]\nwrite = [\"notes/out/**\"]\n[tools]\nallow = [\"deploy\", \"echo\"]\n[trust]\npromote_after = 100000\n",
        )
        .unwrap();
        std::fs::write(d.join("hostile.wat"), hostile_component(HOSTILE)).unwrap();
        std::fs::write(d.join("hostile.toml"), "[agent]\nname = \"hostile\"\n").unwrap();
        Host {
            token: token.trim().to_string(),
            policy,
            probe: agent("probe"),
            dir,
        }
    }

    /// Its folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `warden [global] run <agent> --policy <policy> --token … --input <task> [extra]`, checked.
    fn run(
        &self,
        walk: &mut Walk,
        agent: &str,
        policy: &str,
        task: &str,
        extra: &[&str],
    ) -> (i32, String, String) {
        let mut args = vec![
            "--config",
            "warden.toml",
            "run",
            agent,
            "--policy",
            policy,
            "--workspace",
            "ws",
            "--token",
            &self.token,
            "--input",
            task,
        ];
        args.extend_from_slice(extra);
        walk.check(self.path(), &args, false)
    }

    /// Run the probe with `task`, checked; the task's id.
    fn probe(&self, walk: &mut Walk, task: &str) -> (i32, u64, String) {
        let probe = self.probe.to_str().unwrap().to_string();
        let (code, out, err) = self.run(walk, &probe, &self.policy.clone(), task, &["--json"]);
        let report: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("run --json prints a report ({e}): {out}{err}"));
        let output = report["outcome"]["output"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // And the same task in text form.
        self.run(walk, &probe, &self.policy.clone(), task, &[]);
        (code, report["task"].as_u64().unwrap(), output)
    }

    /// Every command that prints task `id`.
    fn task(&self, walk: &mut Walk, id: u64) {
        let id = id.to_string();
        let d = self.path();
        walk.check(d, &["task", "show", &id], false);
        walk.check(d, &["task", "trace", &id], false);
        walk.check(d, &["task", "list"], true);
        walk.check(d, &["task", "list", "--json"], true);
        walk.check(d, &["audit", "tail", "-n", "50"], false);
    }
}

/// `args` after `--config warden.toml`.
fn with_config<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--config", "warden.toml"][..], args].concat()
}

/// Run `case` (one of [`CASES`]) on `host`.
pub fn case(host: &Host, walk: &mut Walk, case: &str) {
    let d = host.path();
    let h = json(HOSTILE);

    match case {
        "describe" => {
            let (code, out, err) = walk.check(d, &["inspect", "hostile.wat"], true);
            assert_eq!(code, 0, "{out}{err}");
            assert!(out.contains("describe: \\u{1b}]52"), "{out}");
            walk.check(
                d,
                &["inspect", "hostile.wat", "--policy", "hostile.toml"],
                true,
            );
        }
        "agent-output" => {
            for task in [r#""ok""#, r#""e""#] {
                host.run(walk, "hostile.wat", "hostile.toml", task, &[]);
                host.run(walk, "hostile.wat", "hostile.toml", task, &["--json"]);
            }
            let (code, id, _) = host.probe(walk, &format!(r#"{{"op":"echo","text":{h}}}"#));
            assert_eq!(code, 0);
            host.task(walk, id);
            host.probe(walk, &format!(r#"{{"op":"log","text":{h}}}"#));
            host.probe(walk, &format!(r#"{{"op":"print","text":{h}}}"#));
            host.probe(walk, r#"{"op":"escapes","depth":2}"#);
            let batch = format!(
                "{{\"agent\":\"hostile.wat\",\"policy\":\"hostile.toml\",\"input\":\"ok\"}}\n{{\"agent\":\"hostile.wat\",\"policy\":\"hostile.toml\",\"input\":\"e\"}}\n{{\"agent\":{},\"policy\":{},\"input\":{{\"op\":\"echo\",\"text\":{h}}},\"workspace\":\"ws\"}}\n",
                json(host.probe.to_str().unwrap()),
                json(&host.policy)
            );
            std::fs::write(d.join("tasks.jsonl"), batch).unwrap();
            let (code, out, err) = walk.check(
                d,
                &with_config(&["batch", "tasks.jsonl", "--token", &host.token]),
                true,
            );
            assert_eq!(code, 1, "{out}{err}");
        }
        "token-subject" => {
            let (code, id, _) = host.probe(walk, r#"{"op":"echo","text":"x"}"#);
            assert_eq!(code, 0);
            host.task(walk, id);
        }
        "staged-file" => {
            let write =
                format!(r#"{{"op":"write","path":"/notes/out/x{PATH_SAFE}.txt","text":{h}}}"#);
            let (code, id, _) = host.probe(walk, &write);
            assert_eq!(code, 0);
            let (code, diff, err) = walk.check(d, &["task", "diff", &id.to_string()], false);
            assert_eq!(code, 0, "{err}");
            assert!(
                diff.contains("\\u{1b}]52") && diff.contains("x\\u{202e}exe.txt"),
                "the staged name and content, escaped: {diff}"
            );
            host.task(walk, id);
        }
        "tool-input" => {
            let task = format!(r#"{{"op":"tool","name":"deploy","input":{h}}}"#);
            let (code, id, output) = host.probe(walk, &task);
            assert_eq!(code, 0, "{output}");
            let pending: serde_json::Value = serde_json::from_str(&output).unwrap();
            let action = pending["action"].to_string();
            walk.check(d, &with_config(&["approve", "--list"]), true);
            let (code, _, err) = walk.check(
                d,
                &with_config(&[
                    "approve",
                    &action,
                    "--key",
                    "rita.key",
                    "--save",
                    "approval.json",
                ]),
                true,
            );
            assert_eq!(code, 0, "{err}");
            let (code, out, err) = walk.check(
                d,
                &with_config(&["approve", "--submit", "approval.json"]),
                false,
            );
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("\\u{1b}]52;c;ZXZpbA==\\u{7}"), "{out}");
            host.task(walk, id);
        }
        "kill-detail" => {
            let (code, id, _) =
                host.probe(walk, &format!(r#"{{"op":"tool","name":{h},"input":"x"}}"#));
            assert_eq!(code, 3);
            host.task(walk, id);
            let read = format!(r#"{{"op":"read","path":"/notes/../secret{PATH_SAFE}"}}"#);
            let (code, id, _) = host.probe(walk, &read);
            assert_eq!(code, 3);
            host.task(walk, id);
            walk.check(d, &["trust", "list"], true);
            walk.check(d, &["trust", "review", "probe"], true);
            walk.check(d, &["audit", "verify"], true);
            let probe = host.probe.to_str().unwrap();
            let task = format!(r#"{{"op":"tool","name":{h},"input":"x"}}"#);
            for format in ["text", "json"] {
                walk.check(
                    d,
                    &[
                        "--log-format",
                        format,
                        "run",
                        probe,
                        "--policy",
                        &host.policy,
                        "--input",
                        &task,
                    ],
                    false,
                );
            }
        }
        "policy-text" => {
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
            let probe = host.probe.to_str().unwrap();
            for file in [
                "bad-name.toml",
                "bad-syntax.toml",
                "odd-paths.toml",
                &host.policy,
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
        }
        "file-names" => {
            let file = format!("x{}", hostile_name());
            std::fs::copy(d.join("rita.key"), d.join(format!("{file}.key"))).unwrap();
            std::fs::write(d.join(&file), b"\0asm").unwrap();
            let (missing, key, stem) = (
                format!("@{file}.missing"),
                format!("{file}.key"),
                format!("k{file}"),
            );
            let f = file.as_str();
            let commands: Vec<Vec<&str>> = vec![
                vec!["run", f, "--policy", "hostile.toml"],
                vec!["run", f, "--policy", f],
                vec![
                    "run",
                    "hostile.wat",
                    "--policy",
                    "hostile.toml",
                    "--input",
                    &missing,
                ],
                with_config(&[
                    "run",
                    "hostile.wat",
                    "--policy",
                    "hostile.toml",
                    "--token",
                    &missing,
                ]),
                vec!["inspect", f],
                vec!["task", "diff", "9999"],
                vec!["trust", "review", HOSTILE],
                vec!["sign", f, "--key", &key],
                vec!["keygen", &stem],
                vec!["approve", "--submit", f],
                vec!["policy", "check", f],
                vec!["--config", f, "task", "list"],
                // Usage errors quote the arguments.
                vec!["task", "show", HOSTILE],
                vec!["keygen", "a", f],
                vec!["run", f, "--polcy", HOSTILE],
            ];
            for args in &commands {
                walk.check(d, args, false);
            }
        }
        other => panic!("no terminal case `{other}`"),
    }
}

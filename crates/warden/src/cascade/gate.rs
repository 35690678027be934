//! The verification gate: the workspace's own checks (`warden.task.toml`), run on a throwaway
//! copy of the cascade's working copy inside the OS jail ([`crate::jail`]), never bare on the
//! host. Every command leaves a `gate-run` audit record; one stopped at a jail limit leaves a
//! `task-killed` record (agent `gate`, capability `jail`) like any other kill.
//!
//! `warden.task.toml`, at the workspace's root:
//!
//! ```toml
//! check = ["python3", "-m", "unittest", "-q"]      # one command (no shell) …
//! # checks = [["cargo", "test"], ["cargo", "clippy"]]   # … or several, run in order
//! sensitive = ["auth/**", "**/*secret*"]          # paths whose change calls a person
//! ```

use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use crate::audit::AuditEvent;
use crate::jail::{Jail, JailLimits};
use crate::ledger::Ledger;
use crate::orchestra::cascade::{CommandRun, Verification};
use crate::policy::{GateLimits, PathPattern};

/// The task file's name.
pub(crate) const TASK_FILE: &str = "warden.task.toml";
/// Largest task file read.
const MAX_TASK_FILE: u64 = 64 * 1024;
/// The tail of a command's output kept for feedback and records.
const OUTPUT_TAIL: usize = 4096;

/// What a workspace says about its own checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFile {
    /// The check commands, in order (none: the gate cannot verify).
    pub checks: Vec<Vec<String>>,
    /// Paths labelled sensitive.
    pub sensitive: Vec<PathPattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaskFile {
    check: Option<Vec<String>>,
    checks: Option<Vec<Vec<String>>>,
    #[serde(default)]
    sensitive: Vec<String>,
}

impl TaskFile {
    /// Read `warden.task.toml` from `workspace` (absent: no checks, nothing sensitive).
    ///
    /// # Errors
    ///
    /// A sentence naming the file and what is wrong with it.
    pub(crate) fn read(workspace: &Path) -> Result<TaskFile, String> {
        let path = workspace.join(TASK_FILE);
        let meta = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TaskFile::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) => m,
        };
        if !meta.is_file() || meta.len() > MAX_TASK_FILE {
            return Err(format!(
                "{}: not a file of at most {} KiB",
                path.display(),
                MAX_TASK_FILE >> 10
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawTaskFile =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let mut checks = raw.checks.unwrap_or_default();
        checks.extend(raw.check);
        if let Some(empty) = checks
            .iter()
            .position(|c| c.first().is_none_or(|p| p.is_empty()))
        {
            return Err(format!(
                "{}: check command {} is empty; give the program and its arguments, e.g. [\"python3\", \"-m\", \"unittest\"]",
                path.display(),
                empty + 1
            ));
        }
        let sensitive = raw
            .sensitive
            .iter()
            .map(|p| {
                PathPattern::parse(p)
                    .map_err(|e| format!("{}: sensitive pattern `{p}`: {e}", path.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(TaskFile { checks, sensitive })
    }
}

/// The jail's limits for the gate.
pub(crate) fn jail_limits(gate: &GateLimits) -> JailLimits {
    JailLimits {
        cpu: gate.cpu,
        memory: gate.memory,
        processes: gate.processes,
        wall: gate.wall,
        output: usize::try_from(gate.output).unwrap_or(usize::MAX),
        ..JailLimits::default()
    }
}

/// The last [`OUTPUT_TAIL`] bytes of a command's stdout and stderr, as text.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let mut both = String::from_utf8_lossy(stdout).into_owned();
    both.push_str(&String::from_utf8_lossy(stderr));
    if both.len() > OUTPUT_TAIL {
        let mut cut = both.len() - OUTPUT_TAIL;
        while !both.is_char_boundary(cut) {
            cut += 1;
        }
        both = format!("…{}", &both[cut..]);
    }
    both
}

/// Run `checks` in `jail` on `dir` (a throwaway copy), recording each in the audit log of
/// `ledger` under the cascade's task `task`.
///
/// # Errors
///
/// A sentence when there is no check, or the jail could not start a command.
pub(crate) fn verify(
    jail: &Jail,
    checks: &[Vec<String>],
    dir: &Path,
    ledger: Option<&Ledger>,
    task: u64,
    user: &str,
) -> Result<Verification, String> {
    if checks.is_empty() {
        return Err(format!(
            "the workspace names no check command (`check = [...]` in {TASK_FILE})"
        ));
    }
    let mut commands = Vec::new();
    for command in checks {
        let run = jail.run(command, dir, b"").map_err(|e| e.to_string())?;
        let limit = run.ended.limit().map(str::to_owned);
        let status = run.status;
        let output = tail(&run.stdout, &run.stderr);
        if let Some(l) = ledger {
            let record = |e: AuditEvent| {
                l.record(e.task(task).agent("gate").user(user))
                    .map_err(|e| format!("cannot record the gate's run: {e}"))
            };
            record(AuditEvent::new("gate-run").detail(json!({
                "command": command,
                "status": status,
                "limit": limit,
                "elapsed_ms": run.elapsed.as_millis() as u64,
            })))?;
            if let Some(limit) = &limit {
                record(AuditEvent::new("task-killed").detail(json!({
                    "reason": format!("{limit}-limit"),
                    "capability": "jail",
                    "detail": format!("`{}` reached the gate's {limit} limit", command.join(" ")),
                    "demotes": false,
                })))?;
            }
        }
        let passed = run.success();
        commands.push(CommandRun {
            command: command.clone(),
            status,
            limit,
            output,
        });
        if !passed {
            break;
        }
    }
    Ok(Verification {
        passed: commands
            .iter()
            .all(|c| c.status == Some(0) && c.limit.is_none()),
        commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_files_parse_and_mistakes_are_named() {
        let ws = tempfile::tempdir().unwrap();
        assert!(TaskFile::read(ws.path()).unwrap().checks.is_empty());
        std::fs::write(
            ws.path().join(TASK_FILE),
            "check = [\"python3\", \"-m\", \"unittest\"]\nsensitive = [\"auth/**\"]\n",
        )
        .unwrap();
        let t = TaskFile::read(ws.path()).unwrap();
        assert_eq!(t.checks, [vec!["python3", "-m", "unittest"]]);
        assert!(t.sensitive[0].allows("auth/login.py") && !t.sensitive[0].allows("calc.py"));
        for bad in [
            "check = []\n",
            "chek = [\"x\"]\n",
            "check = \"make test\"\n",
            "sensitive = [\"../x\"]\n",
        ] {
            std::fs::write(ws.path().join(TASK_FILE), bad).unwrap();
            let e = TaskFile::read(ws.path()).unwrap_err();
            assert!(e.contains(TASK_FILE), "{bad}: {e}");
        }
    }

    /// The gate end to end on a working copy: a failing check, then the fixed file passing, each
    /// in the jail on a throwaway copy whose writes never reach the working copy.
    #[test]
    fn the_gate_runs_the_checks_in_the_jail_on_a_throwaway_copy() {
        if !Path::new("/usr/bin/bwrap").exists() {
            eprintln!("skipped: bubblewrap is not installed (scripts/setup installs it)");
            return;
        }
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(
            ws.path().join("calc.py"),
            "def add(a, b):\n    return a - b\n",
        )
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let w =
            super::super::working::WorkingCopy::create(ws.path(), &data.path().join("w")).unwrap();
        let jail = Jail::locate(jail_limits(&GateLimits::default())).unwrap();
        let check = vec![vec![
            "python3".to_string(),
            "-c".into(),
            "import calc, pathlib; pathlib.Path('scratch').write_text('x'); assert calc.add(2, 2) == 4, 'add is wrong'".into(),
        ]];
        let run = |w: &super::super::working::WorkingCopy| {
            let dir = w.throwaway().unwrap();
            verify(&jail, &check, &dir.path().join("w"), None, 1, "-").unwrap()
        };
        let failed = run(&w);
        assert!(!failed.passed, "{failed:?}");
        assert_eq!(failed.commands[0].status, Some(1));
        assert!(
            failed.commands[0].output.contains("add is wrong"),
            "{failed:?}"
        );
        std::fs::write(
            w.path().join("calc.py"),
            "def add(a, b):\n    return a + b\n",
        )
        .unwrap();
        let passed = run(&w);
        assert!(passed.passed, "{passed:?}");
        // What the check wrote stayed in the throwaway copy.
        assert!(!w.path().join("scratch").exists());
        assert_eq!(w.changed().unwrap(), ["calc.py"]);
        assert!(verify(&jail, &[], w.path(), None, 1, "-").is_err());
    }

    #[test]
    fn output_tails_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let t = tail(long.as_bytes(), b"end");
        assert!(
            t.len() <= OUTPUT_TAIL + 4 && t.ends_with("end"),
            "{}",
            t.len()
        );
    }
}

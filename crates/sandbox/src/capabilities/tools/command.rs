//! Host tools run as commands, always in the OS jail ([`crate::jail`]): no shell, no network, an
//! environment of three fixed variables, a throwaway workspace, the tool's executable and its
//! configured `writable` folders the only parts of the host it sees beside `/usr`, the call's
//! input on stdin, a deadline and a bound on what it may print. Used for reversible tools at the
//! call and, after a signed approval, for irreversible ones.
//!
//! The jail is located once per process ([`host_jail`]), when the host registers its tools; a
//! host whose bubblewrap is missing or unusable refuses every host-tool call with the reason.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::jail::{Jail, JailBind, JailEnd, JailLimits};
use crate::policy::HostTool;

/// Longest a host tool may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output a host tool may return.
pub const TOOL_OUTPUT_LIMIT: usize = 1024 * 1024;

/// The limits of a host tool's jail: [`JailLimits::default`] with [`TOOL_TIMEOUT`] of wall time
/// and [`TOOL_OUTPUT_LIMIT`] of output.
pub fn tool_limits() -> JailLimits {
    JailLimits {
        wall: TOOL_TIMEOUT,
        output: TOOL_OUTPUT_LIMIT,
        ..JailLimits::default()
    }
}

/// The jail every host tool of this process runs in, located on first use (the host registers
/// its tools at start-up, which locates it then) and kept for the life of the process.
///
/// # Errors
///
/// Why there is no jail (bubblewrap missing or unusable, and what to install or enable).
pub fn host_jail() -> Result<&'static Jail, &'static str> {
    static JAIL: OnceLock<Result<Jail, String>> = OnceLock::new();
    JAIL.get_or_init(|| Jail::locate(tool_limits()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// Run a host tool in the host's jail ([`host_jail`]); see [`perform_in`].
///
/// # Errors
///
/// A sentence saying what went wrong; without a working jail, the tool is refused and nothing
/// runs.
pub fn perform(tool: &HostTool, input: &str) -> Result<String, String> {
    let jail = host_jail()
        .map_err(|why| format!("host tool `{}` refused: no OS jail: {why}", tool.name))?;
    perform_in(jail, tool, input)
}

/// Run a host tool in `jail`: its command with no shell, `input` on stdin, its stdout (at most
/// [`TOOL_OUTPUT_LIMIT`]) the result. The jail's workspace is a fresh empty folder, removed
/// after; the tool's executable (when it lies outside `/usr`) is visible read-only at its path,
/// and each of its `writable` folders writable at its path. A non-zero exit, a limit reached or
/// output that is not UTF-8 is an error.
///
/// # Errors
///
/// A sentence saying what went wrong.
pub fn perform_in(jail: &Jail, tool: &HostTool, input: &str) -> Result<String, String> {
    let name = &tool.name;
    let mut binds: Vec<JailBind> = tool
        .writable
        .iter()
        .map(|d| JailBind::writable(d.clone()))
        .collect();
    if let Some(exe) = executable_bind(&tool.command[0])? {
        binds.push(exe);
    }
    let workspace = tempfile::Builder::new()
        .prefix("warden-tool-")
        .tempdir()
        .map_err(|e| format!("cannot make a workspace for `{name}`: {e}"))?;
    let run = jail
        .run_with(&tool.command, workspace.path(), input.as_bytes(), &binds)
        .map_err(|e| format!("cannot start `{}`: {e}", tool.command[0]))?;
    match run.ended {
        JailEnd::WallLimit => {
            return Err(format!(
                "`{name}` ran past {}s and was stopped",
                jail.limits().wall.as_secs()
            ));
        }
        JailEnd::OutputLimit => {
            return Err(format!(
                "`{name}` wrote more than {} bytes",
                jail.limits().output
            ));
        }
        JailEnd::Signalled(sig) => {
            let limit = run
                .ended
                .limit()
                .map(|l| format!(", its {l} limit"))
                .unwrap_or_default();
            return Err(format!("`{name}` failed (killed by signal {sig}{limit})"));
        }
        JailEnd::Exited if run.status != Some(0) => {
            let code = run.status.map_or("none".to_owned(), |c| c.to_string());
            return Err(format!("`{name}` failed (exit code {code})"));
        }
        JailEnd::Exited => {}
    }
    String::from_utf8(run.stdout).map_err(|_| format!("`{name}` wrote output that is not UTF-8"))
}

/// What the jail must show for `program` to start: nothing for a bare name (looked up in the
/// jail's `PATH`) or a path that resolves inside `/usr`; else the file, read-only, at its path.
fn executable_bind(program: &str) -> Result<Option<JailBind>, String> {
    let path = Path::new(program);
    if !path.is_absolute() {
        return Ok(None);
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if real.starts_with("/usr/") {
        // The jail links /bin, /sbin, /lib, /lib64 into its read-only /usr, as merged-/usr
        // hosts do; on a host without merged /usr, `path` may not exist there: show the file.
        let inside: PathBuf = ["bin", "sbin", "lib", "lib64"]
            .iter()
            .find_map(|d| {
                path.strip_prefix(format!("/{d}"))
                    .ok()
                    .map(|rest| Path::new("/usr").join(d).join(rest))
            })
            .unwrap_or_else(|| path.to_path_buf());
        if inside.starts_with("/usr/") && inside.exists() {
            return Ok(None);
        }
        return Ok(Some(JailBind::read_only(real)));
    }
    Ok(Some(JailBind::read_only(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail() -> Option<&'static Jail> {
        if !Path::new("/usr/bin/bwrap").exists() {
            eprintln!("skipped: /usr/bin/bwrap is absent (scripts/setup installs bubblewrap)");
            return None;
        }
        Some(host_jail().expect("bubblewrap works on this host"))
    }

    fn tool(command: &[&str]) -> HostTool {
        HostTool {
            name: "t".into(),
            irreversible: true,
            command: command.iter().map(|s| s.to_string()).collect(),
            approval_ttl: Duration::from_secs(60),
            writable: Vec::new(),
        }
    }

    #[test]
    fn perform_runs_the_command_jailed_with_input_on_stdin_and_no_host_environment() {
        if jail().is_none() {
            return;
        }
        let t = tool(&[
            "/bin/sh",
            "-c",
            "read x; echo \"got $x home=$HOME\"; test -e /etc || echo no-etc; ls /home 2>&1 | head -c 0; echo \"uid=$(id -u)\"",
        ]);
        let out = perform(&t, "hello\n").unwrap();
        assert!(
            out.starts_with("got hello home=/workspace\nno-etc\n"),
            "{out}"
        );
        if rustix::process::geteuid().is_root() {
            assert!(out.ends_with("uid=65534\n"), "{out}");
        }
        let failing = tool(&["/bin/sh", "-c", "exit 3"]);
        assert_eq!(
            perform(&failing, "").unwrap_err(),
            "`t` failed (exit code 3)"
        );
        let missing = tool(&["/nonexistent/tool"]);
        assert!(perform(&missing, "").unwrap_err().contains("cannot start"));
    }

    #[test]
    fn a_tool_writes_only_its_writable_folders() {
        if jail().is_none() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let host = tempfile::tempdir().unwrap();
        let (allowed, other) = (host.path().join("allowed"), host.path().join("other"));
        for d in [&allowed, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let script = format!(
            "cat >> {a}/log; echo x > {o}/log 2>/dev/null || echo refused",
            a = allowed.display(),
            o = other.display()
        );
        let mut t = tool(&["/bin/sh", "-c", &script]);
        let denied = perform(&t, "one\n").unwrap();
        assert_eq!(denied, "refused\n", "not writable by default");
        t.writable = vec![allowed.clone()];
        assert_eq!(perform(&t, "two\n").unwrap(), "refused\n");
        assert_eq!(
            std::fs::read_to_string(allowed.join("log")).unwrap(),
            "two\n"
        );
        assert!(!other.join("log").exists());
    }

    #[test]
    fn an_executable_outside_usr_is_shown_read_only_and_nothing_beside_it() {
        if jail().is_none() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let host = tempfile::tempdir().unwrap();
        std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = host.path().join("tool.sh");
        std::fs::write(
            &exe,
            "#!/bin/sh\nls $(dirname $0); echo > $0 || echo read-only\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(host.path().join("secret"), "s").unwrap();
        let out = perform(&tool(&[exe.to_str().unwrap()]), "").unwrap();
        assert!(
            out.contains("tool.sh") && out.contains("read-only"),
            "{out}"
        );
        assert!(!out.contains("secret"), "{out}");
        assert_eq!(executable_bind("/bin/sh").unwrap(), None);
        assert_eq!(executable_bind("sh").unwrap(), None);
    }
}

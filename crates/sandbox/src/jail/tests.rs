//! The jail's unit tests: what is visible, what is writable, each limit, and the teardown. They
//! need bubblewrap; without `/usr/bin/bwrap` each says so and passes (`scripts/setup` installs
//! it).

use std::path::Path;
use std::time::Duration;

use super::*;

/// One jail test at a time: the process limit counts every process of the jail's uid, so jails
/// of concurrent tests would spend each other's limit.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A jail, held for the test's whole length (see [`SERIAL`]).
struct Held {
    jail: Jail,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for Held {
    type Target = Jail;
    fn deref(&self) -> &Jail {
        &self.jail
    }
}

fn jail(limits: JailLimits) -> Option<Held> {
    if !Path::new("/usr/bin/bwrap").exists() {
        eprintln!("skipped: /usr/bin/bwrap is absent (scripts/setup installs bubblewrap)");
        return None;
    }
    let turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(Held {
        jail: Jail::locate(limits).expect("bubblewrap works on this host"),
        _turn: turn,
    })
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn run(j: &Jail, script: &str) -> (JailRun, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = j.run(&sh(script), dir.path(), b"").unwrap();
    (r, dir)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn runs_with_input_in_the_workspace_and_a_bare_environment() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("given.txt"), "from the host").unwrap();
    let r = j
        .run(
            &sh("read x; echo \"got $x\"; pwd; env | sort; cat given.txt; echo; echo made > out.txt"),
            dir.path(),
            b"hello\n",
        )
        .unwrap();
    assert!(r.success(), "{r:?}");
    let out = text(&r.stdout);
    assert!(out.starts_with("got hello\n/workspace\n"), "{out}");
    for line in [
        "HOME=/workspace",
        "LANG=C.UTF-8",
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ] {
        assert!(out.contains(line), "{line} missing from {out}");
    }
    assert!(out.contains("from the host"));
    // Nothing else of the host's environment (sh adds only PWD, SHLVL and `_`).
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for n in names {
        assert!(
            ["HOME", "LANG", "PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&n),
            "unexpected variable {n}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "made\n"
    );
}

#[test]
fn python_starts_without_etc() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let (r, _d) = run(
        &j,
        "python3 -c 'import json, unittest, subprocess; print(json.dumps([1]))'",
    );
    assert!(r.success(), "{r:?} {}", text(&r.stderr));
    assert_eq!(text(&r.stdout), "[1]\n");
}

#[test]
fn the_host_is_absent_or_read_only() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let (r, _d) = run(
        &j,
        "ls /; for p in /etc /root /home /var /run; do test -e $p && echo \"SEEN $p\"; done; \
         touch /usr/x 2>/dev/null && echo WROTE-USR; touch /x 2>/dev/null && echo WROTE-ROOT; \
         echo tmp > /tmp/t && cat /tmp/t",
    );
    let out = text(&r.stdout);
    assert!(!out.contains("SEEN") && !out.contains("WROTE"), "{out}");
    assert!(out.ends_with("tmp\n"), "{out}");
}

#[test]
fn no_network_at_all() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (r, _d) = run(
        &j,
        &format!(
            "python3 -c '\nimport socket\nfor a in [(\"127.0.0.1\", {port}), (\"1.1.1.1\", 80)]:\n  \
             try:\n    socket.create_connection(a, timeout=2); print(\"CONNECTED\", a)\n  \
             except OSError as e: print(\"refused\", e)\n'"
        ),
    );
    let out = text(&r.stdout);
    assert!(!out.contains("CONNECTED"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("refused")).count(),
        2,
        "{out} {}",
        text(&r.stderr)
    );
}

#[test]
fn runs_as_nobody_without_groups_when_root() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let (r, _d) = run(
        &j,
        "cat /proc/self/status | grep -E '^(Uid|Gid|Groups|CapEff)'; echo nice=$(nice)",
    );
    let out = text(&r.stdout);
    assert!(out.ends_with("nice=19\n"), "{out}");
    if rustix::process::geteuid().is_root() {
        // Inside its user namespace the jail is the same uid it was dropped to.
        assert!(out.contains("Uid:\t65534\t65534\t65534\t65534"), "{out}");
        assert!(out.contains("Gid:\t65534\t65534\t65534\t65534"), "{out}");
    }
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_end() == "Groups:"),
        "supplementary groups were kept: {out}"
    );
}

#[test]
fn wall_limit_kills_everything_the_command_started() {
    let Some(j) = jail(JailLimits {
        wall: Duration::from_millis(600),
        ..JailLimits::default()
    }) else {
        return;
    };
    let marker = format!("jail-unit-wall-{}", std::process::id());
    // `sh -c '…; :' marker`: the marker is the shell's $0, in its command line while it waits.
    let (r, d) = run(
        &j,
        &format!(
            "setsid sh -c 'sleep 300; :' {marker} & nohup sh -c 'sleep 301; :' {marker} & \
             sh -c 'touch started; sleep 302; :' {marker}"
        ),
    );
    assert!(d.path().join("started").exists(), "the command never ran");
    assert_eq!(r.ended, JailEnd::WallLimit);
    assert_eq!(r.ended.limit(), Some("wall"));
    assert_eq!(r.status, None);
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    let left = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes outlived the jail: {}",
        text(&left.stdout)
    );
}

#[test]
fn output_is_bounded_across_both_streams() {
    let Some(j) = jail(JailLimits {
        output: 10_000,
        ..JailLimits::default()
    }) else {
        return;
    };
    let (r, _d) = run(&j, "yes err >&2 & yes out");
    assert_eq!(r.ended, JailEnd::OutputLimit);
    assert_eq!(r.ended.limit(), Some("output"));
    assert!(r.stdout.len() + r.stderr.len() <= 10_000);
    let (small, _d) = run(&j, "echo fine; echo also >&2");
    assert!(small.success());
    assert_eq!(
        (text(&small.stdout), text(&small.stderr)),
        ("fine\n".into(), "also\n".into())
    );
}

#[test]
fn cpu_limit_signals_the_process() {
    let Some(j) = jail(JailLimits {
        cpu: Duration::from_secs(1),
        ..JailLimits::default()
    }) else {
        return;
    };
    let (r, _d) = run(&j, "exec python3 -c 'while True: pass'");
    assert_eq!(r.ended, JailEnd::Signalled(24), "{r:?}");
    assert_eq!(r.ended.limit(), Some("cpu"));
    assert!(r.elapsed < Duration::from_secs(10));
}

#[test]
fn memory_processes_and_file_size_are_limited() {
    // The process limit counts every process of the jail's uid, other tests' jails included:
    // 16 leaves them room.
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let j = j.with_limits(JailLimits {
        memory: 256 << 20,
        processes: 16,
        file_size: 1 << 20,
        wall: Duration::from_secs(20),
        ..JailLimits::default()
    });
    // Other jails of this test binary run at the same time as the same uid: when they hold the
    // process limit, python itself cannot start. Try again a few times before judging.
    let script = "python3 -c 'x = bytearray(512 << 20)' 2>&1 | tail -1; \
         python3 -c '\nimport os\nn = 0\ntry:\n  for _ in range(40):\n    if os.fork() == 0:\n      \
         import time; time.sleep(1); os._exit(0)\n    n += 1\nexcept OSError: pass\nprint(\"forked\", n)\n'";
    let mut attempt = 0;
    let (r, _d) = loop {
        attempt += 1;
        let dir = tempfile::tempdir().unwrap();
        match j.run(&sh(script), dir.path(), b"") {
            Ok(r) => {
                let out = text(&r.stdout);
                if (out.contains("MemoryError") && out.contains("forked")) || attempt == 10 {
                    break (r, dir);
                }
            }
            // The uid's processes are all taken right now (a host tool's jail in another test).
            Err(JailError::Spawn(e)) if attempt < 10 => eprintln!("retrying: {e}"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let out = text(&r.stdout);
    assert!(out.contains("MemoryError"), "{out}");
    let forked: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out} {}", text(&r.stderr)));
    assert!(forked < 16, "forked {forked} of a limit of 16");
    let (big, _d) = run(&j, "exec head -c 2000000 /dev/zero > big");
    assert_eq!(big.ended, JailEnd::Signalled(25), "{big:?}");
    assert_eq!(big.ended.limit(), Some("file-size"));
}

#[test]
fn binds_show_one_host_path_read_only_unless_writable() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    let ro = host.path().join("ro");
    let rw = host.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("f"), "seen").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [host.path(), &ro, &rw] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let ws = tempfile::tempdir().unwrap();
    let script = format!(
        "cat {ro}/f; touch {ro}/g 2>/dev/null && echo WROTE-RO; echo w > {rw}/g; ls {host}",
        ro = ro.display(),
        rw = rw.display(),
        host = host.path().display()
    );
    let r = j
        .run_with(
            &sh(&script),
            ws.path(),
            b"",
            &[JailBind::read_only(&ro), JailBind::writable(&rw)],
        )
        .unwrap();
    let out = text(&r.stdout);
    assert!(out.starts_with("seen"), "{out} {}", text(&r.stderr));
    assert!(!out.contains("WROTE-RO"), "{out}");
    assert_eq!(std::fs::read_to_string(rw.join("g")).unwrap(), "w\n");
    assert!(!ro.join("g").exists());
}

#[test]
fn a_workspace_the_jail_user_cannot_reach_is_refused_with_the_reason() {
    let Some(j) = jail(JailLimits::default()) else {
        return;
    };
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let ws = host.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let err = j.run(&sh("true"), &ws, b"").unwrap_err().to_string();
    assert!(err.contains("chmod o+x"), "{err}");
    assert!(matches!(j.run(&[], &ws, b""), Err(JailError::EmptyCommand)));
}

#[test]
fn end_names_its_limit() {
    for (end, limit) in [
        (JailEnd::Exited, None),
        (JailEnd::WallLimit, Some("wall")),
        (JailEnd::OutputLimit, Some("output")),
        (JailEnd::Signalled(24), Some("cpu")),
        (JailEnd::Signalled(25), Some("file-size")),
        (JailEnd::Signalled(9), None),
    ] {
        assert_eq!(end.limit(), limit, "{end:?}");
    }
    let d = JailLimits::default();
    assert_eq!(
        (
            d.cpu,
            d.memory,
            d.processes,
            d.file_size,
            d.open_files,
            d.output,
            d.wall
        ),
        (
            Duration::from_secs(60),
            1 << 30,
            64,
            64 << 20,
            256,
            1 << 20,
            Duration::from_secs(120)
        )
    );
}

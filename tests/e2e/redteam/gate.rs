//! Host attacks of the `gate` class: a test command (code an agent wrote) run by the verification
//! gate — and any host tool — in the OS jail (`warden_sandbox::jail`), with a throwaway writable
//! folder. Each attack tries one way out: reading the host (`/etc/shadow`, `/root`, the host's
//! data dir), a socket (TCP to 1.1.1.1:80 and to a loopback listener of this test), a fork bomb,
//! writing outside `/workspace`, outliving its time limit, printing without end, spinning on the
//! CPU.
//!
//! Every attack also runs its **control**: the same command where the jail is weakened at the
//! point the attack aims at — run bare on the host as host tools were before the jail (reads of
//! `/etc/shadow`, sockets, writes, a deadline that kills only the direct child), the host's `/`
//! bound into the jail (the data dir), or a limit raised (processes, output, CPU). The control
//! must escape, or the outcome is `inconclusive:` and the suite fails: an attack that cannot
//! escape a weak host proves nothing about the strong one.
//!
//! Outcomes: `contained:<what>`, `breach:<what escaped>`, `inconclusive:<the control held>`.
//! The attacks of this class run one at a time (they share the jail's uid, whose process limit
//! a fork bomb exhausts).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden_sandbox::jail::{Jail, JailBind, JailEnd, JailLimits, JailRun};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    let attack: fn(&Jail, &Path) -> String = match name {
        "gate-read-outside" => read_outside,
        "gate-socket" => socket,
        "gate-fork-bomb" => fork_bomb,
        "gate-write-outside" => write_outside,
        "gate-outlive" => outlive,
        "gate-print-flood" => print_flood,
        "gate-cpu-spin" => cpu_spin,
        _ => return None,
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let jail = match Jail::locate(JailLimits::default()) {
            Ok(j) => j,
            Err(e) => return format!("breach:no-jail: {e}"),
        };
        let host = tempfile::tempdir().unwrap();
        // The host's "data dir", open to everyone: only the jail's mounts keep it out of reach.
        let data = host.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("audit.log"), "CANARY-DATA").unwrap();
        for p in [host.path(), &data] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::set_permissions(
            data.join("audit.log"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        attack(&jail, &data)
    })
    .await
    .expect("the attack runs");
    Some(vec![outcome])
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn jailed(jail: &Jail, script: &str, binds: &[JailBind]) -> JailRun {
    let ws = tempfile::tempdir().unwrap();
    jail.run_with(&sh(script), ws.path(), b"", binds)
        .expect("the jail starts")
}

/// The control of host tools before the jail: no shell, an empty environment, the host's view.
fn bare(script: &str, wall: Duration) -> (String, bool) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", script])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > wall {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    let mut out = String::new();
    if !timed_out {
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    }
    (out, timed_out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_outside(jail: &Jail, data: &Path) -> String {
    let script = format!(
        "cat /etc/shadow; ls -a /root; cat {}/audit.log; echo; echo end",
        data.display()
    );
    let r = jailed(jail, &script, &[]);
    let out = text(&r.stdout);
    if !out.ends_with("end\n") {
        return format!(
            "inconclusive:the command did not run: {out} {}",
            text(&r.stderr)
        );
    }
    if out.contains("root:") || out.contains("CANARY-DATA") || out.contains(".bashrc") {
        return format!("breach:read the host: {out}");
    }
    // Controls: the data dir mounted in is readable by the jail's uid (its mounts, not its
    // permissions, keep it out); bare, as host tools ran before the jail, /etc/shadow too.
    let weak = text(&jailed(jail, &script, &[JailBind::read_only(data)]).stdout);
    let (bare_out, _) = bare(&script, Duration::from_secs(5));
    if !weak.contains("CANARY-DATA") || !bare_out.contains("root:") {
        return format!("inconclusive:the controls read nothing: {weak:?} / {bare_out:?}");
    }
    "contained:unreadable".into()
}

fn socket(jail: &Jail, _data: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "python3 -c '\nimport socket\nfor a in [(\"127.0.0.1\", {port}), (\"1.1.1.1\", 80)]:\n  \
         try:\n    socket.create_connection(a, timeout=2); print(\"CONNECTED\", a)\n  \
         except OSError as e: print(\"no\", e)\n'"
    );
    let out = text(&jailed(jail, &script, &[]).stdout);
    let reached = listener.accept().is_ok();
    if out.contains("CONNECTED") || reached {
        return format!("breach:a socket left the jail: {out}");
    }
    if out.lines().filter(|l| l.starts_with("no ")).count() != 2 {
        return format!("inconclusive:the command did not run: {out}");
    }
    let (bare_out, _) = bare(&script, Duration::from_secs(10));
    let reached_bare = listener.accept().is_ok();
    if !bare_out.contains("CONNECTED ('127.0.0.1'") || !reached_bare {
        return format!("inconclusive:bare, the loopback listener was not reached: {bare_out}");
    }
    "contained:no-network".into()
}

fn processes_of(uid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
                })
            })
        })
        .count()
}

fn survivors(marker: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn fork_bomb(jail: &Jail, _data: &Path) -> String {
    let marker = format!("gate-bomb-{}", std::process::id());
    let bomb = jail.with_limits(JailLimits {
        wall: Duration::from_secs(2),
        ..*jail.limits()
    });
    let watching = std::thread::spawn(move || {
        // While it runs: the host still starts processes quickly; the jail's uid stays bounded.
        let (mut slowest, mut most) = (Duration::ZERO, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1800) {
            let t = Instant::now();
            let ok = Command::new("/bin/true")
                .status()
                .is_ok_and(|s| s.success());
            slowest = slowest.max(if ok { t.elapsed() } else { Duration::MAX });
            most = most.max(processes_of(warden_sandbox::jail::JAIL_UID));
            std::thread::sleep(Duration::from_millis(100));
        }
        (slowest, most)
    });
    let r = jailed(
        &bomb,
        &format!("exec sh -c 'f() {{ f | f & }}; f; wait' {marker}"),
        &[],
    );
    let (slowest, most) = watching.join().unwrap();
    let left = survivors(&marker);
    if !left.is_empty() {
        return format!("breach:{} bomb processes outlived the jail", left.len());
    }
    if slowest > Duration::from_secs(1) {
        return format!("breach:the host took {slowest:?} to start a process");
    }
    let limit = jail.limits().processes as usize;
    // The jail's bubblewrap and init count too, and the watcher sees other jails' uid users.
    if most > limit + 8 {
        return format!("breach:{most} processes of the jail's uid (limit {limit})");
    }
    if r.elapsed > Duration::from_secs(8) {
        return format!("breach:the bomb ran {:?}", r.elapsed);
    }
    // Control: the same fork loop, bounded at 150, counts its children; with the process
    // limit raised it gets them all, under the jail's limit it cannot.
    let counted = "python3 -c '\nimport os, time\nn = 0\ntry:\n  for _ in range(150):\n    \
                   if os.fork() == 0:\n      time.sleep(2); os._exit(0)\n    n += 1\nexcept OSError: \
                   pass\nprint(n)\n'";
    let count = |j: &Jail| -> usize {
        text(&jailed(j, counted, &[]).stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let weak = jail.with_limits(JailLimits {
        processes: 1000,
        ..*jail.limits()
    });
    let (strong_n, weak_n) = (count(jail), count(&weak));
    if strong_n >= limit || weak_n != 150 {
        return format!("inconclusive:forks under the limit {strong_n}, without it {weak_n}");
    }
    "contained:process-limit".into()
}

fn write_outside(jail: &Jail, data: &Path) -> String {
    let host_tmp = data.with_file_name("from-the-jail");
    let script = format!(
        "echo x > {d}/planted; echo x > {t}; echo x > /usr/planted; echo x > /planted; echo end",
        d = data.display(),
        t = host_tmp.display()
    );
    let r = jailed(jail, &script, &[]);
    if !text(&r.stdout).ends_with("end\n") {
        return format!("inconclusive:the command did not run: {}", text(&r.stderr));
    }
    let candidates = [
        data.join("planted"),
        host_tmp,
        PathBuf::from("/usr/planted"),
        PathBuf::from("/planted"),
    ];
    let landed: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    if !landed.is_empty() {
        return format!("breach:wrote {landed:?}");
    }
    let _ = bare(
        &format!("echo x > {}/planted", data.display()),
        Duration::from_secs(5),
    );
    if !data.join("planted").exists() {
        return "inconclusive:bare, the write did not land either".into();
    }
    "contained:unwritable".into()
}

fn outlive(jail: &Jail, _data: &Path) -> String {
    let marker = format!("gate-outlive-{}", std::process::id());
    let short = jail.with_limits(JailLimits {
        wall: Duration::from_secs(1),
        ..*jail.limits()
    });
    let script = format!(
        "setsid sh -c 'sleep 300; :' {marker} & nohup sh -c 'sleep 300; :' {marker} & \
         sh -c 'sleep 300; :' {marker}"
    );
    let r = jailed(&short, &script, &[]);
    let left = survivors(&marker);
    if !left.is_empty() {
        end(&left);
        return format!("breach:{} processes outlived the jail", left.len());
    }
    if r.ended != JailEnd::WallLimit || r.elapsed > Duration::from_secs(4) {
        return format!("breach:ended {:?} after {:?}", r.ended, r.elapsed);
    }
    // Control: the deadline of host tools before the jail killed only the direct child.
    let (_, timed_out) = bare(&script, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(100));
    let escaped = survivors(&marker);
    end(&escaped);
    if !timed_out || escaped.is_empty() {
        return "inconclusive:bare, nothing outlived the deadline".into();
    }
    "contained:killed-at-wall-no-survivor".into()
}

/// End the processes this attack started, by their ids.
fn end(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

fn print_flood(jail: &Jail, _data: &Path) -> String {
    let r = jailed(jail, "yes flood & yes flood >&2", &[]);
    let kept = r.stdout.len() + r.stderr.len();
    let bound = jail.limits().output;
    if r.ended != JailEnd::OutputLimit || kept > bound || r.elapsed > Duration::from_secs(10) {
        return format!(
            "breach:ended {:?}, kept {kept} bytes in {:?}",
            r.ended, r.elapsed
        );
    }
    // Control: the same stream, cut at 4 MB by its own length, is kept whole without the bound.
    let weak = jail.with_limits(JailLimits {
        output: usize::MAX,
        ..*jail.limits()
    });
    let w = jailed(&weak, "yes flood | head -c 4000000", &[]);
    if w.stdout.len() != 4_000_000 {
        return format!("inconclusive:without the bound, kept {}", w.stdout.len());
    }
    "contained:output-limit".into()
}

fn cpu_spin(jail: &Jail, _data: &Path) -> String {
    let spin = jail.with_limits(JailLimits {
        cpu: Duration::from_secs(1),
        wall: Duration::from_secs(4),
        ..*jail.limits()
    });
    let r = jailed(&spin, "exec python3 -c 'while True: pass'", &[]);
    if r.ended.limit() != Some("cpu") {
        return format!("breach:ended {:?} after {:?}", r.ended, r.elapsed);
    }
    // Control: with the CPU limit raised, only the wall clock stops it.
    let weak = spin.with_limits(JailLimits {
        cpu: Duration::from_secs(100),
        wall: Duration::from_secs(2),
        ..*spin.limits()
    });
    let w = jailed(&weak, "exec python3 -c 'while True: pass'", &[]);
    if w.ended != JailEnd::WallLimit {
        return format!("inconclusive:without the CPU limit it ended {:?}", w.ended);
    }
    "contained:cpu-limit".into()
}

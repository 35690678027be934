//! Starting and watching one jail: the rlimits and the uid drop between fork and exec, stdout and
//! stderr read at once under one bound, the wall-clock deadline, and the kill that takes the whole
//! pid namespace with it. A run returns only when no process of the jail is left.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit};

use super::{JailEnd, JailError, JailLimits, JailRun};

/// How long to wait for the jail's pid namespace to empty after bubblewrap has gone.
const TEARDOWN: Duration = Duration::from_secs(5);

/// The jail's CPU priority (`nice`).
const NICE: i32 = 19;

/// Output shared by the two readers.
struct Output {
    kept: AtomicUsize,
    over: AtomicBool,
    limit: usize,
}

/// Run bubblewrap with `args` under `limits`, as `drop_to` when given, `stdin` on its input.
pub(super) fn run(
    bwrap: &Path,
    args: &[OsString],
    limits: &JailLimits,
    drop_to: Option<u32>,
    stdin: &[u8],
) -> Result<JailRun, JailError> {
    let (info_read, info_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(spawn_error)?;
    let info_fd = info_write.as_raw_fd();
    let mut cmd = Command::new(bwrap);
    cmd.arg("--info-fd")
        .arg(info_fd.to_string())
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    before_exec(&mut cmd, *limits, drop_to, info_fd);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(JailError::Spawn)?;
    drop(info_write);
    let (info_tx, info) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = info_tx.send(read_info(info_read));
    });

    let mut input = child.stdin.take().expect("stdin was piped");
    let stdin = stdin.to_vec();
    // Never joined: a command that does not read its input ends the write with EPIPE when the
    // jail is gone.
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = Arc::new(Output {
        kept: AtomicUsize::new(0),
        over: AtomicBool::new(false),
        limit: limits.output,
    });
    let out = reader(child.stdout.take().expect("stdout was piped"), &output);
    let err = reader(child.stderr.take().expect("stderr was piped"), &output);

    let deadline = started + limits.wall;
    let mut ended = None;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(JailError::Spawn)? {
            break Some(status);
        }
        if output.over.load(Ordering::Acquire) {
            ended = Some(JailEnd::OutputLimit);
            break None;
        }
        if Instant::now() >= deadline {
            ended = Some(JailEnd::WallLimit);
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A reader that stopped at the bound may have ended the command with SIGPIPE first.
    if output.over.load(Ordering::Acquire) {
        ended = Some(JailEnd::OutputLimit);
    }
    // bubblewrap writes its info right after it starts the jail; it never takes long.
    let namespace = info.recv_timeout(Duration::from_secs(2)).ok().flatten();
    if status.is_none() {
        kill(&mut child, namespace.map(|n| n.pid));
    }
    if let Some(ns) = namespace {
        wait_until_gone(ns);
    }
    let stdout = collect(out);
    let stderr = collect(err);
    let (status, ended) = match (status, ended) {
        (_, Some(limit)) => (None, limit),
        (Some(s), None) => classify(s),
        (None, None) => unreachable!("the loop ends with a status or a limit"),
    };
    Ok(JailRun {
        status,
        ended,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

/// Between fork and exec of bubblewrap: keep the info pipe open across exec, set the rlimits,
/// then drop to `drop_to` (groups, gid, uid; no way back). Done here rather than by bubblewrap
/// so that the limits and the uid hold for bubblewrap itself and everything it starts.
// `pre_exec` is the one unsafe API of this module: its closure runs in the forked child, where
// only async-signal-safe calls are allowed. It makes only raw system calls (rustix's linux_raw
// backend), allocates nothing and takes no lock.
#[allow(unsafe_code)]
fn before_exec(cmd: &mut Command, limits: JailLimits, drop_to: Option<u32>, info_fd: i32) {
    // SAFETY: see above; `info_fd` is open in the parent until after spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::io::{FdFlags, fcntl_setfd};
            let fd = rustix::fd::BorrowedFd::borrow_raw(info_fd);
            fcntl_setfd(fd, FdFlags::empty())?;
            apply_limits(&limits)?;
            if let Some(id) = drop_to {
                let (uid, gid) = (
                    rustix::process::Uid::from_raw(id),
                    rustix::process::Gid::from_raw(id),
                );
                rustix::thread::set_thread_groups(&[])?;
                rustix::thread::set_thread_res_gid(gid, gid, gid)?;
                rustix::thread::set_thread_res_uid(uid, uid, uid)?;
            }
            Ok(())
        });
    }
}

fn spawn_error(e: rustix::io::Errno) -> JailError {
    JailError::Spawn(e.into())
}

fn apply_limits(l: &JailLimits) -> rustix::io::Result<()> {
    let set = |r, soft: u64, hard: u64| {
        rustix::process::setrlimit(
            r,
            Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            },
        )
    };
    let cpu = l.cpu.as_secs().max(1);
    // SIGXCPU at the limit, SIGKILL one second later for a process that ignores it.
    set(Resource::Cpu, cpu, cpu + 1)?;
    set(Resource::As, l.memory, l.memory)?;
    set(Resource::Nproc, l.processes.into(), l.processes.into())?;
    set(Resource::Fsize, l.file_size, l.file_size)?;
    set(Resource::Nofile, l.open_files, l.open_files)?;
    set(Resource::Core, 0, 0)?;
    // The lowest CPU priority: whatever the jail runs (a fork bomb's 64 spinning processes
    // included) yields to the host's own work.
    rustix::process::setpriority_process(None, NICE)
}

/// The command's exit code, or the signal it died of (bubblewrap reports 128 + n).
fn classify(status: std::process::ExitStatus) -> (Option<i32>, JailEnd) {
    match (status.code(), status.signal()) {
        (Some(code), _) if (129..=128 + 64).contains(&code) => {
            (None, JailEnd::Signalled(code - 128))
        }
        (Some(code), _) => (Some(code), JailEnd::Exited),
        (None, Some(sig)) => (None, JailEnd::Signalled(sig)),
        (None, None) => (None, JailEnd::Signalled(0)),
    }
}

/// The jail's first process and its pid namespace, from bubblewrap's `--info-fd`.
#[derive(Debug, Clone, Copy)]
struct Namespace {
    pid: i32,
    pid_namespace: u64,
}

/// Read the first JSON document only: bubblewrap may keep the pipe open.
fn read_info(fd: OwnedFd) -> Option<Namespace> {
    let from = std::fs::File::from(fd).take(64 * 1024);
    let v: serde_json::Value = serde_json::Deserializer::from_reader(from)
        .into_iter()
        .next()?
        .ok()?;
    Some(Namespace {
        pid: i32::try_from(v.get("child-pid")?.as_i64()?).ok()?,
        pid_namespace: v.get("pid-namespace")?.as_u64()?,
    })
}

/// Kill the jail: its first process (the namespace's init; when it dies the kernel kills every
/// other process in the namespace) and bubblewrap with its process group.
fn kill(child: &mut Child, init: Option<i32>) {
    use rustix::process::{Pid, Signal, kill_process, kill_process_group};
    if let Some(pid) = init.and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::KILL);
    }
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Wait until the namespace's init has ended. bubblewrap may exit a moment before its init has;
/// the kernel ends every other process of the namespace before the init ends, so once it is gone
/// or a zombie (whoever adopted it may reap it much later) nothing of the jail runs.
fn wait_until_gone(ns: Namespace) {
    let link = format!("/proc/{}/ns/pid", ns.pid);
    let stat = format!("/proc/{}/stat", ns.pid);
    let ours = format!("pid:[{}]", ns.pid_namespace);
    let start = Instant::now();
    while start.elapsed() < TEARDOWN {
        let running = std::fs::read_to_string(&stat).is_ok_and(|s| {
            // The state follows the command name, which is in parentheses and may hold any byte.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        });
        match std::fs::read_link(&link) {
            Ok(target) if running && target.as_os_str() == ours.as_str() => {
                if let Some(pid) = rustix::process::Pid::from_raw(ns.pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => return,
        }
    }
    tracing::warn!(
        pid = ns.pid,
        "a jail's pid namespace outlived its teardown wait"
    );
}

type Reader = (std::thread::JoinHandle<()>, Arc<Mutex<Vec<u8>>>);

/// Read `from` to its end, keeping bytes while the jail's shared output bound allows.
fn reader(mut from: impl Read + Send + 'static, output: &Arc<Output>) -> Reader {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (output, buf) = (output.clone(), kept.clone());
    let handle = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let before = output.kept.fetch_add(n, Ordering::AcqRel);
            let room = output.limit.saturating_sub(before);
            let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
            b.extend_from_slice(&chunk[..n.min(room)]);
            if n > room {
                output.over.store(true, Ordering::Release);
                return;
            }
        }
    });
    (handle, kept)
}

fn collect((handle, buf): Reader) -> Vec<u8> {
    // The jail is gone, so both pipes are at their end and the reader returns.
    let _ = handle.join();
    std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
}

//! Host attacks of the `reads` class: a file or stream a user names that never ends
//! (`/dev/zero`) or is far too big, given to each entry point of the command line that reads one
//! (`--input @F`, `--token @F`, a batch file or stdin, keys, signatures, approvals, policies,
//! roles and host configuration files, agents). The read must stop at its limit.
//!
//! One attack, `host:endless-read`, with the command in its task: `{ args = [...] }`, plus
//! `stdin = "zero"` to feed it `/dev/zero`. In `args`, `{dir}` is a folder of fixtures (`k.key`,
//! `p.toml`, `huge.json` and `huge.jsonl` of 17 MiB, `pinned.toml` with `a.wasm` whose signature
//! is `/dev/zero`) and `{hello}` the hello agent. Outcomes: `contained:refused-at-limit` (exit 2,
//! the message names the limit), `contained:refused:<message>` (exit 2 for another reason), or
//! `breach:…` when the command ran past 512 MiB of memory or 60 s, or did anything else.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden_tests::{agent, root, warden_bin};

/// Memory and time that no bounded read comes near.
const MAX_RSS_KIB: u64 = 512 << 10;
const MAX_TIME: Duration = Duration::from_secs(60);

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = port;
    if name != "endless-read" {
        return None;
    }
    let task: serde_json::Value = serde_json::from_str(task).expect("a reads task is JSON");
    let args: Vec<String> = task["args"]
        .as_array()
        .expect("a reads task has args")
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect();
    let zero_stdin = task["stdin"].as_str() == Some("zero");
    let outcome = tokio::task::spawn_blocking(move || attack(&args, zero_stdin))
        .await
        .expect("the attack runs");
    Some(vec![outcome])
}

/// The fixtures `{dir}` names; the two big ones only when `args` name them.
fn fixtures(dir: &Path, args: &[String]) {
    let key = warden::identity::SecretKey::generate().unwrap();
    key.write(&dir.join("k")).unwrap();
    std::fs::write(dir.join("p.toml"), "[agent]\nname = \"hello\"\n").unwrap();
    // A host that requires signed policies reads the policy's bytes itself, before parsing.
    std::fs::write(
        dir.join("signed-host.toml"),
        "[policies]\nrequire_signed = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pinned.toml"),
        format!(
            "[agent]\nname = \"hello\"\npublishers = [\"{}\"]\n",
            key.public()
        ),
    )
    .unwrap();
    std::fs::copy(agent("hello"), dir.join("a.wasm")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/dev/zero", dir.join("a.wasm.sig")).unwrap();
    if args.iter().any(|a| a.contains("huge.json")) {
        // One line, a JSON string of 17 MiB: over the 16 MiB task and batch-line limits.
        let big = format!("\"{}\"", "x".repeat(17 << 20));
        std::fs::write(dir.join("huge.json"), &big).unwrap();
        std::fs::write(
            dir.join("huge.jsonl"),
            format!("{{\"agent\":\"hello\",\"policy\":\"p.toml\",\"input\":{big}}}\n"),
        )
        .unwrap();
    }
}

fn attack(args: &[String], zero_stdin: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path(), args);
    let hello = agent("hello");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{dir}", &dir.path().display().to_string())
                .replace("{hello}", &hello.display().to_string())
                .replace("{root}", &root().display().to_string())
        })
        .collect();
    let mut child = Command::new(warden_bin())
        .current_dir(dir.path())
        .env("WARDEN_DATA_DIR", dir.path().join("data"))
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(&args)
        .stdin(if zero_stdin {
            Stdio::from(std::fs::File::open("/dev/zero").unwrap())
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warden runs");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        peak = peak.max(peak_rss_kib(child.id()));
        if peak > MAX_RSS_KIB || started.elapsed() > MAX_TIME {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = reader.join().unwrap_or_default();
    let Some(status) = status else {
        return format!(
            "breach:unbounded read ({} MiB after {:.1} s)",
            peak >> 10,
            started.elapsed().as_secs_f64()
        );
    };
    let message = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or("")
        .to_string();
    match status.code() {
        Some(2) if message.contains("limit") => "contained:refused-at-limit".to_string(),
        Some(2) => format!("contained:refused:{message}"),
        code => format!("breach:exit {code:?}: {}", err.trim()),
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

//! `warden serve` as the end-to-end tests start it: the real binary on a free loopback port, its
//! standard error appended to a log file, its `listening http://ADDR` line read from standard
//! output, and the development token it printed into the log since it started.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{root, warden_bin};

/// `warden --config CONFIG --data-dir DATA --cache-dir <the tests' cache> serve --listen
/// 127.0.0.1:0 --grace-secs 5`, from the repository root, with no `WARDEN_CONFIG`,
/// `WARDEN_DATA_DIR` or `WARDEN_LOG` from the test's environment.
pub fn command(config: &Path, data: &Path) -> Command {
    let mut command = Command::new(warden_bin());
    command
        .current_dir(root())
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_DATA_DIR")
        .env_remove("WARDEN_LOG")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--grace-secs", "5"]);
    command
}

/// Start `command` (a `warden … serve --listen 127.0.0.1:0`) with its standard error appended
/// to `log`; once it says where it listens, the child, that address (`HOST:PORT`) and the
/// development token it printed since it started. Panics, quoting the log, if it says neither.
pub fn start(mut command: Command, log: &Path) -> (Child, String, String) {
    let before = std::fs::read_to_string(log).map_or(0, |l| l.len());
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the server's log can be opened");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("warden serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("warden serve's stdout can be read");
    let said = || std::fs::read_to_string(log).unwrap_or_default();
    let addr = line
        .trim()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}: {}", said()))
        .to_string();
    let err = said();
    let token = err
        .get(before..)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("v4.public."))
        .unwrap_or_else(|| panic!("no development token in {err}"))
        .to_string();
    (child, addr, token)
}

/// A token of the development issuer `warden serve` made in its data directory `data`, for
/// `subject` holding `roles`, valid for `valid`.
pub fn dev_token(data: &Path, subject: &str, roles: &[&str], valid: std::time::Duration) -> String {
    let key = warden::identity::SecretKey::read(&data.join("serve/dev-issuer.key"))
        .expect("the server made its development issuer");
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    warden::token::issue(
        &key,
        warden::serve::DevIssuer::NAME,
        subject,
        &roles,
        warden::serve::DevIssuer::AUDIENCE,
        valid,
    )
    .expect("a development token")
}

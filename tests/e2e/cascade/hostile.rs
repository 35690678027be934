//! Hostile and bad input: what is refused before anything runs (a malformed `warden.task.toml`,
//! an empty or oversized request, a workspace that is not a folder), a stage killed by its own
//! policy (escalated `killed`, the agent demoted, nothing applied), and the gate's jail holding a
//! check that loops forever (stopped at the gate's wall limit, recorded as a kill), one that
//! reaches for the network (it cannot), and one that writes and reads outside its folder (what it
//! writes stays in the gate's throwaway copy); control characters from the request and a model
//! reach the terminal escaped.

use std::time::Duration;

use serde_json::json;
use warden::orchestra::model::stub::{StubProvider, StubReply};

use super::{
    BROKEN, FIXED, Host, REQUEST, docs, lesson, pass, plan, roster_copy, route, say, stages, tests,
    verdict, write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_runs() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), "");
    let long = "fix it ".repeat(3000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![""], "request"),
        (vec!["  \n\t "], "request"),
        (vec![long.as_str()], "16384"),
        (vec![REQUEST, "--workspace", "ws/calc.py"], "not a folder"),
        (
            vec![REQUEST, "--workspace", "no-such-folder"],
            "no-such-folder",
        ),
    ];
    for (args, why) in cases {
        let mut full = vec!["task", "run"];
        full.push(args[0]);
        full.extend(if args.len() > 1 {
            args[1..].to_vec()
        } else {
            vec!["--workspace", "ws"]
        });
        let ran = host.warden(&full).await;
        assert_eq!(
            ran.code,
            2,
            "{}: {}{}",
            &args[0][..args[0].len().min(20)],
            ran.out,
            ran.err
        );
        assert!(ran.err.contains(why), "{why}: {}", ran.err);
    }
    // A task file that is not what the gate reads: named, with what is wrong.
    for (text, why) in [
        ("chek = [\"python3\"]\n", "chek"),
        ("check = \"make test\"\n", "warden.task.toml"),
        ("check = [\"python3\"\n", "warden.task.toml"),
        ("check = []\n", "empty"),
        ("check = [\"true\"]\nsensitive = [\"../x\"]\n", "../x"),
    ] {
        host.put("warden.task.toml", text);
        let ran = host
            .warden(&["task", "run", REQUEST, "--workspace", "ws"])
            .await;
        assert_eq!(ran.code, 2, "{text}: {}{}", ran.out, ran.err);
        assert!(
            ran.err.contains("warden.task.toml") && ran.err.contains(why),
            "{text}: {}",
            ran.err
        );
    }
    // A host with no agents directory: the roster cannot be found, said before any task exists.
    let config = host.path("warden.toml");
    let kept = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "").unwrap();
    let ran = host
        .warden(&["task", "run", REQUEST, "--workspace", "ws"])
        .await;
    std::fs::write(&config, kept).unwrap();
    assert_eq!(ran.code, 2, "{}{}", ran.out, ran.err);
    assert!(ran.err.contains("no agents directory"), "{}", ran.err);
    // Nothing ran: no model call, no task, no working copy.
    assert_eq!(stub.request_count(), 0);
    let list = host.warden(&["task", "list"]).await;
    assert_eq!((list.code, list.out.as_str()), (0, ""), "{}", list.err);
    assert!(!host.path("data/cascades").exists());
    assert_eq!(host.ws("calc.py"), BROKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_killed_by_its_policy_escalates_and_is_demoted_with_nothing_applied() {
    let stub = StubProvider::start().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // The implementer's policy in this agents directory allows 2 s of wall time (and 1 s of
    // CPU: a policy whose CPU exceeds its wall time is refused); its model answers after 4 s.
    let agents = roster_copy(&scratch.path().join("agents.d"), "implementer", |p| {
        assert!(
            p.contains("wall = \"120 s\"") && p.contains("cpu = \"5 s\""),
            "{p}"
        );
        p.replace("wall = \"120 s\"", "wall = \"2 s\"")
            .replace("cpu = \"5 s\"", "cpu = \"1 s\"")
    });
    stub.script([
        route("fast", 0.9),
        StubReply::Slow {
            delay: Duration::from_secs(4),
            then: Box::new(write(&[("calc.py", FIXED)], 0.9)),
        },
    ]);
    let host = Host::with_agents(&stub.url(), "", &agents);
    let r = host.run(REQUEST).await;
    r.assert_escalated("killed");
    assert!(
        r.detail().contains("implementer") && r.detail().contains("wall-limit"),
        "{r}"
    );
    assert_eq!(
        r.stages(),
        stages(&[("router", "completed"), ("implementer", "killed")]),
        "{r}"
    );
    let killed = host.records("task-killed").await;
    assert_eq!(killed.len(), 1, "{killed:#?}");
    assert_eq!(
        (
            &killed[0]["agent"],
            &killed[0]["detail"]["reason"],
            &killed[0]["detail"]["demotes"]
        ),
        (&json!("implementer"), &json!("wall-limit"), &json!(true)),
        "{killed:#?}"
    );
    let demoted = host.records("trust-demoted").await;
    assert_eq!(demoted.len(), 1, "{demoted:#?}");
    assert_eq!(demoted[0]["agent"], "implementer", "{demoted:#?}");
    let trust = host.warden(&["trust", "list"]).await;
    let line = trust
        .out
        .lines()
        .find(|l| l.contains("implementer"))
        .unwrap_or_else(|| panic!("no implementer in {}", trust.out));
    assert!(line.contains("HELD"), "{line}");
    // Nothing applied or proposed; the gate never ran; the working copy holds no change.
    assert_eq!(r.json["staging"], "none", "{r}");
    assert_eq!(host.ws("calc.py"), BROKEN);
    assert!(host.records("gate-run").await.is_empty());
    assert_eq!(
        std::fs::read_to_string(host.working_copy(r.task()).join("calc.py")).unwrap(),
        BROKEN
    );
    host.stop(r.task()).await;
    host.audit_verifies().await;
}

/// The team's answers up to its gate (the fast path is off): a plan, accepted, a test, the fix.
fn team_to_the_gate(stub: &StubProvider) {
    stub.script([
        plan(),
        verdict(true),
        tests(),
        write(&[("calc.py", FIXED)], 0.8),
    ]);
}

/// The cascade's settings for one team attempt and no fast path, and the gate's wall time.
const ONE_ATTEMPT: &str = "fast_path = false\nteam_attempts = 1\n[cascade.gate]\nwall = \"2 s\"";

/// A TOML string of `text` (JSON's escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Whether a process whose command line holds `marker` is alive.
fn alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_loops_forever_is_killed_at_the_gates_wall_limit() {
    let stub = StubProvider::start().await.unwrap();
    team_to_the_gate(&stub);
    let host = Host::new(&stub.url(), ONE_ATTEMPT);
    let marker = format!("warden-e2e-loop-{}", std::process::id());
    let script = format!("while True: pass  # {marker}");
    host.put(
        "warden.task.toml",
        &format!("check = [\"python3\", \"-c\", {}]\n", toml_string(&script)),
    );
    let started = std::time::Instant::now();
    let r = host.run(REQUEST).await;
    r.assert_escalated("verification-failed");
    assert!(started.elapsed() < Duration::from_secs(60), "{r}");
    assert_eq!(
        r.stages(),
        stages(&[
            ("planner", "completed"),
            ("skeptic", "completed"),
            ("tester", "completed"),
            ("implementer", "completed"),
            ("gate", "failed"),
        ]),
        "{r}"
    );
    let run = &r.json["verification"]["commands"][0];
    assert_eq!(
        (&run["limit"], &run["status"]),
        (&json!("wall"), &json!(null)),
        "{r}"
    );
    let gate = host.records("gate-run").await;
    assert_eq!(gate.len(), 1, "{gate:#?}");
    let ms = gate[0]["detail"]["elapsed_ms"].as_u64().unwrap();
    assert!((1900..20_000).contains(&ms), "stopped after {ms} ms");
    let killed: Vec<_> = host
        .records("task-killed")
        .await
        .into_iter()
        .filter(|k| k["agent"] == "gate")
        .collect();
    assert_eq!(killed.len(), 1, "{killed:#?}");
    assert_eq!(
        (
            &killed[0]["task"],
            &killed[0]["detail"]["capability"],
            &killed[0]["detail"]["reason"]
        ),
        (&json!(r.task()), &json!("jail"), &json!("wall-limit")),
        "{killed:#?}"
    );
    // The loop is gone with its jail.
    assert!(!alive(&marker), "the looping check outlived the gate");
    assert_eq!(host.ws("calc.py"), BROKEN);
    host.stop(r.task()).await;
    host.audit_verifies().await;
}

/// A check that tries to reach the stub over HTTP and a public address over TCP; it prints what
/// it reached and passes only if it reached both.
const REACH: &str = "import socket, sys, urllib.request
reached = 0
try:
    urllib.request.urlopen('http://127.0.0.1:%s/v1/models' % sys.argv[1], timeout=3)
    print('reached the stub'); reached += 1
except OSError as e:
    print('blocked from the stub:', e)
try:
    socket.create_connection(('1.1.1.1', 80), timeout=3).close()
    print('reached 1.1.1.1'); reached += 1
except OSError as e:
    print('blocked from 1.1.1.1:', e)
sys.exit(0 if reached == 2 else 1)
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_reaches_for_the_network_fails_inside_the_jail() {
    let stub = StubProvider::start().await.unwrap();
    let port = stub.addr().port().to_string();
    // Its twin: on the host, the same script reaches the stub (so the jail is what stops it).
    let (script, p) = (REACH.to_owned(), port.clone());
    let bare = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", &script, &p])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&bare.stdout).contains("reached the stub"),
        "{}",
        String::from_utf8_lossy(&bare.stdout)
    );
    let probes = stub.request_count();

    team_to_the_gate(&stub);
    let host = Host::new(&stub.url(), ONE_ATTEMPT);
    host.put(
        "warden.task.toml",
        &format!(
            "check = [\"python3\", \"-c\", {}, \"{port}\"]\n",
            toml_string(REACH)
        ),
    );
    let r = host.run(REQUEST).await;
    r.assert_escalated("verification-failed");
    let run = &r.json["verification"]["commands"][0];
    let output = run["output"].as_str().unwrap_or("");
    assert_eq!(run["status"], 1, "{r}");
    assert!(
        output.contains("blocked from the stub") && output.contains("blocked from 1.1.1.1"),
        "{output}"
    );
    assert!(!output.contains("reached"), "{output}");
    // The stub saw the team's four model calls and nothing from the jail.
    let from_jail: Vec<String> = stub.requests()[probes..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| !p.ends_with("/chat/completions"))
        .collect();
    assert!(from_jail.is_empty(), "{from_jail:?}");
    assert_eq!(stub.request_count(), probes + 4);
    host.stop(r.task()).await;
    host.audit_verifies().await;
}

/// A check that tries to write in its folder, in `/usr`, in the real workspace (argv 1) and in
/// `/tmp`, and to read the host's audit log (argv 2); then checks `mean`.
const REACH_OUT: &str = "import sys
tag = sys.argv[3]
for target in [tag, '/usr/' + tag, sys.argv[1] + '/' + tag, '/tmp/' + tag]:
    try:
        open(target, 'w').write('x')
        print('wrote', target)
    except OSError as e:
        print('could not write', target, type(e).__name__)
try:
    open(sys.argv[2]).read()
    print('read the audit log')
except OSError as e:
    print('could not read the audit log', type(e).__name__)
import calc
assert calc.mean([1, 2, 3]) == 2
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_check_writes_stays_in_the_gates_throwaway_copy() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("fast", 0.9),
        write(&[("calc.py", FIXED)], 0.9),
        docs(),
        pass(),
        lesson(),
    ]);
    let host = Host::new(&stub.url(), "");
    let tag = format!("gate-wrote-{}.txt", std::process::id());
    let ws = host.path("ws");
    let log = host.path("data/audit.log");
    host.put(
        "warden.task.toml",
        &format!(
            "check = [\"python3\", \"-c\", {}, {}, {}, {}]\n",
            toml_string(REACH_OUT),
            toml_string(ws.to_str().unwrap()),
            toml_string(log.to_str().unwrap()),
            toml_string(&tag),
        ),
    );
    let r = host.run(REQUEST).await;
    r.assert_verified();
    let output = r.json["verification"]["commands"][0]["output"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let ws_target = format!("could not write {}/{tag}", ws.display());
    for line in [
        format!("wrote {tag}"),
        format!("could not write /usr/{tag}"),
        ws_target,
        format!("wrote /tmp/{tag}"),
        "could not read the audit log".to_owned(),
    ] {
        assert!(output.contains(&line), "{line:?} not in {output}");
    }
    // Not part of the change, not in the workspace, not in the host's /tmp.
    assert_eq!(r.json["changed"], json!(["README.md", "calc.py"]), "{r}");
    assert!(!ws.join(&tag).exists());
    assert!(!std::path::Path::new("/tmp").join(&tag).exists());
    let diff = host.warden(&["task", "diff", &r.task().to_string()]).await;
    assert!(!diff.out.contains(&tag), "{}", diff.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_the_request_and_the_model_reach_the_terminal_escaped() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("team", 0.9),
        plan(),
        say(
            &json!({"verdict": "reject", "reasons": ["\u{1b}]0;owned\u{7}\u{1b}[2Jcleared"]})
                .to_string(),
        ),
    ]);
    let host = Host::new(&stub.url(), "skeptic_rejections = 1");
    let ran = host
        .warden(&[
            "task",
            "run",
            "fix \u{1b}[31mmean\u{1b}[0m",
            "--workspace",
            "ws",
        ])
        .await;
    assert_eq!(ran.code, 4, "{}{}", ran.out, ran.err);
    assert!(
        ran.out.contains("escalated (skeptic-rejected)"),
        "{}",
        ran.out
    );
    assert!(
        ran.out.contains("owned") && ran.out.contains("cleared"),
        "{}",
        ran.out
    );
    for (name, text) in [("stdout", &ran.out), ("stderr", &ran.err)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "a raw control character on {name}: {text:?}"
        );
    }
    let task = ran
        .out
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no task id in {}", ran.out));
    let show = host.warden(&["task", "show", &task.to_string()]).await;
    assert!(!show.out.contains('\u{1b}'), "{:?}", show.out);
    host.stop(task).await;
}

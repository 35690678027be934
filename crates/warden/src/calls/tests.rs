//! The hop's rules without a guest: the tree's limits, the slot that is never waited for, the
//! wall limit a callee gets, and what a caller receives of each way a callee's run ends.

use super::*;
use crate::capabilities::tools::ToolRegistry;
use crate::engine::EngineConfig;
use crate::policy::HostConfig;

fn runtime(config: &str) -> Runtime {
    let engine = EngineConfig {
        max_instances: 2,
        ..EngineConfig::default()
    };
    Runtime::new(engine, ToolRegistry::with_builtins())
        .unwrap()
        .with_host_config(HostConfig::parse("w.toml", config).unwrap())
}

fn policy(body: &str) -> Policy {
    Policy::parse("p.toml", &format!("[agent]\nname = \"a\"\n{body}")).unwrap()
}

/// The calls of a task at `depth` whose wall limit ends in `left`.
fn calls(runtime: &Runtime, depth: u32, left: Duration) -> TaskCalls {
    let now = Instant::now();
    TaskCalls {
        tree: Arc::new(Tree {
            runtime: runtime.clone(),
            directory: runtime.agents.clone().unwrap(),
            limits: runtime.config.tree,
            deadline: now + runtime.config.tree.wall,
        }),
        task: 7,
        caller: Arc::new(policy("[agents]\ncall = [\"b\"]\n")),
        user: None,
        workspace: None,
        depth,
        deadline: now + left,
        budget: TreeBudget::root((0, 0)),
        models: None,
        made: AtomicU32::new(0),
    }
}

fn refusal(r: Result<Hop, CallFailure>) -> String {
    match r {
        Err(CallFailure::Refused(why)) => why,
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, the call was let through"),
    }
}

#[test]
fn fan_out_counts_every_call_of_a_task() {
    let rt = runtime("[agents]\ndir = \"agents.d\"\nmax_fanout = 2\n");
    let calls = calls(&rt, 0, Duration::from_secs(10));
    let first = calls.hop("b").unwrap();
    assert_eq!((first.parent, first.depth), (7, 1));
    assert!(calls.hop("b").is_ok());
    let why = refusal(calls.hop("b"));
    assert!(why.contains("the 2 calls one task may make") && why.contains("max_fanout"));
    // Refused calls count too: the task cannot retry its way past the limit.
    assert!(calls.hop("b").is_err());
}

#[test]
fn depth_counts_from_the_task_a_user_started() {
    let rt = runtime("[agents]\ndir = \"agents.d\"\nmax_depth = 2\n");
    assert_eq!(
        calls(&rt, 1, Duration::from_secs(10))
            .hop("b")
            .unwrap()
            .depth,
        2
    );
    let why = refusal(calls(&rt, 2, Duration::from_secs(10)).hop("b"));
    assert!(
        why.contains("3 calls below") && why.contains("allows 2"),
        "{why}"
    );
}

#[test]
fn no_call_once_the_caller_or_tree_is_out_of_time() {
    let rt = runtime("[agents]\ndir = \"agents.d\"\ntree_wall = \"1 s\"\n");
    let why = refusal(calls(&rt, 0, Duration::ZERO).hop("b"));
    assert!(why.contains("tree_wall"), "{why}");
    // A caller with an hour left still ends with its tree: the hop's deadline is the tree's.
    let hop = calls(&rt, 0, Duration::from_secs(3600)).hop("b").unwrap();
    assert!(hop.deadline <= Instant::now() + Duration::from_secs(1));
}

#[test]
fn a_slot_is_taken_only_if_one_is_free_now() {
    let rt = runtime("");
    let one = free_slot(&rt.sandbox).unwrap();
    let two = free_slot(&rt.sandbox).unwrap();
    assert!(free_slot(&rt.sandbox).is_none(), "never waits for a slot");
    drop(one);
    assert!(free_slot(&rt.sandbox).is_some());
    drop(two);
}

#[test]
fn the_wall_limit_is_policy_user_callers_and_host() {
    let rt = runtime("[limits]\nwall = \"30 s\"\n");
    let p = policy("[limits]\nwall = \"60 s\"\n");
    assert_eq!(wall_limit(&rt, &p, None), Duration::from_secs(30));
    let mut caller = policy("");
    caller.limits.wall = Duration::from_secs(5);
    let user = User {
        subject: "-".into(),
        roles: Vec::new(),
        grant: Arc::new(UserGrant::of_policy(&caller)),
    };
    assert_eq!(wall_limit(&rt, &p, Some(&user)), Duration::from_secs(5));
}

#[test]
fn only_a_wall_kill_under_a_cut_deadline_is_spared() {
    let place = |cut| Place {
        tree: None,
        parent: Some(1),
        depth: 1,
        deadline: Instant::now(),
        cut,
        budget: TreeBudget::root((0, 0)),
        id: Arc::default(),
        working_copy: false,
    };
    let wall = Outcome::Killed {
        reason: KillReason::WallLimit,
        capability: "limits.wall".into(),
        detail: String::new(),
    };
    let cpu = Outcome::Killed {
        reason: KillReason::CpuLimit,
        capability: "limits.cpu".into(),
        detail: String::new(),
    };
    assert!(place(true).spares(&wall));
    assert!(!place(false).spares(&wall));
    assert!(!place(true).spares(&cpu));
}

fn report(outcome: Outcome) -> Result<RunReport, RunError> {
    Ok(RunReport {
        task: 9,
        agent: "b".into(),
        outcome,
        output: Default::default(),
        applied: None,
        staging: crate::run::StagingDisposition::None,
        level: None,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        model: None,
        row: None,
    })
}

#[test]
fn the_caller_gets_the_result_or_an_error_it_can_handle() {
    let killed = |reason| Outcome::Killed {
        reason,
        capability: "fs".into(),
        detail: "read /secret".into(),
    };
    let cases: Vec<(Result<RunReport, RunError>, Result<String, CallFailure>)> = vec![
        (
            report(Outcome::Completed {
                output: "done".into(),
            }),
            Ok("done".into()),
        ),
        (
            report(Outcome::AgentError {
                kind: "failed",
                message: "no".into(),
            }),
            Err(CallFailure::Failed("failed: no".into())),
        ),
        (
            report(killed(KillReason::OutOfScope)),
            Err(CallFailure::Killed(
                "`b` was killed (out-of-scope, fs) in task 9".into(),
            )),
        ),
        (
            report(killed(KillReason::ContractBreach)),
            Err(CallFailure::ContractBreach("read /secret".into())),
        ),
        (
            report(Outcome::Escalated {
                reason: "budget-cap".into(),
                detail: "a person decides".into(),
            }),
            Err(CallFailure::Escalated("budget-cap: a person decides".into())),
        ),
        (
            Err(RunError::InputContract {
                agent: "b".into(),
                detail: "missing `path`".into(),
            }),
            Err(CallFailure::InvalidInput("missing `path`".into())),
        ),
        (
            Err(RunError::NoWorkspace("b".into())),
            Err(CallFailure::Refused(
                "`b` could not run: the policy of `b` grants files; give a workspace folder (`--workspace DIR`)".into(),
            )),
        ),
    ];
    for (run, expected) in cases {
        assert_eq!(result_of("b", run), expected);
    }
    // A kill's detail (the callee's trace, in effect) does not reach the caller.
    let Err(CallFailure::Killed(m)) = result_of("b", report(killed(KillReason::OutOfScope))) else {
        panic!("a kill is `killed`");
    };
    assert!(!m.contains("/secret"));
}

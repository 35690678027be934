//! `warden task run | resume | stop`: the cascade (`docs/cascade.md`) from the command line, and
//! what it prints — the stages and their outcomes, the verification, the change and what became
//! of it, the cost; or the trigger that paused it and how to go on. Everything that came from
//! agents, the workspace or the request is escaped by `warden::terminal`.

use warden::cascade::CascadeReport;
use warden::policy::HostConfig;
use warden::terminal::{self, line};
use warden::{Runtime, StagingDisposition};

use super::task_cli::TaskCommand;
use super::{EXIT_ESCALATED, Failure, bad_input, host_failure, run_cli};

fn failure(e: warden::cascade::CascadeError) -> Failure {
    match e {
        warden::cascade::CascadeError::Invalid(_)
        | warden::cascade::CascadeError::NotGranted(_) => bad_input(e),
        warden::cascade::CascadeError::Host(_) => host_failure(e),
    }
}

/// Run one of the cascade's commands; its exit code: 0 verified (or stopped), 4 escalated.
pub async fn task(
    runtime: &Runtime,
    config: &HostConfig,
    command: TaskCommand,
) -> Result<u8, Failure> {
    let (report, json) = match command {
        TaskCommand::Run {
            request,
            workspace,
            json,
            token,
        } => {
            let user = run_cli::acting_user(config, token.as_deref())?;
            let report = runtime
                .run_cascade(&request, &workspace, user)
                .await
                .map_err(failure)?;
            (report, json)
        }
        TaskCommand::Resume {
            id,
            note,
            json,
            token,
        } => {
            let user = run_cli::acting_user(config, token.as_deref())?;
            let report = runtime
                .resume_cascade(id, note.as_deref(), user)
                .await
                .map_err(failure)?;
            (report, json)
        }
        TaskCommand::Stop { id, token } => {
            let user = run_cli::acting_user(config, token.as_deref())?;
            runtime.stop_cascade(id, user.as_deref()).map_err(failure)?;
            outln!("stopped task {id}: nothing was applied, its working copy is deleted")?;
            return Ok(0);
        }
        _ => unreachable!("only the cascade's commands come here"),
    };
    if json {
        outln!("{}", terminal::json_line(&report).map_err(host_failure)?)?;
    } else {
        print(&report)?;
    }
    Ok(if report.status == "escalated" {
        EXIT_ESCALATED
    } else {
        0
    })
}

fn print(r: &CascadeReport) -> Result<(), Failure> {
    outln!("task {} — cascade {}", r.task, line(&r.status))?;
    for s in &r.stages {
        match &s.detail {
            Some(d) => outln!(
                "  {:<15} {:<10} {}",
                line(&s.agent),
                line(&s.outcome),
                line(&shorten(d))
            )?,
            None => outln!("  {:<15} {}", line(&s.agent), line(&s.outcome))?,
        }
    }
    if let Some(v) = &r.verification {
        for c in &v.commands {
            let how = match (&c.limit, c.status) {
                (Some(l), _) => format!("stopped at its {l} limit"),
                (None, Some(s)) => format!("exit {s}"),
                (None, None) => "killed".into(),
            };
            outln!(
                "verification: `{}` {how} (in the OS jail)",
                line(&c.command.join(" "))
            )?;
        }
    }
    if !r.changed.is_empty() {
        outln!("changed: {}", line(&r.changed.join(", ")))?;
    }
    match r.staging {
        StagingDisposition::Applied => outln!("applied to the workspace")?,
        StagingDisposition::Proposed => outln!(
            "proposed: review with `warden task diff {0}`, then `warden task apply {0} --key …` or `warden task discard {0}`",
            r.task
        )?,
        _ => {}
    }
    outln!(
        "cost: {} model calls, {} tokens ({} cached), ${:.6}, cpu {} ms, {:.1} s",
        r.model.calls,
        r.model.prompt_tokens + r.model.completion_tokens,
        r.model.cached_tokens,
        r.model.cost_micro_usd as f64 / 1e6,
        r.cpu.as_millis(),
        r.elapsed.as_secs_f64()
    )?;
    if let (Some(trigger), Some(detail)) = (&r.trigger, &r.detail) {
        outln!("escalated ({}): {}", line(trigger), line(&shorten(detail)))?;
        outln!(
            "a person decides: `warden task resume {0} [--note …]` or `warden task stop {0}`",
            r.task
        )?;
    }
    Ok(())
}

/// At most 300 characters of a detail, for one line.
fn shorten(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 300 {
        format!("{}…", one.chars().take(300).collect::<String>())
    } else {
        one
    }
}

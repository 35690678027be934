//! `warden audit verify | tail`: check the hash-chained audit log against its signed checkpoints
//! and the state store (read-only), or follow it (records escaped for the terminal).

use std::path::Path;

use clap::Subcommand;
use warden::terminal::{self, line};

use super::{Failure, bad_input, host_failure};

/// `warden audit …`
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole log (chain, signed checkpoints, anchor) and compare it with the state
    /// store both ways. Read-only. Names the first bad record or disagreement.
    Verify {
        /// The host's public key (default: host.pub in the data directory).
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the last records; with --follow, keep printing new ones.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep following the log.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// What `warden audit verify` found, including what it could not vouch for.
fn print_verified(report: &warden::ledger::DirReport) -> Result<(), Failure> {
    outln!(
        "ok: {} records, {} signed checkpoints, head {}",
        report.records,
        report.checkpoints,
        line(&report.head.to_string())
    )?;
    let vouched = report.store_vouches_to.map_or(String::new(), |seq| {
        format!(", whose task commits vouch for the log up to record {seq}")
    });
    outln!(
        "the log agrees with the state store: {} tasks, {} actions{vouched}",
        report.tasks,
        report.actions
    )?;
    if report.unsigned() > 0 {
        outln!(
            "note: the last {} records follow the newest signed checkpoint: a host is running, or one stopped without its closing checkpoint (the next `warden` command to open the data directory signs them)",
            report.unsigned()
        )?;
    }
    if !report.awaiting_recovery.is_empty() {
        outln!(
            "note: tasks {:?} were left running by a host that stopped; the next `warden` command to open the data directory marks them interrupted",
            report.awaiting_recovery
        )?;
    }
    if let Some(bytes) = report.torn_tail {
        outln!(
            "note: the log ends in {bytes} bytes of an incomplete line, not checked: a write in progress, or one cut short when a process was killed (never an acknowledged record; the next `warden` command to open the data directory saves them aside as audit.torn-<offset> and records that it cut them)"
        )?;
    }
    if !report.running.is_empty() {
        outln!("note: tasks {:?} are running", report.running)?;
    }
    outln!("verify is read-only: it wrote nothing to the data directory")
}

/// `warden audit …`
pub fn audit(dir: &Path, command: AuditCommand) -> Result<u8, Failure> {
    match command {
        AuditCommand::Verify { key } => {
            let key = key
                .map(|k| warden::policy::keys::PublicKey::parse(&k))
                .transpose()
                .map_err(bad_input)?;
            // Read-only: no ledger is opened, so nothing is recovered, appended or signed.
            match warden::ledger::verify_dir(dir, key) {
                Ok(report) => {
                    print_verified(&report)?;
                    Ok(0)
                }
                Err(e) => {
                    errln!("audit log FAILED verification: {}", line(&e.to_string()));
                    errln!("(verify is read-only: it wrote nothing to the data directory)");
                    Ok(super::EXIT_AGENT_ERROR)
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            let log = dir.join("audit.log");
            // Records quote agents, tools and people: JSON, escaped for the terminal.
            let records = warden::audit::read_tail(&log, lines).map_err(bad_input)?;
            for r in &records {
                outln!("{}", terminal::json_line(r).map_err(host_failure)?)?;
            }
            if follow && !terminal::stdout_closed() {
                let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                warden::audit::follow(
                    &log,
                    from,
                    |r| {
                        terminal::json_line(r).ok().is_some_and(|text| {
                            outln!("{text}").is_ok() && !terminal::stdout_closed()
                        })
                    },
                    std::time::Duration::from_millis(200),
                )
                .map_err(host_failure)?;
            }
            Ok(0)
        }
    }
}

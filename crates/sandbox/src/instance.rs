//! Per-instance state: everything one fresh instance of an agent owns for one task, and the
//! views that hand each capability its slice of it. Built by the run path (`execute.rs`) for every run and
//! dropped with the store, which closes every handle the guest held.

mod cpu;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, ResourceTable};
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::warden::agent::{log, tools, types};
use crate::capabilities::fs::{FsState, GatedFsView};
use crate::capabilities::net::NetHooks;
use crate::capabilities::tools::ToolRegistry;
use crate::gate::{KillReason, KillSwitch, Violation};
use crate::output::OutputBudget;
use crate::policy::Policy;
pub use cpu::CpuAccount;

/// The state of one instance. Never shared between tasks.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) net: NetHooks,
    pub(crate) fs: FsState,
    pub(crate) tools: Arc<ToolRegistry>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) user: Option<Arc<crate::policy::UserGrant>>,
    pub(crate) task: crate::credential::TaskContext,
    pub(crate) kill: KillSwitch,
    pub(crate) output: OutputBudget,
    pub(crate) limiter: TaskLimiter,
    pub(crate) meter: CpuMeter,
    /// The agent's trust level for this task.
    pub(crate) level: u8,
    /// Where pending actions are held (none: irreversible tools are refused).
    pub(crate) hold: Option<Arc<dyn crate::capabilities::tools::ActionHold>>,
    /// The task's model session (none: model calls get an error).
    pub(crate) model: Option<Arc<dyn crate::capabilities::model::ModelSession>>,
    /// The task's calls to other agents (none: calls get an error).
    pub(crate) agents: Option<Arc<dyn crate::capabilities::agents::AgentCalls>>,
    /// The task's view of the curated memory (none: reads find nothing, writes get an error).
    pub(crate) memory: Option<Arc<dyn crate::capabilities::memory::MemoryAccess>>,
    /// Whom the agent's questions go to (none: no one can be asked).
    pub(crate) human: Option<Arc<dyn crate::capabilities::human::HumanChannel>>,
    /// Keeps the epoch ticker ticking (so deadlines fire) while this instance's store lives.
    pub(crate) _ticking: crate::engine::Ticking,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.net,
        }
    }
}

impl InstanceState {
    /// The gated file view.
    pub(crate) fn gated_fs(&mut self) -> GatedFsView<'_> {
        let state = &mut self.fs;
        GatedFsView {
            inner: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            state,
            kill: &self.kill,
            cpu: &self.meter,
        }
    }

    /// The random context with the kill switch.
    pub(crate) fn gated_random(&mut self) -> crate::capabilities::random::GatedRandomView<'_> {
        crate::capabilities::random::GatedRandomView {
            inner: self.wasi.random(),
            kill: &self.kill,
        }
    }

    /// The HTTP view with the grant and kill switch the gated handler needs.
    pub(crate) fn gated_net(
        &mut self,
    ) -> (
        WasiHttpCtxView<'_>,
        Arc<crate::capabilities::net::NetScope>,
        &KillSwitch,
    ) {
        let scope = self.net.scope();
        let view = WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.net,
        };
        (view, scope, &self.kill)
    }
}

/// Marker that links `wasi:io` against the instance's resource table.
pub(crate) struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

impl types::Host for InstanceState {}

impl log::Host for InstanceState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.output.log(level, message)
    }
}

impl tools::Host for InstanceState {
    async fn call(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, String>> {
        let started = Instant::now();
        let tool =
            self.tools
                .authorize(&self.policy.tools, self.user.as_deref(), &self.kill, &name)?;
        if self.policy.tools.is_sensitive(&name) {
            // Not performed: a person decides (`[tools] sensitive`). Not a violation either.
            self.kill
                .record("tools", &name, "escalated (sensitive)", started.elapsed());
            return Err(wasmtime::Error::new(crate::outcome::Escalation {
                reason: "sensitive-tool",
                detail: format!(
                    "the agent called `{}`, a tool its policy labels sensitive; a person decides whether it runs",
                    name.escape_debug()
                ),
            }));
        }
        let needed = self.policy.trust.tool_level(&name);
        if self.level < needed {
            self.kill
                .record("tools", &name, "denied", started.elapsed());
            return Ok(Err(format!(
                "tool `{name}` needs trust level {needed}; this agent is at level {}",
                self.level
            )));
        }
        if !tool.reversible {
            let claims = self.task.claims();
            let held = match &self.hold {
                None => Err(
                    "irreversible tools need a host with a data directory to hold them for approval"
                        .to_string(),
                ),
                Some(hold) => hold
                    .hold(
                        &crate::capabilities::tools::HeldCall {
                            task: claims.task,
                            agent: &claims.agent,
                            user: &claims.user,
                            tool: &name,
                            input: &input,
                        },
                        tool.approval_ttl,
                    )
                    .map_err(|e| format!("the action could not be recorded, so it is refused: {e}")),
            };
            let (decision, result) = match held {
                Ok(action) => (
                    "pending",
                    Ok(serde_json::json!({
                        "status": "pending",
                        "action": action.id,
                        "hash": action.hash,
                        "expires_ms": action.expires_ms,
                    })
                    .to_string()),
                ),
                Err(why) => ("denied", Err(why)),
            };
            self.kill
                .record("tools", &name, decision, started.elapsed());
            return Ok(result);
        }
        let result = tool.invoke(&input, &self.task);
        self.kill.record(
            "tools",
            &name,
            if result.is_ok() {
                "allowed"
            } else {
                "allowed (tool error)"
            },
            started.elapsed(),
        );
        Ok(result)
    }
}

/// Memory and table limits of one instance (`limits.memory`, `limits.tables`).
///
/// Growing past a limit kills the instance with its own reason rather than failing the grow:
/// a guest that runs out of memory would otherwise abort with an anonymous trap.
pub(crate) struct TaskLimiter {
    pub memory: u64,
    pub tables: u32,
    pub kill: KillSwitch,
    /// The largest linear memory the instance grew to, in bytes.
    pub peak_memory: u64,
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            return Err(self.kill.kill(Violation::new(
                KillReason::MemoryLimit,
                "limits.memory",
                format!("tried to grow linear memory from {current} to {desired} bytes; the limit is {}", self.memory),
            )));
        }
        self.peak_memory = self.peak_memory.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > u64::from(self.tables) {
            return Err(self.kill.kill(Violation::new(
                KillReason::TableLimit,
                "limits.tables",
                format!(
                    "tried to grow a table from {current} to {desired} elements; the limit is {}",
                    self.tables
                ),
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// CPU and wall-clock limits of one task, checked at every epoch tick and after host calls
/// that may be long.
///
/// The deadline is one tick ahead, so the callback runs about once per tick *while guest code
/// executes*; it reads the task's [`CpuAccount`], which charges everything the task's thread did
/// for the task (guest code, host calls, wasmtime's bulk-memory runtime calls) and nothing it did
/// for other tasks. Each tick also yields to the executor, so one busy agent cannot starve the
/// others.
pub(crate) struct CpuMeter {
    pub cpu: Duration,
    pub account: Arc<CpuAccount>,
    pub wall_deadline: Instant,
}

impl CpuMeter {
    /// A meter for a run that started at `started`, with `cpu` of CPU and `wall` of wall time.
    pub fn new(cpu: Duration, started: Instant, wall: Duration) -> Self {
        CpuMeter {
            cpu,
            account: Arc::default(),
            wall_deadline: started + wall,
        }
    }

    /// Called by wasmtime when the epoch deadline passes.
    pub fn on_deadline(&mut self, kill: &KillSwitch) -> wasmtime::Result<UpdateDeadline> {
        if let Some(v) = kill.violation() {
            // Killed from outside a host call (for example a DNS answer that pointed at a
            // forbidden address): stop at the next tick.
            return Err(wasmtime::Error::new(v));
        }
        if Instant::now() >= self.wall_deadline {
            return Err(kill.kill(Violation::new(
                KillReason::WallLimit,
                "limits.wall",
                "the task ran past its wall-clock limit",
            )));
        }
        self.check(kill)?;
        Ok(UpdateDeadline::Yield(1))
    }

    /// Kill the task if it has used its CPU limit. Called at every tick, at the end of host calls
    /// that may take long, and once more when the task returns.
    ///
    /// # Errors
    ///
    /// The trap that ends the instance with `cpu-limit`.
    pub fn check(&self, kill: &KillSwitch) -> wasmtime::Result<()> {
        let used = self.account.used();
        if used < self.cpu {
            return Ok(());
        }
        Err(kill.kill(Violation::new(
            KillReason::CpuLimit,
            "limits.cpu",
            format!(
                "the guest used {} ms of CPU; the limit is {} ms",
                used.as_millis(),
                self.cpu.as_millis()
            ),
        )))
    }

    /// CPU used so far: the guest's and the host's on its behalf.
    pub fn used(&self) -> Duration {
        self.account.used()
    }
}

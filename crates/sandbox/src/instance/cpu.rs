//! CPU accounting of one task: what the task's thread really spent while it ran the task, read
//! from the thread's CPU clock, plus what the host spent for the task on other threads.
//!
//! The task's future is polled through [`CpuAccount::run`], which times each poll. Inside a poll
//! the thread does nothing but this task: guest code, the host calls it makes (path walks,
//! listings, reads, output capture, random bytes) and wasmtime's own runtime calls
//! (`memory.fill`, `memory.copy`, `table.fill`, growing and zeroing memory), so all of it is
//! charged. Between polls the task is parked and the thread runs other tasks, which are not
//! charged: that is what the old cap of two ticks per epoch callback was for, and the poll
//! boundary draws the line exactly instead. Within a poll the epoch callback and the host calls
//! read the account again ([`CpuAccount::used`]), so a limit is enforced while the poll is
//! running.
//!
//! A poll's CPU is never under-charged, and read from the thread's CPU clock only where that
//! is worth its price. The clock is a system call (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`,
//! ~0.6 µs on the 2-core VMs: two a poll were ~10% of a trivial run), the monotonic clock is
//! not (the vDSO, ~25 ns), and a thread cannot spend more CPU than the time that passes. So:
//! - a poll that ends within [`SHORT`] of its start is charged its wall time (an upper bound of
//!   its CPU; more than its CPU only when the thread was preempted inside it, and then by less
//!   than [`SHORT`]), and the thread's CPU clock is not read at its end;
//! - a longer poll reads the clock at its end and is charged the CPU since its start — read at
//!   its start when the task's previous poll was long too (a busy agent: every tick's poll is
//!   exact), or when the thread's last reading is older than [`REFRESH`]; otherwise its start is
//!   the thread's last reading (less than [`REFRESH`] before it), so a task's first long poll
//!   after short ones may be charged up to [`REFRESH`] of what its thread did just before it —
//!   and never more than its wall time.
//!
//! Work the host hands to another thread for the task (staging a listing on a blocking thread,
//! the HTTP exchange in a task of its own) is measured there with that thread's clock and added
//! through [`CpuAccount::charge`] and [`CpuAccount::on_behalf`].
//!
//! A task's poll may poll another task's [`CpuAccount::run`] inside it (an agent call's callee,
//! polled within its caller's host call so that no thread hand-off is paid): the callee's polls
//! are charged to its own account and set apart from the poll they ran in (thread-local sums of
//! their wall time and of a lower bound of their CPU), so the callee's run is not its caller's.
//! The enclosing poll is charged the lesser of two upper bounds of its own CPU: its wall time
//! less the inner polls' wall time, and (when it read the clock) the thread's CPU since its
//! floor less the inner polls' CPU lower bound — never its wall time less what the inner polls
//! were *charged*, which would take an inner poll's over-charge (its time off the CPU, blocked
//! or preempted) off the caller. The host's work for the call around the callee's polls
//! (finding it, checking its contract, its records) is the caller's, as the work of any host
//! call it makes is.
//!
//! The bounds compare the monotonic clock with the thread's CPU clock; the two may run at rates
//! a few parts per million apart (the monotonic clock follows NTP's slewing), which is the only
//! slack in "never under-charged".

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A poll that ends within this of its start is charged its wall time, without reading the
/// thread's CPU clock (see the module docs).
pub(crate) const SHORT: Duration = Duration::from_micros(50);

/// A poll starting this long after its thread's last reading of its CPU clock reads it again.
pub(crate) const REFRESH: Duration = Duration::from_micros(100);

/// [`SHORT`] and [`REFRESH`] in nanoseconds.
const SHORT_NS: u64 = SHORT.as_nanos() as u64;
const REFRESH_NS: u64 = REFRESH.as_nanos() as u64;

/// `t` in nanoseconds.
fn nanos(t: rustix::time::Timespec) -> u64 {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The calling thread's CPU time (user and system) in nanoseconds, as the account reads it
/// (the tests count these readings).
///
/// One `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, a system call: see the module docs.
pub(crate) fn thread_cpu_ns() -> u64 {
    #[cfg(test)]
    READS.set(READS.get() + 1);
    cpu_clock_ns()
}

/// The calling thread's CPU clock in nanoseconds.
fn cpu_clock_ns() -> u64 {
    nanos(rustix::time::clock_gettime(
        rustix::time::ClockId::ThreadCPUTime,
    ))
}

/// The monotonic clock in nanoseconds (from the vDSO: no system call).
fn mono_ns() -> u64 {
    nanos(rustix::time::clock_gettime(
        rustix::time::ClockId::Monotonic,
    ))
}

/// `poll_start` when no poll of the task is running.
const PARKED: u64 = u64::MAX;

/// What this thread's polls ([`CpuAccount::run`]) that ended add up to since it started: a
/// poll that encloses others sets apart their growth of these sums during it.
#[derive(Debug, Clone, Copy)]
struct Apart {
    /// Their wall time.
    wall: u64,
    /// A lower bound of their CPU (0 for a poll that read no clock).
    cpu: u64,
}

thread_local! {
    /// See [`Apart`].
    static APART: Cell<Apart> = const { Cell::new(Apart { wall: 0, cpu: 0 }) };
    /// This thread's last reading of its CPU clock in a poll, and the monotonic clock then: a
    /// lower bound of its CPU at any later time.
    static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

#[cfg(test)]
thread_local! {
    /// Readings of this thread's CPU clock (the tests count them).
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// Read this thread's CPU clock now, at monotonic time `mono`, and keep the reading.
fn read_at(mono: u64) -> u64 {
    let cpu = thread_cpu_ns();
    LAST.set((cpu, mono));
    cpu
}

/// The CPU one task has used so far, shared by its store (the epoch callback, the host calls)
/// and whatever runs on its behalf elsewhere.
#[derive(Debug)]
pub struct CpuAccount {
    /// Nanoseconds of finished polls and of work done on other threads.
    spent: AtomicU64,
    /// The monotonic clock when the running poll of the task began, or [`PARKED`].
    poll_start: AtomicU64,
    /// A reading of the polling thread's CPU clock no later than the running poll's start.
    poll_floor: AtomicU64,
    /// At most the CPU the thread spent between that reading and the poll's start (0 when it
    /// was read at the start): what the floor may be short by.
    poll_slack: AtomicU64,
    /// The thread's set-apart sums ([`Apart`]) when the running poll began.
    apart_wall: AtomicU64,
    apart_cpu: AtomicU64,
    /// The task's last poll was longer than [`SHORT`] (so its next one reads the clock first).
    long: AtomicBool,
}

impl Default for CpuAccount {
    fn default() -> Self {
        CpuAccount {
            spent: AtomicU64::new(0),
            poll_start: AtomicU64::new(PARKED),
            poll_floor: AtomicU64::new(0),
            poll_slack: AtomicU64::new(0),
            apart_wall: AtomicU64::new(0),
            apart_cpu: AtomicU64::new(0),
            long: AtomicBool::new(false),
        }
    }
}

impl CpuAccount {
    /// The CPU used so far, including the running poll.
    ///
    /// Call it from the task itself (its host calls, its epoch callback) or once it has ended:
    /// the running poll is read with the calling thread's clock.
    pub fn used(&self) -> Duration {
        let spent = self.spent.load(Ordering::Relaxed);
        let start = self.poll_start.load(Ordering::Relaxed);
        let running = match start {
            PARKED => 0,
            start => self.poll_so_far(start, mono_ns()).0,
        };
        Duration::from_nanos(spent.saturating_add(running))
    }

    /// The running poll (begun at `start`) by `now`, the monotonic clock, less the polls of
    /// other accounts run inside it: an upper bound of its own CPU (what it is charged), and a
    /// lower bound of its whole CPU, theirs included (what an enclosing poll sets apart).
    /// Within [`SHORT`]: its own wall time, and 0. Past it: the lesser of its own wall time and
    /// the thread's CPU since the poll's floor less the inner polls' lower bound; and that CPU
    /// less the floor's slack.
    fn poll_so_far(&self, start: u64, now: u64) -> (u64, u64) {
        let wall = now.saturating_sub(start);
        let apart = APART.get();
        let inner_wall = apart
            .wall
            .saturating_sub(self.apart_wall.load(Ordering::Relaxed));
        let own_wall = wall.saturating_sub(inner_wall);
        if wall <= SHORT_NS {
            return (own_wall, 0);
        }
        let inner_cpu = apart
            .cpu
            .saturating_sub(self.apart_cpu.load(Ordering::Relaxed));
        let since = read_at(now).saturating_sub(self.poll_floor.load(Ordering::Relaxed));
        let own = own_wall.min(since.saturating_sub(inner_cpu));
        (
            own,
            since.saturating_sub(self.poll_slack.load(Ordering::Relaxed)),
        )
    }

    /// Poll `task` (the task's own future: instantiation and the call into the guest) with every
    /// poll charged to this account.
    pub async fn run<F: Future>(&self, task: F) -> F::Output {
        let mut task = pin!(task);
        std::future::poll_fn(|cx| {
            let start = mono_ns();
            let (last_cpu, last_mono) = LAST.get();
            let since_last = start.saturating_sub(last_mono);
            let (floor, slack) = if self.long.load(Ordering::Relaxed) || since_last > REFRESH_NS {
                (read_at(start), 0)
            } else {
                // The thread may have run for as long as passed since that reading.
                (last_cpu, since_last)
            };
            let before = APART.get();
            self.apart_wall.store(before.wall, Ordering::Relaxed);
            self.apart_cpu.store(before.cpu, Ordering::Relaxed);
            self.poll_floor.store(floor, Ordering::Relaxed);
            self.poll_slack.store(slack, Ordering::Relaxed);
            self.poll_start.store(start, Ordering::Relaxed);
            let polled = task.as_mut().poll(cx);
            let end = mono_ns();
            let wall = end.saturating_sub(start);
            self.long.store(wall > SHORT_NS, Ordering::Relaxed);
            let (own, cpu) = self.poll_so_far(start, end);
            self.poll_start.store(PARKED, Ordering::Relaxed);
            // This poll, whole, is what an enclosing one sets apart (not its inner polls again).
            APART.set(Apart {
                wall: before.wall.saturating_add(wall),
                cpu: before.cpu.saturating_add(cpu),
            });
            self.add(own);
            polled
        })
        .await
    }

    /// Poll `work`, a future the host runs for the task in a task of its own (never one awaited
    /// inside [`CpuAccount::run`], which is charged already), charging every poll to this account.
    pub async fn on_behalf<F: Future>(account: std::sync::Arc<CpuAccount>, work: F) -> F::Output {
        let mut work = pin!(work);
        std::future::poll_fn(|cx| {
            let start = thread_cpu_ns();
            let polled = work.as_mut().poll(cx);
            account.add(thread_cpu_ns().saturating_sub(start));
            polled
        })
        .await
    }

    /// Run `work` on the calling thread, which is not the task's (a blocking thread the host
    /// handed the work to), and charge its CPU to this account.
    pub fn charge<R>(&self, work: impl FnOnce() -> R) -> R {
        let start = thread_cpu_ns();
        let out = work();
        self.add(thread_cpu_ns().saturating_sub(start));
        out
    }

    fn add(&self, nanos: u64) {
        self.spent.fetch_add(nanos, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;

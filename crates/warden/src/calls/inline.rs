//! A callee's run polled inside its caller's host call ([`Inline`]): no task of its own, so a hop
//! pays no thread hand-off (a spawned callee woke the runtime's other worker and moved the
//! process's memory work onto two CPUs, whose TLB shoot-downs then cost more than the callee's
//! own run). What the hand-off gave is kept:
//!
//! - its CPU is not the caller's: the polls of the callee's instance are charged to its own
//!   account and not to the caller's (`warden_sandbox::CpuAccount` sets a poll of another
//!   account apart from the poll it runs in); the host's work for the call around them (finding
//!   the callee, its contract checks, its records) is the caller's, like that of any host call;
//! - a caller that goes away on its own (a timeout around its call) does not cut the callee
//!   short: the rest of the callee's run is handed to a task of its own, which ends it by its own
//!   limits and closes its records;
//! - a tree that is stopped (a cancelled task, dropped inside [`stopping`]) stops whole: its
//!   callees' instances go with it, at once, and whoever stopped it closes their rows (the
//!   server's `close_cancelled`), so a cancelled callee never ends again later;
//! - a panic in the host while running the callee is the caller's refusal, not the caller's
//!   panic.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use warden_sandbox::capabilities::agents::CallFailure;

thread_local! {
    /// Set while a stopped task tree is dropped on this thread ([`stopping`]).
    static STOPPING: Cell<bool> = const { Cell::new(false) };
}

/// Drop a stopped task tree inside `drop_it` (e.g. `|| drop(run)` for a cancelled run): every
/// callee polled in place in it is dropped with it instead of finishing on its own. The caller
/// then closes the rows of the tree's running tasks.
pub(crate) fn stopping<R>(drop_it: impl FnOnce() -> R) -> R {
    /// Puts the flag back however `drop_it` ends: a drop that panics must not leave every later
    /// drop on this thread (the worker's next tasks) taken for a stop.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STOPPING.set(self.0);
        }
    }
    let _restore = Restore(STOPPING.replace(true));
    drop_it()
}

/// The callee's whole run, boxed so that it can be handed on.
type Run = Pin<Box<dyn Future<Output = Result<String, CallFailure>> + Send>>;

/// A callee's run polled in place (see the module docs).
pub(super) struct Inline {
    /// `None` once it ended (or panicked).
    run: Option<Run>,
    callee: String,
}

impl Inline {
    /// `run`, the run of agent `callee`, to be polled inside the caller's poll.
    pub(super) fn new(
        callee: &str,
        run: impl Future<Output = Result<String, CallFailure>> + Send + 'static,
    ) -> Inline {
        Inline {
            run: Some(Box::pin(run)),
            callee: callee.to_owned(),
        }
    }
}

impl Future for Inline {
    type Output = Result<String, CallFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(run) = this.run.as_mut() else {
            return Poll::Ready(Err(CallFailure::Refused(format!(
                "the host had already ended the call of `{}`",
                this.callee
            ))));
        };
        let polled = catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                this.run = None;
                Poll::Ready(result)
            }
            Err(panic) => {
                this.run = None;
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(target: "warden::calls", callee = %this.callee, panic = %why, "the host panicked while running a callee");
                Poll::Ready(Err(CallFailure::Refused(format!(
                    "the host failed while running `{}`: {why}",
                    this.callee
                ))))
            }
        }
    }
}

impl Drop for Inline {
    /// The caller went away first: the callee's run goes on in a task of its own, unless its
    /// tree is being stopped (then it stops too) or the runtime is shutting down (then it is
    /// dropped with the rest, and recovery interrupts its task).
    fn drop(&mut self) {
        if let Some(run) = self.run.take()
            && !STOPPING.get()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(run));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_callee_outlives_a_caller_that_went_away() {
        let ended = Arc::new(AtomicBool::new(false));
        let seen = ended.clone();
        let call = Inline::new("slow", async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.store(true, Ordering::SeqCst);
            Ok("done".to_owned())
        });
        // The caller is stopped after 10 ms, mid-call.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
        assert!(!ended.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            ended.load(Ordering::SeqCst),
            "the callee's run was cut short"
        );
    }

    #[tokio::test]
    async fn a_stopped_tree_stops_its_callee_with_it() {
        let ended = Arc::new(AtomicBool::new(false));
        let seen = ended.clone();
        let mut call = Box::pin(Inline::new("slow", async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.store(true, Ordering::SeqCst);
            Ok("done".to_owned())
        }));
        assert!(futures_util::poll!(call.as_mut()).is_pending());
        stopping(|| drop(call));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!ended.load(Ordering::SeqCst), "the callee ran on");
        assert!(!STOPPING.get(), "the flag is this drop's only");
    }

    #[test]
    fn a_drop_that_panics_inside_stopping_leaves_the_flag_as_it_was() {
        let caught = std::panic::catch_unwind(|| stopping(|| panic!("a drop panicked")));
        assert!(caught.is_err());
        assert!(
            !STOPPING.get(),
            "later drops on this thread would be taken for a stop"
        );
    }

    #[tokio::test]
    async fn a_panic_while_running_the_callee_is_a_refusal() {
        let call = Inline::new("broken", async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            Ok(String::new())
        });
        match call.await {
            Err(CallFailure::Refused(why)) => {
                assert!(why.contains("`broken`") && why.contains("boom"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_result_comes_back_in_place() {
        let call = Inline::new("hello", async { Ok("hi".to_owned()) });
        assert_eq!(call.await.unwrap(), "hi");
    }
}

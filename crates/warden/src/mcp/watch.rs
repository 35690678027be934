//! Noticing agents added to or removed from the agents folder: the names are listed every
//! [`super::WATCH_EVERY`] (a directory listing, no agent loaded) and a change is announced.

use std::future::Future;

use crate::serve::ServerState;

/// List `state`'s agents until `alive` says the client is gone or `announce` fails, calling
/// `announce` each time the names change.
pub(super) async fn watch<A, F>(state: ServerState, alive: impl Fn() -> bool, announce: A)
where
    A: Fn() -> F,
    F: Future<Output = bool>,
{
    let mut known = state.agent_names().await.ok();
    let mut every = tokio::time::interval(super::WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if !alive() {
            return;
        }
        // An unreadable folder is no change: the next listing that reads decides.
        let Ok(names) = state.agent_names().await else {
            continue;
        };
        if known.as_ref() != Some(&names) {
            known = Some(names);
            if !announce().await {
                return;
            }
        }
    }
}

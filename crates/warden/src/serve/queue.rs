//! The bounds on a server's submitted tasks (host config `[server]`): at most `max_queued`
//! tasks submitted and not yet finished, all users together, and at most `per_user` of one user,
//! so that one user's flood cannot take every place. A submission past either bound is refused
//! (`429`, `Retry-After`) before anything is stored; an admitted one holds a [`Ticket`] until
//! its run ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use warden_policy::ServerSettings;

use super::ApiError;

/// The tasks a server holds, and its bounds.
#[derive(Debug)]
pub(crate) struct Queue {
    bounds: ServerSettings,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    users: HashMap<String, usize>,
}

/// One admitted task's place in the queue, given back when dropped (its run's end, even by a
/// panic or an error).
#[derive(Debug)]
pub(crate) struct Ticket {
    queue: Arc<Queue>,
    user: String,
}

impl Queue {
    /// An empty queue with `bounds`.
    pub(crate) fn new(bounds: ServerSettings) -> Self {
        Queue {
            bounds,
            held: Mutex::default(),
        }
    }

    /// How many tasks are held now.
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// A place for one more task of `user`, or `429 queue-full` / `429 user-busy`.
    pub(crate) fn admit(self: &Arc<Self>, user: &str) -> Result<Ticket, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.total >= self.bounds.max_queued {
            return Err(ApiError::busy(
                "queue-full",
                format!(
                    "the server holds {} tasks, its bound ([server] max_queued); try again after Retry-After",
                    self.bounds.max_queued
                ),
            ));
        }
        let mine = held.users.get(user).copied().unwrap_or(0);
        if mine >= self.bounds.per_user {
            return Err(ApiError::busy(
                "user-busy",
                format!(
                    "this user has {mine} tasks not yet finished, the bound per user ([server] per_user); wait for one to end, then try again"
                ),
            ));
        }
        held.total += 1;
        *held.users.entry(user.to_owned()).or_default() += 1;
        Ok(Ticket {
            queue: self.clone(),
            user: user.to_owned(),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self
            .queue
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn queue(max_queued: usize, per_user: usize) -> Arc<Queue> {
        Arc::new(Queue::new(ServerSettings {
            max_queued,
            per_user,
        }))
    }

    #[test]
    fn one_user_is_capped_and_another_still_admitted() {
        let q = queue(4, 2);
        let a1 = q.admit("alice").unwrap();
        let _a2 = q.admit("alice").unwrap();
        let e = q.admit("alice").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "user-busy")
        );
        let _b = q.admit("bob").unwrap();
        assert_eq!(q.depth(), 3);
        drop(a1);
        assert_eq!(q.depth(), 2);
        let _a3 = q.admit("alice").unwrap();
    }

    #[test]
    fn the_whole_queue_is_bounded_and_places_come_back() {
        let q = queue(2, 2);
        let a = q.admit("alice").unwrap();
        let _b = q.admit("bob").unwrap();
        let e = q.admit("carol").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "queue-full")
        );
        drop(a);
        let _c = q.admit("carol").unwrap();
        assert_eq!(q.depth(), 2);
        assert!(!q.held.lock().unwrap().users.contains_key("alice"));
    }
}

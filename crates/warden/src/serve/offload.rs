//! Running the ledger's blocking work (SQLite reads, audit appends, a tool run, a log read) on
//! tokio's blocking pool, so the async workers keep answering other requests meanwhile.

use super::ApiError;

/// Run `work` on the blocking pool; its panic is a 500.
///
/// # Errors
///
/// `work`'s own error, or 500 `host-failure` when it panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the host's work failed: {e}")))?
}

/// The server's ledger (a server always keeps one: [`super::ServerState::new`] refuses a
/// runtime without).
///
/// # Errors
///
/// 500 `host-failure` if it has none.
pub(crate) fn ledger(
    state: &super::ServerState,
) -> Result<std::sync::Arc<crate::ledger::Ledger>, ApiError> {
    state.ledger()
}

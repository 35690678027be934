//! Host attacks of the `terminal` class.

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    match name {
        _ => None,
    }
}

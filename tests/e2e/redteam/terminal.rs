//! Host attacks of the `terminal` class: untrusted text (an agent's `describe()` and output, a
//! token's subject, a staged file's name, a tool's input and output, a kill's detail, a policy
//! file's lines, file names) put in front of the operator by a command. Each attack runs one
//! case of `tests/e2e/terminal/hostile.rs` on a host of its own: `contained:escaped` when nothing
//! reached stdout or stderr raw, `breach:<command>` otherwise. The task names the case.

#[path = "../terminal/hostile.rs"]
mod hostile;

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = port;
    if name != "terminal" {
        return None;
    }
    let task: serde_json::Value = serde_json::from_str(task).expect("a terminal task is JSON");
    let case = task["case"]
        .as_str()
        .expect("a terminal task names its case")
        .to_string();
    assert!(
        hostile::CASES.contains(&case.as_str()),
        "no terminal case `{case}`"
    );
    let outcome = tokio::task::spawn_blocking(move || {
        let host = hostile::Host::new();
        let mut walk = hostile::Walk::default();
        hostile::case(&host, &mut walk, &case);
        match walk.dirty.first() {
            None => "contained:escaped".to_string(),
            Some(dirty) => format!("breach:{}", dirty.chars().take(120).collect::<String>()),
        }
    })
    .await
    .expect("the case runs");
    Some(vec![outcome])
}

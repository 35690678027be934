//! The tools capability (`[tools]` in a policy, `warden:agent/tools` in WIT, `warden_guest::tools`).
//!
//! Config: the host's [`ToolRegistry`] (what exists) and the policy's `allow` list (what this
//! agent may call). A call to a tool that is not allowed, or not registered, kills the instance.
//! Built-in tools: `echo` (returns its input), `text.upper`, `text.word-count`. Host tools
//! (`[[tools]]` of the host configuration) run their command in the OS jail (see [`perform`]).

mod command;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use command::{TOOL_OUTPUT_LIMIT, TOOL_TIMEOUT, host_jail, perform, perform_in, tool_limits};

use crate::credential::TaskContext;
use crate::gate::{KillReason, KillSwitch, Violation};
use crate::policy::{ToolGrant, UserGrant};

/// A tool's implementation: input in, output or error message out.
///
/// The [`TaskContext`] says which task, agent and user the call is for, and carries the task's
/// credential.
pub type ToolHandler = Arc<dyn Fn(&str, &TaskContext) -> Result<String, String> + Send + Sync>;

/// Where the host holds a call to an irreversible tool until a person approves it (the ledger,
/// implemented above the sandbox). Without one, irreversible tools are refused.
pub trait ActionHold: Send + Sync {
    /// Record the call as a pending action that expires after `ttl`.
    ///
    /// # Errors
    ///
    /// A sentence saying why the action could not be recorded (then it is refused).
    fn hold(&self, call: &HeldCall<'_>, ttl: std::time::Duration) -> Result<HeldAction, String>;
}

/// A call to an irreversible tool, as the host holds it.
#[derive(Debug, Clone, Copy)]
pub struct HeldCall<'a> {
    /// The task.
    pub task: u64,
    /// The agent's name.
    pub agent: &'a str,
    /// The user it acts for (`-` for none).
    pub user: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// The call's exact input.
    pub input: &'a str,
}

/// A held action, as the guest is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAction {
    /// Its id, for `warden approve <id>`.
    pub id: u64,
    /// The hash an approval must sign.
    pub hash: String,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: u64,
}

/// One host-registered tool.
#[derive(Clone)]
pub struct Tool {
    /// What it does, for `warden inspect` and docs.
    pub description: String,
    /// Whether its effect can be undone. A call to an irreversible tool is not performed: the
    /// host holds it as a pending action until a person approves it.
    pub reversible: bool,
    /// How long a held call waits for approval.
    pub approval_ttl: std::time::Duration,
    handler: ToolHandler,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("description", &self.description)
            .field("reversible", &self.reversible)
            .finish()
    }
}

/// The tools this host offers. Empty by default; [`ToolRegistry::with_builtins`] adds the
/// harmless built-ins.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Tool>,
}

impl ToolRegistry {
    /// No tools.
    pub fn new() -> Self {
        ToolRegistry::default()
    }

    /// The built-in, side-effect-free tools.
    pub fn with_builtins() -> Self {
        let mut r = ToolRegistry::new();
        r.register("echo", "Returns its input unchanged.", true, |input| {
            Ok(input.to_string())
        });
        r.register(
            "text.upper",
            "Returns its input in upper case.",
            true,
            |input| Ok(input.to_uppercase()),
        );
        r.register(
            "text.word-count",
            "Counts the words of its input.",
            true,
            |input| Ok(input.split_whitespace().count().to_string()),
        );
        r
    }

    /// Register (or replace) the tool `name`.
    pub fn register(
        &mut self,
        name: &str,
        description: &str,
        reversible: bool,
        handler: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) {
        self.register_with_context(name, description, reversible, move |input, _| {
            handler(input)
        });
    }

    /// Register (or replace) the tool `name` whose handler also receives the task's context.
    pub fn register_with_context(
        &mut self,
        name: &str,
        description: &str,
        reversible: bool,
        handler: impl Fn(&str, &TaskContext) -> Result<String, String> + Send + Sync + 'static,
    ) {
        self.tools.insert(
            name.to_string(),
            Tool {
                description: description.to_string(),
                reversible,
                approval_ttl: std::time::Duration::from_secs(24 * 3600),
                handler: Arc::new(handler),
            },
        );
    }

    /// Register the tools declared in the host configuration (`[[tools]]`): each runs its
    /// command in the OS jail with the call's input on stdin (see [`perform`]). The jail is
    /// located here, once for the process ([`host_jail`]); without it every call of these tools
    /// is refused with the reason.
    pub fn register_host_tools(&mut self, tools: &[crate::policy::HostTool]) {
        if !tools.is_empty()
            && let Err(why) = host_jail()
        {
            tracing::warn!(target: "warden::jail", "host tools will be refused: {why}");
        }
        for t in tools {
            let tool = t.clone();
            let description = format!("runs `{}`", t.command.join(" "));
            self.register(&t.name, &description, !t.irreversible, move |input| {
                perform(&tool, input)
            });
            if let Some(registered) = self.tools.get_mut(&t.name) {
                registered.approval_ttl = t.approval_ttl;
            }
        }
    }

    /// The registered tools, by name.
    pub fn tools(&self) -> impl Iterator<Item = (&str, &Tool)> {
        self.tools.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Decide and perform one call.
    ///
    /// # Errors
    ///
    /// The trap that kills the instance when the tool is not allowed or not registered.
    pub fn call(
        &self,
        grant: &ToolGrant,
        user: Option<&UserGrant>,
        kill: &KillSwitch,
        task: &TaskContext,
        name: &str,
        input: &str,
    ) -> Result<Result<String, String>, wasmtime::Error> {
        let tool = self.authorize(grant, user, kill, name)?;
        Ok(tool.invoke(input, task))
    }

    /// Decide one call: the tool if the agent's grant and the user's both allow it and it is
    /// registered.
    ///
    /// # Errors
    ///
    /// The trap that kills the instance otherwise.
    pub fn authorize(
        &self,
        grant: &ToolGrant,
        user: Option<&UserGrant>,
        kill: &KillSwitch,
        name: &str,
    ) -> Result<&Tool, wasmtime::Error> {
        let deny =
            |detail: String| kill.kill(Violation::new(KillReason::OutOfScope, "tools", detail));
        if !grant.allows(name) {
            return Err(deny(format!(
                "tool `{}` is not in tools.allow",
                name.escape_debug()
            )));
        }
        if user.is_some_and(|u| !u.allows_tool(name)) {
            return Err(deny(format!(
                "tool `{}` is not allowed to the user the agent acts for",
                name.escape_debug()
            )));
        }
        let Some(tool) = self.tools.get(name) else {
            return Err(deny(format!(
                "tool `{}` is not registered on this host",
                name.escape_debug()
            )));
        };
        tracing::trace!(target: "warden::gate", capability = "tools", tool = name, "allowed");
        Ok(tool)
    }
}

impl Tool {
    /// Perform the tool now.
    pub fn invoke(&self, input: &str, task: &TaskContext) -> Result<String, String> {
        (self.handler)(input, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn grant(list: &str) -> ToolGrant {
        Policy::parse(
            "t.toml",
            &format!("[agent]\nname = \"t\"\n[tools]\nallow = [{list}]\n"),
        )
        .unwrap()
        .tools
    }

    fn ctx() -> TaskContext {
        let minter = Arc::new(crate::credential::CredentialMinter::new().unwrap());
        let claims = crate::credential::TaskClaims {
            task: 1,
            agent: "a".into(),
            user: "-".into(),
        };
        TaskContext::new(minter, claims, std::time::Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn allowed_and_registered_runs() {
        let k = KillSwitch::new("a".into(), 1);
        let r = ToolRegistry::with_builtins();
        assert_eq!(
            r.call(
                &grant("\"text.upper\""),
                None,
                &k,
                &ctx(),
                "text.upper",
                "hi"
            )
            .unwrap(),
            Ok("HI".into())
        );
        assert!(!k.is_killed());
    }

    #[test]
    fn not_allowed_kills() {
        let k = KillSwitch::new("a".into(), 1);
        let r = ToolRegistry::with_builtins();
        assert!(
            r.call(&grant("\"echo\""), None, &k, &ctx(), "text.upper", "hi")
                .is_err()
        );
        assert_eq!(k.violation().unwrap().reason, KillReason::OutOfScope);
    }

    #[test]
    fn allowed_but_unregistered_kills() {
        let k = KillSwitch::new("a".into(), 1);
        let r = ToolRegistry::with_builtins();
        assert!(
            r.call(&grant("\"deploy\""), None, &k, &ctx(), "deploy", "")
                .is_err()
        );
        assert!(k.violation().unwrap().detail.contains("not registered"));
    }
}

//! The context stack: what the host puts in front of a guest's messages in every prompt.
//!
//! The manifesto's layers, in its order of authority: (1) the constitution — the host's
//! `[prompt] constitution`, then the policy's `[model] rules`; (2) curated memory; (3) the
//! task-scoped knowledge a request carries; (4) the agent's tool schemas; (5) the guest's own
//! messages (the task).
//!
//! # How the layers become messages
//!
//! One `system` message leads every prompt. It holds, under short fixed headers, layers 1, 2
//! and 4 — the *stable prefix*, built once per session, in a fixed order, with no timestamp, id
//! or other per-call byte in it — and then layer 3 when the request carries knowledge. The
//! guest's messages follow unchanged, so whatever the guest says (a `system` message of its own
//! included) comes after everything the host says.
//!
//! Why one message, and why layer 4 before layer 3:
//! - A provider's prefix (KV) cache reuses the longest prefix of the *rendered* prompt that it
//!   has seen before. Layers 1, 2 and 4 are the same for every call of an agent, layer 3 changes
//!   from task to task; putting 3 before 4 would make every byte of the tool list a cache miss
//!   whenever the knowledge changes. With 1 + 2 + 4 first, the whole stable prefix is a byte
//!   prefix of every prompt the agent sends, in every task.
//! - The order that carries meaning is kept: the constitution comes first and rules everything
//!   after it; memory, knowledge and tools are reference material of equal standing, and each
//!   sits under a header saying what it is; the task comes last. Tool schemas describe what the
//!   agent can do, not what the task is, so reading them before the task's knowledge changes
//!   nothing a model should do.
//! - A single leading system message is what every chat template accepts; several system
//!   messages, or one after a user turn, are refused by some templates.
//!
//! An empty layer is left out entirely (header included), so an agent with no rules, memory or
//! tools gets the constitution alone.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;
use warden_sandbox::capabilities::model::{ChatMessage, ChatRole};

/// The header of the policy's rules (layer 1, after the host's constitution).
const RULES: &str = "\n\n# Rules of this agent\n";
/// The header of curated memory (layer 2).
const MEMORY: &str = "\n\n# Memory\n";
/// The header of the tool schemas (layer 4).
const TOOLS: &str = "\n\n# Tools this agent may use\n";
/// The header of the task-scoped knowledge (layer 3).
const KNOWLEDGE: &str = "\n\n# Knowledge for this task\n";

/// One message as it goes to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireMessage<'a> {
    /// Who says it.
    pub role: ChatRole,
    /// What it says.
    pub content: Cow<'a, str>,
}

/// The stable layers of one agent's prompts, built once per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextStack {
    prefix: String,
}

impl ContextStack {
    /// The stack of an agent: the host's `constitution`, the policy's `rules`, curated `memory`
    /// and the `(name, description)` of each tool the agent may use (sorted by name here, so
    /// the caller's order does not matter; of entries with the same name, the one whose
    /// description sorts first is kept).
    pub fn new(
        constitution: &str,
        rules: &str,
        memory: &str,
        tools: &[(String, String)],
    ) -> ContextStack {
        let mut prefix = constitution.trim().to_owned();
        for (header, text) in [(RULES, rules), (MEMORY, memory)] {
            let text = text.trim();
            if !text.is_empty() {
                prefix.push_str(header);
                prefix.push_str(text);
            }
        }
        let mut tools: Vec<&(String, String)> = tools.iter().collect();
        tools.sort();
        tools.dedup_by(|a, b| a.0 == b.0);
        if !tools.is_empty() {
            prefix.push_str(TOOLS);
            for (i, (name, description)) in tools.iter().enumerate() {
                if i > 0 {
                    prefix.push('\n');
                }
                let description = description.split_whitespace().collect::<Vec<_>>().join(" ");
                let _ = write!(prefix, "- {name}: {description}");
            }
        }
        ContextStack { prefix }
    }

    /// Layers 1, 2 and 4: the bytes every prompt of this agent starts with.
    pub fn stable_prefix(&self) -> &str {
        &self.prefix
    }

    /// The messages of one request: the host's system message (with `knowledge` when there is
    /// some), then the guest's `messages`.
    pub fn messages<'a>(
        &'a self,
        knowledge: Option<&str>,
        messages: &'a [ChatMessage],
    ) -> Vec<WireMessage<'a>> {
        let mut out = Vec::with_capacity(messages.len() + 1);
        let system = match knowledge.map(str::trim).filter(|k| !k.is_empty()) {
            None => Cow::Borrowed(self.prefix.as_str()),
            Some(knowledge) => {
                let mut text =
                    String::with_capacity(self.prefix.len() + KNOWLEDGE.len() + knowledge.len());
                text.push_str(&self.prefix);
                text.push_str(KNOWLEDGE);
                text.push_str(knowledge);
                Cow::Owned(text)
            }
        };
        if !system.is_empty() {
            out.push(WireMessage {
                role: ChatRole::System,
                content: system,
            });
        }
        out.extend(messages.iter().map(|m| WireMessage {
            role: m.role,
            content: Cow::Borrowed(m.content.as_str()),
        }));
        out
    }
}

/// Bytes of the messages' contents: what the budget's prompt estimate counts.
pub(crate) fn content_bytes(messages: &[WireMessage<'_>]) -> usize {
    messages.iter().map(|m| m.content.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: ChatRole::User,
            content: text.into(),
        }
    }

    fn tools() -> Vec<(String, String)> {
        vec![
            ("search".into(), "Search the  web\nfor a query.".into()),
            ("calc".into(), "Evaluate arithmetic.".into()),
            ("calc".into(), "Evaluate arithmetic.".into()),
        ]
    }

    #[test]
    fn layers_in_order_under_fixed_headers() {
        let stack = ContextStack::new(
            "Be good.",
            "Answer in English.",
            "The sky is blue.",
            &tools(),
        );
        assert_eq!(
            stack.stable_prefix(),
            "Be good.\n\n# Rules of this agent\nAnswer in English.\n\n# Memory\nThe sky is blue.\
             \n\n# Tools this agent may use\n- calc: Evaluate arithmetic.\n- search: Search the web for a query."
        );
        let guest = [user("What colour is the sky?")];
        let m = stack.messages(Some("Sky facts: blue by day."), &guest);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, ChatRole::System);
        assert!(m[0].content.starts_with(stack.stable_prefix()));
        assert!(
            m[0].content
                .ends_with("\n\n# Knowledge for this task\nSky facts: blue by day.")
        );
        assert_eq!(
            m[1],
            WireMessage {
                role: ChatRole::User,
                content: "What colour is the sky?".into()
            }
        );
    }

    #[test]
    fn empty_layers_are_left_out() {
        let stack = ContextStack::new("Be good.", " ", "", &[]);
        assert_eq!(stack.stable_prefix(), "Be good.");
        let guest = [user("hi")];
        let m = stack.messages(Some("  "), &guest);
        assert_eq!(m[0].content, "Be good.");
        assert!(matches!(m[0].content, Cow::Borrowed(_)));
        let bare = ContextStack::new("", "", "", &[]);
        assert_eq!(
            bare.messages(None, &guest).len(),
            1,
            "no empty system message"
        );
    }

    #[test]
    fn the_prefix_does_not_depend_on_the_callers_order() {
        let mut reversed = tools();
        reversed.reverse();
        let a = ContextStack::new("C", "R", "M", &tools());
        let b = ContextStack::new("C", "R", "M", &reversed);
        assert_eq!(a.stable_prefix(), b.stable_prefix());
        let clash = vec![
            ("t".to_owned(), "Second.".to_owned()),
            ("t".to_owned(), "First.".to_owned()),
        ];
        assert!(
            ContextStack::new("C", "", "", &clash)
                .stable_prefix()
                .ends_with("\n- t: First.")
        );
        let other = ContextStack::new("C", "R2", "M", &tools());
        assert_ne!(a.stable_prefix(), other.stable_prefix());
    }

    #[test]
    fn content_bytes_counts_every_message() {
        let stack = ContextStack::new("12345", "", "", &[]);
        let guest = [user("abc"), user("de")];
        assert_eq!(content_bytes(&stack.messages(None, &guest)), 10);
    }
}

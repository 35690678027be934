//! An agent's contract: the input and output JSON Schemas its `describe` returns, compiled once
//! per loaded agent, and the two checks the run path makes with them — every task input before
//! the instance starts, every result after it returns.
//!
//! A task or result that is not JSON is checked as a JSON string (so `"text"` agents can say
//! `{"type": "string"}`). Schemas are bounded in size and never resolve a remote or file `$ref`
//! (the validator is built without resolvers): a schema an agent supplies cannot make the host
//! fetch anything.

use std::sync::Arc;

use serde_json::Value;

use crate::Description;
use crate::runtime::LoadedAgent;
use warden_sandbox::RunError;

/// Largest schema text an agent may declare.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// How many schema errors a refusal quotes.
const QUOTED_ERRORS: usize = 3;

/// A compiled contract.
pub struct Contract {
    /// What the agent said about itself.
    pub description: Description,
    input: Schema,
    output: Schema,
}

/// One compiled schema, and whether it accepts every value (`true`, `{}`, or only annotations
/// such as a title): such a schema is not run, and the text it would check is not even parsed.
struct Schema {
    validator: jsonschema::Validator,
    open: bool,
}

/// Keys that say something about a schema without constraining what it accepts.
const ANNOTATIONS: [&str; 7] = [
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
];

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("agent", &self.description.name)
            .finish_non_exhaustive()
    }
}

/// Build the validator of JSON Schema's own meta-schema (what every schema is checked against
/// before it is compiled) on a thread of its own, now: built on first use, it costs the first
/// contract compiled ~2 ms, which a starting host otherwise spends in its first task. A host
/// that needs it before the thread is done waits for the same build (it is built once).
pub fn warm_meta_schema() {
    let spawned = std::thread::Builder::new()
        .name("warden-warm".into())
        .spawn(|| jsonschema::meta::is_valid(&serde_json::json!({})));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "the meta-schema is built on first use instead");
    }
}

fn compile(which: &str, text: &str) -> Result<Schema, String> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "its {which} schema is {} bytes; a schema is at most {MAX_SCHEMA_BYTES}",
            text.len()
        ));
    }
    let schema: Value =
        serde_json::from_str(text).map_err(|e| format!("its {which} schema is not JSON: {e}"))?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("its {which} schema is not a valid JSON Schema: {e}"))?;
    let open = match &schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(keys) => keys.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    };
    Ok(Schema { validator, open })
}

/// The JSON value a task or result stands for: itself if it parses, else the text as a string.
fn as_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn check(schema: &Schema, text: &str) -> Result<(), String> {
    if schema.open {
        return Ok(());
    }
    let value = as_json(text);
    let errors: Vec<String> = schema
        .validator
        .iter_errors(&value)
        .take(QUOTED_ERRORS + 1)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            let message: String = e.to_string().chars().take(200).collect();
            format!("at {at}: {message}")
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let more = if errors.len() > QUOTED_ERRORS {
        " (and more)"
    } else {
        ""
    };
    Err(format!(
        "{}{more}",
        errors
            .into_iter()
            .take(QUOTED_ERRORS)
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

impl Contract {
    /// Compile the schemas of `description`.
    ///
    /// # Errors
    ///
    /// A sentence when a schema is too large, not JSON or not a valid JSON Schema (the agent must
    /// be rebuilt with a valid contract).
    pub fn compile(description: Description) -> Result<Arc<Contract>, String> {
        let input = compile("input", &description.input_schema)?;
        let output = compile("output", &description.output_schema)?;
        Ok(Arc::new(Contract {
            description,
            input,
            output,
        }))
    }

    /// Check a task's input.
    ///
    /// # Errors
    ///
    /// Where the input breaks the input schema (at most three places).
    pub fn check_input(&self, task: &str) -> Result<(), String> {
        check(&self.input, task)
    }

    /// Check a result.
    ///
    /// # Errors
    ///
    /// Where the result breaks the output schema.
    pub fn check_output(&self, output: &str) -> Result<(), String> {
        check(&self.output, output)
    }
}

impl LoadedAgent {
    /// The agent's contract: asked of `describe` (in a fresh instance) at the first call, then
    /// kept for the agent's life. `None` when `describe` itself was stopped by the host (a limit
    /// or a violation): the run then goes ahead and meets the same stop, recorded and judged like
    /// any kill, rather than failing to start (nothing is cached, so the next run asks again).
    ///
    /// # Errors
    ///
    /// [`RunError::Setup`] when `describe` fails otherwise or declares a schema that does not
    /// compile.
    pub async fn contract(&self) -> Result<Option<Arc<Contract>>, RunError> {
        let found = self
            .contract
            .get_or_try_init(|| async {
                let description = self.prepared.describe().await?;
                let agent = description.name.clone();
                Contract::compile(description).map_err(|why| {
                    RunError::Setup(format!(
                        "agent `{agent}` declares a contract the host cannot use: {why}; fix its describe() and rebuild it"
                    ))
                })
            })
            .await
            .cloned();
        match found {
            Ok(c) => Ok(Some(c)),
            Err(RunError::Setup(why))
                if why.starts_with("describe failed: Killed")
                    || why.starts_with("describe ran past") =>
            {
                tracing::warn!(target: "warden::run", agent = %self.prepared.policy().agent.name, %why, "describe was stopped; the run goes ahead without a contract");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(input: &str, output: &str) -> Result<Arc<Contract>, String> {
        Contract::compile(Description {
            name: "a".into(),
            version: "1".into(),
            summary: "s".into(),
            input_schema: input.into(),
            output_schema: output.into(),
        })
    }

    #[test]
    fn inputs_and_outputs_are_checked() {
        let c = contract(
            r#"{"type":"object","properties":{"name":{"type":"string","minLength":1}},"required":["name"],"additionalProperties":false}"#,
            r#"{"type":"string","pattern":"^hello, "}"#,
        )
        .unwrap();
        assert_eq!(c.check_input(r#"{"name":"ada"}"#), Ok(()));
        let e = c.check_input(r#"{"name":""}"#).unwrap_err();
        assert!(e.contains("/name"), "{e}");
        let e = c.check_input(r#"{"nom":"ada"}"#).unwrap_err();
        assert!(e.contains("name"), "{e}");
        assert!(c.check_input("not json at all").is_err());
        // A result that is not JSON is checked as a string.
        assert_eq!(c.check_output("hello, ada"), Ok(()));
        assert!(c.check_output("goodbye").is_err());
        assert!(c.check_output("42").is_err());
        // `{}` takes anything.
        let any = contract("{}", "{}").unwrap();
        assert_eq!(any.check_input("whatever"), Ok(()));
        assert_eq!(any.check_output("[1,2]"), Ok(()));
    }

    #[test]
    fn only_a_schema_that_takes_anything_is_skipped() {
        let values = [
            "whatever",
            "[1,2]",
            "null",
            r#"{"a":1}"#,
            "\"x\"",
            "{not json",
        ];
        for open in [
            "true",
            "{}",
            r#"{"title":"t","description":"d","$schema":"https://json-schema.org/draft/2020-12/schema"}"#,
        ] {
            let schema = compile("input", open).unwrap();
            assert!(schema.open, "{open}");
            for v in values {
                assert!(
                    schema.validator.is_valid(&as_json(v)),
                    "{open} refuses {v}: not open"
                );
            }
        }
        for closed in [
            "false",
            r#"{"title":"t","type":"string"}"#,
            r#"{"not":{}}"#,
            r##"{"$ref":"#/$defs/x","$defs":{"x":false}}"##,
        ] {
            let c = contract(closed, closed).unwrap();
            assert!(!c.input.open, "{closed}");
            assert!(c.check_input("[1,2]").is_err(), "{closed}");
        }
    }

    #[test]
    fn bad_schemas_are_refused() {
        assert!(
            contract("{not json", "{}")
                .unwrap_err()
                .contains("not JSON")
        );
        let e = contract(r#"{"type": 12}"#, "{}").unwrap_err();
        assert!(e.contains("not a valid JSON Schema"), "{e}");
        let big = format!(r#"{{"description": "{}"}}"#, "x".repeat(MAX_SCHEMA_BYTES));
        assert!(contract("{}", &big).unwrap_err().contains("at most"));
        // No resolver: a remote `$ref` is not fetched, it is refused.
        let e = contract(r#"{"$ref": "https://example.com/schema.json"}"#, "{}");
        assert!(e.is_err(), "a remote $ref must not compile");
    }

    #[test]
    fn many_errors_are_cut() {
        let c = contract(r#"{"type":"array","items":{"type":"integer"}}"#, "{}").unwrap();
        let e = c.check_input(r#"["a","b","c","d","e"]"#).unwrap_err();
        assert!(e.ends_with("(and more)"), "{e}");
        assert_eq!(e.matches("at /").count(), 3, "{e}");
    }
}

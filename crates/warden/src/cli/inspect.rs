//! `warden inspect`: a component's imports and what a policy makes of each, its exports, and
//! what the agent says of itself. Everything but the host's own words came from the component
//! (names, and `describe()`, which the guest writes freely) and is escaped as a one-line field.

use std::path::Path;

use warden::bounded::{self, Limit};
use warden::policy::Policy;
use warden::terminal::line;
use warden::{Description, Runtime};

use super::{EXIT_BAD_INPUT, Failure, bad_input, shown};

/// What `describe()` returned, as the lines `inspect` prints.
fn description_lines(d: &Description) -> [String; 3] {
    [
        format!(
            "describe: {} {} — {}",
            line(&d.name),
            line(&d.version),
            line(&d.summary)
        ),
        format!("  input schema: {}", line(&d.input_schema)),
        format!("  output schema: {}", line(&d.output_schema)),
    ]
}

/// `warden inspect`.
pub async fn inspect(runtime: &Runtime, path: &Path, policy: Policy) -> Result<u8, Failure> {
    let limit = Limit::component(runtime.engine().config().max_component_size);
    let bytes = bounded::read(path, limit).map_err(bad_input)?;
    let component = runtime.engine().compile(&bytes).map_err(bad_input)?;
    let engine = runtime.engine().engine();
    outln!("agent: {}", shown(path))?;
    outln!(
        "policy: {} (agent `{}`, strict = {})",
        line(&policy.source),
        line(&policy.agent.name),
        policy.agent.strict
    )?;
    outln!("\nimports:")?;
    for r in &warden::imports::report(engine, &component, &policy) {
        outln!(
            "  {:<45} {:<40} {}",
            line(&r.name),
            r.class.describe(),
            // The very verdict the load acts on (`imports::check`): inspect and load agree.
            r.verdict
        )?;
    }
    outln!("\nexports:")?;
    for (name, _) in component.component_type().exports(engine) {
        outln!("  {}", line(name))?;
    }
    match runtime.load(&bytes, policy) {
        Ok(agent) => match agent.describe().await {
            Ok(d) => {
                let [head, accepts, returns] = description_lines(&d);
                outln!("\n{head}\n{accepts}\n{returns}")?;
                Ok(0)
            }
            Err(e) => {
                outln!("\ndescribe failed: {}", line(&e.to_string()))?;
                Ok(EXIT_BAD_INPUT)
            }
        },
        Err(e) => {
            outln!("\nload: {}", line(&e.to_string()))?;
            Ok(EXIT_BAD_INPUT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_description_prints_as_three_inert_lines() {
        let hostile = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\n\u{9b}31m\u{202e}";
        let d = Description {
            name: hostile.into(),
            version: hostile.into(),
            summary: hostile.into(),
            input_schema: hostile.into(),
            output_schema: hostile.into(),
        };
        let lines = description_lines(&d);
        for l in &lines {
            assert!(
                !l.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\n']),
                "{l:?}"
            );
        }
        assert!(lines[0].contains("\\u{1b}]52;c;ZXZpbA=="), "{}", lines[0]);
        // The deny twin: an honest description prints as it is.
        let honest = Description {
            name: "probe".into(),
            version: "0.1.0".into(),
            summary: "Does what its task says.".into(),
            input_schema: "{\"type\": \"object\"}".into(),
            output_schema: "{}".into(),
        };
        assert_eq!(
            description_lines(&honest)[0],
            "describe: probe 0.1.0 — Does what its task says."
        );
    }
}

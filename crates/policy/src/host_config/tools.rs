//! `[[tools]]` of the host configuration: programs the host runs as tools (in its OS jail), each
//! reversible or held for a person's approval, with the host folders it may write (none unless
//! `writable` names them).

use serde::Deserialize;
use toml::Spanned;

use super::{HostConfig, HostTool};
use crate::diagnostic::Source;
use crate::{PolicyError, PolicyErrorKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    name: Spanned<String>,
    irreversible: Option<bool>,
    command: Spanned<Vec<String>>,
    approval_ttl: Option<Spanned<String>>,
    writable: Option<Spanned<Vec<String>>>,
}

/// Validate every `[[tools]]` entry.
impl HostConfig {
    /// The declared host tool `name`.
    pub fn tool(&self, name: &str) -> Option<&HostTool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

pub(super) fn host_tools(
    source: &Source<'_>,
    raw: Vec<RawTool>,
) -> Result<Vec<HostTool>, PolicyError> {
    let mut tools: Vec<HostTool> = Vec::new();
    for raw in raw {
        let name = raw.name.get_ref();
        crate::check_name(name, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
        .map_err(|reason| {
            source.error(
                raw.name.span(),
                PolicyErrorKind::InvalidName,
                format!("tools.name \"{name}\" is invalid: {reason}"),
                Some("a tool name of 1 to 64 characters from a-z, 0-9, '_', '.', '-'".to_owned()),
            )
        })?;
        if tools.iter().any(|t| &t.name == name) {
            return Err(source.error(
                raw.name.span(),
                PolicyErrorKind::Duplicate,
                format!("tool \"{name}\" is declared twice"),
                Some("each [[tools]] name once".to_owned()),
            ));
        }
        if raw.command.get_ref().is_empty() || raw.command.get_ref()[0].is_empty() {
            return Err(source.error(
                raw.command.span(),
                PolicyErrorKind::MissingKey,
                format!("tool \"{name}\" has an empty command"),
                Some("command = [\"/path/to/program\", \"fixed-arg\", ...]".to_owned()),
            ));
        }
        let approval_ttl = match raw.approval_ttl {
            Some(t) => crate::units::parse_duration(t.get_ref())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    source.error(
                        t.span(),
                        PolicyErrorKind::InvalidDuration,
                        format!("tools.approval_ttl \"{}\" is not a duration", t.get_ref()),
                        Some(
                            "a positive duration with a unit, such as \"1 h\" or \"30 min\""
                                .to_owned(),
                        ),
                    )
                })?,
            None => std::time::Duration::from_secs(24 * 3600),
        };
        let writable = match raw.writable {
            Some(w) => writable_folders(source, name, &w)?,
            None => Vec::new(),
        };
        tools.push(HostTool {
            name: raw.name.into_inner(),
            irreversible: raw.irreversible.unwrap_or(false),
            command: raw.command.into_inner(),
            approval_ttl,
            writable,
        });
    }
    Ok(tools)
}

/// `writable`: absolute, plain paths (no `..`, no `.`), each once, never `/` itself.
fn writable_folders(
    source: &Source<'_>,
    tool: &str,
    raw: &Spanned<Vec<String>>,
) -> Result<Vec<std::path::PathBuf>, PolicyError> {
    use std::path::{Component, Path};
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    for entry in raw.get_ref() {
        let path = Path::new(entry);
        let plain = path.is_absolute()
            && path.components().count() > 1
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain {
            return Err(source.error(
                raw.span(),
                PolicyErrorKind::InvalidPath,
                format!(
                    "tools.writable of \"{tool}\": \"{}\" is not an absolute folder",
                    entry.escape_debug()
                ),
                Some(
                    "absolute host folders without `..`, such as [\"/srv/deploy/out\"]".to_owned(),
                ),
            ));
        }
        if out.iter().any(|p| p == path) {
            return Err(source.error(
                raw.span(),
                PolicyErrorKind::Duplicate,
                format!("tools.writable of \"{tool}\" names \"{entry}\" twice"),
                Some("each folder once".to_owned()),
            ));
        }
        out.push(path.to_path_buf());
    }
    Ok(out)
}

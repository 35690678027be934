//! The host configuration's `[cascade]`: the rules of the request cascade (`docs/cascade.md`) —
//! its models, when a person is called, the budget of a whole task, and the limits of the
//! verification gate's OS jail.
//!
//! ```toml
//! [cascade]
//! fast_model = "small"        # the fast path's implementer (a [[model]] name; default "small")
//! team_model = "large"        # the team's implementer (default "large")
//! skeptic_rejections = 2      # rejections of a plan before a person is called (default 2)
//! team_attempts = 2           # failed verifications of the team's change before a person (default 2)
//! confidence_floor = 0.3      # calibrated confidence under which a person is called (default 0.3)
//! fast_path = true            # false: no router, every request to the team (default true)
//! tokens = 200000             # model tokens of the whole task, every stage together (default 200000)
//! usd = 1.0                   # model cost of the whole task (default 1.00)
//! wall = "30 min"             # wall time of the whole task (default 30 min)
//! cpu = "10 min"              # CPU time of the whole task's stages (default 10 min)
//! [cascade.gate]              # the jail the workspace's checks run in
//! cpu = "60 s"                # CPU time (default 60 s)
//! memory = "1 GiB"            # address space (default 1 GiB)
//! processes = 64              # processes and threads (default 64)
//! wall = "120 s"              # wall time of one command (default 120 s)
//! output = "1 MiB"            # stdout and stderr kept (default 1 MiB)
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::values::{duration, out_of_range, size, whole};
use crate::diagnostic::Source;
use crate::{PolicyError, PolicyErrorKind};

/// `[cascade]`, validated. [`CascadeSettings::default`] is what a host without the table uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeSettings {
    /// The fast path's model.
    pub fast_model: String,
    /// The team implementer's model.
    pub team_model: String,
    /// Skeptic rejections before a person is called.
    pub skeptic_rejections: u32,
    /// Failed team verifications before a person is called.
    pub team_attempts: u32,
    /// The confidence floor, in thousandths (0..=1000).
    pub confidence_floor_permille: u16,
    /// Whether the router and the fast path run.
    pub fast_path: bool,
    /// Model tokens of the whole task tree.
    pub tokens: u64,
    /// Model cost of the whole task tree, in micro-USD.
    pub micro_usd: u64,
    /// Wall time of the whole task.
    pub wall: Duration,
    /// CPU time of the whole task's stages.
    pub cpu: Duration,
    /// The verification gate's jail.
    pub gate: GateLimits,
}

/// The limits of one command of the verification gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// CPU time.
    pub cpu: Duration,
    /// Address space, in bytes.
    pub memory: u64,
    /// Processes and threads.
    pub processes: u32,
    /// Wall time.
    pub wall: Duration,
    /// stdout and stderr kept, in bytes.
    pub output: u64,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            cpu: Duration::from_secs(60),
            memory: 1 << 30,
            processes: 64,
            wall: Duration::from_secs(120),
            output: 1 << 20,
        }
    }
}

impl Default for CascadeSettings {
    fn default() -> Self {
        CascadeSettings {
            fast_model: "small".into(),
            team_model: "large".into(),
            skeptic_rejections: 2,
            team_attempts: 2,
            confidence_floor_permille: 300,
            fast_path: true,
            tokens: 200_000,
            micro_usd: 1_000_000,
            wall: Duration::from_secs(30 * 60),
            cpu: Duration::from_secs(10 * 60),
            gate: GateLimits::default(),
        }
    }
}

impl CascadeSettings {
    /// The confidence floor as a fraction.
    pub fn confidence_floor(&self) -> f64 {
        f64::from(self.confidence_floor_permille) / 1000.0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCascade {
    fast_model: Option<Spanned<String>>,
    team_model: Option<Spanned<String>>,
    skeptic_rejections: Option<Spanned<i64>>,
    team_attempts: Option<Spanned<i64>>,
    confidence_floor: Option<Spanned<f64>>,
    fast_path: Option<bool>,
    tokens: Option<Spanned<i64>>,
    usd: Option<Spanned<f64>>,
    wall: Option<Spanned<String>>,
    cpu: Option<Spanned<String>>,
    gate: Option<RawGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    cpu: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    processes: Option<Spanned<i64>>,
    wall: Option<Spanned<String>>,
    output: Option<Spanned<String>>,
}

fn model(
    source: &Source<'_>,
    key: &str,
    raw: Spanned<String>,
    known: &[&str],
) -> Result<String, PolicyError> {
    let name = raw.get_ref();
    if let Err(rule) = crate::model::check_model_name(name) {
        return Err(source.error(
            raw.span(),
            PolicyErrorKind::InvalidName,
            format!("{key} \"{name}\" is not a model name"),
            Some(rule.to_owned()),
        ));
    }
    if !known.is_empty() && !known.contains(&name.as_str()) {
        return Err(source.error(
            raw.span(),
            PolicyErrorKind::Contradiction,
            format!("{key} \"{name}\" names no [[model]] of this configuration"),
            Some(format!("one of: {}", known.join(", "))),
        ));
    }
    Ok(name.clone())
}

/// `[cascade]`, checked against the configuration's `[[model]]` names (`known`; when it lists
/// none, any well-formed name is accepted and a stage asking for it is refused at the call).
pub(super) fn settings(
    source: &Source<'_>,
    raw: Option<RawCascade>,
    known: &[&str],
) -> Result<CascadeSettings, PolicyError> {
    let mut s = CascadeSettings::default();
    let Some(raw) = raw else {
        return Ok(s);
    };
    if let Some(m) = raw.fast_model {
        s.fast_model = model(source, "cascade.fast_model", m, known)?;
    }
    if let Some(m) = raw.team_model {
        s.team_model = model(source, "cascade.team_model", m, known)?;
    }
    if let Some(n) = raw.skeptic_rejections {
        s.skeptic_rejections = whole(source, "cascade.skeptic_rejections", n, 100)? as u32;
    }
    if let Some(n) = raw.team_attempts {
        s.team_attempts = whole(source, "cascade.team_attempts", n, 100)? as u32;
    }
    if let Some(f) = raw.confidence_floor {
        let v = *f.get_ref();
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return Err(out_of_range(
                source,
                f.span(),
                format!("cascade.confidence_floor = {v} is out of range"),
                "a fraction from 0.0 (never call a person for confidence) to 1.0",
            ));
        }
        s.confidence_floor_permille = (v * 1000.0).round() as u16;
    }
    if let Some(f) = raw.fast_path {
        s.fast_path = f;
    }
    if let Some(t) = raw.tokens {
        s.tokens = whole(source, "cascade.tokens", t, 1_000_000_000)?;
    }
    if let Some(u) = raw.usd {
        let v = *u.get_ref();
        s.micro_usd = crate::model::micro_usd(v).ok_or_else(|| {
            out_of_range(
                source,
                u.span(),
                format!("cascade.usd = {v} is out of range"),
                "a number of US dollars from 0 to 1000",
            )
        })?;
    }
    if let Some(w) = raw.wall {
        s.wall = duration(source, "cascade.wall", w, Duration::from_secs(24 * 3600))?;
    }
    if let Some(c) = raw.cpu {
        s.cpu = duration(source, "cascade.cpu", c, Duration::from_secs(24 * 3600))?;
    }
    if let Some(g) = raw.gate {
        if let Some(c) = g.cpu {
            s.gate.cpu = duration(source, "cascade.gate.cpu", c, Duration::from_secs(3600))?;
        }
        if let Some(w) = g.wall {
            s.gate.wall = duration(source, "cascade.gate.wall", w, Duration::from_secs(3600))?;
        }
        if let Some(m) = g.memory {
            s.gate.memory = size(source, "cascade.gate.memory", m, 16 << 20, 64 << 30)?;
        }
        if let Some(o) = g.output {
            s.gate.output = size(source, "cascade.gate.output", o, 1024, 64 << 20)?;
        }
        if let Some(p) = g.processes {
            s.gate.processes = whole(source, "cascade.gate.processes", p, 4096)? as u32;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use crate::{HostConfig, PolicyErrorKind};
    use std::time::Duration;

    #[test]
    fn parses_the_table_and_defaults_without_it() {
        let c = HostConfig::parse("w.toml", "").unwrap();
        assert_eq!(c.cascade, super::CascadeSettings::default());
        assert!((c.cascade.confidence_floor() - 0.3).abs() < 1e-9);
        let text = "[[model]]\nname = \"tiny\"\nurl = \"http://127.0.0.1:1/v1\"\nid = \"m\"\n[cascade]\nfast_model = \"tiny\"\nteam_model = \"tiny\"\nskeptic_rejections = 3\nteam_attempts = 1\nconfidence_floor = 0.55\ntokens = 5000\nusd = 0.25\nwall = \"10 min\"\ncpu = \"2 min\"\n[cascade.gate]\ncpu = \"5 s\"\nmemory = \"256 MiB\"\nprocesses = 16\nwall = \"20 s\"\noutput = \"64 KiB\"\n";
        let c = HostConfig::parse("w.toml", text).unwrap().cascade;
        assert_eq!(
            (c.fast_model.as_str(), c.team_model.as_str()),
            ("tiny", "tiny")
        );
        assert_eq!((c.skeptic_rejections, c.team_attempts), (3, 1));
        assert_eq!(c.confidence_floor_permille, 550);
        assert_eq!((c.tokens, c.micro_usd), (5000, 250_000));
        assert_eq!(c.wall, Duration::from_secs(600));
        assert_eq!(c.cpu, Duration::from_secs(120));
        assert_eq!(c.gate.cpu, Duration::from_secs(5));
        assert_eq!(c.gate.memory, 256 << 20);
        assert_eq!((c.gate.processes, c.gate.output), (16, 64 << 10));
        assert_eq!(c.gate.wall, Duration::from_secs(20));
    }

    #[test]
    fn mistakes_are_located() {
        let model = "[[model]]\nname = \"small\"\nurl = \"http://127.0.0.1:1/v1\"\nid = \"m\"\n";
        for (text, line, kind) in [
            ("[cascade]\nfloor = 0.3\n", 2, PolicyErrorKind::UnknownKey),
            (
                "[cascade]\nconfidence_floor = 1.5\n",
                2,
                PolicyErrorKind::OutOfRange,
            ),
            (
                "[cascade]\nskeptic_rejections = 0\n",
                2,
                PolicyErrorKind::OutOfRange,
            ),
            ("[cascade]\ntokens = -1\n", 2, PolicyErrorKind::OutOfRange),
            (
                "[cascade]\nfast_model = \"Big Model\"\n",
                2,
                PolicyErrorKind::InvalidName,
            ),
            (
                "[cascade.gate]\nmemory = \"1 KiB\"\n",
                2,
                PolicyErrorKind::InvalidSize,
            ),
            (
                "[cascade.gate]\nwall = \"forever\"\n",
                2,
                PolicyErrorKind::InvalidDuration,
            ),
            (
                "[cascade.gate]\nnetwork = true\n",
                2,
                PolicyErrorKind::UnknownKey,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{text}: {e}");
        }
        // A model the configuration does not provide.
        let e = HostConfig::parse(
            "w.toml",
            &format!("{model}[cascade]\nteam_model = \"large\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.to_string().contains("names no [[model]]"), "{e}");
    }
}

//! `[limits]`: the resource ceilings of one agent run ([`Limits`]), their
//! defaults, their allowed ranges, and the cpu <= wall consistency rule.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::raw::{DurationText, Integer, RawLimits, SizeText, Table};
use super::units::{self, DURATION_UNITS, SIZE_UNITS};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

const MEMORY_RANGE: RangeInclusive<u64> = 64 * KIB..=4 * GIB;
const TABLES_RANGE: RangeInclusive<i128> = 1..=1_000_000;
const CPU_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(600);
const WALL_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);
const OUTPUT_RANGE: RangeInclusive<u64> = KIB..=64 * MIB;

/// Resource ceilings for one agent run. Exceeding any of them ends the run.
///
/// Defaults (also what a policy without `[limits]` gets): memory 64 MiB,
/// tables 10 000 elements, cpu 1 s, wall 10 s, output 1 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum guest linear memory, in bytes. Range 64 KiB..=4 GiB.
    pub memory: u64,
    /// Maximum guest table elements. Range 1..=1 000 000.
    pub tables: u32,
    /// Maximum guest CPU (execution) time. Range 1 ms..=10 min; never more than `wall`.
    pub cpu: Duration,
    /// Maximum elapsed time from start to finish, waiting included. Range 1 ms..=1 h.
    pub wall: Duration,
    /// Maximum bytes the agent may write to its output streams. Range 1 KiB..=64 MiB.
    pub output: u64,
}

impl Limits {
    /// Each limit the smaller of `self`'s and `ceiling`'s.
    pub fn capped_by(&self, ceiling: &Limits) -> Limits {
        Limits {
            memory: self.memory.min(ceiling.memory),
            tables: self.tables.min(ceiling.tables),
            cpu: self.cpu.min(ceiling.cpu),
            wall: self.wall.min(ceiling.wall),
            output: self.output.min(ceiling.output),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: 64 * MIB,
            tables: 10_000,
            cpu: Duration::from_secs(1),
            wall: Duration::from_secs(10),
            output: MIB,
        }
    }
}

impl Limits {
    /// Validates `[limits]`, filling absent keys with the defaults.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawLimits>>,
    ) -> Result<Limits, PolicyError> {
        let mut limits = Limits::default();
        let Some(Table(raw)) = raw else {
            return Ok(limits);
        };
        if let Some(memory) = &raw.memory {
            limits.memory = size(source, "memory", memory, &MEMORY_RANGE)?;
        }
        if let Some(tables) = &raw.tables {
            limits.tables = count(source, "tables", tables, &TABLES_RANGE)?;
        }
        if let Some(cpu) = &raw.cpu {
            limits.cpu = duration(source, "cpu", cpu, &CPU_RANGE)?;
        }
        if let Some(wall) = &raw.wall {
            limits.wall = duration(source, "wall", wall, &WALL_RANGE)?;
        }
        if let Some(output) = &raw.output {
            limits.output = size(source, "output", output, &OUTPUT_RANGE)?;
        }
        if limits.cpu > limits.wall {
            return Err(cpu_over_wall(source, &raw, &limits));
        }
        Ok(limits)
    }
}

/// Located at `cpu` when it was written, else at `wall` (the default cpu exceeds a written wall).
fn cpu_over_wall(source: &Source<'_>, raw: &RawLimits, limits: &Limits) -> PolicyError {
    let default_note = |written: bool| if written { "" } else { " (the default)" };
    let cpu = format!(
        "{}{}",
        units::format_duration(limits.cpu),
        default_note(raw.cpu.is_some())
    );
    let wall = units::format_duration(limits.wall);
    let wall_note = default_note(raw.wall.is_some());
    let span = match (&raw.cpu, &raw.wall) {
        (Some(cpu), _) => cpu.span(),
        (None, Some(wall)) => wall.span(),
        (None, None) => 0..0,
    };
    source.error(
        span,
        PolicyErrorKind::Contradiction,
        format!("limits.cpu ({cpu}) exceeds limits.wall ({wall}{wall_note}): cpu time cannot exceed elapsed time"),
        Some(format!("cpu <= wall ({wall})")),
    )
}

fn size(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<SizeText>,
    range: &RangeInclusive<u64>,
) -> Result<u64, PolicyError> {
    let span = value.span();
    let text = &value.get_ref().0;
    let bytes = units::parse_size(text).map_err(|error| {
        let message = format!("limits.{key} = \"{text}\" is not a size: {error}");
        source.error(
            span.clone(),
            PolicyErrorKind::InvalidSize,
            message,
            Some(SIZE_UNITS.to_owned()),
        )
    })?;
    let (low, high) = (
        units::format_size(*range.start()),
        units::format_size(*range.end()),
    );
    check_range(
        source,
        key,
        &format!("\"{text}\""),
        span,
        range.contains(&bytes),
        &low,
        &high,
    )?;
    Ok(bytes)
}

fn duration(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<DurationText>,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, PolicyError> {
    let span = value.span();
    let text = &value.get_ref().0;
    let duration = units::parse_duration(text).map_err(|error| {
        let message = format!("limits.{key} = \"{text}\" is not a duration: {error}");
        source.error(
            span.clone(),
            PolicyErrorKind::InvalidDuration,
            message,
            Some(DURATION_UNITS.to_owned()),
        )
    })?;
    let (low, high) = (
        units::format_duration(*range.start()),
        units::format_duration(*range.end()),
    );
    check_range(
        source,
        key,
        &format!("\"{text}\""),
        span,
        range.contains(&duration),
        &low,
        &high,
    )?;
    Ok(duration)
}

fn count(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<Integer>,
    range: &RangeInclusive<i128>,
) -> Result<u32, PolicyError> {
    let number = value.get_ref().0;
    let (low, high) = (range.start().to_string(), range.end().to_string());
    check_range(
        source,
        key,
        &number.to_string(),
        value.span(),
        range.contains(&number),
        &low,
        &high,
    )?;
    // The range is within u32; the fallback is unreachable but keeps this panic-free.
    u32::try_from(number)
        .map_err(|_| out_of_range(source, key, &number.to_string(), value.span(), &low, &high))
}

fn check_range(
    source: &Source<'_>,
    key: &str,
    text: &str,
    span: Range<usize>,
    in_range: bool,
    low: &str,
    high: &str,
) -> Result<(), PolicyError> {
    if in_range {
        Ok(())
    } else {
        Err(out_of_range(source, key, text, span, low, high))
    }
}

fn out_of_range(
    source: &Source<'_>,
    key: &str,
    text: &str,
    span: Range<usize>,
    low: &str,
    high: &str,
) -> PolicyError {
    source.error(
        span,
        PolicyErrorKind::OutOfRange,
        format!("limits.{key} = {text} is outside the allowed range"),
        Some(format!("a value from {low} to {high}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawPolicy;

    fn limits(body: &str) -> Result<Limits, PolicyError> {
        let text = format!("[limits]\n{body}\n");
        let source = Source {
            file: "t.toml",
            text: &text,
        };
        let raw: RawPolicy = toml::from_str(&text).map_err(|e| source.toml_error(&e))?;
        Limits::from_raw(&source, raw.limits)
    }

    #[test]
    fn defaults_are_documented_values() {
        assert_eq!(limits("").unwrap(), Limits::default());
        let default = Limits::default();
        assert_eq!(
            (default.memory, default.tables, default.output),
            (64 * MIB, 10_000, MIB)
        );
        assert_eq!(
            (default.cpu, default.wall),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
    }

    /// Each accepted value sits at an edge of its range; its twin just past that edge is refused.
    #[test]
    fn range_edges() {
        let cases: &[(&str, &str, PolicyErrorKind)] = &[
            (
                "memory = \"64 KiB\"",
                "memory = \"65535 B\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "memory = \"4 GiB\"",
                "memory = \"4097 MiB\"",
                PolicyErrorKind::OutOfRange,
            ),
            ("tables = 1", "tables = 0", PolicyErrorKind::OutOfRange),
            (
                "tables = 1000000",
                "tables = 1000001",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "cpu = \"1 ms\"",
                "cpu = \"999 us\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "cpu = \"10 min\"\nwall = \"60 min\"",
                "cpu = \"601 s\"\nwall = \"60 min\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "wall = \"60 min\"",
                "wall = \"3601 s\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "wall = \"1 ms\"\ncpu = \"1 ms\"",
                "wall = \"0 ms\"\ncpu = \"1 ms\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "output = \"1 KiB\"",
                "output = \"1023 B\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "output = \"64 MiB\"",
                "output = \"65 MiB\"",
                PolicyErrorKind::OutOfRange,
            ),
            (
                "memory = \"1 GiB\"",
                "memory = \"1 GB\"",
                PolicyErrorKind::InvalidSize,
            ),
            (
                "memory = \"1 GiB\"",
                "memory = \"-1 GiB\"",
                PolicyErrorKind::InvalidSize,
            ),
            (
                "memory = \"1 GiB\"",
                "memory = \"99999999999999999999 GiB\"",
                PolicyErrorKind::InvalidSize,
            ),
            (
                "cpu = \"5 s\"",
                "cpu = \"5 weeks\"",
                PolicyErrorKind::InvalidDuration,
            ),
            ("tables = 5", "tables = -5", PolicyErrorKind::OutOfRange),
            ("tables = 5", "tables = \"5\"", PolicyErrorKind::WrongType),
            (
                "memory = \"1 GiB\"",
                "memory = 1073741824",
                PolicyErrorKind::WrongType,
            ),
            ("cpu = \"5 s\"", "cpu = 5", PolicyErrorKind::WrongType),
        ];
        for (allowed, denied, kind) in cases {
            assert!(limits(allowed).is_ok(), "{allowed}: {:?}", limits(allowed));
            let error = limits(denied).expect_err(denied);
            assert_eq!(error.kind, *kind, "{denied}: {error}");
            assert_eq!(error.line, 2, "{denied}: {error}");
            assert!(error.expected.is_some(), "{denied}: {error}");
        }
    }

    #[test]
    fn cpu_must_not_exceed_wall() {
        assert!(limits("cpu = \"5 s\"\nwall = \"5 s\"").is_ok());
        let error = limits("wall = \"5 s\"\ncpu = \"6 s\"").unwrap_err();
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Contradiction, 3, 7)
        );

        // cpu written, wall defaulted (10 s): located at cpu.
        assert!(limits("cpu = \"10 s\"").is_ok());
        let error = limits("cpu = \"11 s\"").unwrap_err();
        assert_eq!(
            (error.kind, error.line),
            (PolicyErrorKind::Contradiction, 2)
        );
        assert!(error.message.contains("the default"), "{error}");

        // wall written below the default cpu (1 s): located at wall.
        assert!(limits("wall = \"1 s\"").is_ok());
        let error = limits("wall = \"999 ms\"").unwrap_err();
        assert_eq!(
            (error.kind, error.line),
            (PolicyErrorKind::Contradiction, 2)
        );
    }

    #[test]
    fn messages_name_the_key_and_the_range() {
        let error = limits("output = \"65 MiB\"").unwrap_err();
        assert!(error.message.contains("limits.output"), "{error}");
        assert_eq!(
            error.expected.as_deref(),
            Some("a value from 1 KiB to 64 MiB")
        );
        let error = limits("memory = \"64 MB\"").unwrap_err();
        assert!(error.message.contains("write `MiB`"), "{error}");
    }
}

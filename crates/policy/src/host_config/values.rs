//! Numbers, durations and sizes of the host configuration's tables, each checked against its
//! range and, when wrong, a located error naming the key and what it accepts — one rule for
//! every table (`[agents]`, `[cascade]`, `[server]`, …).

use std::time::Duration;

use toml::Spanned;

use crate::diagnostic::Source;
use crate::{PolicyError, PolicyErrorKind};

/// The error for a value of `key` outside its range.
pub(super) fn out_of_range(
    source: &Source<'_>,
    span: std::ops::Range<usize>,
    what: String,
    hint: &str,
) -> PolicyError {
    source.error(
        span,
        PolicyErrorKind::OutOfRange,
        what,
        Some(hint.to_owned()),
    )
}

/// A whole number of `key` from 1 to `max`.
pub(super) fn whole(
    source: &Source<'_>,
    key: &str,
    raw: Spanned<i64>,
    max: i64,
) -> Result<u64, PolicyError> {
    if (1..=max).contains(raw.get_ref()) {
        Ok(*raw.get_ref() as u64)
    } else {
        Err(out_of_range(
            source,
            raw.span(),
            format!("{key} = {} is out of range", raw.get_ref()),
            &format!("a whole number from 1 to {max}"),
        ))
    }
}

/// A positive duration of `key`, at most `max`.
pub(super) fn duration(
    source: &Source<'_>,
    key: &str,
    raw: Spanned<String>,
    max: Duration,
) -> Result<Duration, PolicyError> {
    crate::units::parse_duration(raw.get_ref())
        .ok()
        .filter(|d| !d.is_zero() && *d <= max)
        .ok_or_else(|| {
            source.error(
                raw.span(),
                PolicyErrorKind::InvalidDuration,
                format!("{key} \"{}\" is not a usable duration", raw.get_ref()),
                Some(format!(
                    "a positive duration of at most {} s, such as \"60 s\"",
                    max.as_secs()
                )),
            )
        })
}

/// A size of `key` from `min` to `max` bytes.
pub(super) fn size(
    source: &Source<'_>,
    key: &str,
    raw: Spanned<String>,
    min: u64,
    max: u64,
) -> Result<u64, PolicyError> {
    crate::units::parse_size(raw.get_ref())
        .ok()
        .filter(|s| (min..=max).contains(s))
        .ok_or_else(|| {
            source.error(
                raw.span(),
                PolicyErrorKind::InvalidSize,
                format!("{key} \"{}\" is not a usable size", raw.get_ref()),
                Some(format!(
                    "a size from {} to {}, such as \"1 GiB\"",
                    crate::units::format_size(min),
                    crate::units::format_size(max)
                )),
            )
        })
}

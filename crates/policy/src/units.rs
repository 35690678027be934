//! Size and duration strings used in `[limits]` (`"64 MiB"`, `"500 ms"`):
//! their grammar, their units, and how they are printed back in messages.
//!
//! Grammar: a whole decimal number, optional spaces, a unit. Units are
//! case-sensitive. Sizes accept only binary units (`B`, `KiB`, `MiB`, `GiB`);
//! `KB`/`MB`/`GB` are refused rather than guessed, because "1 MB" means
//! 1 000 000 bytes to some readers and 1 048 576 to others, and a limit a
//! reviewer misreads is a limit that is not reviewed. Durations accept `us`,
//! `ms`, `s`, `min`, `h` and `d`.

use std::time::Duration;

/// Why a size or duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnitError {
    #[error("the value is empty")]
    Empty,
    #[error("negative values are not allowed")]
    Negative,
    #[error("`{0}` does not start with a whole number")]
    NotANumber(String),
    #[error("fractions are not allowed: use a smaller unit")]
    Fraction,
    #[error("the number has no unit")]
    MissingUnit,
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    #[error("the unit `{unit}` is ambiguous: write `{instead}`")]
    AmbiguousUnit { unit: String, instead: &'static str },
    #[error("the value is too large")]
    Overflow,
}

/// Units accepted for sizes, shown in error messages.
pub(crate) const SIZE_UNITS: &str =
    "a whole number and one of the units B, KiB, MiB, GiB, e.g. \"64 MiB\"";
/// Units accepted for durations, shown in error messages.
pub(crate) const DURATION_UNITS: &str =
    "a whole number and one of the units us, ms, s, min, h, d, e.g. \"500 ms\"";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Parses a size string into bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let factor = match unit {
        "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "KB" | "kB" | "kb" | "K" | "k" => ambiguous(unit, "KiB")?,
        "MB" | "mb" | "M" | "m" => ambiguous(unit, "MiB")?,
        "GB" | "gb" | "G" | "g" => ambiguous(unit, "GiB")?,
        other => return Err(UnitError::UnknownUnit(other.to_owned())),
    };
    number.checked_mul(factor).ok_or(UnitError::Overflow)
}

/// Parses a duration string.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text)?;
    let micros_per_unit = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        // Minutes or milliseconds? Refuse to guess.
        "m" => ambiguous(unit, "min` or `ms")?,
        other => return Err(UnitError::UnknownUnit(other.to_owned())),
    };
    number
        .checked_mul(micros_per_unit)
        .map(Duration::from_micros)
        .ok_or(UnitError::Overflow)
}

fn ambiguous(unit: &str, instead: &'static str) -> Result<u64, UnitError> {
    Err(UnitError::AmbiguousUnit {
        unit: unit.to_owned(),
        instead,
    })
}

/// Splits `"<digits> <unit>"` into the number and the unit text.
fn split_number(text: &str) -> Result<(u64, &str), UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    if text.starts_with('-') {
        return Err(UnitError::Negative);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(UnitError::NotANumber(text.to_owned()));
    }
    if rest.starts_with(['.', ',']) {
        return Err(UnitError::Fraction);
    }
    // Only digits are left in `digits`, so the only possible failure is overflow.
    let number = digits.parse::<u64>().map_err(|_| UnitError::Overflow)?;
    let unit = rest.trim_start_matches(' ');
    if unit.is_empty() {
        return Err(UnitError::MissingUnit);
    }
    Ok((number, unit))
}

/// Prints a byte count in the largest binary unit that divides it exactly.
pub(crate) fn format_size(bytes: u64) -> String {
    for (factor, unit) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{} {unit}", bytes / factor);
        }
    }
    format!("{bytes} B")
}

/// Prints a duration in the largest unit that divides it exactly.
pub(crate) fn format_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    for (factor, unit) in [(60_000_000, "min"), (1_000_000, "s"), (1_000, "ms")] {
        if micros >= factor && micros.is_multiple_of(factor) {
            return format!("{} {unit}", micros / factor);
        }
    }
    format!("{micros} us")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accepted() {
        let cases = [
            ("1 B", 1),
            ("64 KiB", 64 * KIB),
            ("64 MiB", 64 * MIB),
            ("64MiB", 64 * MIB),
            ("  4 GiB ", 4 * GIB),
            ("0 B", 0),
            ("18446744073709551615 B", u64::MAX),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_refused() {
        let ambiguous = |unit: &str, instead| UnitError::AmbiguousUnit {
            unit: unit.into(),
            instead,
        };
        let cases = [
            ("", UnitError::Empty),
            ("   ", UnitError::Empty),
            ("-1 MiB", UnitError::Negative),
            ("lots", UnitError::NotANumber("lots".into())),
            ("MiB", UnitError::NotANumber("MiB".into())),
            ("+1 MiB", UnitError::NotANumber("+1 MiB".into())),
            ("1.5 GiB", UnitError::Fraction),
            ("64", UnitError::MissingUnit),
            ("64 mib", UnitError::UnknownUnit("mib".into())),
            ("64 TiB", UnitError::UnknownUnit("TiB".into())),
            ("64 MiB extra", UnitError::UnknownUnit("MiB extra".into())),
            ("64 MB", ambiguous("MB", "MiB")),
            ("64 KB", ambiguous("KB", "KiB")),
            ("1 GB", ambiguous("GB", "GiB")),
            ("18446744073709551616 B", UnitError::Overflow),
            ("18446744073709551615 KiB", UnitError::Overflow),
        ];
        for (text, error) in cases {
            assert_eq!(parse_size(text), Err(error), "{text}");
        }
    }

    #[test]
    fn durations_accepted() {
        let cases = [
            ("1 us", Duration::from_micros(1)),
            ("500 ms", Duration::from_millis(500)),
            ("5 s", Duration::from_secs(5)),
            ("5s", Duration::from_secs(5)),
            ("10 min", Duration::from_secs(600)),
            ("0 s", Duration::ZERO),
        ];
        for (text, duration) in cases {
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn durations_refused() {
        let cases = [
            ("", UnitError::Empty),
            ("-5 s", UnitError::Negative),
            ("soon", UnitError::NotANumber("soon".into())),
            ("0.5 s", UnitError::Fraction),
            ("5", UnitError::MissingUnit),
            ("1 w", UnitError::UnknownUnit("w".into())),
            ("5 sec", UnitError::UnknownUnit("sec".into())),
            ("5 S", UnitError::UnknownUnit("S".into())),
            ("5 µs", UnitError::UnknownUnit("µs".into())),
            (
                "5 m",
                UnitError::AmbiguousUnit {
                    unit: "m".into(),
                    instead: "min` or `ms",
                },
            ),
            ("18446744073709551615 min", UnitError::Overflow),
        ];
        for (text, error) in cases {
            assert_eq!(parse_duration(text), Err(error), "{text}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["1 B", "1000 B", "64 KiB", "1536 KiB", "64 MiB", "4 GiB"] {
            assert_eq!(format_size(parse_size(text).unwrap()), text);
        }
        for text in ["1 us", "1500 us", "500 ms", "5 s", "90 s", "10 min"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}

//! DNS host names as `net.allow` entries and guests write them: the label
//! rules, and the canonical form (lowercase, no trailing dot) that entries are
//! stored and compared in.

/// Why a name is not a DNS host name (turned into the matching [`crate::HostError`] by the
/// host rules, which use this module and not the other way round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    /// A `*` in a name.
    MisplacedWildcard,
    /// The last label is all digits.
    NumericName(String),
    /// A broken label rule.
    InvalidName {
        /// The name as written.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// Checks a DNS name and returns it lowercased, with one trailing dot dropped.
///
/// Labels are 1 to 63 characters of `a-z`, `0-9`, `-`, not starting or ending
/// with `-`; the whole name is at most 253 characters. A name whose last label
/// is all digits is refused: resolvers may read it as an IPv4 address
/// (`127.1`), which would slip past the IP rules.
pub(crate) fn canonical_name(name: &str) -> Result<String, NameError> {
    let invalid = |reason| NameError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.contains('*') {
        return Err(NameError::MisplacedWildcard);
    }
    let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if lower.is_empty() {
        return Err(invalid("it is empty"));
    }
    if lower.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    for label in lower.split('.') {
        if label.is_empty() {
            return Err(invalid("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("labels may contain only a-z, 0-9 and '-'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with '-'"));
        }
    }
    let last = lower.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericName(name.to_owned()));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name accepted with its canonical form, its refused twin and the reason)
    #[test]
    fn name_rules() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        let name253 = format!("{}com", "abcdefghi.".repeat(25));
        let name263 = format!("{}com", "abcdefghi.".repeat(26));
        let cases: Vec<((&str, &str), &str, &str)> = vec![
            (
                ("example.com", "example.com"),
                "example..com",
                "empty label",
            ),
            (("Example.COM", "example.com"), "exa mple.com", "only a-z"),
            (
                ("example.com.", "example.com"),
                "example.com..",
                "empty label",
            ),
            (
                ("a-b.example", "a-b.example"),
                "-ab.example",
                "starts or ends with '-'",
            ),
            (
                ("ab.example", "ab.example"),
                "ab-.example",
                "starts or ends with '-'",
            ),
            (("localhost", "localhost"), "", "it is empty"),
            (("x1.y2", "x1.y2"), "x_1.y2", "only a-z"),
            ((&label63, &label63), &label64, "longer than 63"),
            ((&name253, &name253), &name263, "longer than 253"),
            (("1.2.3.x", "1.2.3.x"), "1.2.3.4", "looks like an IPv4"),
            (
                ("10.example", "10.example"),
                "example.10",
                "looks like an IPv4",
            ),
            (
                ("xn--nxasmq6b.example", "xn--nxasmq6b.example"),
                "ελ.example",
                "only a-z",
            ),
            (
                ("a.example", "a.example"),
                "a.*.example",
                "`*` may only appear",
            ),
            (("b.example", "b.example"), "b.example\0", "only a-z"),
        ];
        for ((good, canonical), bad, reason) in cases {
            assert_eq!(canonical_name(good).as_deref(), Ok(canonical), "{good}");
            let error = crate::HostError::from(canonical_name(bad).expect_err(bad));
            assert!(error.to_string().contains(reason), "{bad:?}: {error}");
        }
    }
}

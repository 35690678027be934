//! What a smuggler would wrap a secret in: runs of base64 (standard or URL-safe alphabet, padded
//! or not) and of hex (contiguous, or byte by byte with `\x`, `0x` or `%` prefixes or `:`, `-`,
//! `,`, space between), found in a text and decoded so the filter can look at what they hold.
//!
//! Decoding is lenient on purpose (a trailing partial group is dropped, padding is optional):
//! the question is never "is this valid base64" but "could a reader turn this into a secret".

/// How a segment was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// base64, either alphabet.
    Base64,
    /// hex, contiguous or byte by byte.
    Hex,
}

impl Encoding {
    /// Its name, as refusals say it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }
}

/// Shortest base64 run worth decoding (12 bytes of payload).
const MIN_BASE64: usize = 16;
/// Shortest contiguous hex run worth decoding (8 bytes).
const MIN_HEX: usize = 16;
/// Fewest bytes of a separated or prefixed hex sequence.
const MIN_HEX_BYTES: usize = 8;
/// Runs up to this long are also decoded from offsets 1 to 3 (base64) or 1 (hex), in case a
/// word was glued to the front of an encoded secret; longer runs only from their start.
const SHIFTED_UP_TO: usize = 1024;

/// Every encoded segment of `hay`, decoded.
pub fn segments(hay: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut out = Vec::new();
    // Padding (`=`) ends a run: `key=QUtJ…` is the word `key`, then the run `QUtJ…`.
    for (start, end) in runs(hay, is_base64) {
        let run = &hay[start..end];
        if run.len() < MIN_BASE64 {
            continue;
        }
        let shifts = if run.len() <= SHIFTED_UP_TO { 4 } else { 1 };
        for shift in 0..shifts {
            let decoded = base64(&run[shift..]);
            if !decoded.is_empty() {
                out.push((Encoding::Base64, decoded));
            }
        }
    }
    for (start, end) in runs(hay, |b| b.is_ascii_hexdigit()) {
        let run = &hay[start..end];
        if run.len() < MIN_HEX {
            continue;
        }
        let shifts = if run.len() <= SHIFTED_UP_TO { 2 } else { 1 };
        for shift in 0..shifts {
            out.push((Encoding::Hex, hex_pairs(&run[shift..])));
        }
    }
    out.extend(
        separated_hex(hay)
            .into_iter()
            .map(|bytes| (Encoding::Hex, bytes)),
    );
    out
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Maximal runs of bytes for which `keep` holds: (start, end).
fn runs(hay: &[u8], keep: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in hay.iter().enumerate() {
        match (keep(*b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, hay.len()));
    }
    out
}

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Lenient base64 (both alphabets; `=` and other bytes skipped; a trailing partial byte dropped).
pub fn base64(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.iter().filter_map(|b| sextet(*b)) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The value of a hex digit (callers pass only hex digits).
fn nibble(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        d @ b'0'..=b'9' => d - b'0',
        l => l.wrapping_sub(b'a').wrapping_add(10) & 0x0f,
    }
}

/// Hex digits two by two (an odd last digit is dropped).
fn hex_pairs(digits: &[u8]) -> Vec<u8> {
    digits
        .chunks_exact(2)
        .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
        .collect()
}

/// Sequences of at least [`MIN_HEX_BYTES`] hex bytes written one by one: `\x41\x4b`, `0x41 0x4b`,
/// `%41%4B`, `41:4b:…`, `41 4b …`, `41-4b-…`, `41,4b,…`.
fn separated_hex(hay: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        let (bytes, end) = hex_sequence(hay, i);
        if bytes.len() >= MIN_HEX_BYTES {
            out.push(bytes);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The hex bytes written one by one from `at`, and where they end.
fn hex_sequence(hay: &[u8], at: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut i = at;
    loop {
        let mut j = i;
        for prefix in [&b"\\x"[..], b"0x", b"%"] {
            if hay[j..].starts_with(prefix) {
                j += prefix.len();
                break;
            }
        }
        let pair = hay.get(j..j + 2);
        let Some(pair) = pair.filter(|p| p.iter().all(u8::is_ascii_hexdigit)) else {
            return (bytes, i);
        };
        // Two digits then another digit is a contiguous run (handled elsewhere), not a byte.
        if bytes.is_empty() && j == i && hay.get(j + 2).is_some_and(u8::is_ascii_hexdigit) {
            return (bytes, i);
        }
        bytes.push((nibble(pair[0]) << 4) | nibble(pair[1]));
        i = j + 2;
        if hay
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b':' | b'-' | b','))
        {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(hay: &str) -> Vec<String> {
        segments(hay.as_bytes())
            .into_iter()
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    #[test]
    fn base64_both_alphabets_padded_or_not() {
        assert_eq!(base64(b"aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(base64(b"aGVsbG8gd29ybGQ"), b"hello world");
        // "??>" is `Pz8-` URL-safe and `Pz8+` standard.
        assert_eq!(base64(b"Pz8-"), b"??>");
        assert_eq!(base64(b"Pz8+"), b"??>");
    }

    #[test]
    fn finds_what_is_wrapped() {
        let secret = "AKIAIOSFODNN7EXAMPLE";
        let b64 = "QUtJQUlPU0ZPRE5ON0VYQU1QTEU="; // base64 of the secret
        assert!(
            decoded(&format!("note: {b64} end"))
                .iter()
                .any(|d| d == secret)
        );
        assert!(decoded(&format!("key={b64}")).iter().any(|d| d == secret));
        // A word glued to the front shifts the alignment.
        assert!(
            decoded(&format!("xy{b64}"))
                .iter()
                .any(|d| d.contains(secret))
        );
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(decoded(&format!("({hex})")).iter().any(|d| d == secret));
        assert!(decoded(&format!("z{hex}")).iter().any(|d| d == secret));
        for sep in ["\\x", "0x", "%"] {
            let s: String = secret.bytes().map(|b| format!("{sep}{b:02X}")).collect();
            assert!(decoded(&s).iter().any(|d| d == secret), "{s}");
        }
        for sep in [" ", ":", "-", ","] {
            let s = secret
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(sep);
            assert!(decoded(&s).iter().any(|d| d == secret), "{s}");
        }
    }

    #[test]
    fn short_runs_are_left_alone() {
        assert!(segments(b"a short word, 12 34 56, deadbeef").is_empty());
    }
}

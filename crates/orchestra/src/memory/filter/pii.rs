//! The filter's own rules, for what no secret scanner covers: personal data and private keys.
//!
//! Each rule is a pattern plus, where a checksum or a numbering plan exists, that check — so a
//! number that merely looks like a card or an id is not refused:
//!
//! | rule | what | check beyond the pattern |
//! |---|---|---|
//! | `pii:email` | an e-mail address (not the SSH convention `git@host`) | — |
//! | `pii:phone` | `+` and 8–15 digits (E.164, any grouping); NANP `(555) 123-4567`, `555-123-4567`, `555.123.4567` | digit count |
//! | `pii:payment-card` | 13–19 digits, grouped or not | Luhn, and a card brand's prefix and length |
//! | `pii:iban` | an IBAN | ISO 13616 mod-97 |
//! | `gov-id:us-ssn` | `123-45-6789` (or spaces) | area not 000/666/9xx, group not 00, serial not 0000 |
//! | `gov-id:uk-nino` | `AB 12 34 56 C` | the letters HMRC allocates |
//! | `gov-id:ca-sin` | `123-456-782` (or spaces) | Luhn, first digit not 0 or 8 |
//! | `gov-id:es-dni` | `12345678Z`, NIE `X1234567L` | the check letter |
//! | `key:pem-private-key` | a PEM `-----BEGIN … PRIVATE KEY-----` line (the header alone suffices) | — |
//!
//! Matches are bounded: a match glued to more digits or letters (part of a longer number or
//! word) is not one.

use regex::bytes::{Regex, RegexBuilder};

/// One rule: its name, its pattern, and the check a candidate must pass.
struct Builtin {
    name: &'static str,
    regex: Regex,
    check: fn(&[u8]) -> bool,
    /// What may not touch the match on either side.
    glue: fn(u8) -> bool,
}

/// The compiled built-in rules.
pub struct Builtins {
    rules: Vec<Builtin>,
}

impl std::fmt::Debug for Builtins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.rules.iter().map(|r| r.name).collect();
        f.debug_struct("Builtins").field("rules", &names).finish()
    }
}

fn digits(m: &[u8]) -> Vec<u8> {
    m.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn checksum holds.
pub fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    !d.is_empty() && sum.is_multiple_of(10)
}

fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0, |acc, x| acc * 10 + u32::from(*x))
}

/// A card brand's prefix (IIN) and length, and the Luhn checksum.
fn card(m: &[u8]) -> bool {
    let d = digits(m);
    let len = d.len();
    let (p1, p2, p3, p4, p6) = (
        prefix(&d, 1),
        prefix(&d, 2),
        prefix(&d, 3),
        prefix(&d, 4),
        prefix(&d, 6),
    );
    let brand = match () {
        // Visa; Mastercard; American Express; Discover; JCB; Diners Club; UnionPay; Maestro.
        () if p1 == 4 => matches!(len, 13 | 16 | 19),
        () if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) => len == 16,
        () if p2 == 34 || p2 == 37 => len == 15,
        () if p4 == 6011
            || p2 == 65
            || (644..=649).contains(&p3)
            || (622_126..=622_925).contains(&p6) =>
        {
            (16..=19).contains(&len)
        }
        () if (3528..=3589).contains(&p4) => (16..=19).contains(&len),
        () if p2 == 36 || p2 == 38 || (300..=305).contains(&p3) => (14..=19).contains(&len),
        () if p2 == 62 => (16..=19).contains(&len),
        () if matches!(
            p4,
            5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763
        ) =>
        {
            (12..=19).contains(&len)
        }
        () => false,
    };
    brand && luhn(&d)
}

fn ssn(m: &[u8]) -> bool {
    let d = digits(m);
    let (area, group, serial) = (prefix(&d, 3), prefix(&d[3..], 2), prefix(&d[5..], 4));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn sin(m: &[u8]) -> bool {
    let d = digits(m);
    d[0] != 0 && d[0] != 8 && luhn(&d)
}

fn phone(m: &[u8]) -> bool {
    let n = digits(m).len();
    if m.first() == Some(&b'+') {
        (8..=15).contains(&n)
    } else {
        n == 10
    }
}

fn nino(m: &[u8]) -> bool {
    let pair = [m[0], m[1]];
    !matches!(&pair, b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ")
}

fn dni(m: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let compact: Vec<u8> = m.iter().copied().filter(|b| *b != b'-').collect();
    let (body, letter) = compact.split_at(compact.len() - 1);
    let lead = match body[0] {
        b'X' => Some(0),
        b'Y' => Some(1),
        b'Z' => Some(2),
        _ => None,
    };
    let number = digits(body)
        .iter()
        .fold(lead.unwrap_or(0u64), |acc, x| acc * 10 + u64::from(*x));
    LETTERS[(number % 23) as usize] == letter[0]
}

fn iban(m: &[u8]) -> bool {
    let compact: Vec<u8> = m.iter().copied().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn always(_: &[u8]) -> bool {
    true
}

fn not_email_convention(m: &[u8]) -> bool {
    !m.starts_with(b"git@")
}

fn digit_glue(b: u8) -> bool {
    b.is_ascii_digit()
}

fn alnum_glue(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn phone_glue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+'
}

fn no_glue(_: u8) -> bool {
    false
}

impl Builtins {
    /// Compile the rules.
    ///
    /// # Errors
    ///
    /// A sentence if a pattern does not compile (a bug: the unit tests compile them all).
    pub fn new() -> Result<Builtins, String> {
        type Spec = (
            &'static str,
            &'static str,
            fn(&[u8]) -> bool,
            fn(u8) -> bool,
        );
        let specs: [Spec; 9] = [
            (
                "key:pem-private-key",
                r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
                always,
                no_glue,
            ),
            (
                "gov-id:us-ssn",
                r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}",
                ssn,
                digit_glue,
            ),
            (
                "gov-id:ca-sin",
                r"[0-9]{3}-[0-9]{3}-[0-9]{3}|[0-9]{3} [0-9]{3} [0-9]{3}",
                sin,
                digit_glue,
            ),
            (
                "gov-id:uk-nino",
                r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
                nino,
                alnum_glue,
            ),
            (
                "gov-id:es-dni",
                r"[XYZ]-?[0-9]{7}-?[A-Z]|[0-9]{8}-?[A-Z]",
                dni,
                alnum_glue,
            ),
            (
                "pii:payment-card",
                r"[0-9](?:[ -]?[0-9]){11,18}",
                card,
                digit_glue,
            ),
            (
                "pii:iban",
                r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
                iban,
                alnum_glue,
            ),
            (
                "pii:email",
                r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}",
                not_email_convention,
                no_glue,
            ),
            (
                "pii:phone",
                r"\+[0-9](?:[ .-]?\(?[0-9]+\)?){2,14}|\([0-9]{3}\) ?[0-9]{3}[-.][0-9]{4}|[0-9]{3}-[0-9]{3}-[0-9]{4}|[0-9]{3}\.[0-9]{3}\.[0-9]{4}",
                phone,
                phone_glue,
            ),
        ];
        let rules = specs
            .into_iter()
            .map(|(name, pattern, check, glue)| {
                RegexBuilder::new(pattern)
                    .unicode(false)
                    .build()
                    .map(|regex| Builtin {
                        name,
                        regex,
                        check,
                        glue,
                    })
                    .map_err(|e| format!("built-in rule `{name}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Builtins { rules })
    }

    /// The name of the first rule that fires on `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<&'static str> {
        self.rules
            .iter()
            .find(|rule| {
                rule.regex.find_iter(hay).any(|m| {
                    let before = m.start().checked_sub(1).map(|i| hay[i]);
                    let after = hay.get(m.end()).copied();
                    let glued = before.is_some_and(rule.glue) || after.is_some_and(rule.glue);
                    !glued && (rule.check)(m.as_bytes())
                })
            })
            .map(|rule| rule.name)
    }

    /// The names of every rule, in the order they are tried.
    pub fn names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn(&digits(b"4111111111111111")));
        assert!(!luhn(&digits(b"4111111111111112")));
        assert!(card(b"4111 1111 1111 1111") && card(b"378282246310005"));
        assert!(card(b"5555-5555-5555-4444") && !card(b"1234567812345670"));
        assert!(iban(b"GB82 WEST 1234 5698 7654 32") && !iban(b"GB82 WEST 1234 5698 7654 33"));
        assert!(dni(b"12345678Z") && !dni(b"12345678A") && dni(b"X1234567L"));
        assert!(ssn(b"123-45-6789") && !ssn(b"000-45-6789") && !ssn(b"666-45-6789"));
        assert!(!ssn(b"923-45-6789") && !ssn(b"123-00-6789") && !ssn(b"123-45-0000"));
        assert!(sin(b"123-456-782") && !sin(b"123-456-783") && !sin(b"046-454-286"));
    }

    #[test]
    fn each_rule_fires_and_its_near_miss_does_not() {
        let b = Builtins::new().unwrap();
        let table: &[(&str, Option<&str>)] = &[
            (
                "mail alice.smith+tag@mail.example.org today",
                Some("pii:email"),
            ),
            ("git@github.com:org/repo.git", None),
            ("see lodash@4.17.21 and @types/node", None),
            ("call +1 415 555 2671 now", Some("pii:phone")),
            ("call +44 20 7946 0958", Some("pii:phone")),
            ("call (415) 555-2671", Some("pii:phone")),
            ("call 415-555-2671", Some("pii:phone")),
            ("sizes 256 512 1024 2048", None),
            ("version 1.2.3, 2024-01-15, 10.0.0.1", None),
            ("card 4111 1111 1111 1111", Some("pii:payment-card")),
            ("card 4111111111111112", None),
            ("timestamp 1732740000000 ns 1732740000000000000", None),
            ("ssn 123-45-6789", Some("gov-id:us-ssn")),
            ("ssn 000-12-3456", None),
            ("nino AB 12 34 56 C", Some("gov-id:uk-nino")),
            ("nino QQ123456C", None),
            ("sin 123 456 782", Some("gov-id:ca-sin")),
            ("sin 123 456 783", None),
            ("dni 12345678Z", Some("gov-id:es-dni")),
            ("dni 12345678A", None),
            ("iban GB82 WEST 1234 5698 7654 32", Some("pii:iban")),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----",
                Some("key:pem-private-key"),
            ),
            ("-----BEGIN PUBLIC KEY-----", None),
            ("-----BEGIN CERTIFICATE-----", None),
        ];
        for (text, expect) in table {
            assert_eq!(b.find(text.as_bytes()), *expect, "{text}");
        }
    }
}

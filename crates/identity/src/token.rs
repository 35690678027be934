//! User identity tokens: PASETO `v4.public` (Ed25519 only, by construction of the format), signed
//! by an issuer the host configuration trusts, carrying the subject, its roles, the audience, an
//! expiry and a not-before time. `warden token issue` makes them for operators and tests.
//!
//! A token is refused with its own reason: missing (empty), malformed, signed by no trusted
//! issuer (forged), expired, not yet valid, for another audience, from another issuer, or without
//! a subject. `aud` may be one audience or a list of them (as in JWT, RFC 7519 §4.1.3), which
//! `pasetors` refuses as a malformed claim: the signature is verified by `pasetors`, the claims
//! here.

use std::time::Duration;

use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::errors::{ClaimValidationError, Error as PasetoError};
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::{Public, public};

use crate::keys::SecretKey;
use crate::policy::HostConfig;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Empty or only whitespace: no token was given.
    #[error("no identity token: the token given is empty (--token, WARDEN_TOKEN or its @FILE)")]
    Missing,
    /// Not a `v4.public` PASETO token.
    #[error("the identity token is malformed (expected a PASETO v4.public token)")]
    Malformed,
    /// No trusted issuer's key verifies it.
    #[error(
        "the identity token is not signed by a trusted issuer (forged, or from an issuer this host does not list)"
    )]
    Forged,
    /// Past its `exp`.
    #[error("the identity token has expired")]
    Expired,
    /// Before its `nbf`.
    #[error("the identity token is not valid yet")]
    NotYetValid,
    /// Its `aud` is not this host's.
    #[error("the identity token is for another audience (this host expects `{0}`)")]
    WrongAudience(String),
    /// Its `iss` is not the issuer whose key signed it.
    #[error("the identity token names another issuer than the one that signed it")]
    WrongIssuer,
    /// A required claim is missing or not a string.
    #[error("the identity token lacks a valid `{0}` claim")]
    MissingClaim(&'static str),
    /// A task credential presented in another task, or for another agent.
    #[error("the task credential belongs to another task or agent")]
    WrongTask,
    /// The token could not be made.
    #[error("cannot issue a token: {0}")]
    Issue(String),
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `roles` (a list of role names).
    pub roles: Vec<String>,
    /// The issuer that signed it.
    pub issuer: String,
    /// When it expires (`exp`, checked by [`verify`]): a verified token may be trusted again
    /// without its signature being checked until then, never after.
    pub expires: std::time::SystemTime,
}

/// Issue a token as `issuer` (signing with `key`) for `subject` with `roles`, for `audience`,
/// valid from now for `valid_for`.
///
/// # Errors
///
/// [`TokenError::Issue`] when the claims cannot be encoded.
pub fn issue(
    key: &SecretKey,
    issuer: &str,
    subject: &str,
    roles: &[String],
    audience: &str,
    valid_for: Duration,
) -> Result<String, TokenError> {
    let err = |e: PasetoError| TokenError::Issue(e.to_string());
    let mut claims = Claims::new_expires_in(&valid_for).map_err(err)?;
    claims.issuer(issuer).map_err(err)?;
    claims.subject(subject).map_err(err)?;
    claims.audience(audience).map_err(err)?;
    claims
        .add_additional("roles", roles.to_vec())
        .map_err(err)?;
    let secret = AsymmetricSecretKey::<V4>::from(&key.keypair_bytes()).map_err(err)?;
    public::sign(&secret, &claims, None, None).map_err(err)
}

/// Verify `token` against the issuers `config` trusts.
///
/// # Errors
///
/// The [`TokenError`] that says why it is refused.
pub fn verify(token: &str, config: &HostConfig) -> Result<Identity, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
    for issuer in &config.issuers {
        let key = AsymmetricPublicKey::<V4>::from(&issuer.key.to_bytes())
            .map_err(|_| TokenError::Forged)?;
        let trusted = match PublicToken::verify(&key, &untrusted, None, None) {
            Ok(t) => t,
            // Another issuer's key: try the next one.
            Err(PasetoError::TokenValidation) => continue,
            Err(_) => return Err(TokenError::Malformed),
        };
        return claims(trusted.payload(), issuer);
    }
    Err(TokenError::Forged)
}

/// The identity in the signed `payload`, once its claims hold for `issuer`.
fn claims(payload: &str, issuer: &crate::policy::Issuer) -> Result<Identity, TokenError> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(payload).map_err(|_| TokenError::Malformed)?;
    // `pasetors` takes every registered claim for a string; a list of audiences is checked here
    // and the rest (times, issuer) by `pasetors`.
    let audience = map.remove("aud");
    let registered = Claims::from_string(&serde_json::Value::Object(map).to_string())
        .map_err(|_| TokenError::Malformed)?;
    let mut rules = ClaimsValidationRules::new();
    rules.validate_issuer_with(&issuer.name);
    rules.validate_claims(&registered).map_err(|e| match e {
        PasetoError::ClaimValidation(c) => match c {
            ClaimValidationError::Exp => TokenError::Expired,
            ClaimValidationError::Nbf | ClaimValidationError::Iat => TokenError::NotYetValid,
            ClaimValidationError::Iss | ClaimValidationError::NoIss => TokenError::WrongIssuer,
            ClaimValidationError::NoExp => TokenError::MissingClaim("exp"),
            _ => TokenError::MissingClaim("exp/nbf/iat"),
        },
        _ => TokenError::Malformed,
    })?;
    let ours = |v: &serde_json::Value| v.as_str() == Some(issuer.audience.as_str());
    let wrong = || TokenError::WrongAudience(issuer.audience.clone());
    match audience {
        Some(serde_json::Value::String(s)) if s == issuer.audience => {}
        Some(serde_json::Value::String(_)) | None => return Err(wrong()),
        Some(serde_json::Value::Array(list)) => {
            if !list.iter().all(serde_json::Value::is_string) {
                return Err(TokenError::MissingClaim("aud"));
            }
            if !list.iter().any(ours) {
                return Err(wrong());
            }
        }
        Some(_) => return Err(TokenError::MissingClaim("aud")),
    }
    let subject = registered
        .get_claim("sub")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    let roles = registered
        .get_claim("roles")
        .and_then(|v| v.as_array())
        .ok_or(TokenError::MissingClaim("roles"))?
        .iter()
        .map(|r| {
            r.as_str()
                .map(str::to_string)
                .ok_or(TokenError::MissingClaim("roles"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expires = registered
        .get_claim("exp")
        .and_then(|v| v.as_str())
        .and_then(|exp| chrono::DateTime::parse_from_rfc3339(exp).ok())
        .and_then(|exp| u64::try_from(exp.timestamp()).ok())
        .map(|secs| std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .ok_or(TokenError::MissingClaim("exp"))?;
    Ok(Identity {
        subject: subject.to_string(),
        roles,
        issuer: issuer.name.clone(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Issuer;

    fn config(issuer: &SecretKey) -> HostConfig {
        HostConfig {
            issuers: vec![Issuer {
                name: "sso".into(),
                key: issuer.public(),
                audience: "warden".into(),
            }],
            ..HostConfig::default()
        }
    }

    #[test]
    fn issue_and_verify() {
        let sso = SecretKey::generate().unwrap();
        let t = issue(
            &sso,
            "sso",
            "alice",
            &["docs-writer".into()],
            "warden",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(t.starts_with("v4.public."));
        let id = verify(&t, &config(&sso)).unwrap();
        assert_eq!(
            (id.subject.as_str(), id.roles.as_slice()),
            ("alice", &["docs-writer".to_string()][..])
        );
        // Its expiry, to the second (never later than the token says).
        let left = id
            .expires
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(
            left <= Duration::from_secs(60) && left > Duration::from_secs(57),
            "{left:?}"
        );
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let sso = SecretKey::generate().unwrap();
        let mallory = SecretKey::generate().unwrap();
        let cfg = config(&sso);
        let roles = ["r".to_string()];
        let forged = issue(
            &mallory,
            "sso",
            "alice",
            &roles,
            "warden",
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(verify(&forged, &cfg), Err(TokenError::Forged));
        let other_aud = issue(
            &sso,
            "sso",
            "alice",
            &roles,
            "elsewhere",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(matches!(
            verify(&other_aud, &cfg),
            Err(TokenError::WrongAudience(_))
        ));
        let other_iss = issue(
            &sso,
            "someone",
            "alice",
            &roles,
            "warden",
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(verify(&other_iss, &cfg), Err(TokenError::WrongIssuer));
        assert_eq!(
            verify("v4.public.garbage", &cfg),
            Err(TokenError::Malformed)
        );
        assert_eq!(verify("not a token", &cfg), Err(TokenError::Malformed));
        for empty in ["", "  ", "\n\t"] {
            assert_eq!(verify(empty, &cfg), Err(TokenError::Missing), "{empty:?}");
        }
        // A flipped character in the payload.
        let good = issue(
            &sso,
            "sso",
            "alice",
            &roles,
            "warden",
            Duration::from_secs(60),
        )
        .unwrap();
        let mut chars: Vec<char> = good.chars().collect();
        let i = 20;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(verify(&tampered, &cfg).is_err());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let sso = SecretKey::generate().unwrap();
        let cfg = config(&sso);
        let sign = |exp: &str, nbf: &str| {
            let mut c = Claims::new().unwrap();
            c.issuer("sso").unwrap();
            c.subject("alice").unwrap();
            c.audience("warden").unwrap();
            c.add_additional("roles", vec!["r".to_string()]).unwrap();
            c.expiration(exp).unwrap();
            c.not_before(nbf).unwrap();
            c.issued_at("2020-01-01T00:00:00+00:00").unwrap();
            let sk = AsymmetricSecretKey::<V4>::from(&sso.keypair_bytes()).unwrap();
            public::sign(&sk, &c, None, None).unwrap()
        };
        let expired = sign("2021-01-01T00:00:00+00:00", "2020-01-01T00:00:00+00:00");
        assert_eq!(verify(&expired, &cfg), Err(TokenError::Expired));
        let early = sign("2999-01-01T00:00:00+00:00", "2998-01-01T00:00:00+00:00");
        assert_eq!(verify(&early, &cfg), Err(TokenError::NotYetValid));
    }

    /// A token over an arbitrary claims object, signed by `key` (for claims `Claims` cannot make).
    fn sign_raw(key: &SecretKey, claims: &serde_json::Value) -> String {
        let sk = AsymmetricSecretKey::<V4>::from(&key.keypair_bytes()).unwrap();
        PublicToken::sign(&sk, claims.to_string().as_bytes(), None, None).unwrap()
    }

    fn claims_with(aud: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "iss": "sso", "sub": "alice", "aud": aud, "roles": ["r"],
            "iat": "2020-01-01T00:00:00+00:00", "nbf": "2020-01-01T00:00:00+00:00",
            "exp": "2999-01-01T00:00:00+00:00",
        })
    }

    #[test]
    fn audience_may_be_a_list_that_names_this_host() {
        use serde_json::json;
        let sso = SecretKey::generate().unwrap();
        let cfg = config(&sso);
        let wrong = Err(TokenError::WrongAudience("warden".into()));
        let bad = Err(TokenError::MissingClaim("aud"));
        let cases: Vec<(&str, serde_json::Value, Result<(), TokenError>)> = vec![
            ("a string, ours", json!("warden"), Ok(())),
            ("a string, another's", json!("elsewhere"), wrong.clone()),
            (
                "a list holding ours",
                json!(["elsewhere", "warden"]),
                Ok(()),
            ),
            ("a list of only ours", json!(["warden"]), Ok(())),
            (
                "a list without ours",
                json!(["elsewhere", "other"]),
                wrong.clone(),
            ),
            ("an empty list", json!([]), wrong.clone()),
            (
                "a list with a non-string",
                json!(["warden", 7]),
                bad.clone(),
            ),
            ("a number", json!(7), bad.clone()),
            ("an object", json!({"aud": "warden"}), bad),
        ];
        for (what, aud, expected) in cases {
            let token = sign_raw(&sso, &claims_with(aud));
            let got = verify(&token, &cfg).map(|id| assert_eq!(id.subject, "alice"));
            assert_eq!(got, expected, "{what}");
        }
        // No `aud` at all is another audience, as before.
        let mut none = claims_with(json!("warden"));
        none.as_object_mut().unwrap().remove("aud");
        assert_eq!(verify(&sign_raw(&sso, &none), &cfg).map(|_| ()), wrong);
        // A list does not lift the other checks: an expired token with a list is still expired.
        let mut expired = claims_with(json!(["warden"]));
        expired["exp"] = json!("2021-01-01T00:00:00+00:00");
        assert_eq!(
            verify(&sign_raw(&sso, &expired), &cfg),
            Err(TokenError::Expired)
        );
        // Nor is another key's token with a list accepted.
        let mallory = SecretKey::generate().unwrap();
        assert_eq!(
            verify(&sign_raw(&mallory, &claims_with(json!(["warden"]))), &cfg),
            Err(TokenError::Forged)
        );
    }
}

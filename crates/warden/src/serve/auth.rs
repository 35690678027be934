//! Who a request acts for: its `Authorization: Bearer <identity token>`, verified against the
//! issuers the host trusts exactly as `warden run --token` verifies one, and turned into a
//! [`User`] with the roles file, so an agent run through the API is bounded by the same grant as
//! from the command line. And the development issuer a server with no issuer makes for itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

use super::ApiError;
use crate::identity::{IdentityError, SecretKey};
use crate::policy::{HostConfig, Issuer, PolicyError, Roles};
use crate::user::User;

/// The longest `Authorization` header read (the CLI's bound on a token file).
const MAX_TOKEN: usize = 64 * 1024;

mod verified;

/// The issuers a server trusts and the roles file its users' roles are looked up in.
#[derive(Debug, Clone)]
pub struct Authority {
    issuers: HostConfig,
    roles: Roles,
    /// Tokens that verified, until they expire (`verified.rs`).
    verified: Arc<verified::Verified>,
}

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, with the grant of their roles.
    pub user: Arc<User>,
    /// Whether one of their roles may review (`review = true`): such a user sees every task.
    pub reviewer: bool,
}

impl Authority {
    /// Trust the issuers of `config` (`[[issuers]]`) and look roles up in `roles`.
    pub fn new(config: &HostConfig, roles: Roles) -> Self {
        Authority {
            issuers: HostConfig {
                issuers: config.issuers.clone(),
                ..HostConfig::default()
            },
            roles,
            verified: Arc::default(),
        }
    }

    /// The roles file roles, people and their keys are looked up in (approvals and
    /// reinstatements are checked against it, as the CLI checks them against `host.roles`).
    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    /// Whether any issuer is trusted (a server with none admits nobody).
    pub fn has_issuers(&self) -> bool {
        !self.issuers.issuers.is_empty()
    }

    /// The caller of a request with `headers`.
    ///
    /// # Errors
    ///
    /// 401 for a missing, malformed, forged, expired or otherwise refused token (the message
    /// says which); 403 when the token names a role the roles file does not define.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "no identity token: send `Authorization: Bearer <token>` (`warden token issue`, or the token `warden serve` printed)",
            ));
        };
        if value.len() > MAX_TOKEN {
            return Err(ApiError::unauthorized(
                "the Authorization header is longer than an identity token may be (64 KiB)",
            ));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        self.caller_of_token(token)
    }

    /// The caller an identity token names (a bearer token, or the token `warden mcp` is given).
    ///
    /// # Errors
    ///
    /// As [`Authority::caller`].
    pub fn caller_of_token(&self, token: &str) -> Result<Caller, ApiError> {
        if token.len() > MAX_TOKEN {
            return Err(ApiError::unauthorized(
                "the identity token is longer than an identity token may be (64 KiB)",
            ));
        }
        let now = std::time::SystemTime::now();
        let key = verified::Verified::key(token);
        if let Some(caller) = self.verified.get(&key, now) {
            return Ok(caller);
        }
        let identity = crate::token::verify(token, &self.issuers)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let expires = identity.expires;
        let reviewer = identity
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|r| r.review);
        let user = User::new(&identity.subject, identity.roles, &self.roles).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "unknown-role",
                crate::terminal::line(&e).into_owned(),
            )
        })?;
        let caller = Caller {
            user: Arc::new(user),
            reviewer,
        };
        self.verified.put(key, &caller, expires, now);
        Ok(caller)
    }
}

impl Authority {
    /// The user `subject` holding `roles`, looked up in the roles file as it is now (a task
    /// queued before a restart runs with no more than the roles give today).
    ///
    /// # Errors
    ///
    /// A sentence naming the roles the roles file no longer defines.
    pub(crate) fn user(&self, subject: &str, roles: Vec<String>) -> Result<User, String> {
        User::new(subject, roles, &self.roles)
    }
}

/// The issuer a server with no `[[issuers]]` makes for itself: a key kept in its data directory
/// (`serve/dev-issuer.key`, mode 0600, made once), trusted under the name [`DevIssuer::NAME`].
/// It signs the development user's token that `warden serve` prints; a request without a valid
/// token is still refused.
#[derive(Debug)]
pub struct DevIssuer {
    key: SecretKey,
    path: PathBuf,
}

impl DevIssuer {
    /// The issuer's name (`iss`).
    pub const NAME: &'static str = "warden-dev";
    /// The audience its tokens name.
    pub const AUDIENCE: &'static str = "warden";
    /// The development user.
    pub const SUBJECT: &'static str = "dev";
    /// The development user's role, defined by [`DevIssuer::roles`].
    pub const ROLE: &'static str = "dev";

    /// The development issuer of `data_dir`: its key read, or made and written there.
    ///
    /// # Errors
    ///
    /// [`IdentityError`] when the key cannot be read or written.
    pub fn open(data_dir: &Path) -> Result<Self, IdentityError> {
        let stem = data_dir.join("serve").join("dev-issuer");
        let path = stem.with_extension("key");
        if !path.exists() {
            std::fs::create_dir_all(data_dir.join("serve")).map_err(|e| {
                IdentityError::KeyFile {
                    path: path.clone(),
                    why: format!("cannot create its folder: {e}"),
                }
            })?;
            SecretKey::generate()?.write(&stem)?;
        }
        Ok(DevIssuer {
            key: SecretKey::read(&path)?,
            path,
        })
    }

    /// Where its secret key is (for `warden token issue --key`).
    pub fn key_path(&self) -> &Path {
        &self.path
    }

    /// The issuer entry that trusts it.
    pub fn issuer(&self) -> Issuer {
        Issuer {
            name: Self::NAME.into(),
            key: self.key.public(),
            audience: Self::AUDIENCE.into(),
        }
    }

    /// A token for the development user, valid for `valid_for`.
    ///
    /// # Errors
    ///
    /// [`crate::token::TokenError`] when it cannot be made.
    pub fn token(&self, valid_for: Duration) -> Result<String, crate::token::TokenError> {
        crate::token::issue(
            &self.key,
            Self::NAME,
            Self::SUBJECT,
            &[Self::ROLE.to_string()],
            Self::AUDIENCE,
            valid_for,
        )
    }

    /// The roles of a server with no roles file: `dev` reads and writes the workspace, and
    /// nothing else (no network, tools, models or review); an agent still gets only what its
    /// policy grants too.
    ///
    /// # Errors
    ///
    /// Never in practice: the text is fixed; a [`PolicyError`] would be a bug here.
    pub fn roles() -> Result<Roles, PolicyError> {
        Roles::parse(
            "the development roles (built in)",
            "[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    /// The development issuer of `data_dir`, and an authority that trusts only it.
    fn dev_authority(data_dir: &Path) -> (DevIssuer, Authority) {
        let dev = DevIssuer::open(data_dir).unwrap();
        let config = HostConfig {
            issuers: vec![dev.issuer()],
            ..HostConfig::default()
        };
        let authority = Authority::new(&config, DevIssuer::roles().unwrap());
        (dev, authority)
    }

    #[test]
    fn only_a_token_of_a_trusted_issuer_admits() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, authority) = dev_authority(dir.path());
        let token = dev.token(Duration::from_secs(60)).unwrap();
        let caller = authority.caller(&bearer(&token)).unwrap();
        assert_eq!(caller.user.subject, "dev");
        assert!(!caller.reviewer);
        // The same key is read back on the next start: its tokens stay valid.
        let again = DevIssuer::open(dir.path()).unwrap();
        assert_eq!(again.issuer().key, dev.issuer().key);

        let other = tempfile::tempdir().unwrap();
        let forged = DevIssuer::open(other.path()).unwrap();
        for (headers, why) in [
            (HeaderMap::new(), "no identity token"),
            (bearer("v4.public.xyz"), "malformed"),
            (
                bearer(&forged.token(Duration::from_secs(60)).unwrap()),
                "not signed by a trusted issuer",
            ),
        ] {
            let e = authority.caller(&headers).expect_err(why);
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
            assert!(e.message.contains(why), "{why}: {}", e.message);
        }
        let mut basic = HeaderMap::new();
        basic.insert(
            axum::http::header::AUTHORIZATION,
            "Basic eA==".parse().unwrap(),
        );
        assert!(authority.caller(&basic).is_err());
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_a_refused_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, authority) = dev_authority(dir.path());
        let long = dev.token(Duration::from_secs(600)).unwrap();
        let first = authority.caller(&bearer(&long)).unwrap();
        let again = authority.caller(&bearer(&long)).unwrap();
        assert!(
            Arc::ptr_eq(&first.user, &again.user),
            "not answered from memory"
        );
        assert_eq!(authority.verified.len(), 1);

        // Forged and malformed tokens are checked every time, and never remembered.
        let other = tempfile::tempdir().unwrap();
        let forged = DevIssuer::open(other.path())
            .unwrap()
            .token(Duration::from_secs(600))
            .unwrap();
        for _ in 0..2 {
            assert!(authority.caller(&bearer(&forged)).is_err());
            assert!(authority.caller(&bearer("v4.public.xyz")).is_err());
        }
        assert_eq!(authority.verified.len(), 1);

        // A remembered token stops admitting once it expires: it is verified again, and refused.
        let short = dev.token(Duration::from_secs(1)).unwrap();
        authority.caller(&bearer(&short)).unwrap();
        assert_eq!(authority.verified.len(), 2);
        std::thread::sleep(Duration::from_millis(2100));
        let e = authority.caller(&bearer(&short)).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("expired"), "{}", e.message);
        assert_eq!(authority.verified.len(), 1);
    }

    #[test]
    fn the_remembered_tokens_are_bounded() {
        let memory = verified::Verified::default();
        let caller = Caller {
            user: Arc::new(
                User::new("dev", vec!["dev".into()], &DevIssuer::roles().unwrap()).unwrap(),
            ),
            reviewer: false,
        };
        let now = std::time::SystemTime::now();
        let later = now + Duration::from_secs(60);
        for i in 0..verified::CAPACITY + 10 {
            memory.put(verified::Verified::key(&i.to_string()), &caller, later, now);
            assert!(memory.len() <= verified::CAPACITY);
        }
        assert!(memory.get(&verified::Verified::key("4105"), now).is_some());
        // Expired ones are dropped first when it is full.
        let memory = verified::Verified::default();
        for i in 0..verified::CAPACITY {
            let expires = if i % 2 == 0 { now } else { later };
            memory.put(
                verified::Verified::key(&i.to_string()),
                &caller,
                expires,
                now,
            );
        }
        memory.put(verified::Verified::key("new"), &caller, later, now);
        assert_eq!(memory.len(), verified::CAPACITY / 2 + 1);
        assert!(memory.get(&verified::Verified::key("1"), now).is_some());
        assert!(memory.get(&verified::Verified::key("0"), now).is_none());
    }
}

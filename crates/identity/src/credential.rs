//! Short-lived task credentials. For every task the host mints a credential bound to that task,
//! that agent and that user, expiring with the task's wall-clock deadline, signed by a key the
//! host generates at start and never writes down. Capabilities that act on the task's behalf
//! (host tools now; agent-to-agent messages later) receive it and check it; the guest never holds
//! it, so it cannot widen or replay it, and a credential from one task is refused in another.
//!
//! The format is the same as user tokens (PASETO `v4.public`), with the audience
//! `warden-task` and the claims `task`, `agent` and `sub`.

use std::time::Duration;

use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{Public, public};

use crate::keys::SecretKey;
use crate::token::TokenError;

const ISSUER: &str = "warden-host";
const AUDIENCE: &str = "warden-task";

/// What a task credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskClaims {
    /// The task's number.
    pub task: u64,
    /// The agent running it.
    pub agent: String,
    /// The user it acts for (`-` for none).
    pub user: String,
}

/// What a capability acting for one task knows of it: its number, agent and user, and its
/// credential. Handed to host tools with every call.
///
/// The credential is minted when something first asks for it (an ed25519 signature costs more
/// than a whole trivial run), and expires with the task whenever it is minted.
#[derive(Debug, Clone)]
pub struct TaskContext {
    claims: TaskClaims,
    expires: std::time::Instant,
    credential: std::sync::OnceLock<String>,
    minter: std::sync::Arc<CredentialMinter>,
}

impl TaskContext {
    /// The context of one task whose credential expires `lifetime` from now.
    ///
    /// # Errors
    ///
    /// None today; kept fallible so that a minter that needs I/O can refuse a task up front.
    pub fn new(
        minter: std::sync::Arc<CredentialMinter>,
        claims: TaskClaims,
        lifetime: Duration,
    ) -> Result<Self, TokenError> {
        Ok(TaskContext {
            claims,
            expires: std::time::Instant::now() + lifetime,
            credential: std::sync::OnceLock::new(),
            minter,
        })
    }

    /// The task, agent and user.
    pub fn claims(&self) -> &TaskClaims {
        &self.claims
    }

    /// This task's credential, to pass to whatever acts on its behalf (minted on first use,
    /// expiring with the task).
    ///
    /// # Errors
    ///
    /// [`TokenError::Issue`] when the credential cannot be made, or the task's time is up.
    pub fn credential(&self) -> Result<&str, TokenError> {
        if let Some(c) = self.credential.get() {
            return Ok(c);
        }
        let left = self
            .expires
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| TokenError::Issue("the task's time is up".into()))?;
        let minted = self.minter.mint(&self.claims, left)?;
        Ok(self.credential.get_or_init(|| minted))
    }

    /// Check a credential presented to this task: it must be this host's, unexpired, and this
    /// very task's.
    ///
    /// # Errors
    ///
    /// As [`CredentialMinter::verify`].
    pub fn verify(&self, presented: &str) -> Result<TaskClaims, TokenError> {
        self.minter
            .verify(presented, self.claims.task, &self.claims.agent)
    }
}

/// The host's credential minter: an in-memory key, made when the host starts.
pub struct CredentialMinter {
    key: SecretKey,
}

impl std::fmt::Debug for CredentialMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialMinter").finish_non_exhaustive()
    }
}

impl CredentialMinter {
    /// A minter with a fresh key.
    ///
    /// # Errors
    ///
    /// When the OS has no randomness.
    pub fn new() -> Result<Self, crate::keys::IdentityError> {
        Ok(CredentialMinter {
            key: SecretKey::generate()?,
        })
    }

    /// Mint the credential of one task, valid for `lifetime` (the task's wall-clock limit).
    ///
    /// # Errors
    ///
    /// [`TokenError::Issue`] when the claims cannot be encoded.
    pub fn mint(&self, claims: &TaskClaims, lifetime: Duration) -> Result<String, TokenError> {
        let err = |e: pasetors::errors::Error| TokenError::Issue(e.to_string());
        let mut c = Claims::new_expires_in(&lifetime).map_err(err)?;
        c.issuer(ISSUER).map_err(err)?;
        c.audience(AUDIENCE).map_err(err)?;
        c.subject(&claims.user).map_err(err)?;
        c.add_additional("task", claims.task.to_string())
            .map_err(err)?;
        c.add_additional("agent", claims.agent.clone())
            .map_err(err)?;
        let secret = AsymmetricSecretKey::<V4>::from(&self.key.keypair_bytes()).map_err(err)?;
        public::sign(&secret, &c, None, None).map_err(err)
    }

    /// Check that `credential` is this host's, unexpired, and bound to `task` and `agent`.
    ///
    /// # Errors
    ///
    /// [`TokenError::Forged`] (not this host's), [`TokenError::Expired`],
    /// [`TokenError::WrongTask`] (another task's or agent's), or [`TokenError::Malformed`].
    pub fn verify(
        &self,
        credential: &str,
        task: u64,
        agent: &str,
    ) -> Result<TaskClaims, TokenError> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(credential)
            .map_err(|_| TokenError::Malformed)?;
        let key = AsymmetricPublicKey::<V4>::from(&self.key.public().to_bytes())
            .map_err(|_| TokenError::Forged)?;
        let mut rules = ClaimsValidationRules::new();
        rules.validate_issuer_with(ISSUER);
        rules.validate_audience_with(AUDIENCE);
        let trusted =
            public::verify(&key, &untrusted, &rules, None, None).map_err(|e| match e {
                pasetors::errors::Error::TokenValidation => TokenError::Forged,
                pasetors::errors::Error::ClaimValidation(
                    pasetors::errors::ClaimValidationError::Exp,
                ) => TokenError::Expired,
                _ => TokenError::Malformed,
            })?;
        let c = trusted.payload_claims().ok_or(TokenError::Malformed)?;
        let text = |k: &str| c.get_claim(k).and_then(|v| v.as_str()).map(str::to_string);
        let claims = TaskClaims {
            task: text("task")
                .and_then(|t| t.parse().ok())
                .ok_or(TokenError::MissingClaim("task"))?,
            agent: text("agent").ok_or(TokenError::MissingClaim("agent"))?,
            user: text("sub").ok_or(TokenError::MissingClaim("sub"))?,
        };
        if claims.task != task || claims.agent != agent {
            return Err(TokenError::WrongTask);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(task: u64) -> TaskClaims {
        TaskClaims {
            task,
            agent: "probe".into(),
            user: "alice".into(),
        }
    }

    #[test]
    fn bound_to_its_task_agent_and_host() {
        let host = CredentialMinter::new().unwrap();
        let cred = host.mint(&claims(7), Duration::from_secs(5)).unwrap();
        assert_eq!(host.verify(&cred, 7, "probe").unwrap(), claims(7));
        assert_eq!(host.verify(&cred, 8, "probe"), Err(TokenError::WrongTask));
        assert_eq!(host.verify(&cred, 7, "other"), Err(TokenError::WrongTask));
        let other_host = CredentialMinter::new().unwrap();
        assert_eq!(
            other_host.verify(&cred, 7, "probe"),
            Err(TokenError::Forged)
        );
        assert_eq!(
            host.verify("v4.public.xyz", 7, "probe"),
            Err(TokenError::Malformed)
        );
    }
}

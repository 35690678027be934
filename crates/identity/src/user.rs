//! The user an agent acts for. Every run on behalf of a user carries a [`User`]; the agent's
//! grant is then the intersection of its policy and the user's roles, for files, hosts, tools and
//! limits, so an agent can never do for a user what that user may not do (the confused deputy).

use std::sync::Arc;

use crate::policy::{Roles, UserGrant};

/// A user, as established by an identity token (or the host's explicit development identity).
#[derive(Debug, Clone)]
pub struct User {
    /// Who (the token's subject).
    pub subject: String,
    /// The roles the token names.
    pub roles: Vec<String>,
    /// What those roles allow, together.
    pub grant: Arc<UserGrant>,
}

impl User {
    /// The user `subject` holding `roles`, looked up in `roles_file`.
    ///
    /// # Errors
    ///
    /// A sentence naming the roles that the roles file does not define (a token may not invent
    /// a role).
    pub fn new(subject: &str, roles: Vec<String>, roles_file: &Roles) -> Result<User, String> {
        let (grant, unknown) = roles_file.grant_for(&roles);
        if !unknown.is_empty() {
            return Err(format!(
                "user `{subject}` holds role(s) {} that {} does not define",
                unknown.join(", "),
                roles_file.source
            ));
        }
        Ok(User {
            subject: subject.to_string(),
            roles,
            grant: Arc::new(grant),
        })
    }
}

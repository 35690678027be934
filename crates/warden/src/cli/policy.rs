//! `warden policy check | explain | sign` and `warden sign`: what a policy file says, what it
//! allows for a user, and signatures over policies and agents. A policy is a file someone wrote:
//! its names, paths, hosts and tools, and the source lines a diagnostic quotes, are escaped
//! before they are printed.

use std::path::{Path, PathBuf};

use warden::bounded::{self, Limit};
use warden::identity::SecretKey;
use warden::policy::keys::Domain;
use warden::policy::{Policy, PolicyError, Roles};
use warden::terminal;
use warden::user::User;
use warden::{PolicyLoadError, Runtime};

use super::{EXIT_BAD_INPUT, Failure, bad_input, host_failure, policy_message, shown};

/// A policy diagnostic for stderr: coloured on a terminal when the file holds nothing that
/// needs escaping; otherwise plain and escaped, since the colours would be escaped with the
/// rest.
fn diagnostic(e: &PolicyError) -> String {
    let plain = e.render(false);
    match terminal::block(&plain) {
        std::borrow::Cow::Borrowed(_) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            e.render(true)
        }
        escaped => escaped.into_owned(),
    }
}

/// `warden policy check`: each file a valid policy (or roles file), or a located error.
pub fn check(runtime: &Runtime, files: &[PathBuf]) -> Result<u8, Failure> {
    let mut failed = 0;
    for file in files {
        // A roles file is checked as one (its sections are a policy's, under [role.NAME]).
        if file.file_name().is_some_and(|n| n == "roles.toml") {
            match Roles::load(file) {
                Ok(_) => outln!("ok: {} (roles)", shown(file))?,
                Err(e) => {
                    failed += 1;
                    errln!("{}", diagnostic(&e));
                }
            }
            continue;
        }
        match runtime.load_policy(file) {
            Ok(p) => outln!(
                "ok: {} (agent `{}`)",
                shown(file),
                terminal::line(&p.agent.name)
            )?,
            Err(e @ (PolicyLoadError::Signature(_) | PolicyLoadError::Read(_))) => {
                failed += 1;
                errln!("error: {}", terminal::line(&e.to_string()));
            }
            Err(PolicyLoadError::Invalid(e)) => {
                failed += 1;
                errln!("{}", diagnostic(&e));
            }
        }
    }
    if failed > 0 {
        errln!("{failed} of {} policies failed", files.len());
        Ok(EXIT_BAD_INPUT)
    } else {
        Ok(0)
    }
}

/// `warden policy explain`: what the agent could do for `user`.
pub fn explain(policy: &Policy, user: &User) -> Result<(), Failure> {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "nothing".to_string()
        } else {
            terminal::line(&v.join(", ")).into_owned()
        }
    };
    let role = |i: usize| terminal::line(user.roles.get(i).map_or("?", String::as_str));
    outln!(
        "agent `{}` acting for {} with roles [{}]",
        terminal::line(&policy.agent.name),
        terminal::line(&user.subject),
        terminal::line(&user.roles.join(", "))
    )?;
    outln!(
        "an action is allowed only if the agent's policy AND one of the user's roles allow it\n"
    )?;
    let paths = |v: &[warden::policy::PathPattern]| {
        list(v.iter().map(|p| p.as_str().to_string()).collect())
    };
    outln!("files")?;
    outln!("  agent read:  {}", paths(&policy.fs.read))?;
    outln!("  agent write: {}", paths(&policy.fs.write))?;
    for (i, r) in user.grant.roles().iter().enumerate() {
        outln!("  role {} read:  {}", role(i), paths(&r.fs.read))?;
        outln!("  role {} write: {}", role(i), paths(&r.fs.write))?;
    }
    outln!("network")?;
    outln!(
        "  agent: {}",
        list(policy.net.allow.iter().map(ToString::to_string).collect())
    )?;
    for (i, r) in user.grant.roles().iter().enumerate() {
        outln!(
            "  role {}: {}",
            role(i),
            list(r.net.allow.iter().map(ToString::to_string).collect())
        )?;
    }
    outln!("tools (effective)")?;
    let tools: Vec<String> = policy
        .tools
        .allow
        .iter()
        .filter(|t| user.grant.allows_tool(t))
        .cloned()
        .collect();
    outln!("  {}", list(tools))?;
    let l = user.grant.limit(&policy.limits);
    outln!("limits (effective)")?;
    outln!(
        "  memory {} bytes, tables {}, cpu {:?}, wall {:?}, output {} bytes",
        l.memory,
        l.tables,
        l.cpu,
        l.wall,
        l.output
    )
}

/// `warden sign` / `warden policy sign`: a detached signature beside `file`. The file is read
/// with the bound of what it is: a component's (`max_component_size`) or a policy's.
pub fn sign(
    file: &Path,
    key: &Path,
    domain: Domain,
    max_component_size: usize,
) -> Result<u8, Failure> {
    let key = SecretKey::read(key).map_err(bad_input)?;
    let limit = match domain {
        Domain::Policy => Limit::POLICY,
        _ => Limit::component(max_component_size),
    };
    let bytes = bounded::read(file, limit).map_err(bad_input)?;
    if domain == Domain::Policy {
        // Sign only what would load: a reviewer's signature on a broken policy helps nobody.
        let text = String::from_utf8_lossy(&bytes);
        Policy::parse(&file.display().to_string(), &text)
            .map_err(|e| bad_input(anyhow::anyhow!("{}", policy_message(&e))))?;
    }
    let sig = key
        .sign(domain, &bytes)
        .write_beside(file)
        .map_err(host_failure)?;
    outln!(
        "signed {} as {} with {}: {}",
        shown(file),
        domain.as_str(),
        key.public(),
        shown(&sig)
    )?;
    Ok(0)
}

//! `warden serve`: the HTTP API of `warden::serve` on a socket (loopback unless told
//! otherwise), for the users of the host's token issuers, or, on a host with none, for a
//! development user whose token it prints (the way Jupyter prints its URL). At start it resumes
//! the tasks left queued in the data directory (the ledger's recovery has already marked those
//! left running `interrupted`). It stops on SIGTERM or ctrl-c: no new connection is accepted,
//! requests in flight finish, no queued task starts any more (they stay queued for the next
//! start), and running tasks get a grace period; a task still running after it is marked
//! interrupted by the ledger's recovery at the next start, as for any host that stops first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use warden::Runtime;
use warden::policy::HostConfig;
use warden::serve::{AgentSource, Authority, DevIssuer, ServerState};

use super::{Failure, bad_input, host_failure};

/// How long the printed development token is valid.
const DEV_TOKEN_VALID: Duration = Duration::from_secs(24 * 3600);

/// The arguments of `warden serve`.
pub struct ServeArgs {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// How long running tasks may take to finish once a shutdown begins.
    pub grace: Duration,
}

/// `warden serve`: serve until SIGTERM or ctrl-c.
pub async fn serve(
    runtime: Runtime,
    config: &HostConfig,
    data_dir: &Path,
    args: ServeArgs,
) -> Result<u8, Failure> {
    let roles = match &config.roles {
        Some(path) => Some(super::load_roles(Some(path))?),
        None => None,
    };
    let (authority, dev) = if config.issuers.is_empty() {
        let dev = DevIssuer::open(data_dir).map_err(bad_input)?;
        let roles = match roles {
            Some(r) if r.get(DevIssuer::ROLE).is_none() => {
                return Err(bad_input(anyhow::anyhow!(
                    "this host lists no [[issuers]] and its roles file defines no role `{}` for the development token; add an issuer, or that role",
                    DevIssuer::ROLE
                )));
            }
            Some(r) => r,
            None => DevIssuer::roles().map_err(host_failure)?,
        };
        let trusted = HostConfig {
            issuers: vec![dev.issuer()],
            ..HostConfig::default()
        };
        (Authority::new(&trusted, roles), Some(dev))
    } else {
        let roles = roles.ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "this host lists token issuers but no roles file: set host.roles in the host configuration"
            ))
        })?;
        (Authority::new(config, roles), None)
    };
    let agents = match &config.agents_dir {
        Some(_) => AgentSource::Directory,
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from("target"), PathBuf::from);
            AgentSource::built(
                target.join("wasm32-wasip2/release"),
                PathBuf::from("policies"),
            )
        }
    };
    let state = ServerState::new(runtime, authority, agents).map_err(host_failure)?;
    state.warm();
    let (resumed, refused) = state.resume_queued().map_err(host_failure)?;
    if resumed + refused > 0 {
        errln!(
            "resumed {resumed} queued task(s); {refused} refused (their user's roles are no longer defined, or their work unreadable: see `warden audit`)"
        );
    }
    let running = state.running();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| bad_input(anyhow::anyhow!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener.local_addr().map_err(host_failure)?;
    if let Some(dev) = &dev {
        let token = dev
            .token(DEV_TOKEN_VALID)
            .map_err(|e| host_failure(anyhow::anyhow!(e)))?;
        // A token is base64url: nothing in it to escape.
        errln!(
            "development token (user `{}`, role `{}`, valid 24 h; more with `warden token issue --key {} --issuer {}`):\n    {token}\n    curl -H 'Authorization: Bearer {token}' http://{local}/v1/tasks/1",
            DevIssuer::SUBJECT,
            DevIssuer::ROLE,
            super::shown(dev.key_path()),
            DevIssuer::NAME,
        );
    }
    outln!("listening http://{local}")?;
    warden::serve::serve(listener, state.clone(), shutdown_signal())
        .await
        .map_err(host_failure)?;
    state.stop_starting();
    let left = running.drain(args.grace).await;
    warden::telemetry::flush().await;
    if left > 0 {
        errln!(
            "stopping with {left} task(s) still running after {} s: they are marked interrupted at the next start",
            args.grace.as_secs()
        );
    }
    Ok(0)
}

/// Resolves at SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

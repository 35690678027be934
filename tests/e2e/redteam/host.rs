//! Host attacks: what a hostile agent, token, file or user-named stream can do to the host
//! *around* the sandbox. Each class lives in its own module and answers for the names it knows;
//! an attack's outcome is a string matched like a sandbox attack's (`contained:<what>`,
//! `refused:<kind>`, `killed:<reason>:<capability>`), or `breach:<what>` when the attack worked.

mod audit;
mod calls;
mod gate;
mod memory;
mod reads;
mod residue;
mod server;
mod terminal;
mod tls;

/// Run the host attack `name` with its task text; the outcome of each copy.
pub async fn run(name: &str, task: &str, port: u16) -> Vec<String> {
    if let Some(out) = terminal::run(name, task, port).await {
        return out;
    }
    if let Some(out) = reads::run(name, task, port).await {
        return out;
    }
    if let Some(out) = audit::run(name, task, port).await {
        return out;
    }
    if let Some(out) = tls::run(name, task, port).await {
        return out;
    }
    if let Some(out) = calls::run(name, task, port).await {
        return out;
    }
    if let Some(out) = gate::run(name, task, port).await {
        return out;
    }
    if let Some(out) = server::run(name, task, port).await {
        return out;
    }
    if let Some(out) = memory::run_attack(name).await {
        return out;
    }
    if let Some(out) = residue::run_attack(name).await {
        return out;
    }
    panic!("no host attack named `{name}` (tests/e2e/redteam/host.rs)")
}

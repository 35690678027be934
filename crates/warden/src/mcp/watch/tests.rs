//! The server's agents watcher: inotify announces soon, the poll backs it up, nothing changed is
//! nothing announced, and the watcher runs only while someone listens.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{AgentsWatch, Names};

/// The names of the agents in `dir` (a `.toml` beside a `.wasm`), as the server lists them.
fn list(dir: &Path) -> Arc<super::ListNames> {
    let dir = dir.to_path_buf();
    Arc::new(move || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".toml")?.to_owned();
                dir.join(format!("{name}.wasm")).is_file().then_some(name)
            })
            .collect();
        names.sort();
        Ok(names)
    })
}

fn add(dir: &Path, name: &str) {
    std::fs::write(dir.join(format!("{name}.wasm")), b"\0asm").unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), b"[agent]\n").unwrap();
}

/// The next published names, or `None` when nothing came within `within`.
async fn next(changes: &mut watch::Receiver<Names>, within: Duration) -> Option<Vec<String>> {
    tokio::time::timeout(within, changes.changed())
        .await
        .ok()?
        .ok()?;
    changes.borrow_and_update().clone()
}

const SOON: Duration = Duration::from_millis(200);

#[tokio::test]
async fn an_added_and_a_removed_agent_are_published_soon_by_inotify() {
    let dir = tempfile::tempdir().unwrap();
    add(dir.path(), "hello");
    // A poll far too slow to be what noticed: only inotify can meet `SOON`.
    let watcher = Arc::new(AgentsWatch::polling_every(
        vec![dir.path().to_path_buf()],
        list(dir.path()),
        Duration::from_secs(3600),
    ));
    let mut changes = watcher.subscribe().await;
    assert_eq!(*changes.borrow_and_update(), Some(vec!["hello".to_owned()]));

    add(dir.path(), "probe");
    let started = tokio::time::Instant::now();
    assert_eq!(
        next(&mut changes, SOON).await,
        Some(vec!["hello".to_owned(), "probe".to_owned()])
    );
    let added_in = started.elapsed();

    // Removed by renaming the policy away, as `scripts/conformance`'s tool does.
    std::fs::rename(
        dir.path().join("probe.toml"),
        dir.path().join(".probe.toml.off"),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        next(&mut changes, SOON).await,
        Some(vec!["hello".to_owned()])
    );
    let removed_in = started.elapsed();

    // Moved out of the folder (only the folder it left hears of it).
    let elsewhere = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
    std::fs::rename(
        dir.path().join("hello.toml"),
        elsewhere.path().join("hello.toml"),
    )
    .unwrap();
    assert_eq!(next(&mut changes, SOON).await, Some(vec![]));
    eprintln!("added in {added_in:?}, removed in {removed_in:?}");
}

#[tokio::test]
async fn a_folder_inotify_does_not_watch_is_polled() {
    let dir = tempfile::tempdir().unwrap();
    // No folder given to inotify: only the poll can notice.
    let watcher = Arc::new(AgentsWatch::polling_every(
        Vec::new(),
        list(dir.path()),
        Duration::from_millis(50),
    ));
    let mut changes = watcher.subscribe().await;
    assert_eq!(*changes.borrow_and_update(), Some(vec![]));
    add(dir.path(), "probe");
    assert_eq!(
        next(&mut changes, Duration::from_secs(2)).await,
        Some(vec!["probe".to_owned()])
    );
}

#[tokio::test]
async fn a_folder_made_after_the_watch_began_is_watched_from_the_next_poll() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("agents");
    let watcher = Arc::new(AgentsWatch::polling_every(
        vec![dir.clone()],
        list(&dir),
        Duration::from_millis(400),
    ));
    let mut changes = watcher.subscribe().await;
    assert_eq!(
        *changes.borrow_and_update(),
        None,
        "unreadable: no names yet"
    );
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(
        next(&mut changes, Duration::from_secs(2)).await,
        Some(vec![])
    );
    // Watched by now (the poll that read it watched it again first): announced before the
    // next poll.
    add(&dir, "probe");
    assert_eq!(
        next(&mut changes, SOON).await,
        Some(vec!["probe".to_owned()])
    );
}

#[tokio::test]
async fn nothing_is_published_when_the_names_did_not_change() {
    let dir = tempfile::tempdir().unwrap();
    add(dir.path(), "hello");
    let watcher = Arc::new(AgentsWatch::polling_every(
        vec![dir.path().to_path_buf()],
        list(dir.path()),
        Duration::from_millis(30),
    ));
    let mut changes = watcher.subscribe().await;
    changes.borrow_and_update();
    // Events, but no agent added or removed: a file that is no agent, a policy without its
    // component, a component rewritten in place, a component replaced by a rename.
    std::fs::write(dir.path().join("README"), b"notes").unwrap();
    std::fs::write(dir.path().join("lonely.toml"), b"[agent]\n").unwrap();
    std::fs::write(dir.path().join("hello.wasm"), b"\0asm\x01").unwrap();
    std::fs::write(dir.path().join("new.wasm.part"), b"\0asm\x02").unwrap();
    std::fs::rename(
        dir.path().join("new.wasm.part"),
        dir.path().join("hello.wasm"),
    )
    .unwrap();
    assert_eq!(next(&mut changes, Duration::from_millis(300)).await, None);
    // The control: an agent added is published, on the same receiver.
    std::fs::write(dir.path().join("lonely.wasm"), b"\0asm").unwrap();
    assert_eq!(
        next(&mut changes, SOON).await,
        Some(vec!["hello".to_owned(), "lonely".to_owned()])
    );
}

#[tokio::test]
async fn the_watcher_runs_only_while_someone_listens() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = Arc::new(AgentsWatch::polling_every(
        vec![dir.path().to_path_buf()],
        list(dir.path()),
        Duration::from_secs(3600),
    ));
    let first = watcher.subscribe().await;
    let second = watcher.subscribe().await;
    assert!(watcher.running.lock().await.is_some());
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(watcher.running.lock().await.is_some(), "one still listens");
    drop(second);
    let stopped = async {
        // Stopped: its channel taken away, and its task gone (it held the watcher).
        while watcher.running.lock().await.is_some() || Arc::strong_count(&watcher) > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), stopped)
        .await
        .expect("the watcher stops when the last listener is gone");
    // And starts again for the next one, with the names as they are now.
    add(dir.path(), "probe");
    let mut again = watcher.subscribe().await;
    assert_eq!(*again.borrow_and_update(), Some(vec!["probe".to_owned()]));
    std::fs::remove_file(dir.path().join("probe.wasm")).unwrap();
    assert_eq!(next(&mut again, SOON).await, Some(vec![]));
}

#[tokio::test]
async fn a_subscriber_announces_only_changes_and_stops_when_its_client_is_gone() {
    let (names, changes) = watch::channel::<Names>(Some(vec!["hello".to_owned()]));
    let announced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let task = tokio::spawn(super::announce_changes(
        changes,
        {
            let alive = alive.clone();
            move || alive.load(std::sync::atomic::Ordering::SeqCst)
        },
        {
            let announced = announced.clone();
            move || {
                announced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { true }
            }
        },
    ));
    let count = || announced.load(std::sync::atomic::Ordering::SeqCst);
    let settle = || tokio::time::sleep(Duration::from_millis(20));
    // The same names published again (or an unreadable folder) are no change.
    names.send_replace(Some(vec!["hello".to_owned()]));
    names.send_replace(None);
    settle().await;
    assert_eq!(count(), 0);
    names.send_replace(Some(vec!["hello".to_owned(), "probe".to_owned()]));
    settle().await;
    assert_eq!(count(), 1);
    alive.store(false, std::sync::atomic::Ordering::SeqCst);
    names.send_replace(Some(vec![]));
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("a subscriber whose client is gone stops")
        .unwrap();
    assert_eq!(count(), 1, "nothing announced to a client that is gone");
}

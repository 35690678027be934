//! The CPU account's tests: what each kind of poll is charged, and which read the clock.

use super::*;
use std::sync::Arc;
use std::time::Instant;

// `cpu_clock_ns` reads this thread's CPU clock without counting it in `READS`, which counts
// the account's own readings.

/// Burn about `d` of this thread's CPU.
fn burn(d: Duration) {
    let until = cpu_clock_ns() + d.as_nanos() as u64;
    let mut x = 0u64;
    while cpu_clock_ns() < until {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_short_poll_reads_no_clock_and_is_charged_at_most_its_wall_time() {
    // A poll may be preempted on a busy machine (then it is long and reads the clock): some
    // of the tries must be short, and every short one must read nothing.
    let mut short = 0;
    for _ in 0..200 {
        let account = CpuAccount::default();
        // Timed from before the reading: a stall after it makes the poll read at its start.
        let took = Instant::now();
        read_at(mono_ns());
        let reads = READS.get();
        // What the poll spent, measured inside it: no more than it is charged.
        let inside = Cell::new(0);
        account
            .run(async {
                let from = cpu_clock_ns();
                std::hint::black_box((0..100u64).sum::<u64>());
                inside.set(cpu_clock_ns() - from);
            })
            .await;
        let took = took.elapsed();
        if took < Duration::from_micros(40) {
            short += 1;
            assert_eq!(READS.get(), reads, "a short poll read the thread's clock");
            let used = account.used();
            assert!(used <= took, "{used:?} > {took:?}");
            assert!(used >= Duration::from_nanos(inside.get()), "{used:?}");
        }
    }
    assert!(short > 10, "only {short} of 200 polls were short");
}

#[tokio::test(flavor = "current_thread")]
async fn a_callee_off_the_cpu_in_short_polls_takes_nothing_off_its_caller() {
    // Callees that sleep in short polls inside one long poll of their caller: their wall
    // time, charged to them, is none of the thread's CPU, so it must not come off the CPU
    // the caller spends around them. (Fine-grained sleeps: the default timer slack of
    // 50 µs would make every callee poll long.)
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let caller = CpuAccount::default();
    let own = Cell::new(0);
    caller
        .run(async {
            for _ in 0..200 {
                let from = cpu_clock_ns();
                burn(Duration::from_micros(20));
                own.set(own.get() + cpu_clock_ns() - from);
                CpuAccount::default()
                    .run(async { std::thread::sleep(Duration::from_micros(20)) })
                    .await;
            }
        })
        .await;
    let (used, own) = (caller.used(), Duration::from_nanos(own.get()));
    assert!(
        used >= own,
        "the caller charged {used:?} for {own:?} of its own"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_poll_is_charged_its_cpu_not_its_wall_time() {
    let account = CpuAccount::default();
    account
        .run(async {
            burn(Duration::from_millis(5));
            // Blocked, not parked: wall time the thread did not spend.
            std::thread::sleep(Duration::from_millis(20));
        })
        .await;
    let used = account.used();
    assert!(
        used >= Duration::from_millis(5) && used < Duration::from_millis(5) + REFRESH * 2,
        "{used:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_task_reads_the_clock_at_both_ends_of_its_next_polls() {
    let account = CpuAccount::default();
    let reads = READS.get();
    account
        .run(async {
            burn(Duration::from_millis(2));
            tokio::task::yield_now().await;
            // A reading by someone else on this thread (inside this poll, which has read at
            // its start already): it changes nothing of what the poll is charged.
            read_at(mono_ns());
            burn(Duration::from_millis(1));
            tokio::task::yield_now().await;
            burn(Duration::from_millis(2));
        })
        .await;
    // The first poll: at its end (its start: at most one more, if the thread's last
    // reading was stale); the next ones: at both ends, the reading in between included.
    let n = READS.get() - reads;
    assert!((6..=7).contains(&n), "{n} readings");
    let used = account.used();
    assert!(
        used >= Duration::from_millis(5) && used < Duration::from_millis(5) + REFRESH,
        "{used:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn polls_are_charged_and_parked_time_is_not() {
    let account = CpuAccount::default();
    account
        .run(async {
            burn(Duration::from_millis(20));
            // Parked: the thread is free and sleeps; nothing of it is the task's.
            tokio::time::sleep(Duration::from_millis(50)).await;
            burn(Duration::from_millis(20));
        })
        .await;
    let used = account.used();
    assert!(
        used >= Duration::from_millis(40) && used < Duration::from_millis(45),
        "{used:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn other_tasks_on_the_same_thread_are_not_charged() {
    let account = Arc::new(CpuAccount::default());
    let other = tokio::spawn(async {
        // Runs on this thread while the metered task is parked.
        burn(Duration::from_millis(40));
    });
    let metered = account.clone();
    metered
        .run(async {
            burn(Duration::from_millis(10));
            tokio::task::yield_now().await;
            burn(Duration::from_millis(10));
        })
        .await;
    other.await.unwrap();
    let used = account.used();
    assert!(
        used >= Duration::from_millis(20) && used < Duration::from_millis(25),
        "{used:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_running_poll_is_visible_inside_it() {
    let account = CpuAccount::default();
    let seen = account
        .run(async {
            burn(Duration::from_millis(15));
            account.used()
        })
        .await;
    assert!(seen >= Duration::from_millis(15), "{seen:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_poll_of_another_account_inside_a_poll_is_not_charged_to_it() {
    // A caller's poll runs a callee inside it (an agent call): the callee's own account gets
    // its polls, the caller not those, but the host's work around them (5 ms a poll here).
    let caller = CpuAccount::default();
    let callee = CpuAccount::default();
    let seen = caller
        .run(async {
            burn(Duration::from_millis(10));
            let mut inner = std::pin::pin!(callee.run(async {
                burn(Duration::from_millis(20));
                tokio::task::yield_now().await;
                burn(Duration::from_millis(20));
            }));
            std::future::poll_fn(|cx| {
                burn(Duration::from_millis(5));
                inner.as_mut().poll(cx)
            })
            .await;
            // Read inside the caller's running poll, after the callee ran in it.
            let seen = caller.used();
            burn(Duration::from_millis(10));
            seen
        })
        .await;
    let used = caller.used();
    assert!(
        seen >= Duration::from_millis(20) && seen < Duration::from_millis(24),
        "{seen:?}"
    );
    assert!(
        used >= Duration::from_millis(30) && used < Duration::from_millis(35),
        "{used:?}"
    );
    let own = callee.used();
    assert!(
        own >= Duration::from_millis(40) && own < Duration::from_millis(45),
        "{own:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_elsewhere_is_charged_through_the_account() {
    let account = Arc::new(CpuAccount::default());
    let a = account.clone();
    tokio::task::spawn_blocking(move || a.charge(|| burn(Duration::from_millis(10))))
        .await
        .unwrap();
    tokio::spawn(CpuAccount::on_behalf(account.clone(), async {
        burn(Duration::from_millis(10));
    }))
    .await
    .unwrap();
    let used = account.used();
    assert!(
        used >= Duration::from_millis(20) && used < Duration::from_millis(25),
        "{used:?}"
    );
    // The clock is the thread's: sleeping costs nothing.
    let started = Instant::now();
    let cpu = thread_cpu_ns();
    std::thread::sleep(Duration::from_millis(20));
    assert!(started.elapsed() >= Duration::from_millis(20));
    assert!(thread_cpu_ns() - cpu < 5_000_000);
}

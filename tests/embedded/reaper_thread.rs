//! The reaper thread's name and shutdown. Alone in its binary, and its runs
//! (one per engine) take turns, so that no other test's reaper thread is
//! around to confuse the thread list.
#[path = "../it/common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The per-engine runs take turns on this.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// "sessionstore-reaper" as /proc shows it: Linux keeps 15 bytes of a thread name.
const REAPER: &str = "sessionstore-re";

engine_test!(the_reaper_thread_is_named_and_stops_fast_on_drop, |db| {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let store = db
        .config()
        .reap_interval(Some(Duration::from_secs(3600)))
        .open()?;
    store.create_new_session("s")?;
    // A new thread sets its own name as it starts: give it a moment to.
    let mut names = thread_names();
    for _ in 0..5_000 {
        if names.iter().any(|n| n == REAPER) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        names = thread_names();
    }
    assert!(names.iter().any(|n| n == REAPER), "{names:?}");
    let clone = store.clone();
    drop(store);
    assert!(
        thread_names().iter().any(|n| n == REAPER),
        "a clone keeps it alive"
    );
    let t = Instant::now();
    drop(clone);
    let took = t.elapsed();
    assert!(
        !thread_names().iter().any(|n| n == REAPER),
        "joined on drop"
    );
    // Not a speed limit: the drop must not wait for the next pass of a one
    // hour interval, and a minute is far from both that and any load noise.
    assert!(
        took < Duration::from_secs(60),
        "took {took:?} with a one hour interval"
    );
    Ok(())
});

/// "sessionstore-commit" and "sessionstore-control" as /proc shows them.
const COMMIT_OR_CONTROL: &str = "sessionstore-co";

engine_test!(
    the_control_socket_thread_stops_on_drop_with_its_clients,
    |db| {
        use std::io::Read as _;
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let count = || {
            thread_names()
                .iter()
                .filter(|n| *n == COMMIT_OR_CONTROL)
                .count()
        };
        let store = db.config().control_socket(true).open()?;
        // The commit thread and the control socket's; a new thread sets its
        // own name as it starts: give them a moment to.
        for _ in 0..5_000 {
            if count() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(count(), 2, "{:?}", thread_names());
        // A client being served that went quiet does not hold the drop up.
        let client = std::os::unix::net::UnixStream::connect(db.path.join("sessionstore.sock"))
            .expect("the socket answers");
        let mut greeting = [0u8; 24];
        (&client).read_exact(&mut greeting).expect("a greeting");
        assert_eq!(&greeting, b"sessionstore-control v1\n");
        drop(store);
        assert_eq!(count(), 0, "joined on drop: {:?}", thread_names());
        assert!(!db.path.join("sessionstore.sock").exists());
        let mut rest = Vec::new();
        let _ = (&client).read_to_end(&mut rest);
        // Cut by the drop: had the server waited for the client's 10 s read
        // limit instead, it would have sent `error timeout …` first.
        assert!(rest.is_empty(), "the connection was not cut: {rest:?}");
        Ok(())
    }
);

/// Names of this process's threads, from /proc.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

//! Dropping the last handle flushes: with `Periodic` durability and an
//! interval far longer than the test, a child process saves, drops its store,
//! and is then killed with SIGKILL. The data must be there after a reopen.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sessionstore::{Config, Durability, Engine};

const CHILD: &str = "SESSIONSTORE_DROP_FLUSH_CHILD";

fn child(path: &str, engine: Engine) -> sessionstore::Result<()> {
    let store = Config::new(path)
        .engine(engine)
        .durability(Durability::Periodic(Duration::from_secs(3600)))
        .reap_interval(None)
        .open()?;
    let mut s = store.create_new_session("kept")?;
    s.set("k", "v")?;
    store.save(&mut s)?;
    drop(store);
    println!("dropped");
    loop {
        std::thread::park();
    }
}

engine_test!(dropping_the_last_handle_flushes, |db| {
    if let Ok(path) = std::env::var(CHILD) {
        let engine = std::env::var("ENGINE")
            .unwrap_or_default()
            .parse()
            .expect("an engine name");
        return child(&path, engine);
    }
    let mut proc = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            &format!(
                "{}::{}",
                module_path!().split_once("::").map_or("", |p| p.1),
                db.engine.name()
            ),
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &db.path)
        .env("ENGINE", db.engine.name())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = proc.stdout.take().expect("piped stdout");
    let saw_drop = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l == "dropped");
    proc.kill().expect("kill the child");
    proc.wait().expect("reap the child");
    assert!(saw_drop, "the child never reached its drop");
    let store = db.open()?;
    let s = store
        .get("kept", None)?
        .expect("the session survived the kill");
    assert_eq!(s.get::<String>("k")?.as_deref(), Some("v"));
    Ok(())
});

//! `sessionctl --redis`: the same commands on a Redis store, on a real
//! redis-server and a real Redis Cluster that the tests start (the root
//! crate's harness, `tests/it/common/servers.rs`). An embedded store exported
//! and imported into Redis exports again as the same file.
#![cfg(feature = "redis")]

#[allow(dead_code)]
#[path = "../../tests/it/common/servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sessionstore::{Config, SessionStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// An embedded store in `dir` with `alice` (global and `cart` scopes) and `bob` (no idle timeout).
fn embedded(dir: &Path) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let db = dir.join("store");
    let store = Config::new(&db)
        .idle_timeout(Duration::from_secs(3600))
        .reap_interval(None)
        .open()?;
    let mut alice = store.create_new_session("alice")?;
    alice.set("user", "alice")?;
    store.save(&mut alice)?;
    let mut cart = store.get("alice", Some("cart"))?.ok_or("alice")?;
    cart.set("items", &vec!["book", "pen"])?;
    store.save(&mut cart)?;
    let mut bob = store.create_new_session("bob")?;
    bob.set("user", "bob")?;
    store.save(&mut bob)?;
    store.set_idle_timeout("bob", None)?;
    Ok(db)
}

fn ctl(place: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(place)
        .args(args)
        .output()
        .expect("sessionctl runs")
}

fn ok(place: &[&str], args: &[&str]) -> String {
    let out = ctl(place, args);
    assert!(
        out.status.success(),
        "{place:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(place: &[&str], args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(place, &all)).expect("JSON output")
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|s| s["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// A namespace of its own for each test.
fn namespace(name: &str) -> String {
    format!("ctl-{name}-{}", std::process::id())
}

fn moves_to_redis_and_back(redis: &[&str]) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = embedded(dir.path())?;
    let db = db.to_str().ok_or("a UTF-8 path")?;
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let (first_s, second_s) = (
        first.to_str().ok_or("UTF-8")?,
        second.to_str().ok_or("UTF-8")?,
    );
    ok(&["--db", db], &["export", first_s]);
    let imported = json(redis, &["import", first_s]);
    assert_eq!(imported["imported"], 2, "{imported}");
    ok(redis, &["export", second_s]);
    assert_eq!(
        std::fs::read_to_string(&first)?,
        std::fs::read_to_string(&second)?,
        "exporting again gives the same file"
    );

    let stats = json(redis, &["stats"]);
    assert_eq!(stats["engine"], "redis");
    assert_eq!(stats["live_sessions"], 2);
    assert_eq!(stats["expired_sessions"], 0);
    assert_eq!(
        ids(&json(redis, &["list"])),
        ids(&json(&["--db", db], &["list"])),
        "the same sessions in the same order"
    );
    let alice = json(redis, &["show", "alice", "--component", "cart"]);
    assert_eq!(alice["scopes"][0]["keys"][0]["key"], "items");
    assert!(ok(redis, &["show", "alice"]).contains("alice"));

    let destroyed = json(redis, &["destroy", "bob"]);
    assert_eq!(destroyed["state"], "live");
    assert_eq!(json(redis, &["stats"])["live_sessions"], 1);
    assert!(!ctl(redis, &["destroy", "bob"]).status.success());

    // Importing again refuses the live session, unless --replace.
    assert!(!ctl(redis, &["import", first_s]).status.success());
    assert_eq!(
        json(redis, &["import", "--replace", first_s])["imported"],
        2
    );

    for command in ["reap", "verify"] {
        let out = ctl(redis, &[command]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--db store only"),
            "{err}"
        );
    }
    for sid in ["alice", "bob"] {
        ok(redis, &["destroy", sid]);
    }
    Ok(())
}

#[test]
fn an_embedded_store_moves_to_redis_and_exports_the_same() -> TestResult {
    let url = servers::standalone();
    let ns = namespace("standalone");
    moves_to_redis_and_back(&["--redis", &url, "--namespace", &ns])
}

#[test]
fn an_embedded_store_moves_to_a_redis_cluster_and_exports_the_same() -> TestResult {
    let nodes = servers::cluster().join(",");
    let ns = namespace("cluster");
    moves_to_redis_and_back(&["--redis", &nodes, "--cluster", "--namespace", &ns])
}

#[test]
fn the_redis_store_is_the_applications() -> TestResult {
    let url = servers::standalone();
    let ns = namespace("shared");
    let app = sessionstore::RedisConfig::new(url.as_str())
        .namespace(&ns)
        .open()?;
    let mut s = app.create()?;
    s.set("user", "grace")?;
    app.save(&mut s)?;
    let sid = s.id().to_owned();
    let place = ["--redis", url.as_str(), "--namespace", ns.as_str()];
    assert_eq!(ids(&json(&place, &["list"])), vec![sid.clone()]);
    // The application keeps running; a destroy from the CLI logs its user out.
    ok(&place, &["destroy", &sid]);
    assert!(app.get(&sid, None)?.is_none());
    // Several URLs without --cluster are refused, naming the flag.
    let two = format!("{url},{url}");
    let out = ctl(&["--redis", &two], &["stats"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster"));
    Ok(())
}

#[test]
fn sessions_of_and_destroy_all_of_on_redis_log_a_user_out_of_the_running_app() -> TestResult {
    let url = servers::standalone();
    let ns = namespace("principals");
    let app = sessionstore::RedisConfig::new(url.as_str())
        .namespace(&ns)
        .open()?;
    let mut sids = Vec::new();
    for _ in 0..2 {
        let s = app.create()?;
        app.set_principal(s.id(), Some("grace"))?;
        sids.push(s.id().to_owned());
    }
    let other = app.create()?;
    app.set_principal(other.id(), Some("alan"))?;
    sids.sort();
    let place = ["--redis", url.as_str(), "--namespace", ns.as_str()];
    assert_eq!(
        json(&place, &["sessions-of", "grace"])["sessions"],
        serde_json::json!(sids)
    );
    assert_eq!(json(&place, &["destroy-all-of", "grace"])["destroyed"], 2);
    for sid in &sids {
        assert!(app.get(sid, None)?.is_none());
    }
    assert!(app.get(other.id(), None)?.is_some());
    assert!(app.sessions_of("grace")?.is_empty());
    Ok(())
}

//! A cluster with a master stopped (`SIGSTOP`) or asleep (`DEBUG SLEEP`),
//! on a cluster of the test's own (issue 27, findings 1, 2 and 4): every
//! call returns within the documented bound, errors name what timed out and
//! where, a done destroy reports itself, and a resend never applies twice;
//! and the proxy in front of every node, dropping replies.

use std::process::Command;
use std::time::{Duration, Instant};

use sessionstore::{Error, Event, ManualClock, RedisConfig, RedisStore, SessionStore};

use crate::common::proxy::{Fault, Proxy};
use crate::common::servers::{Server, private_cluster};

const IO: Duration = Duration::from_millis(500);
const CONNECT: Duration = Duration::from_millis(500);
const ATTEMPTS: u32 = 2;

/// The documented bound on one command (`RedisConfig::attempts`).
fn bound() -> Duration {
    (CONNECT + IO + Duration::from_millis(10)) * ATTEMPTS
}

fn open(nodes: &[Server], ns: &str, clock: &ManualClock) -> sessionstore::Result<RedisStore> {
    RedisConfig::cluster(nodes.iter().map(Server::url))
        .namespace(ns)
        .clock(std::sync::Arc::new(clock.clone()))
        .idle_timeout(Duration::from_secs(600))
        .io_timeout(IO)
        .connect_timeout(CONNECT)
        .attempts(ATTEMPTS)
        .open()
}

/// The node (index) that serves `key`.
fn node_of(nodes: &[Server], key: &str) -> usize {
    let slot: u16 = nodes[0]
        .cli(&["CLUSTER", "KEYSLOT", key])
        .trim()
        .parse()
        .expect("a slot");
    let slots = nodes[0].cli(&["CLUSTER", "SLOTS"]);
    // redis-cli prints, per range: start, end, ip, port, id (one per line).
    let lines: Vec<&str> = slots.lines().map(str::trim).collect();
    for w in lines.windows(4) {
        if let (Ok(lo), Ok(hi), Ok(port)) = (
            w[0].parse::<u16>(),
            w[1].parse::<u16>(),
            w[3].parse::<u16>(),
        ) && (lo..=hi).contains(&slot)
            && let Some(i) = nodes.iter().position(|n| n.port == port)
        {
            return i;
        }
    }
    panic!("no node serves slot {slot}: {slots}");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

/// A stopped server (by its pid, read before: a stopped server answers
/// nothing), continued when dropped, so that a failing test can still stop it.
struct Stopped(u32);

impl Stopped {
    fn new(server: &Server) -> Self {
        let pid = server.pid();
        signal(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// A session id whose key is on node `want`, and a principal name whose set
/// is on another node.
fn placed(
    nodes: &[Server],
    store: &RedisStore,
    ns: &str,
    want: usize,
) -> sessionstore::Result<String> {
    loop {
        let sid = store.create()?.id().to_owned();
        if node_of(nodes, &format!("{{{ns}:{sid}}}")) == want {
            return Ok(sid);
        }
        store.destroy(&sid)?;
    }
}

#[test]
fn a_stopped_master_bounds_every_call_and_a_done_destroy_reports_itself() -> sessionstore::Result<()>
{
    let nodes = private_cluster();
    let clock = ManualClock::default();
    let ns = "stopped";
    let store = open(&nodes, ns, &clock)?;
    let rx = store.subscribe();
    // A session on node 0 whose principal's set is on node 1.
    let name = (0..)
        .map(|i| format!("user{i}"))
        .find(|n| node_of(&nodes, &format!("{{{ns}/p:{n}}}")) == 1)
        .expect("a name");
    let sid = placed(&nodes, &store, ns, 0)?;
    store.set_principal(&sid, Some(&name))?;
    let far = placed(&nodes, &store, ns, 1)?;
    let _ = crate::common::events_before_now(&store, &rx);
    {
        let _stopped = Stopped::new(&nodes[1]);
        // Finding 4: the hash goes; the set's master does not answer.
        let start = Instant::now();
        assert!(store.destroy(&sid)?, "a done destroy is Ok(true)");
        assert!(start.elapsed() < bound() * 3, "took {:?}", start.elapsed());
        assert_eq!(
            crate::common::next_events(&rx, 1),
            vec![Event::Destroyed { sid: sid.clone() }]
        );
        // Finding 2: every call on the stopped master ends within the bound,
        // with an error naming the step and the server.
        let start = Instant::now();
        let got = store.get(&far, None);
        let took = start.elapsed();
        match &got {
            Err(e @ Error::Timeout { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("reading a session") && m.contains("500ms"),
                    "{m}"
                );
            }
            other => panic!("want Timeout, got {other:?}"),
        }
        assert!(took < bound() * 2, "get took {took:?}, bound {:?}", bound());
        for (what, took) in [
            ("session_ids", time(|| store.session_ids().map(drop))),
            ("stats", time(|| store.stats().map(drop))),
            ("touch", time(|| store.touch(&far).map(drop))),
        ] {
            assert!(
                took < bound() * 4,
                "{what} took {took:?}, bound {:?}",
                bound()
            );
        }
    }
    assert!(store.get(&far, None)?.is_some(), "the handle recovers");
    Ok(())
}

fn time(f: impl FnOnce() -> sessionstore::Result<()>) -> Duration {
    let start = Instant::now();
    let _ = f();
    start.elapsed()
}

/// Finding 1 on a cluster: the master sleeps past the I/O timeout right
/// before one `update(+1)`'s write; the cluster client sends it again; the
/// resend answers the first result: the counter moves by one.
#[test]
fn a_master_asleep_during_an_update_applies_it_once() -> sessionstore::Result<()> {
    let nodes = private_cluster();
    let clock = ManualClock::default();
    let ns = "asleep";
    let store = open(&nodes, ns, &clock)?;
    let sid = placed(&nodes, &store, ns, 2)?;
    store.update(&sid, None, |s| s.set("n", &0u32))?;
    for round in 1..=2u32 {
        let mut slept = false;
        let got = store.update(&sid, None, |s| {
            if !slept {
                slept = true;
                let port = nodes[2].port.to_string();
                std::thread::spawn(move || {
                    let _ = Command::new("redis-cli")
                        .args(["-p", &port, "DEBUG", "SLEEP", "0.8"])
                        .output();
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            let n: u32 = s.get("n")?.unwrap_or(0);
            s.set("n", &(n + 1))
        });
        match got {
            Ok(Some(())) | Err(Error::Unknown { .. }) => {}
            other => panic!("update: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(900));
        let n: Option<u32> = store.get(&sid, None)?.expect("live").get("n")?;
        assert_eq!(n, Some(round), "applied exactly once");
    }
    Ok(())
}

/// Finding 1 on a cluster, through the proxy: each node announces the port
/// of a proxy in front of it, so the cluster client reaches every node
/// through one; each node's first script reply is dropped after the node
/// ran it. The cluster client resends, and the resend answers the first
/// result, for every kind of write step.
#[test]
fn every_write_step_with_a_lost_reply_on_a_cluster_applies_once() -> sessionstore::Result<()> {
    let nodes = private_cluster();
    let proxies: Vec<Proxy> = nodes.iter().map(|n| Proxy::start(n.port)).collect();
    for (node, proxy) in nodes.iter().zip(&proxies) {
        let bus = (node.port + 10_000).to_string();
        node.cli(&["CONFIG", "SET", "cluster-announce-bus-port", &bus]);
        node.cli(&[
            "CONFIG",
            "SET",
            "cluster-announce-port",
            &proxy.port.to_string(),
        ]);
    }
    // Every node's view of the slots names the proxies.
    let give_up = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        while !proxies.iter().all(|p| {
            node.cli(&["CLUSTER", "SLOTS"])
                .contains(&p.port.to_string())
        }) {
            assert!(
                Instant::now() < give_up,
                "the proxies' ports were not announced"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let clock = ManualClock::default();
    let store = RedisConfig::cluster(proxies.iter().map(Proxy::url))
        .namespace("proxied")
        .clock(std::sync::Arc::new(clock.clone()))
        .idle_timeout(Duration::from_secs(600))
        .io_timeout(Duration::from_secs(2))
        .open()?;
    let rx = store.subscribe();
    // Warm every script on every node (a NOSCRIPT reply is no write).
    for _ in 0..12 {
        let s = store.create()?.id().to_owned();
        store.update(&s, None, |x| x.set("n", &0u32))?;
        store.set_principal(&s, Some("warm"))?;
        let n = store.regenerate(&s)?;
        store.destroy(&n)?;
    }
    store.destroy_all_of("warm")?;
    let fired = || proxies.iter().map(Proxy::fired).sum::<usize>();
    let arm_all = || {
        proxies
            .iter()
            .for_each(|p| p.arm("EVAL", 1, Fault::DropReply))
    };
    let disarm = || {
        proxies
            .iter()
            .for_each(|p| p.arm("never sent", 1, Fault::DropReply))
    };
    let _ = crate::common::events_before_now(&store, &rx);

    // update(+1), five times.
    let sid = store.create()?.id().to_owned();
    store.update(&sid, None, |s| s.set("n", &0u32))?;
    for round in 1..=5u32 {
        let before = fired();
        arm_all();
        store.update(&sid, None, |s| {
            let n: u32 = s.get("n")?.unwrap_or(0);
            s.set("n", &(n + 1))
        })?;
        disarm();
        assert_eq!(fired(), before + 1);
        let n: Option<u32> = store.get(&sid, None)?.expect("live").get("n")?;
        assert_eq!(n, Some(round));
    }
    // create_new_session, destroy, regenerate, set_principal, destroy_all_of.
    let _ = crate::common::events_before_now(&store, &rx);
    arm_all();
    store.create_new_session("proxied-a")?;
    disarm();
    arm_all();
    assert!(store.destroy("proxied-a")?);
    disarm();
    let mut s = store.create()?;
    s.set("cart", &3u8)?;
    store.save(&mut s)?;
    let before = fired();
    arm_all();
    let new = store.regenerate(s.id())?;
    disarm();
    assert!(fired() > before);
    assert_eq!(
        store.get(&new, None)?.expect("moved").get::<u8>("cart")?,
        Some(3)
    );
    arm_all();
    store.set_principal(&new, Some("pat"))?;
    disarm();
    assert_eq!(store.sessions_of("pat")?, vec![new.clone()]);
    arm_all();
    assert_eq!(store.destroy_all_of("pat")?, 1);
    disarm();
    let events: Vec<Event> = crate::common::events_before_now(&store, &rx);
    let old = s.id().to_owned();
    assert_eq!(
        events
            .into_iter()
            .filter(|e| !matches!(e, Event::Created { sid } if sid != "proxied-a"))
            .collect::<Vec<_>>(),
        vec![
            Event::Created {
                sid: "proxied-a".into()
            },
            Event::Destroyed {
                sid: "proxied-a".into()
            },
            Event::Regenerated {
                old,
                new: new.clone()
            },
            Event::Destroyed { sid: new },
        ]
    );
    Ok(())
}

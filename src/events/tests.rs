//! The hub's rules: what a full channel misses and how it hears of it, the
//! reaper's deferred events, dropped receivers; and the order rules under
//! racing threads at every capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

fn created(n: u64) -> Event {
    Event::Created {
        sid: format!("s{n}"),
    }
}

fn expired(s: &str) -> Event {
    Event::Expired { sid: s.into() }
}

/// What `rx` holds once everything sent so far is handed out.
fn drain(hub: &Events, rx: &Receiver<Event>) -> Vec<Event> {
    hub.settle();
    rx.try_iter().collect()
}

fn subscribers(hub: &Events) -> usize {
    hub.settle();
    hub.shared.subscribers.lock().len()
}

#[test]
fn a_full_channel_counts_what_it_missed_and_says_so_next() {
    let hub = Events::new(2);
    let rx = hub.subscribe();
    for n in 0..5 {
        hub.send(created(n));
    }
    assert_eq!(drain(&hub, &rx), [created(0), created(1)]);
    hub.send(created(5));
    assert_eq!(drain(&hub, &rx), [Event::Lagged { missed: 3 }, created(5)]);
}

#[test]
fn with_one_free_slot_the_lagged_counts_the_event_and_the_next_one_fits() {
    let hub = Events::new(1);
    let rx = hub.subscribe();
    hub.send(created(0));
    hub.send(created(1));
    hub.send(created(2));
    assert_eq!(drain(&hub, &rx), [created(0)]);
    // One free slot: the Lagged takes it and counts this event too.
    hub.send(created(3));
    assert_eq!(drain(&hub, &rx), [Event::Lagged { missed: 3 }]);
    hub.send(created(4));
    assert_eq!(drain(&hub, &rx), [created(4)]);
}

#[test]
fn a_subscriber_gets_only_what_is_sent_after_it_subscribed() {
    let hub = Events::new(8);
    let first = hub.subscribe();
    // Queued, maybe not yet handed out, when the second subscribes.
    for n in 0..100 {
        hub.send(created(n));
    }
    let second = hub.subscribe();
    hub.send(created(100));
    assert_eq!(drain(&hub, &second), [created(100)]);
    // Its channel of 8 filled; the rest, 100 included, are missed.
    assert_eq!(drain(&hub, &first), (0..8).map(created).collect::<Vec<_>>());
}

#[test]
fn a_dropped_receiver_is_forgotten() {
    let hub = Events::new(4);
    let kept = hub.subscribe();
    drop(hub.subscribe());
    hub.send(created(0));
    assert_eq!(subscribers(&hub), 1);
    assert_eq!(drain(&hub, &kept), [created(0)]);
    // A receiver dropped while its channel is full is forgotten too.
    let full = hub.subscribe();
    for n in 1..=6 {
        hub.send(created(n));
    }
    hub.settle();
    drop(full);
    drop(kept);
    hub.send(created(7));
    assert_eq!(subscribers(&hub), 0);
    assert!(!hub.watched());
}

#[test]
fn dropping_the_hub_hands_out_what_is_queued_then_disconnects() {
    let hub = Events::new(64);
    let rx = hub.subscribe();
    for n in 0..50 {
        hub.send(created(n));
    }
    drop(hub);
    let got: Vec<Event> = rx.iter().collect();
    assert_eq!(got, (0..50).map(created).collect::<Vec<_>>());
}

#[test]
fn deferred_events_wait_for_their_tickets_release_or_a_later_event_of_their_session() {
    let hub = Events::new(8);
    let rx = hub.subscribe();
    let (mine, other) = (hub.ticket(), hub.ticket());
    hub.defer(mine, "a", expired("a"));
    hub.defer(other, "c", expired("c"));
    hub.defer(mine, "b", expired("b"));
    assert_eq!(drain(&hub, &rx), []);
    hub.send(Event::Created { sid: "b".into() });
    assert_eq!(
        drain(&hub, &rx),
        [expired("b"), Event::Created { sid: "b".into() }]
    );
    hub.release(mine);
    assert_eq!(
        drain(&hub, &rx),
        [expired("a")],
        "another ticket's event waits for its own flush"
    );
    hub.release(other);
    assert_eq!(drain(&hub, &rx), [expired("c")]);
    assert!(hub.shared.queue.lock().nothing_deferred());
}

#[test]
fn a_regenerate_releases_the_deferred_events_of_both_its_ids() {
    let hub = Events::new(8);
    let rx = hub.subscribe();
    let t = hub.ticket();
    hub.defer(t, "new", expired("new"));
    hub.defer(t, "x", expired("x"));
    let moved = Event::Regenerated {
        old: "old".into(),
        new: "new".into(),
    };
    hub.send(moved.clone());
    assert_eq!(drain(&hub, &rx), [expired("new"), moved]);
    hub.abandon(t);
    assert!(hub.shared.queue.lock().nothing_deferred());
}

#[test]
fn abandoned_events_are_counted_as_missed() {
    let hub = Events::new(8);
    let rx = hub.subscribe();
    let t = hub.ticket();
    hub.defer(t, "a", expired("a"));
    hub.defer(t, "b", expired("b"));
    hub.abandon(t);
    hub.send(created(0));
    assert_eq!(drain(&hub, &rx), [Event::Lagged { missed: 2 }, created(0)]);
    // A subscriber that came after the abandon owes nothing for it.
    let t = hub.ticket();
    hub.defer(t, "c", expired("c"));
    hub.abandon(t);
    let late = hub.subscribe();
    hub.send(created(1));
    assert_eq!(drain(&hub, &late), [created(1)]);
}

#[test]
fn nothing_is_kept_while_nobody_listens() {
    let hub = Events::new(8);
    hub.send(created(0));
    hub.defer(hub.ticket(), "a", expired("a"));
    assert!(hub.shared.queue.lock().nothing_deferred());
    assert_eq!(hub.shared.queue.lock().next_seq(), 0);
    assert!(
        hub.dispatcher.lock().is_none(),
        "no thread until someone subscribes"
    );
}

#[test]
fn a_full_queue_drops_for_everyone_and_every_subscriber_counts_it() {
    let hub = Events::new(4);
    let rx = hub.subscribe();
    // The dispatcher cannot take the queue while it is held here.
    {
        let mut queue = hub.shared.queue.lock();
        for n in 0..(queue::QUEUE_BOUND as u64 + 3) {
            queue.send(created(n));
        }
    }
    hub.send(created(queue::QUEUE_BOUND as u64 + 3));
    hub.settle();
    let got: Vec<Event> = rx.try_iter().collect();
    assert_eq!(got, (0..4).map(created).collect::<Vec<_>>());
    hub.send(created(queue::QUEUE_BOUND as u64 + 4));
    assert_eq!(
        drain(&hub, &rx),
        [
            Event::Lagged {
                missed: queue::QUEUE_BOUND as u64
            },
            created(queue::QUEUE_BOUND as u64 + 4)
        ]
    );
}

/// The capacities every ordering rule is checked at.
const CAPACITIES: [usize; 5] = [1, 2, 3, 16, crate::limits::MAX_EVENT_CAPACITY];

/// The index `n` of `Created { sid: "s{n}" }`.
fn index_of(event: &Event) -> u64 {
    match event {
        Event::Created { sid } => sid[1..].parse().expect("an index"),
        other => panic!("unexpected {other:?}"),
    }
}

/// What one subscriber received, checked against the rules: a gap is
/// reported by a `Lagged` before the next event (never after it), every
/// `Lagged` counts at least one event, and the counts are exact: every
/// event's index is the number of events delivered or reported missed
/// before it.
fn check_order(got: &[Event], label: &str) {
    let mut expected = 0u64;
    for e in got {
        match e {
            Event::Lagged { missed } => {
                assert!(*missed > 0, "{label}: an empty Lagged");
                expected += missed;
            }
            e => {
                let n = index_of(e);
                assert_eq!(
                    n, expected,
                    "{label}: event {n} arrived when {expected} was due (a gap not reported before it)"
                );
                expected = n + 1;
            }
        }
    }
}

/// One thread sends numbered events while subscribers of every capacity
/// read: two on threads of their own as fast as they can, one pausing now
/// and then, one never until the end. Then the sender goes on sending
/// markers until each subscriber has one, so that every gap is reported.
#[test]
fn lagged_always_comes_before_the_next_event_under_racing_readers() {
    const EVENTS: u64 = 40_000;
    for capacity in CAPACITIES {
        let hub = Events::new(capacity);
        let done = AtomicUsize::new(0);
        // Which readers saw their marker: their channels are never read
        // again, so only the others are waited on to empty.
        let finished: Vec<AtomicBool> = (0..3).map(|_| AtomicBool::new(false)).collect();
        let draining: Vec<_> = (0..3).map(|_| hub.subscribe()).collect();
        // Clones, to see that a reader emptied its channel: never read here.
        let watch: Vec<_> = draining.clone();
        let idle = hub.subscribe();
        let readers = draining.len();
        std::thread::scope(|scope| {
            let done = &done;
            let finished = &finished;
            let handles: Vec<_> = draining
                .into_iter()
                .enumerate()
                .map(|(k, rx)| {
                    scope.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            let e = rx
                                .recv_timeout(Duration::from_secs(60))
                                .expect("events keep coming until the marker");
                            let end = matches!(&e, Event::Created { .. }) && index_of(&e) >= EVENTS;
                            got.push(e);
                            if end {
                                finished[k].store(true, Ordering::SeqCst);
                                done.fetch_add(1, Ordering::SeqCst);
                                return got;
                            }
                            if k == 1 && got.len() % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let mut n = 0u64;
            while n < EVENTS || done.load(Ordering::SeqCst) < readers {
                hub.send(created(n));
                n += 1;
                if n >= EVENTS {
                    // A marker goes to channels the readers emptied, so that
                    // after a Lagged that took the last slot the next fits.
                    hub.settle();
                    // A hang guard, not a speed check: a reader that stops
                    // reading fails the test instead of stalling CI.
                    let give_up = std::time::Instant::now() + Duration::from_secs(60);
                    while !watch
                        .iter()
                        .zip(finished)
                        .all(|(rx, f)| f.load(Ordering::SeqCst) || rx.is_empty())
                    {
                        assert!(
                            std::time::Instant::now() < give_up,
                            "capacity {capacity}: a reader stopped emptying its channel"
                        );
                        std::thread::yield_now();
                    }
                }
            }
            for (k, h) in handles.into_iter().enumerate() {
                let got = h.join().expect("a reader");
                check_order(&got, &format!("capacity {capacity}, reader {k}"));
            }
            // The subscriber that never read: what its channel holds, then
            // markers until one fits.
            let mut got: Vec<Event> = Vec::new();
            let first_marker = n;
            loop {
                got.extend(drain(&hub, &idle));
                if got
                    .iter()
                    .any(|e| matches!(e, Event::Created { .. } if index_of(e) >= first_marker))
                {
                    break;
                }
                hub.send(created(n));
                n += 1;
            }
            check_order(&got, &format!("capacity {capacity}, idle"));
        });
    }
}

/// Four threads send at once, each its own numbered events, while
/// subscribers of every capacity read or not: each receives its events of
/// one sender in that sender's order, and what it received plus what its
/// `Lagged`s counted is every event sent.
#[test]
fn racing_senders_keep_each_senders_order_and_exact_totals() {
    const SENDERS: u64 = 4;
    const EACH: u64 = 5_000;
    for capacity in CAPACITIES {
        let hub = Arc::new(Events::new(capacity));
        let rxs: Vec<_> = (0..3).map(|_| hub.subscribe()).collect();
        // `go` ends when the senders are done; each reader then empties its
        // channel and says so on `ack`, and the last event comes after that.
        let (go_tx, go) = crossbeam_channel::bounded::<()>(0);
        let (ack_tx, ack) = crossbeam_channel::unbounded::<()>();
        let readers: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(k, rx)| {
                let (go, ack_tx) = (go.clone(), ack_tx.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    // Reader 0 reads as it goes; the others only at the end.
                    if k == 0 {
                        loop {
                            crossbeam_channel::select! {
                                recv(rx) -> e => got.push(e.expect("the hub lives")),
                                recv(go) -> _ => break,
                            }
                        }
                    } else {
                        let _ = go.recv();
                    }
                    got.extend(rx.try_iter());
                    ack_tx.send(()).expect("the test waits");
                    while let Ok(e) = rx.recv() {
                        got.push(e);
                    }
                    got
                })
            })
            .collect();
        std::thread::scope(|scope| {
            for t in 0..SENDERS {
                let hub = &hub;
                scope.spawn(move || {
                    for i in 0..EACH {
                        hub.send(Event::Destroyed {
                            sid: format!("t{t}-{i}"),
                        });
                    }
                });
            }
        });
        hub.settle();
        drop(go_tx);
        for _ in 0..3 {
            ack.recv().expect("each reader acks");
        }
        // One more event, into emptied channels, so that every miss is
        // reported (with capacity 1 it may itself be counted in the Lagged).
        hub.send(created(0));
        let hub = Arc::into_inner(hub).expect("the senders are done");
        drop(hub);
        for (k, r) in readers.into_iter().enumerate() {
            let got = r.join().expect("a reader");
            let mut last = vec![None::<u64>; SENDERS as usize];
            let mut total = 0u64;
            for e in &got {
                match e {
                    Event::Lagged { missed } => total += missed,
                    Event::Destroyed { sid } => {
                        total += 1;
                        let (t, i) = sid[1..].split_once('-').expect("t-i");
                        let (t, i): (usize, u64) = (t.parse().expect("t"), i.parse().expect("i"));
                        assert!(
                            last[t].is_none_or(|l| l < i),
                            "capacity {capacity}, reader {k}: {sid} after {:?}",
                            last[t]
                        );
                        last[t] = Some(i);
                    }
                    Event::Created { .. } => total += 1,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(total, SENDERS * EACH + 1, "capacity {capacity}, reader {k}");
        }
    }
}

//! Lifecycle events: what a subscriber receives ([`Event`]), and the hub that
//! hands them out (`Events`), one bounded channel per subscriber.
//!
//! The hub never blocks a writer: it only ever `try_send`s. A subscriber whose
//! channel is full misses the event; the hub counts what it missed and sends
//! [`Event::Lagged`] before its next event. A subscriber whose receiver was
//! dropped is forgotten at the next send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;

/// Something that happened to a session, sent to every subscriber
/// ([`SessionStore::subscribe`](crate::SessionStore::subscribe)) once the
/// write that made it happen is acknowledged at the store's durability.
///
/// Every session that ends sends exactly one of `Destroyed`, `Expired` or
/// `Regenerated` (which ends the old id and starts the new one), so counting
/// `Created` against them counts live sessions, as far as no `Lagged` came.
///
/// What is **not** an event: a save, touch, `set_idle_timeout` or
/// `set_principal` (they change a session, they do not start or end it); and
/// a session that a `get` finds past its deadline. That read writes nothing,
/// so nothing about the session changed yet: it is still stored, and the
/// `Expired` comes when the deletion does (the reaper's pass, or a `destroy`,
/// `create_new_session` or import that finds it expired). A store on Redis has
/// no reaper: Redis expires keys on its own, unseen, so there `Expired` comes
/// only from this store's own calls that delete an expired session.
///
/// # Examples
///
/// ```
/// use sessionstore::{Event, Store};
///
/// let store = Store::temporary()?;
/// let events = store.subscribe();
/// let s = store.create()?;
/// store.destroy(s.id())?;
/// assert_eq!(events.try_recv().ok(), Some(Event::Created { sid: s.id().to_owned() }));
/// assert_eq!(events.try_recv().ok(), Some(Event::Destroyed { sid: s.id().to_owned() }));
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session was created (`create`, `create_new_session`, or an import).
    Created {
        /// Its id.
        sid: String,
    },
    /// A live session was destroyed (`destroy`, `destroy_all_of`, or an
    /// import that replaced it).
    Destroyed {
        /// Its id.
        sid: String,
    },
    /// An expired session was deleted: by the reaper, after the pass's flush
    /// made the deletion durable, or by a call that found it expired.
    Expired {
        /// Its id.
        sid: String,
    },
    /// A session moved to a fresh id (`regenerate`).
    Regenerated {
        /// The id it had; it reads as gone now.
        old: String,
        /// The id it lives under now.
        new: String,
    },
    /// This subscriber's channel was full and it missed `missed` events
    /// since the last one it received.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

impl Event {
    /// Whether the event names session `sid`.
    fn names(&self, sid: &str) -> bool {
        match self {
            Event::Created { sid: s } | Event::Destroyed { sid: s } | Event::Expired { sid: s } => {
                s == sid
            }
            Event::Regenerated { old, new } => old == sid || new == sid,
            Event::Lagged { .. } => false,
        }
    }
}

/// One subscriber: its channel, and how many events it missed since its last.
struct Subscriber {
    tx: Sender<Event>,
    missed: u64,
}

impl Subscriber {
    /// Offers `event`, after a `Lagged` if events were missed. Returns
    /// whether the receiver is still there.
    ///
    /// After a lag, the `Lagged` and the event go together if two slots are
    /// free; if one is, the `Lagged` takes it and counts the event among
    /// the missed, so that the next event has room (a `Lagged` never fills
    /// the channel for good). Only the hub sends, under its lock, and the
    /// receiver only frees slots, so the free slots seen here are there.
    fn offer(&mut self, event: &Event) -> bool {
        if self.missed > 0 {
            let free = self
                .tx
                .capacity()
                .unwrap_or(usize::MAX)
                .saturating_sub(self.tx.len());
            let lagged = match free {
                // Still full: the send below counts the event, or finds the receiver gone.
                0 => return self.try_event(event),
                1 => self.missed.saturating_add(1),
                _ => self.missed,
            };
            match self.tx.try_send(Event::Lagged { missed: lagged }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed = self.missed.saturating_add(1);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
            if free == 1 {
                return true;
            }
        }
        self.try_event(event)
    }

    /// Sends `event`, or counts it as missed. Returns whether the receiver
    /// is still there.
    fn try_event(&mut self, event: &Event) -> bool {
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    /// `Expired` events of deletions applied but not yet flushed (the
    /// reaper's), by sid, with the order they were deferred in.
    deferred: HashMap<String, u64>,
    next_deferred: u64,
}

impl Inner {
    fn broadcast(&mut self, event: &Event) {
        self.subscribers.retain_mut(|s| s.offer(event));
    }

    fn watched(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Sends the deferred `Expired` of `sid`, if any, so that it precedes
    /// an event of a later write of the same id.
    fn release_one(&mut self, sid: &str) {
        if self.deferred.remove(sid).is_some() {
            self.broadcast(&Event::Expired {
                sid: sid.to_owned(),
            });
        }
    }
}

/// The subscribers of one store, and the events deferred until a flush.
pub(crate) struct Events {
    capacity: usize,
    /// Whether anyone subscribed: writers skip the lock while nobody did.
    watched: AtomicBool,
    inner: Mutex<Inner>,
}

impl Events {
    /// A hub whose subscribers each get a channel of `capacity` events.
    pub fn new(capacity: usize) -> Events {
        Events {
            capacity,
            watched: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A new subscriber's receiver.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = bounded(self.capacity);
        let mut inner = self.inner.lock();
        inner.subscribers.push(Subscriber { tx, missed: 0 });
        self.watched.store(true, Ordering::Release);
        rx
    }

    /// Whether anyone is subscribed (as of the last send: a dropped receiver
    /// is noticed there).
    fn watched(&self) -> bool {
        self.watched.load(Ordering::Acquire)
    }

    /// Sends `event` to every subscriber. The caller holds the lock of every
    /// session it names, and its write was acknowledged. A deferred
    /// `Expired` of a session it names goes first.
    pub fn send(&self, event: Event) {
        if !self.watched() {
            return;
        }
        let mut inner = self.inner.lock();
        if !inner.deferred.is_empty() {
            let named: Vec<String> = inner
                .deferred
                .keys()
                .filter(|sid| event.names(sid))
                .cloned()
                .collect();
            for sid in named {
                inner.release_one(&sid);
            }
        }
        inner.broadcast(&event);
        self.watched.store(inner.watched(), Ordering::Release);
    }

    /// Holds back the `Expired` of `sid`, whose deletion was applied but not
    /// flushed, until [`release_deferred`](Self::release_deferred) (after the
    /// flush) or an event of a later write of `sid` (whose acknowledgement
    /// covers the earlier deletion). The caller holds the session's lock.
    pub fn defer_expired(&self, sid: &str) {
        if !self.watched() {
            return;
        }
        let mut inner = self.inner.lock();
        let seq = inner.next_deferred;
        inner.next_deferred += 1;
        inner.deferred.insert(sid.to_owned(), seq);
    }

    /// Sends every deferred `Expired`, in the order they were deferred: the
    /// flush that made their deletions durable has returned.
    pub fn release_deferred(&self) {
        if !self.watched() {
            return;
        }
        let mut inner = self.inner.lock();
        let mut due: Vec<(String, u64)> = inner.deferred.drain().collect();
        due.sort_by_key(|(_, seq)| *seq);
        for (sid, _) in due {
            inner.broadcast(&Event::Expired { sid });
        }
        self.watched.store(inner.watched(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(n: u32) -> Event {
        Event::Created {
            sid: format!("s{n}"),
        }
    }

    #[test]
    fn a_full_channel_counts_what_it_missed_and_says_so_next() {
        let hub = Events::new(2);
        let rx = hub.subscribe();
        for n in 0..5 {
            hub.send(created(n));
        }
        assert_eq!(rx.try_recv().ok(), Some(created(0)));
        assert_eq!(rx.try_recv().ok(), Some(created(1)));
        assert!(rx.try_recv().is_err());
        hub.send(created(5));
        assert_eq!(rx.try_recv().ok(), Some(Event::Lagged { missed: 3 }));
        assert_eq!(rx.try_recv().ok(), Some(created(5)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn with_one_free_slot_the_lagged_counts_the_event_and_the_next_one_fits() {
        let hub = Events::new(1);
        let rx = hub.subscribe();
        hub.send(created(0));
        hub.send(created(1));
        hub.send(created(2));
        assert_eq!(rx.try_recv().ok(), Some(created(0)));
        // One free slot: the Lagged takes it and counts this event too.
        hub.send(created(3));
        assert_eq!(rx.try_recv().ok(), Some(Event::Lagged { missed: 3 }));
        hub.send(created(4));
        assert_eq!(rx.try_recv().ok(), Some(created(4)));
    }

    #[test]
    fn a_dropped_receiver_is_forgotten() {
        let hub = Events::new(4);
        let kept = hub.subscribe();
        drop(hub.subscribe());
        hub.send(created(0));
        assert_eq!(hub.inner.lock().subscribers.len(), 1);
        assert_eq!(kept.try_recv().ok(), Some(created(0)));
        // A receiver dropped while its channel is full is forgotten too.
        let full = hub.subscribe();
        for n in 1..=6 {
            hub.send(created(n));
        }
        drop(full);
        drop(kept);
        hub.send(created(7));
        assert!(hub.inner.lock().subscribers.is_empty());
        assert!(!hub.watched());
    }

    #[test]
    fn deferred_expiries_wait_for_release_or_a_later_event_of_their_session() {
        let hub = Events::new(8);
        let rx = hub.subscribe();
        hub.defer_expired("a");
        hub.defer_expired("b");
        assert!(rx.try_recv().is_err());
        hub.send(Event::Created { sid: "b".into() });
        let expired = |s: &str| Event::Expired { sid: s.into() };
        assert_eq!(rx.try_recv().ok(), Some(expired("b")));
        assert_eq!(rx.try_recv().ok(), Some(Event::Created { sid: "b".into() }));
        hub.release_deferred();
        assert_eq!(rx.try_recv().ok(), Some(expired("a")));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn nothing_is_kept_while_nobody_listens() {
        let hub = Events::new(8);
        hub.send(created(0));
        hub.defer_expired("a");
        assert!(hub.inner.lock().deferred.is_empty());
    }
}

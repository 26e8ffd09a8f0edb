//! Lifecycle events: what a subscriber receives ([`Event`]), and the hub that
//! hands them out (`Events`), one bounded channel per subscriber.
//!
//! A writer only queues its event (`queue`): one short lock and a push,
//! whatever the number of subscribers. The dispatcher thread (`dispatcher`,
//! started at the first `subscribe`) hands the queued events to every
//! subscriber (`subscriber`), never waiting on one: a subscriber whose
//! channel is full misses the event, and the hub counts what it missed and
//! sends [`Event::Lagged`] before its next event. A subscriber whose receiver
//! was dropped is forgotten at the next event handed out.

mod dispatcher;
mod queue;
mod subscriber;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};
use parking_lot::Mutex;

use dispatcher::Shared;
use subscriber::Subscriber;

/// Something that happened to a session, sent to every subscriber
/// ([`SessionStore::subscribe`](crate::SessionStore::subscribe)) once the
/// write that made it happen is acknowledged at the store's durability.
///
/// On an embedded store, every session that ends sends exactly one of
/// `Destroyed`, `Expired` or `Regenerated` (which ends the old id and starts
/// the new one), so counting `Created` against them counts the sessions
/// this process's store holds, as far as no `Lagged` came. (Not on Redis:
/// see below.)
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
/// // A dispatcher thread hands the events out, just after each call.
/// assert_eq!(events.recv().ok(), Some(Event::Created { sid: s.id().to_owned() }));
/// assert_eq!(events.recv().ok(), Some(Event::Destroyed { sid: s.id().to_owned() }));
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
    /// The sessions the event names.
    fn sids(&self) -> [Option<&str>; 2] {
        match self {
            Event::Created { sid } | Event::Destroyed { sid } | Event::Expired { sid } => {
                [Some(sid), None]
            }
            Event::Regenerated { old, new } => [Some(old), Some(new)],
            Event::Lagged { .. } => [None, None],
        }
    }
}

/// The subscribers of one store, the queue of events on their way to them,
/// and the events deferred until a flush.
pub(crate) struct Events {
    capacity: usize,
    shared: Arc<Shared>,
    /// The dispatcher thread, once someone subscribed.
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Events {
    /// Stops the dispatcher once it has handed out what is queued, and waits
    /// for it: it never waits on a subscriber, so this ends.
    fn drop(&mut self) {
        let Some(thread) = self.dispatcher.get_mut().take() else {
            return;
        };
        self.shared.queue.lock().stop();
        self.shared.wake.notify_one();
        if thread.join().is_err() {
            log::error!("sessionstore: the event dispatcher thread panicked");
        }
    }
}

impl Events {
    /// A hub whose subscribers each get a channel of `capacity` events.
    pub fn new(capacity: usize) -> Events {
        Events {
            capacity,
            shared: Arc::new(Shared::default()),
            dispatcher: Mutex::new(None),
        }
    }

    /// A new subscriber's receiver: it gets every event sent from now on.
    /// If the dispatcher thread cannot be started, the error is logged and
    /// the receiver is disconnected at once.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = bounded(self.capacity);
        {
            let mut thread = self.dispatcher.lock();
            if thread.is_none() {
                match dispatcher::start(self.shared.clone()) {
                    Ok(t) => *thread = Some(t),
                    Err(e) => {
                        log::error!("sessionstore: cannot start the event dispatcher thread: {e}");
                        return rx;
                    }
                }
            }
        }
        let mut subscribers = self.shared.subscribers.lock();
        let from = self.shared.queue.lock().next_seq();
        subscribers.push(Subscriber::new(tx, self.capacity, from));
        self.shared.watched.store(true, Ordering::Release);
        rx
    }

    /// Whether anyone is subscribed (as the dispatcher last saw: a dropped
    /// receiver is noticed when an event is handed out).
    fn watched(&self) -> bool {
        self.shared.watched.load(Ordering::Acquire)
    }

    /// Queues `event` for every subscriber. The caller holds the lock of
    /// every session it names, and its write was acknowledged: so the events
    /// of one session are queued, and handed out, in the order their writes
    /// committed. A deferred event of a session it names goes first: this
    /// write's acknowledgement covers that earlier, applied write.
    pub fn send(&self, event: Event) {
        if self.watched() {
            self.send_watched(event);
        }
    }

    /// `send` when someone is subscribed: out of line, so that the path of
    /// a store nobody watches stays one atomic load (and so that a profiler
    /// sees what sending costs).
    #[inline(never)]
    fn send_watched(&self, event: Event) {
        let wake = {
            let mut queue = self.shared.queue.lock();
            queue.send(event);
            queue.take_idle()
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// A ticket for a caller that writes without flushing (the reaper's
    /// pass) and defers its events until its flush.
    pub fn ticket(&self) -> u64 {
        self.shared.queue.lock().ticket()
    }

    /// Holds back `event` of session `sid`, whose write was applied but not
    /// flushed, until [`release`](Self::release) of `ticket` (after the
    /// caller's flush) or an event of a later write of `sid`. The caller
    /// holds the session's lock.
    pub fn defer(&self, ticket: u64, sid: &str, event: Event) {
        if self.watched() {
            self.shared.queue.lock().defer(ticket, sid, event);
        }
    }

    /// Queues the events deferred under `ticket`, in order: the flush that
    /// made their writes durable has returned.
    pub fn release(&self, ticket: u64) {
        let wake = {
            let mut queue = self.shared.queue.lock();
            queue.release(ticket);
            queue.take_idle()
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Gives up the events deferred under `ticket`: the flush failed, so they
    /// cannot be sent as durable. Every subscriber counts them as missed and
    /// hears of them through its next `Lagged`.
    pub fn abandon(&self, ticket: u64) {
        self.shared.queue.lock().abandon(ticket);
    }

    /// Waits until the dispatcher has handed out every event queued so far.
    #[cfg(test)]
    pub fn settle(&self) {
        // A hang guard for tests, not a speed check.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.shared.queue.lock().settled() {
            assert!(
                std::time::Instant::now() < give_up,
                "the dispatcher did not hand out the queue within 60 s"
            );
            std::thread::yield_now();
        }
    }
}

//! A latched event log: what happened stays seen, so a wait that starts late still finds it, and
//! a wait can consume what it matched. A call keeps one; so does each subscription, and each UA
//! for the requests that reach it outside any dialog.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;

struct Entry<T> {
    event: T,
    at: Instant,
    consumed: bool,
}

pub struct Latched<T> {
    log: Mutex<Vec<Entry<T>>>,
    /// Woken on every new event (a log nobody waits on, most of a load's, costs no channel).
    changed: Wakeup,
    /// At most this many events are kept (the oldest go first); `usize::MAX` for all.
    cap: usize,
}

impl<T: Clone> Latched<T> {
    /// A log that keeps every event.
    pub fn new() -> Self {
        Self::bounded(usize::MAX)
    }

    /// A log that keeps the last `cap` events.
    pub fn bounded(cap: usize) -> Self {
        Self {
            log: Mutex::new(Vec::new()),
            changed: Wakeup::default(),
            cap: cap.max(1),
        }
    }

    /// Appends `event` unless `skip`, shown the events so far, says no; returns whether it did.
    pub fn push_unless(&self, event: T, skip: impl FnOnce(Events<'_, T>, &T) -> bool) -> bool {
        let mut log = self.log.lock().expect("log lock");
        if skip(Events(&log), &event) {
            return false;
        }
        if log.len() >= self.cap {
            log.remove(0);
        }
        log.push(Entry {
            event,
            at: Instant::now(),
            consumed: false,
        });
        drop(log);
        self.changed.wake();
        true
    }

    pub fn push(&self, event: T) -> bool {
        self.push_unless(event, |_, _| false)
    }

    /// Every event so far, with when it happened.
    pub fn events(&self) -> Vec<(T, Instant)> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .map(|e| (e.event.clone(), e.at))
            .collect()
    }

    pub fn last(&self) -> Option<(T, Instant)> {
        self.log
            .lock()
            .expect("log lock")
            .last()
            .map(|e| (e.event.clone(), e.at))
    }

    /// Waits for the first event matching `pred` (one that happened already counts) and
    /// returns it. With `consume`, the event is marked used and a later wait will not see it.
    ///
    /// Cancel safety: safe; nothing is consumed unless this returns.
    pub async fn wait(&self, pred: impl Fn(&T) -> bool, consume: bool) -> (T, Instant) {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let mut log = self.log.lock().expect("log lock");
                if let Some(e) = log.iter_mut().find(|e| !e.consumed && pred(&e.event)) {
                    e.consumed |= consume;
                    return (e.event.clone(), e.at);
                }
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the log; unreachable in practice.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A change signal whose channel its first waiter makes: waking it costs nothing until
/// someone waits. A waiter subscribes before it looks at what it waits on, so a change made
/// after the look finds it subscribed.
#[derive(Default)]
pub(crate) struct Wakeup(OnceLock<watch::Sender<u64>>);

impl Wakeup {
    pub(crate) fn wake(&self) {
        if let Some(tx) = self.0.get() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.get_or_init(|| watch::channel(0).0).subscribe()
    }
}

/// The events of a log so far, oldest first, as [`Latched::push_unless`] shows them.
pub struct Events<'a, T>(&'a [Entry<T>]);

impl<'a, T> Events<'a, T> {
    pub fn iter(&self) -> impl Iterator<Item = &'a T> + 'a {
        self.0.iter().map(|e| &e.event)
    }

    pub fn last(&self) -> Option<&'a T> {
        self.0.last().map(|e| &e.event)
    }
}

impl<T: Clone> Default for Latched<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_sees_what_came_before_it_and_consumes_once() {
        let log = Latched::bounded(2);
        log.push(1);
        log.push(2);
        log.push(3);
        assert_eq!(
            log.events().iter().map(|e| e.0).collect::<Vec<_>>(),
            [2, 3],
            "bounded: the oldest went"
        );
        assert_eq!(log.wait(|e| *e > 1, true).await.0, 2);
        assert_eq!(log.wait(|e| *e > 1, true).await.0, 3);
        assert!(!log.push_unless(3, |seen, e| seen.iter().any(|s| s == e)));
    }
}

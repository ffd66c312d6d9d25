//! One ordered event stream, fanned out to every sink, off the engine's path: events are
//! numbered and queued under a short lock, and one dispatcher thread hands them to the sinks in
//! that order. No sink runs (writes a file, a terminal line, a database row) under a lock the
//! engine holds; the queue is bounded, so a sink that cannot keep up slows the emitters down
//! instead of growing memory without end.
//!
//! The hand-off is batched: an emitter only queues (no wake-up per event, which under load
//! cost a futex wake and a context switch for each of a call's ~15 events); the dispatcher
//! takes everything queued every [`BATCH_WAIT`], or at once when a batch is full or a flush
//! asks.

use events::{Event, EventKind, Retained};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Receives every event, in order, on the bus's dispatcher thread.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}

/// Events queued for the sinks at most; past it, emitters wait.
const QUEUE: usize = 4_096;
/// A batch this full wakes the dispatcher at once.
const BATCH: usize = 256;
/// The dispatcher takes what is queued at least this often: what a terminal shows lags the
/// wire by at most this much.
const BATCH_WAIT: Duration = Duration::from_millis(5);

// Events are by far the common message; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(Event),
    /// Answered once every event queued before it has reached every sink.
    Flush(std::sync::mpsc::SyncSender<()>),
}

#[derive(Default)]
struct Queue {
    /// The next sequence number (under the queue's lock, so numbers follow queue order).
    seq: u64,
    msgs: VecDeque<Msg>,
    /// The bus is gone: the dispatcher ends once the queue is empty.
    closed: bool,
    /// The dispatcher is gone (a sink panicked): events are dropped, not waited for.
    gone: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a batch is ready (full, a flush, the end).
    ready: Condvar,
    /// Signalled when the dispatcher took what was queued.
    space: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Numbers and timestamps events and hands each to every sink, in one order.
pub struct EventBus {
    shared: Arc<Shared>,
    start: Instant,
    start_wall: SystemTime,
}

/// Marks the dispatcher gone when it ends, even by a sink's panic: no emitter then waits for
/// room, and no flush for an answer, that would never come.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.gone = true;
        q.msgs.clear();
        drop(q);
        self.0.space.notify_all();
    }
}

fn dispatch(shared: &Shared, sinks: &[Arc<dyn EventSink>]) {
    let _gone = Gone(shared);
    let mut batch = Vec::new();
    loop {
        {
            let mut q = shared.lock();
            while q.msgs.is_empty() {
                if q.closed {
                    return;
                }
                q = shared
                    .ready
                    .wait_timeout(q, BATCH_WAIT)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            batch.extend(q.msgs.drain(..));
        }
        shared.space.notify_all();
        for msg in batch.drain(..) {
            match msg {
                Msg::Event(e) => {
                    for s in sinks {
                        s.event(&e);
                    }
                }
                Msg::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }
}

impl EventBus {
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Arc<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("callflow-events".into())
            .spawn(move || dispatch(&theirs, &sinks))
            .expect("the event dispatcher thread starts");
        Arc::new(Self {
            shared,
            start: Instant::now(),
            start_wall: SystemTime::now(),
        })
    }

    pub fn emit(&self, kind: EventKind) {
        self.emit_at(kind, SystemTime::now());
    }

    /// Emits an event that happened at `at` (wire messages carry their own timestamp).
    pub fn emit_at(&self, kind: EventKind, at: SystemTime) {
        let elapsed = at.duration_since(self.start_wall).unwrap_or_default();
        let ts_us = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut q = self.shared.lock();
        while q.msgs.len() >= QUEUE && !q.gone {
            self.shared.ready.notify_one();
            q = self
                .shared
                .space
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if q.gone {
            return;
        }
        let event = Event {
            seq: q.seq,
            ts_us,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            event: kind,
        };
        q.seq += 1;
        q.msgs.push_back(Msg::Event(event));
        if q.msgs.len() >= BATCH {
            self.shared.ready.notify_one();
        }
    }

    /// Returns once every event emitted so far has reached every sink (a run ends with it, so
    /// what reads the sinks afterwards sees the whole run).
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        {
            let mut q = self.shared.lock();
            if q.gone {
                return;
            }
            q.msgs.push_back(Msg::Flush(ack));
        }
        self.shared.ready.notify_one();
        // An error: the dispatcher went meanwhile (and dropped the flush with it).
        let _ = done.recv();
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for EventBus {
    /// The dispatcher hands out what is queued, then ends.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }
}

/// Keeps the run's events in memory for the reports drawn at its end, within a budget
/// ([`events::Retained`]: past it, messages and packets are counted, not kept).
#[derive(Default)]
pub struct Collector(Mutex<Retained>);

impl Collector {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A collector that keeps at most about `budget` bytes of events.
    pub fn with_budget(budget: usize) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Retained::new(budget))))
    }

    fn kept(&self) -> MutexGuard<'_, Retained> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn events(&self) -> Vec<Event> {
        self.kept().events().to_vec()
    }

    /// What the reports must say when events were left out of them.
    pub fn note(&self) -> Option<String> {
        self.kept().note()
    }
}

impl EventSink for Collector {
    fn event(&self, event: &Event) {
        self.kept().push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;

    impl EventSink for Panics {
        fn event(&self, _: &Event) {
            panic!("a sink that fails");
        }
    }

    fn log(n: usize) -> EventKind {
        EventKind::Log(events::Log {
            level: events::Level::Info,
            ua: None,
            node: None,
            call_id: None,
            message: format!("event {n}"),
        })
    }

    /// A sink that panics takes the dispatcher with it; the engine's emits and flushes go on
    /// (the events are dropped) instead of waiting forever for room in the queue.
    #[test]
    fn a_dispatcher_gone_never_blocks_the_emitters() {
        let bus = EventBus::new(vec![Arc::new(Panics)]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for n in 0..3 * QUEUE {
                bus.emit(log(n));
            }
            bus.flush();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("every emit and the flush return");
    }
}

//! One ordered event stream, fanned out to every sink, off the engine's path: events are
//! numbered and queued under a short lock, and one dispatcher thread hands them to the sinks in
//! that order. No sink runs (writes a file, a terminal line, a database row) under a lock the
//! engine holds; the queue is bounded, so a sink that cannot keep up slows the emitters down
//! instead of growing memory without end.

use events::{Event, EventKind, Retained};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Receives every event, in order, on the bus's dispatcher thread.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}

/// Events queued for the sinks at most; past it, emitters wait. std's bounded channel sets up
/// every slot at once: 65,536 of them cost 10 ms of page faults per run, 1,024 nothing one can
/// measure (docs/performance.md).
const QUEUE: usize = 1_024;

// Events are by far the common message; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(Event),
    /// Answered once every event queued before it has reached every sink.
    Flush(SyncSender<()>),
}

/// Numbers and timestamps events and hands each to every sink, in one order.
pub struct EventBus {
    /// The next sequence number and the queue, under one lock so numbers follow queue order.
    queue: Mutex<(u64, SyncSender<Msg>)>,
    start: Instant,
    start_wall: SystemTime,
}

fn dispatch(rx: Receiver<Msg>, sinks: Vec<Arc<dyn EventSink>>) {
    for msg in rx {
        match msg {
            Msg::Event(e) => {
                for s in &sinks {
                    s.event(&e);
                }
            }
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

impl EventBus {
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Arc<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("callflow-events".into())
            .spawn(move || dispatch(rx, sinks))
            .expect("the event dispatcher thread starts");
        Arc::new(Self {
            queue: Mutex::new((0, tx)),
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
        let mut guard = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let event = Event {
            seq: guard.0,
            ts_us,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            event: kind,
        };
        guard.0 += 1;
        let _ = guard.1.send(Msg::Event(event));
    }

    /// Returns once every event emitted so far has reached every sink (a run ends with it, so
    /// what reads the sinks afterwards sees the whole run).
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        let sent = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .send(Msg::Flush(ack));
        if sent.is_ok() {
            let _ = done.recv();
        }
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    pub fn start(&self) -> Instant {
        self.start
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

    fn kept(&self) -> std::sync::MutexGuard<'_, Retained> {
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

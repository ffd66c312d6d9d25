//! One ordered event stream, fanned out to every sink.

use events::{Event, EventKind, Retained};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Receives every event, in order. Called with the bus lock held: keep it quick.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}

/// Numbers and timestamps events and hands each to every sink, in one order.
pub struct EventBus {
    sinks: Mutex<(u64, Vec<Arc<dyn EventSink>>)>,
    start: Instant,
    start_wall: SystemTime,
}

impl EventBus {
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Arc<Self> {
        Arc::new(Self {
            sinks: Mutex::new((0, sinks)),
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
            .sinks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let event = Event {
            seq: guard.0,
            ts_us,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            event: kind,
        };
        guard.0 += 1;
        for s in &guard.1 {
            s.event(&event);
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

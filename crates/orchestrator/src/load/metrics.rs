//! Prometheus metrics of a load (`--metrics ADDR`), through prometheus-client: iterations by
//! outcome, responses by direction and status, retransmissions, calls in flight, and the setup
//! latency (INVITE to 2xx) as a histogram. [`super::LoadStats`] updates them as it counts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The metrics of one load and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    iterations: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    retransmissions: Family<Labels, Counter>,
    in_flight: Gauge,
    started: Counter,
    setup: Histogram,
    pdd: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("callflow_load");
        let iterations = Family::<Labels, Counter>::default();
        let responses = Family::<Labels, Counter>::default();
        let retransmissions = Family::<Labels, Counter>::default();
        let in_flight = Gauge::default();
        let started = Counter::default();
        // 0.1 ms to about 6.5 s.
        let setup = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let pdd = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register(
            "iterations",
            "Iterations ended, by outcome (passed, failed, stopped)",
            iterations.clone(),
        );
        registry.register("started", "Iterations started", started.clone());
        registry.register(
            "responses",
            "SIP responses, by direction (sent, received) and status code",
            responses.clone(),
        );
        registry.register(
            "retransmissions",
            "Requests and final responses seen twice on one call and CSeq, by direction",
            retransmissions.clone(),
        );
        registry.register("in_flight", "Iterations in flight", in_flight.clone());
        registry.register(
            "setup_seconds",
            "INVITE to 2xx, measured by the caller",
            setup.clone(),
        );
        registry.register(
            "pdd_seconds",
            "INVITE to the first 18x (post-dial delay), measured by the caller",
            pdd.clone(),
        );
        Self {
            registry,
            iterations,
            responses,
            retransmissions,
            in_flight,
            started,
            setup,
            pdd,
        }
    }
}

fn label(k: &str, v: impl Into<String>) -> Labels {
    vec![(k.to_owned(), v.into())]
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn ended(&self, outcome: &str) {
        self.iterations
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    pub(crate) fn response(&self, direction: &str, code: u16) {
        self.responses
            .get_or_create(&vec![
                ("direction".to_owned(), direction.to_owned()),
                ("code".to_owned(), code.to_string()),
            ])
            .inc();
    }

    pub(crate) fn retransmission(&self, direction: &str) {
        self.retransmissions
            .get_or_create(&label("direction", direction))
            .inc();
    }

    pub(crate) fn progress(&self, started: u64, in_flight: u64) {
        let before = self.started.get();
        if started > before {
            self.started.inc_by(started - before);
        }
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    pub(crate) fn setup(&self, d: Duration) {
        self.setup.observe(d.as_secs_f64());
    }

    pub(crate) fn pdd(&self, d: Duration) {
        self.pdd.observe(d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_render_as_openmetrics() {
        let m = Metrics::default();
        m.ended("passed");
        m.ended("failed");
        m.response("received", 200);
        m.retransmission("sent");
        m.progress(5, 3);
        m.setup(Duration::from_micros(800));
        let text = m.render();
        for want in [
            "callflow_load_iterations_total{outcome=\"passed\"} 1",
            "callflow_load_responses_total{direction=\"received\",code=\"200\"} 1",
            "callflow_load_retransmissions_total{direction=\"sent\"} 1",
            "callflow_load_in_flight 3",
            "callflow_load_started_total 5",
            "callflow_load_setup_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}

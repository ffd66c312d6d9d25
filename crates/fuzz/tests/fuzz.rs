//! The fuzz run: for each target, every regression input, then mutated seeds from bolero for
//! `CALLFLOW_FUZZ_SECS` seconds (2 by default). A failure prints bolero's input and seed; save
//! the input (`mutate` of it) under `regressions/<target>/` and fix the cause.

use callflow_fuzz::{Target, mutate};
use std::time::Duration;

fn budget() -> Duration {
    let secs = std::env::var("CALLFLOW_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    Duration::from_secs(secs)
}

fn fuzz(target: Target) {
    for (name, input) in target.regressions() {
        eprintln!("{}: regression {name}", target.name());
        target.run(&input);
    }
    let corpus = target.corpus();
    bolero::check!()
        .with_test_time(budget())
        .with_max_len(4096)
        .for_each(|bytes: &[u8]| target.run(&mutate(&corpus, bytes)));
}

#[test]
fn fuzz_yaml_reader() {
    fuzz(Target::Yaml);
}

#[test]
fn fuzz_sipflow_reader() {
    fuzz(Target::Sipflow);
}

#[test]
fn fuzz_sip_intake() {
    fuzz(Target::Sip);
}

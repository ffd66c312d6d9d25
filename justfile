# callflow tasks. `just` lists them. (Debian has no `just` package: `cargo install just`.)

# List the recipes.
help:
    @just --list

# Run the bundled basic call on loopback.
run:
    cargo run --release -p callflow -- run

# Every test (installs the peers the tests use where they are missing).
test:
    scripts/test

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --check
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs: lints, then the tests.
check: lint test

# Benchmark the basic call from process start to verdict (needs hyperfine).
bench runs="50":
    bench/basic-call.sh {{runs}}

# Validate every fixture.
validate:
    cargo run -q -p callflow -- validate fixtures/*.yaml fixtures/*.json

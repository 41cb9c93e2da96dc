# wafleet tasks. A new user needs two: `just demo` and `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Make sure RabbitMQ and PostgreSQL are up (local ones, else Docker compose, else say what is missing)
services:
    scripts/services.sh

# The whole fleet against the Meta simulator: three candidates messaged, statuses and a reply back
demo: services
    cargo run --quiet --package wafleet-wafleet -- demo

# Every test (unit and end-to-end, against the real broker and database)
test: services
    scripts/clean-test-leftovers.sh
    # The end-to-end tests that kill a service run the `wafleet` binary itself.
    cargo build --package wafleet-wafleet --bin wafleet
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run --workspace --no-fail-fast; \
    else \
        cargo test --workspace --no-fail-fast; \
    fi

# Formatting and lints, as CI checks them
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Validate the deploy files offline (compose, alert rules, YAML, JSON)
deploy-check:
    docker-compose -f deploy/compose.yaml config > /dev/null
    promtool check rules deploy/prometheus/alerts.yml
    yamllint -c deploy/.yamllint deploy/
    for f in deploy/grafana/dashboards/*.json deploy/rabbitmq/definitions.json; do \
        python3 -m json.tool "$f" > /dev/null || { echo "invalid JSON: $f"; exit 1; }; \
    done

# Validate the OpenAPI document with openapi-spec-validator (PyPI; installed if missing)
openapi-check:
    command -v openapi-spec-validator >/dev/null 2>&1 || python3 -m pip install --quiet openapi-spec-validator
    mkdir -p target
    cargo run --quiet --package wafleet-wafleet -- openapi > target/openapi.json
    openapi-spec-validator target/openapi.json

# Run one service locally (ingest, dispatcher, webhooks, all, meta-sim)
run service: services
    cargo run --quiet --package wafleet-wafleet -- migrate
    cargo run --quiet --package wafleet-wafleet -- {{service}}

# Benchmarks (release build; run on a quiet machine). Figures go in the issue notes.
bench: bench-webhooks bench-rate bench-campaigns

# The whole fleet as separate release processes: N messages per intake path (AMQP, HTTP, campaigns) beside the broker/database ceilings, e.g. `just bench-fleet --messages 20000`
bench-fleet *args: services
    cargo build --release -p wafleet-wafleet -p wafleet-bench
    "${CARGO_TARGET_DIR:-target}/release/wafleet-bench" fleet {{args}}

# Issue 13's faults against the release fleet on a private PostgreSQL and RabbitMQ: exits non-zero on any loss, duplicate send, stuck message, missing status or cap overshoot, e.g. `just chaos --messages 5000`, or on a 3-node cluster `just chaos --nodes 3`
chaos *args:
    cargo build --release -p wafleet-wafleet -p wafleet-bench
    "${CARGO_TARGET_DIR:-target}/release/wafleet-bench" chaos {{args}}

# The webhook receiver at 1,000 signed POSTs/s for 10 s: p50/p90/p99 of the 200s (WAFLEET_BENCH_RATE to change)
bench-webhooks: services
    cargo nextest run --release -p wafleet-tests --run-ignored only -E 'test(/webhook_bench/)' --no-capture

# One sender's achieved rate over 10 s at 80/s and at 1,000/s against the simulator (within 2 %)
bench-rate: services
    cargo nextest run --release -p wafleet-tests --run-ignored only -E 'test(/rate_bench/)' --no-capture

# Campaigns: accepting 100,000 recipients (time, ingest peak memory) and singles beside a 50,000-recipient campaign (p99 intake→sent)
bench-campaigns: services
    cargo build --release --package wafleet-wafleet
    cargo nextest run --release -p wafleet-tests --run-ignored only -E 'test(/campaign_bench/)' --no-capture

# Fuzz each parser for `seconds` (default 60) in turn: webhook payload, signature, phone number, intake request. Crashes land in fuzz/artifacts/<target>/
fuzz seconds="60":
    cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz
    for t in webhook_payload signature phone_number intake_request; do \
        mkdir -p fuzz/corpus/$t; \
        log=$(mktemp); \
        echo "== $t ({{seconds}} s)"; \
        cargo +nightly fuzz run "$t" -O fuzz/corpus/$t fuzz/seeds/$t -- \
            -max_total_time={{seconds}} -print_final_stats=1 > "$log" 2>&1 \
            || { tail -n 40 "$log"; echo "$t: crash, input in fuzz/artifacts/$t/"; exit 1; }; \
        grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' "$log"; \
        rm -f "$log"; \
    done

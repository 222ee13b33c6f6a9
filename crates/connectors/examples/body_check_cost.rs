//! What the input policy's body check (`input::check_body`) costs per body, on the shapes
//! `docs/benchmarks.md` reports ("The input policy's body check"): a 2 KB Kustomer-like
//! envelope with escapes, Unicode and brackets inside strings, and 1 MiB of objects in an
//! array (the default `server.max_body_size`). Three runs each, every run printed.
//!
//! ```sh
//! cargo run --release -p intake-connectors --example body_check_cost
//! ```

use std::hint::black_box;
use std::time::Instant;

use intake_connectors::input::check_body;

/// A `kustomer.message.create` envelope of about 2 KB.
fn envelope() -> Vec<u8> {
    let preview = "Hi team, the order [#48213] {still} hasn't arrived \\\"as promised\\\" \
                   \\u00e9t\\u00e9 \\ud83d\\ude00 — café ✓ ";
    let mut text = String::new();
    while text.len() < 1400 {
        text.push_str(preview);
    }
    format!(
        r#"{{"id":"6475f2a0c9e77c0012b3c0de","name":"kustomer.message.create","org":"5f1e0a","partition":"5f1e0a","createdAt":"2026-11-27T09:15:00.000Z","data":{{"type":"message","id":"6475f2a0c9e77c0012b3c0df","attributes":{{"channel":"email","direction":"in","preview":"{text}","subject":"Order [#48213]","createdAt":"2026-11-27T09:15:00.000Z","meta":{{"tags":["vip","order"],"score":0.93}}}},"relationships":{{"conversation":{{"data":{{"type":"conversation","id":"6475f29ec9e77c0012b3c0d1"}}}},"customer":{{"data":{{"type":"customer","id":"6475f2a0c9e77c0012b3c0aa"}}}}}}}}}}"#
    )
    .into_bytes()
}

/// About 1 MiB of small objects in one array.
fn objects() -> Vec<u8> {
    let mut body = String::from("[");
    let mut i = 0u64;
    while body.len() < (1 << 20) - 100 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":{i},"name":"item {i}","tags":["a","b"],"note":"line\nnext \"quoted\""}}"#
        ));
        i += 1;
    }
    body.push(']');
    body.into_bytes()
}

/// Checks `body` `iterations` times and prints the time per check and the throughput.
fn time(name: &str, body: &[u8], iterations: u32) {
    assert_eq!(check_body(body), Ok(()), "{name} must pass the check");
    for _ in 0..iterations / 10 {
        black_box(check_body(black_box(body)).is_ok());
    }
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(check_body(black_box(body)).is_ok());
    }
    let per = started.elapsed().as_secs_f64() / f64::from(iterations);
    println!(
        "{name} ({} bytes): {:.3} µs per check, {:.2} GB/s",
        body.len(),
        per * 1e6,
        body.len() as f64 / per / 1e9
    );
}

fn main() {
    let (small, large) = (envelope(), objects());
    for run in 1..=3 {
        println!("run {run}");
        time("2 KB envelope", &small, 200_000);
        time("1 MiB of objects", &large, 300);
    }
}

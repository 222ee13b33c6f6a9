//! `intake-loadgen`: the load generator behind intake's ingest benchmarks.
//!
//! Two of the product's quality bars are numbers, and this binary measures both:
//!
//! * `ingest` measures **ingest throughput and acknowledgement latency**: how many signed
//!   Kustomer webhooks per second a server acknowledges, with p50/p90/p99/max latency. Run it
//!   against `intake-noop-server` (the ceiling) and against intake; the bar is intake ≥ half the
//!   ceiling. With `--rate` it paces to a fixed load instead of running flat out, which is how
//!   "ack latency at half of maximum load" is measured.
//! * `e2e` measures **accept → delivered latency** and, above all, that nothing acknowledged is
//!   lost: it runs its own capture handler, sends paced ingests, remembers the event id and the
//!   instant of every 200, and then waits until every one of those ids has arrived at the
//!   handler as a `webhook-id`. Any acknowledged id that never arrives is reported loudly and
//!   fails the run.
//!
//! How it keeps its own cost off the measurement, which matters on a 2-core machine where the
//! load generator competes with the server for CPU:
//!
//! * One HTTP/1.1 keep-alive connection per concurrency slot, driven with hyper's low-level
//!   `client::conn::http1` (no pool, no TLS, no redirects); all connections are opened before
//!   the clock starts.
//! * Every request carries a unique event, message and conversation id (so intake never sees a
//!   duplicate), and every body is signed as Kustomer signs it. The HMACs are computed for a
//!   pool of sequence numbers on all cores *before* the timed phase. At send time a body is
//!   rebuilt by copying a ~2 KB template and writing three 12-digit hex sequence numbers into
//!   it, which costs a memcpy; only if the pool runs out is a body signed on the measured path,
//!   and the report says so.
//! * Latencies are kept exactly (one `u64` of nanoseconds per request) and sorted once at the
//!   end, so percentiles are exact rather than bucketed.
//! * With `--rate`, latency is corrected for coordinated omission as wrk2 does (a slow
//!   response delays the requests queued behind it on its connection, and that wait is the
//!   server's), but on a virtual timeline where this client is perfectly punctual, so the
//!   server is not charged for tokio's 1 ms timer tick. The summary also prints the raw service
//!   time (send → response) and how late the pacing timer woke, to tell the two apart.
//!
//! The load generator runs on the same CPUs as the server under test; on a 2-core machine the
//! numbers are the whole system's, and anything else running at the same time moves them.
//!
//! ```text
//! intake-loadgen ingest --url http://127.0.0.1:18080/ingest/bench-kustomer \
//!     --secret bench-kustomer-secret --concurrency 64 --duration 10s --json
//! intake-loadgen e2e --url http://127.0.0.1:18080/ingest/bench-kustomer \
//!     --secret bench-kustomer-secret --rate 1000 --duration 10s --handler-listen 127.0.0.1:9100
//! ```
//!
//! The exit status is 0 for a clean run and 2 when any request failed (non-200 status or
//! transport error) or, for `e2e`, when any acknowledged event was not delivered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use tokio::net::TcpStream;

type HmacSha256 = Hmac<Sha256>;

const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-kustomer-webhook-signature");
const EVENT_HEADER: HeaderName = HeaderName::from_static("x-kustomer-webhook-event");
const EVENT_NAME: &str = "kustomer.message.create";

#[derive(Debug, Parser)]
#[command(
    name = "intake-loadgen",
    version,
    about = "Load generator for intake's ingest benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send signed Kustomer webhooks as fast as possible (or at --rate) and report throughput
    /// and acknowledgement latency.
    Ingest(LoadArgs),
    /// Send paced ingests, capture the deliveries on an in-process handler, and report
    /// accept → delivered latency and any acknowledged event that never arrived.
    E2e(E2eArgs),
}

#[derive(Debug, Clone, Args)]
struct LoadArgs {
    /// Ingest URL, e.g. http://127.0.0.1:18080/ingest/bench-kustomer (plain http only).
    /// Several, separated by commas, spread the connections over several nodes in turn.
    #[arg(long)]
    url: String,
    /// The source's Kustomer webhook secret, used as the HMAC-SHA256 key.
    #[arg(long, env = "INTAKE_LOADGEN_SECRET")]
    secret: String,
    /// Number of keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the measured phase (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured phase before it, to warm up connections, caches and the server.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Pace to this many requests per second in total (open loop) instead of running flat out.
    #[arg(long)]
    rate: Option<f64>,
    /// Upper bound on the request rate, used to size the pool of pre-signed bodies when
    /// --rate is not given. Past the pool, bodies are signed on the measured path (reported).
    #[arg(long, default_value_t = 100_000)]
    max_rps: u64,
    /// Approximate body size in bytes.
    #[arg(long, default_value_t = 2048)]
    body_size: usize,
    /// Number the bodies' ids in scattered order instead of counting up. Counting up is what
    /// Kustomer's time-prefixed object ids do; scattered is what ids drawn at random (UUIDs,
    /// hashes) do, and every dedupe key then lands on its own page of the store's index.
    #[arg(long)]
    scattered_ids: bool,
    /// Tokio worker threads for the load generator; defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object on stdout (the human summary then goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Args)]
struct E2eArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Where the capture handler listens; intake's destination must point here.
    #[arg(long, default_value = "127.0.0.1:9100")]
    handler_listen: SocketAddr,
    /// How long to wait after the send phase for acknowledged events to be delivered.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain: Duration,
    /// Completion receipts: confirm every delivery (by its `intake-delivery-id`) to this
    /// intake base URL, e.g. http://127.0.0.1:18080, in batches of up to 1000 every 20 ms, as
    /// a handler on `completion = "receipt"` does once its work is done. The run then also
    /// waits for every acknowledged event's confirmation to be accepted.
    #[arg(long)]
    confirm_url: Option<String>,
    /// The bearer token the confirmations carry (the operator's or the tenant's).
    #[arg(long, env = "INTAKE_LOADGEN_CONFIRM_TOKEN", default_value = "")]
    confirm_token: String,
}

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`; use ms, s or m"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{s}` is not a usable duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let load = match &cli.command {
        Command::Ingest(load) => load,
        Command::E2e(e2e) => &e2e.load,
    };
    if load.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if let Some(rate) = load.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = load.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.build().context("building the tokio runtime")?;
    match cli.command {
        Command::Ingest(load) => runtime.block_on(run_ingest(load)),
        Command::E2e(e2e) => runtime.block_on(run_e2e(e2e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Target

/// Where requests go: resolved once, before the clock starts.
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// The request target in origin form (`/ingest/bench-kustomer`), as HTTP/1.1 sends it.
    path: Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only plain http:// URLs are supported (got `{url}`)");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}` has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = (authority.host(), port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} resolves to no address", authority.host()))?;
        let host = HeaderValue::from_str(authority.as_str()).context("host header")?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("path")?;
        Ok(Self { addr, host, path })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection task ends when the server closes the socket; the error, if any, is
        // seen by the next `send_request` on `sender`, which is where it is counted.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// Width of the hex sequence number written into each id (48 bits).
const SEQ_WIDTH: usize = 12;
const SEQ_MARK: &str = "@@@@@@@@@@@@";
const ORG: &str = "5f0c3a1e9b7d2c4a8e6f1b3d";
const PADDING: &str =
    "Hello team, my order arrived damaged and I would like a replacement please. ";

/// Unique, pre-signed Kustomer `message.create` webhooks.
///
/// Each body is a fixed template with three ids (event, message, conversation) shaped like
/// Kustomer's 24-hex-digit object ids: 12 digits chosen at random per run, so that repeated runs
/// against one data directory do not collide, followed by a 12-digit sequence number (or its
/// [`scatter`]ed image).
struct Bodies {
    template: Vec<u8>,
    scattered: bool,
    seq_offsets: [usize; 3],
    mac: HmacSha256,
    /// Lowercase hex signatures for sequence numbers `0..signatures.len()`.
    signatures: Vec<[u8; 64]>,
    next: AtomicU64,
    signed_inline: AtomicU64,
}

impl Bodies {
    fn new(secret: &str, body_size: usize, pool: usize, scattered: bool) -> Result<Self> {
        let mut rng = rand::rng();
        let mut run_id = || format!("{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff);
        let (event, message, conversation) = (run_id(), run_id(), run_id());
        let head = format!(
            r#"{{"id":"{event}{SEQ_MARK}","name":"{EVENT_NAME}","org":"{ORG}","orgName":"bench","partition":"{ORG}","data":{{"type":"message","id":"{message}{SEQ_MARK}","attributes":{{"channel":"email","direction":"in","preview":""#
        );
        let tail = format!(
            r#"","createdAt":"2026-11-28T10:00:00.000Z","updatedAt":"2026-11-28T10:00:00.000Z","rev":1}},"relationships":{{"conversation":{{"data":{{"type":"conversation","id":"{conversation}{SEQ_MARK}"}}}}}}}},"createdAt":"2026-11-28T10:00:00.000Z"}}"#
        );
        let pad_len = body_size.saturating_sub(head.len() + tail.len());
        let padding: String = PADDING.chars().cycle().take(pad_len).collect();
        let text = format!("{head}{padding}{tail}");

        let mut seq_offsets = [0usize; 3];
        let mut from = 0;
        for offset in &mut seq_offsets {
            let at = text[from..]
                .find(SEQ_MARK)
                .context("template lost a sequence mark")?;
            *offset = from + at;
            from = *offset + SEQ_WIDTH;
        }
        let mac = HmacSha256::new_from_slice(secret.as_bytes()).context("HMAC key")?;
        let mut bodies = Self {
            template: text.into_bytes(),
            scattered,
            seq_offsets,
            mac,
            signatures: Vec::new(),
            next: AtomicU64::new(0),
            signed_inline: AtomicU64::new(0),
        };
        bodies.presign(pool);
        Ok(bodies)
    }

    /// Signs sequence numbers `0..pool` on every core.
    fn presign(&mut self, pool: usize) {
        let mut signatures = vec![[0u8; 64]; pool];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = pool.div_ceil(threads).max(1);
        let this = &*self;
        std::thread::scope(|scope| {
            for (i, part) in signatures.chunks_mut(chunk).enumerate() {
                scope.spawn(move || {
                    let mut body = Vec::with_capacity(this.template.len());
                    for (j, out) in part.iter_mut().enumerate() {
                        this.render_into((i * chunk + j) as u64, &mut body);
                        *out = this.sign(&body);
                    }
                });
            }
        });
        self.signatures = signatures;
    }

    fn render_into(&self, seq: u64, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.clear();
        out.extend_from_slice(&self.template);
        let seq = if self.scattered { scatter(seq) } else { seq };
        for &offset in &self.seq_offsets {
            let field = &mut out[offset..offset + SEQ_WIDTH];
            for (k, byte) in field.iter_mut().enumerate() {
                let shift = 4 * (SEQ_WIDTH - 1 - k);
                *byte = HEX[((seq >> shift) & 0xf) as usize];
            }
        }
    }

    fn sign(&self, body: &[u8]) -> [u8; 64] {
        let mut mac = self.mac.clone();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 64];
        // Cannot fail: the output is exactly twice the digest's length.
        let _ = hex::encode_to_slice(digest, &mut out);
        out
    }

    /// The next unique body and its signature header.
    fn take(&self) -> Result<(Bytes, HeaderValue)> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut body = Vec::with_capacity(self.template.len());
        self.render_into(seq, &mut body);
        let signature = match self.signatures.get(seq as usize) {
            Some(sig) => *sig,
            None => {
                self.signed_inline.fetch_add(1, Ordering::Relaxed);
                self.sign(&body)
            }
        };
        let header = HeaderValue::from_bytes(&signature).context("signature header")?;
        Ok((Bytes::from(body), header))
    }
}

/// A bijection of the 48-bit sequence numbers that scatters consecutive ones across the whole
/// range: xor-shifts and multiplications by odd constants, each invertible modulo 2^48, so that
/// ids stay unique.
fn scatter(seq: u64) -> u64 {
    const MASK: u64 = (1 << (4 * SEQ_WIDTH)) - 1;
    let mut x = seq & MASK;
    x ^= x >> 24;
    x = x.wrapping_mul(0x9e37_79b9_7f4b) & MASK;
    x ^= x >> 20;
    x = x.wrapping_mul(0xc2b2_ae3d_27d5) & MASK;
    x ^ (x >> 24)
}

// ---------------------------------------------------------------------------------------------
// The load loop

/// The timeline shared by every slot.
#[derive(Clone, Copy)]
struct Plan {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    /// Per-slot interval between sends when paced.
    interval: Option<Duration>,
    /// Pacing offset between consecutive slots, so paced sends are spread evenly.
    stagger: Duration,
}

struct Shared {
    /// One target per node; connection `slot` goes to `targets[slot % len]`.
    targets: Vec<Target>,
    bodies: Bodies,
    plan: Plan,
    /// Whether to parse the acknowledged event id out of each 200 (e2e).
    collect_acks: bool,
}

/// An acknowledged event, for the e2e run.
struct Ack {
    id: String,
    at: Instant,
    measured: bool,
}

#[derive(Default)]
struct SlotStats {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latencies_ns: Vec<u64>,
    warmup_requests: u64,
    warmup_failures: u64,
    reconnects: u64,
    /// How late the pacing timer woke us, for each paced request that had to wait.
    timer_late_ns: Vec<u64>,
    /// Send to response, without any wait for the schedule (differs from the latency only
    /// when paced and behind schedule).
    service_ns: Vec<u64>,
    /// Requests sent late because the previous response on the connection came late.
    behind: u64,
    acks: Vec<Ack>,
    acks_without_id: u64,
}

impl SlotStats {
    fn merge(mut self, other: SlotStats) -> Self {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies_ns.extend(other.latencies_ns);
        self.warmup_requests += other.warmup_requests;
        self.warmup_failures += other.warmup_failures;
        self.reconnects += other.reconnects;
        self.timer_late_ns.extend(other.timer_late_ns);
        self.behind += other.behind;
        self.service_ns.extend(other.service_ns);
        self.acks.extend(other.acks);
        self.acks_without_id += other.acks_without_id;
        self
    }

    fn error(&mut self, measured: bool, e: &anyhow::Error) {
        if measured {
            // The outermost context names the step; the root cause says why.
            let (step, cause) = (e.to_string(), e.root_cause().to_string());
            let key = if step == cause {
                step
            } else {
                format!("{step}: {cause}")
            };
            *self.errors.entry(key).or_default() += 1;
        } else {
            self.warmup_requests += 1;
            self.warmup_failures += 1;
        }
    }
}

#[derive(Deserialize)]
struct AckBody {
    id: String,
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes)> {
    sender.ready().await.context("connection")?;
    let response = sender.send_request(request).await.context("request")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("response body")?
        .to_bytes();
    Ok((status, body))
}

fn build_request(
    target: &Target,
    body: Bytes,
    signature: HeaderValue,
) -> Result<Request<Full<Bytes>>> {
    Request::post(target.path.clone())
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(EVENT_HEADER, HeaderValue::from_static(EVENT_NAME))
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))
        .context("building the request")
}

async fn run_slot(
    shared: Arc<Shared>,
    slot: usize,
    connection: SendRequest<Full<Bytes>>,
) -> SlotStats {
    let plan = shared.plan;
    let mut stats = SlotStats::default();
    let mut connection = Some(connection);
    let slot_start = plan.start + plan.stagger * slot as u32;
    let mut k: u64 = 0;
    // When paced, latency is measured on a virtual timeline on which this client is perfectly
    // punctual and only the server is slow: request k is sent at max(its scheduled time, the
    // virtual completion of request k-1) and completes one measured service time later. Its
    // latency is that completion minus its scheduled time. This is the correction for
    // coordinated omission (a slow response delays the requests queued behind it, and that wait
    // is the server's), without charging the server for our timer, which wakes on a 1 ms tick.
    let mut virtual_done = plan.start;
    loop {
        let now = Instant::now();
        if now >= plan.end {
            // Even if behind schedule: what was not sent by the end is what the server could not
            // take, and shows as a shortfall in the achieved rate.
            break;
        }
        let scheduled = match plan.interval {
            Some(interval) => {
                let scheduled = slot_start + interval.mul_f64(k as f64);
                k += 1;
                if scheduled >= plan.end {
                    break;
                }
                if now < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    let woke = Instant::now();
                    stats
                        .timer_late_ns
                        .push((woke - scheduled).as_nanos() as u64);
                }
                Some(scheduled)
            }
            None => None,
        };

        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            if connection.is_some() {
                stats.reconnects += 1;
            }
            connection = None;
            match shared.targets[slot % shared.targets.len()].connect().await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    stats.error(Instant::now() >= plan.measure_start, &e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // The server refused us: the time lost is its.
                    virtual_done = virtual_done.max(Instant::now());
                    continue;
                }
            }
        }
        let Some(sender) = connection.as_mut() else {
            continue;
        };

        let sent = Instant::now();
        let measured = sent >= plan.measure_start;
        let outcome = match shared.bodies.take() {
            Ok((body, signature)) => match build_request(
                &shared.targets[slot % shared.targets.len()],
                body,
                signature,
            ) {
                Ok(request) => exchange(sender, request).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let done = Instant::now();
        let service = done - sent;
        let latency = match scheduled {
            Some(scheduled) => {
                if measured && virtual_done > scheduled {
                    stats.behind += 1;
                }
                virtual_done = virtual_done.max(scheduled) + service;
                virtual_done - scheduled
            }
            None => service,
        };
        match outcome {
            Ok((status, body)) => {
                if measured {
                    *stats.statuses.entry(status.as_u16()).or_default() += 1;
                    stats.latencies_ns.push(latency.as_nanos() as u64);
                    stats.service_ns.push(service.as_nanos() as u64);
                } else {
                    stats.warmup_requests += 1;
                    if status != StatusCode::OK {
                        stats.warmup_failures += 1;
                    }
                }
                if shared.collect_acks && status == StatusCode::OK {
                    match serde_json::from_slice::<AckBody>(&body) {
                        Ok(ack) => stats.acks.push(Ack {
                            id: ack.id,
                            at: done,
                            measured,
                        }),
                        Err(_) => stats.acks_without_id += 1,
                    }
                }
            }
            Err(e) => {
                stats.error(measured, &e);
                connection = None;
            }
        }
    }
    stats
}

/// The result of one load phase.
struct LoadReport {
    stats: SlotStats,
    pool: usize,
    signed_inline: u64,
    prep: Duration,
    /// Every body has the template's length.
    body_len: usize,
}

async fn run_load(load: &LoadArgs, collect_acks: bool) -> Result<LoadReport> {
    let targets = load
        .url
        .split(',')
        .map(|u| Target::parse(u.trim()))
        .collect::<Result<Vec<_>>>()?;
    let total = load.warmup + load.duration;
    let pool = match load.rate {
        Some(rate) => (rate * total.as_secs_f64() * 1.02).ceil() as usize + 4 * load.concurrency,
        None => (load.max_rps as f64 * total.as_secs_f64()).ceil() as usize,
    };
    let prep_started = Instant::now();
    let secret = load.secret.clone();
    let (body_size, scattered) = (load.body_size, load.scattered_ids);
    let bodies =
        tokio::task::spawn_blocking(move || Bodies::new(&secret, body_size, pool, scattered))
            .await
            .context("signing task")??;
    let prep = prep_started.elapsed();

    // Open every connection before the clock starts.
    let mut connections = Vec::with_capacity(load.concurrency);
    for slot in 0..load.concurrency {
        connections.push(targets[slot % targets.len()].connect().await?);
    }

    let start = Instant::now() + Duration::from_millis(5);
    let interval = load
        .rate
        .map(|rate| Duration::from_secs_f64(load.concurrency as f64 / rate));
    let stagger = load
        .rate
        .map_or(Duration::ZERO, |rate| Duration::from_secs_f64(1.0 / rate));
    let plan = Plan {
        start,
        measure_start: start + load.warmup,
        end: start + total,
        interval,
        stagger,
    };
    let shared = Arc::new(Shared {
        targets,
        bodies,
        plan,
        collect_acks,
    });
    tokio::time::sleep_until(start.into()).await;
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(slot, c)| tokio::spawn(run_slot(shared.clone(), slot, c)))
        .collect();
    let mut stats = SlotStats::default();
    for task in tasks {
        stats = stats.merge(task.await.context("load task panicked")?);
    }
    stats.latencies_ns.sort_unstable();
    stats.timer_late_ns.sort_unstable();
    stats.service_ns.sort_unstable();
    Ok(LoadReport {
        stats,
        pool,
        signed_inline: shared.bodies.signed_inline.load(Ordering::Relaxed),
        prep,
        body_len: shared.bodies.template.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// Nearest-rank percentile of sorted nanoseconds, in milliseconds.
fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[index] as f64 / 1e6
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Summary {
    requests: u64,
    ok: u64,
    non_200: u64,
    errors: u64,
    rps: f64,
}

fn summarize(load: &LoadArgs, report: &LoadReport) -> Summary {
    let s = &report.stats;
    let requests: u64 = s.statuses.values().sum();
    let ok = s.statuses.get(&200).copied().unwrap_or(0);
    let errors: u64 = s.errors.values().sum();
    Summary {
        requests,
        ok,
        non_200: requests - ok,
        errors,
        rps: requests as f64 / load.duration.as_secs_f64(),
    }
}

/// The common human-readable part; returns the lines.
fn human_load(mode: &str, load: &LoadArgs, report: &LoadReport, sum: &Summary) -> Vec<String> {
    let s = &report.stats;
    let lat = &s.latencies_ns;
    let pacing = match load.rate {
        Some(rate) => format!("paced at {rate:.0} req/s"),
        None => "closed loop (flat out)".to_string(),
    };
    let statuses: Vec<String> = s
        .statuses
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let mut lines = vec![
        format!("intake-loadgen {mode}: {}", load.url),
        format!(
            "  concurrency {}, duration {:.1}s after {:.1}s warmup, {pacing}, {} B bodies",
            load.concurrency,
            load.duration.as_secs_f64(),
            load.warmup.as_secs_f64(),
            report.body_len,
        ),
        format!("  requests    {} ({:.1} req/s)", sum.requests, sum.rps),
        format!(
            "  status      {}",
            if statuses.is_empty() {
                "none".into()
            } else {
                statuses.join(", ")
            }
        ),
        format!(
            "  latency     p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms",
            percentile_ms(lat, 50.0),
            percentile_ms(lat, 90.0),
            percentile_ms(lat, 99.0),
            percentile_ms(lat, 99.9),
            percentile_ms(lat, 100.0),
        ),
        format!(
            "  prepared    {} pre-signed bodies in {:.2}s before the clock started",
            report.pool,
            report.prep.as_secs_f64()
        ),
    ];
    if let Some(rate) = load.rate {
        let late = &s.timer_late_ns;
        lines.push(format!(
            "  pacing      {} requests queued behind a slow response; timer lateness p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            s.behind,
            percentile_ms(late, 50.0),
            percentile_ms(late, 99.0),
            percentile_ms(late, 100.0),
        ));
        let service = &s.service_ns;
        lines.push(format!(
            "  service     send → response, not counting schedule lag: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            percentile_ms(service, 50.0),
            percentile_ms(service, 99.0),
            percentile_ms(service, 100.0),
        ));
        if sum.rps < rate * 0.95 {
            lines.push(format!(
                "  WARNING: achieved {:.1} req/s, below the requested {rate:.0} req/s: the server (or this machine) cannot keep up",
                sum.rps
            ));
        }
    }
    if sum.non_200 > 0 {
        lines.push(format!(
            "  !!! {} NON-200 RESPONSES during the measured phase !!!",
            sum.non_200
        ));
    }
    if sum.errors > 0 {
        lines.push(format!(
            "  !!! {} TRANSPORT ERRORS during the measured phase !!!",
            sum.errors
        ));
        for (e, n) in &s.errors {
            lines.push(format!("      {n} × {e}"));
        }
    }
    if s.warmup_failures > 0 {
        lines.push(format!(
            "  !!! {} of {} warmup requests failed !!!",
            s.warmup_failures, s.warmup_requests
        ));
    }
    if s.reconnects > 0 {
        lines.push(format!(
            "  note: the server closed {} keep-alive connections",
            s.reconnects
        ));
    }
    if report.signed_inline > 0 {
        lines.push(format!(
            "  WARNING: the pool of pre-signed bodies ran out; {} bodies were signed on the measured path (raise --max-rps)",
            report.signed_inline
        ));
    }
    lines
}

fn load_json(
    mode: &str,
    load: &LoadArgs,
    report: &LoadReport,
    sum: &Summary,
) -> serde_json::Map<String, serde_json::Value> {
    let s = &report.stats;
    let lat = &s.latencies_ns;
    let statuses: serde_json::Map<String, serde_json::Value> = s
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        out.insert(k.to_string(), v);
    };
    put("mode", mode.into());
    put("url", load.url.clone().into());
    put("concurrency", load.concurrency.into());
    put("duration_s", load.duration.as_secs_f64().into());
    put("warmup_s", load.warmup.as_secs_f64().into());
    put(
        "target_rate",
        load.rate.map_or(serde_json::Value::Null, Into::into),
    );
    put("requests", sum.requests.into());
    put("rps", round3(sum.rps).into());
    put("ok", sum.ok.into());
    put("non_200", sum.non_200.into());
    put("errors", sum.errors.into());
    put("warmup_failures", s.warmup_failures.into());
    put("signed_inline", report.signed_inline.into());
    put("p50_ms", round3(percentile_ms(lat, 50.0)).into());
    put("p90_ms", round3(percentile_ms(lat, 90.0)).into());
    put("p99_ms", round3(percentile_ms(lat, 99.0)).into());
    put("p999_ms", round3(percentile_ms(lat, 99.9)).into());
    put("max_ms", round3(percentile_ms(lat, 100.0)).into());
    put("status", statuses.into());
    out
}

fn emit(json: bool, lines: &[String], object: serde_json::Map<String, serde_json::Value>) {
    if json {
        for line in lines {
            eprintln!("{line}");
        }
        println!("{}", serde_json::Value::Object(object));
    } else {
        for line in lines {
            println!("{line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ingest

async fn run_ingest(load: LoadArgs) -> Result<ExitCode> {
    let report = run_load(&load, false).await?;
    let sum = summarize(&load, &report);
    let lines = human_load("ingest", &load, &report, &sum);
    let failed = sum.non_200 > 0 || sum.errors > 0 || report.stats.warmup_failures > 0;
    emit(load.json, &lines, load_json("ingest", &load, &report, &sum));
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------------------------------------
// e2e

/// What the capture handler has seen.
#[derive(Default)]
struct Capture {
    /// First arrival of each `webhook-id`.
    arrivals: Mutex<HashMap<String, Instant>>,
    requests: AtomicU64,
    redeliveries: AtomicU64,
    without_id: AtomicU64,
    /// Delivery ids to confirm (receipts mode), and the event ids whose confirmation intake
    /// accepted.
    to_confirm: Mutex<Vec<(String, String)>>,
    confirmed: Mutex<HashSet<String>>,
    confirm_failures: AtomicU64,
}

async fn capture(
    State(c): State<Arc<Capture>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    let now = Instant::now();
    std::hint::black_box(body.len());
    if method != Method::POST {
        return axum::http::StatusCode::METHOD_NOT_ALLOWED;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        Some(id) => {
            if let Some(d) = headers
                .get("intake-delivery-id")
                .and_then(|v| v.to_str().ok())
            {
                c.to_confirm
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((d.to_string(), id.to_string()));
            }
            let mut arrivals = c.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
            if arrivals.contains_key(id) {
                c.redeliveries.fetch_add(1, Ordering::Relaxed);
            } else {
                arrivals.insert(id.to_string(), now);
            }
        }
        None => {
            c.without_id.fetch_add(1, Ordering::Relaxed);
        }
    }
    axum::http::StatusCode::OK
}

/// Receipts mode: confirms what the handler captured, in batches, until aborted.
async fn confirm_loop(c: Arc<Capture>, base: String, token: String) {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/deliveries/complete", base.trim_end_matches('/'));
    loop {
        let batch: Vec<(String, String)> = {
            let mut q = c.to_confirm.lock().unwrap_or_else(PoisonError::into_inner);
            let n = q.len().min(1000);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let items: Vec<serde_json::Value> = batch
            .iter()
            .map(|(d, _)| serde_json::json!({ "id": d }))
            .collect();
        let sent = http
            .post(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "items": items }))
            .send()
            .await;
        let results: Option<serde_json::Value> = match sent {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let Some(results) = results else {
            // Put them back and try again: a receipt is retried until accepted.
            c.confirm_failures.fetch_add(1, Ordering::Relaxed);
            c.to_confirm
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(batch);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut confirmed = c.confirmed.lock().unwrap_or_else(PoisonError::into_inner);
        let statuses = results["results"].as_array().cloned().unwrap_or_default();
        for ((_, event), r) in batch.iter().zip(statuses) {
            if r["status"] == 200 {
                confirmed.insert(event.clone());
            } else {
                c.confirm_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn run_e2e(args: E2eArgs) -> Result<ExitCode> {
    let mut load = args.load.clone();
    if load.rate.is_none() {
        load.rate = Some(1000.0);
    }

    let state = Arc::new(Capture::default());
    let listener = tokio::net::TcpListener::bind(args.handler_listen)
        .await
        .with_context(|| {
            format!(
                "binding the capture handler on {} (is something else listening there?)",
                args.handler_listen
            )
        })?;
    let app = axum::Router::new()
        .fallback(capture)
        .with_state(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let confirmer = args
        .confirm_url
        .clone()
        .map(|url| tokio::spawn(confirm_loop(state.clone(), url, args.confirm_token.clone())));

    let report = run_load(&load, true).await?;
    let send_done = Instant::now();

    // Wait for every acknowledged id to arrive at the handler.
    let deadline = send_done + args.drain;
    let mut pending: HashSet<&str> = report.stats.acks.iter().map(|a| a.id.as_str()).collect();
    loop {
        {
            let arrivals = state
                .arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.retain(|id| !arrivals.contains_key(*id));
        }
        let unconfirmed = confirmer.is_some() && {
            let confirmed = state
                .confirmed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            !report.stats.acks.iter().all(|a| confirmed.contains(&a.id))
        };
        if pending.is_empty() && unconfirmed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_took = send_done.elapsed();
    let missing = pending.len() as u64;

    let acked: HashSet<&str> = report.stats.acks.iter().map(|a| a.id.as_str()).collect();
    let mut delivered_ns = Vec::with_capacity(report.stats.acks.len());
    let mut before_ack = 0u64;
    let unexpected;
    {
        let arrivals = state
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for ack in report.stats.acks.iter().filter(|a| a.measured) {
            if let Some(&arrived) = arrivals.get(&ack.id) {
                if arrived < ack.at {
                    // Delivered before we had finished reading the 200: legal, and zero latency.
                    before_ack += 1;
                }
                delivered_ns.push(arrived.saturating_duration_since(ack.at).as_nanos() as u64);
            }
        }
        unexpected = arrivals
            .keys()
            .filter(|id| !acked.contains(id.as_str()))
            .count() as u64;
    }
    delivered_ns.sort_unstable();
    server.abort();
    if let Some(c) = &confirmer {
        c.abort();
    }
    let unconfirmed = if confirmer.is_some() {
        let confirmed = state
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        report
            .stats
            .acks
            .iter()
            .filter(|a| !confirmed.contains(&a.id))
            .count() as u64
    } else {
        0
    };

    let sum = summarize(&load, &report);
    let mut lines = human_load("e2e", &load, &report, &sum);
    let acked_count = report.stats.acks.len() as u64;
    lines.push(format!(
        "  delivered   {} of {} acknowledged events (all phases) within {:.2}s after the send phase",
        acked_count - missing,
        acked_count,
        drain_took.as_secs_f64()
    ));
    lines.push(format!(
        "  accept → delivered  p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms   ({} measured)",
        percentile_ms(&delivered_ns, 50.0),
        percentile_ms(&delivered_ns, 90.0),
        percentile_ms(&delivered_ns, 99.0),
        percentile_ms(&delivered_ns, 100.0),
        delivered_ns.len(),
    ));
    lines.push(format!(
        "  handler     {} requests, {} redeliveries, {} delivered before the ack was read, {} not acked by this run",
        state.requests.load(Ordering::Relaxed),
        state.redeliveries.load(Ordering::Relaxed),
        before_ack,
        unexpected,
    ));
    if confirmer.is_some() {
        lines.push(format!(
            "  receipts    {} of {} acknowledged events confirmed, {} refused or retried confirmations, within {:.2}s after the send phase",
            acked_count - unconfirmed,
            acked_count,
            state.confirm_failures.load(Ordering::Relaxed),
            drain_took.as_secs_f64()
        ));
    }
    if missing > 0 {
        lines.push(format!(
            "  !!! {missing} ACKNOWLEDGED EVENTS NEVER ARRIVED AT THE HANDLER within {:.0}s !!!",
            args.drain.as_secs_f64()
        ));
        for id in pending.iter().take(10) {
            lines.push(format!("      missing: {id}"));
        }
    }
    if report.stats.acks_without_id > 0 {
        lines.push(format!(
            "  !!! {} 200 responses had no `id` in their JSON body !!!",
            report.stats.acks_without_id
        ));
    }
    let without_id = state.without_id.load(Ordering::Relaxed);
    if without_id > 0 {
        lines.push(format!(
            "  !!! {without_id} deliveries had no webhook-id header !!!"
        ));
    }

    let mut object = load_json("e2e", &load, &report, &sum);
    let mut put = |k: &str, v: serde_json::Value| {
        object.insert(k.to_string(), v);
    };
    put("acked", acked_count.into());
    put("delivered", (acked_count - missing).into());
    put("missing", missing.into());
    put("unconfirmed", unconfirmed.into());
    put("acks_without_id", report.stats.acks_without_id.into());
    put(
        "redeliveries",
        state.redeliveries.load(Ordering::Relaxed).into(),
    );
    put("unexpected_deliveries", unexpected.into());
    put(
        "delivered_p50_ms",
        round3(percentile_ms(&delivered_ns, 50.0)).into(),
    );
    put(
        "delivered_p90_ms",
        round3(percentile_ms(&delivered_ns, 90.0)).into(),
    );
    put(
        "delivered_p99_ms",
        round3(percentile_ms(&delivered_ns, 99.0)).into(),
    );
    put(
        "delivered_max_ms",
        round3(percentile_ms(&delivered_ns, 100.0)).into(),
    );
    emit(load.json, &lines, object);

    let failed = missing > 0
        || unconfirmed > 0
        || sum.non_200 > 0
        || sum.errors > 0
        || report.stats.warmup_failures > 0
        || report.stats.acks_without_id > 0;
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_unique_and_signed() {
        let bodies = Bodies::new("s3cret", 2048, 8, false).expect("bodies");
        let mut ids = HashSet::new();
        for _ in 0..10 {
            let (body, sig) = bodies.take().expect("take");
            assert!(
                (2000..2100).contains(&body.len()),
                "body is {} bytes",
                body.len()
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(v["name"], EVENT_NAME);
            assert_eq!(v["data"]["attributes"]["channel"], "email");
            let id = v["id"].as_str().expect("id").to_string();
            assert_eq!(id.len(), 24);
            assert!(ids.insert(id));
            assert!(ids.insert(v["data"]["id"].as_str().expect("message id").to_string()));
            let conv = &v["data"]["relationships"]["conversation"]["data"]["id"];
            assert!(ids.insert(conv.as_str().expect("conversation id").to_string()));
            let mut mac = HmacSha256::new_from_slice(b"s3cret").expect("key");
            mac.update(&body);
            assert_eq!(
                sig.to_str().expect("ascii"),
                hex::encode(mac.finalize().into_bytes())
            );
        }
        // Two past the pool of eight were signed inline.
        assert_eq!(bodies.signed_inline.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn scattered_ids_are_unique_and_out_of_order() {
        let scattered: Vec<u64> = (0..200_000).map(scatter).collect();
        let distinct: HashSet<u64> = scattered.iter().copied().collect();
        assert_eq!(distinct.len(), scattered.len(), "scatter is not one-to-one");
        assert!(scattered.iter().all(|&x| x < 1 << 48), "out of 48 bits");
        let ascending = scattered.windows(2).filter(|w| w[0] < w[1]).count();
        // Counting up would make every step ascending; scattered, about half are.
        assert!(
            (80_000..120_000).contains(&ascending),
            "{ascending} ascending steps of 199,999"
        );
        let bodies = Bodies::new("s3cret", 2048, 4, true).expect("bodies");
        let mut ids = HashSet::new();
        for _ in 0..6 {
            let (body, _) = bodies.take().expect("take");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert!(ids.insert(v["data"]["id"].as_str().expect("message id").to_string()));
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }
}

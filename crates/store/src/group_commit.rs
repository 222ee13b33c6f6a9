//! The group-commit engine both backends write through.
//!
//! Requests queue up on a channel while the writer commits. The writer takes everything waiting
//! (up to `max_batch`) into one transaction, so that one commit (one fsync, one round trip)
//! makes many requests durable at once, and answers each request only after that commit has
//! returned: a caller that gets `Ok` may acknowledge its work. The promises, kept here once for
//! both backends:
//!
//! * **Order.** Requests are applied in the order they were queued, except that yielding
//!   requests may be carried to a later batch (below).
//! * **Counters** of a transaction are merged by key ([`Counts`]) and written in that
//!   transaction, just before its commit.
//! * **A failure stays with its request.** Requests almost never fail one by one (a failing
//!   disk or a lost connection fails them all), so a batch runs without per-request
//!   savepoints. If one request does fail, the whole transaction is rolled back and each
//!   request is run again in a transaction of its own. If the transaction cannot begin or
//!   commit, every request of the batch fails.
//! * **Faults** ([`StoreFault`]) apply from where they were queued: requests queued before a
//!   fault are not failed by it, even in the same batch, and a fault request still takes effect
//!   when the batch around it fails.
//! * **Shutdown drains.** A close answers everything queued before and behind it.
//! * **Ingest first.** Requests a backend marks as *yielding* ([`Backend::yields`]: the
//!   delivery side's claims, finishes and releases) take at most a share of each batch: as
//!   many as the batch has other requests, and at least [`YIELDING_FLOOR`]. The rest wait,
//!   in order, at the head of the next batch. A batch's commit costs about its size, so
//!   without the cap a burst of finishes (a failing destination's retries, a dispatcher
//!   catching up) made every ingest queued behind it wait for a longer commit; with it,
//!   delivery still gets one write for every ingest and cannot be starved. Yielding requests
//!   never cross a fault or a close: one queued before a fault runs before it.
//!
//! * **Refusals.** A backend may answer a request with an error before it joins a batch
//!   ([`Backend::refuses`]); the other requests run as if it had not been sent.
//!
//! A backend plugs in what differs ([`Backend`]): how to get a connection, begin, commit and
//! roll back, how to apply requests (one at a time, or several at once as PostgreSQL writes a
//! run of ingests), how to write the counters, and what to do between batches. The engine is
//! generic over it (no dynamic dispatch on the hot path) and `async`; PostgreSQL runs it as a
//! task ([`GroupCommit::run`]), SQLite, whose calls block, on a thread of its own
//! ([`GroupCommit::run_blocking`]).
//!
//! Rule: this module knows the model, the counters and the crate's errors; it never imports a
//! backend.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use intake_core::log_limit::{LogLimiter, LogVerdict, LOG_SUMMARY_INTERVAL};
use intake_core::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::counters::Counts;
use crate::model::{
    Accepted, ClaimedDelivery, CompactReport, CompletionReply, ExpireBatch, OutboxItem,
    ReplayOutcome, RequeuePage, SilenceExpiry,
};
use crate::{Result, StoreError, StoreFault};

/// How many requests may wait for the writer before senders are slowed down.
const WRITE_QUEUE: usize = 16 * 1024;

/// The fewest yielding requests (claims, finishes) a batch takes when they wait, however few
/// other requests it has: delivery keeps a floor of the writer when ingest is busy.
pub(crate) const YIELDING_FLOOR: usize = 32;

/// What a request produced, sent back once its transaction has committed.
pub(crate) enum Output {
    Accepted(Accepted),
    Claimed(Vec<ClaimedDelivery>),
    Compacted(CompactReport),
    Unit,
    Bool(bool),
    Count(u64),
    Outbox(Vec<OutboxItem>),
    Expiry(SilenceExpiry),
    Replayed(ReplayOutcome),
    Requeued(Box<RequeuePage>),
    Text(String),
    Completions(Vec<CompletionReply>),
    Expired(ExpireBatch),
}

/// Where a request's answer goes; each variant is the `reply` argument of [`Queue::write`].
pub(crate) enum Reply {
    Accepted(oneshot::Sender<Result<Accepted>>),
    Claimed(oneshot::Sender<Result<Vec<ClaimedDelivery>>>),
    Compacted(oneshot::Sender<Result<CompactReport>>),
    Unit(oneshot::Sender<Result<()>>),
    Bool(oneshot::Sender<Result<bool>>),
    Count(oneshot::Sender<Result<u64>>),
    Outbox(oneshot::Sender<Result<Vec<OutboxItem>>>),
    Expiry(oneshot::Sender<Result<SilenceExpiry>>),
    Replayed(oneshot::Sender<Result<ReplayOutcome>>),
    Requeued(oneshot::Sender<Result<Box<RequeuePage>>>),
    Text(oneshot::Sender<Result<String>>),
    Completions(oneshot::Sender<Result<Vec<CompletionReply>>>),
    Expired(oneshot::Sender<Result<ExpireBatch>>),
}

impl Reply {
    fn send(self, result: Result<Output>) {
        // A requester that gave up (its HTTP client went away) no longer listens; that is fine,
        // the work is committed either way.
        let mismatch =
            || StoreError::Corrupt("the writer produced the wrong kind of answer".into());
        match self {
            Reply::Accepted(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Accepted(a) => Ok(a),
                _ => Err(mismatch()),
            }))),
            Reply::Claimed(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Claimed(c) => Ok(c),
                _ => Err(mismatch()),
            }))),
            Reply::Compacted(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Compacted(c) => Ok(c),
                _ => Err(mismatch()),
            }))),
            Reply::Expired(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Expired(b) => Ok(b),
                _ => Err(mismatch()),
            }))),
            Reply::Unit(tx) => drop(tx.send(result.map(|_| ()))),
            Reply::Bool(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Bool(b) => Ok(b),
                _ => Err(mismatch()),
            }))),
            Reply::Text(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Text(t) => Ok(t),
                _ => Err(mismatch()),
            }))),
            Reply::Count(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Count(n) => Ok(n),
                _ => Err(mismatch()),
            }))),
            Reply::Outbox(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Outbox(items) => Ok(items),
                _ => Err(mismatch()),
            }))),
            Reply::Expiry(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Expiry(e) => Ok(e),
                _ => Err(mismatch()),
            }))),
            Reply::Replayed(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Replayed(r) => Ok(r),
                _ => Err(mismatch()),
            }))),
            Reply::Requeued(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Requeued(p) => Ok(p),
                _ => Err(mismatch()),
            }))),
            Reply::Completions(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Completions(c) => Ok(c),
                _ => Err(mismatch()),
            }))),
        }
    }
}

/// What travels to the writer.
pub(crate) enum Op<R> {
    /// A request and where its answer goes.
    Write(R, Reply),
    /// Finish what is queued, then stop.
    Close(oneshot::Sender<Result<()>>),
}

/// The writer's end of the queue.
pub(crate) type Inbox<R> = mpsc::Receiver<Op<R>>;

/// The senders' end of the queue: what a store holds.
pub(crate) struct Queue<R> {
    tx: mpsc::Sender<Op<R>>,
    busy: BusyTime,
}

/// A new queue of requests `R`.
pub(crate) fn queue<R>() -> (Queue<R>, Inbox<R>) {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let busy = BusyTime::default();
    (Queue { tx, busy }, rx)
}

/// The time the writer has spent on batches (connect, apply, commit, what runs after),
/// since it started: how busy the store's one writer is, for a duty that should leave it to
/// ingest ([`crate::Store::writer_busy`]). It is measured with the wall clock and decides
/// nothing about the data.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusyTime(Arc<AtomicU64>);

impl BusyTime {
    fn add(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The total so far.
    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl<R> Queue<R> {
    /// The writer's busy time, shared with the [`GroupCommit`] that takes this queue.
    pub(crate) fn busy(&self) -> BusyTime {
        self.busy.clone()
    }

    /// The writer's busy time so far ([`BusyTime::total`]).
    pub(crate) fn busy_total(&self) -> Duration {
        self.busy.total()
    }

    /// Queues `request` and waits for its answer, which comes once its transaction committed.
    pub(crate) async fn write<T>(
        &self,
        request: R,
        reply: fn(oneshot::Sender<Result<T>>) -> Reply,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Write(request, reply(tx)))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the writer to finish what is queued and stop; `Err(Closed)` when it had stopped.
    pub(crate) async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        match self.tx.send(Op::Close(tx)).await {
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Closed)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// How applying a request failed.
pub(crate) enum Failure {
    /// Every request of the batch fails with this error: the connection was lost, or the
    /// transaction could not begin or commit.
    Batch(StoreError),
    /// A request failed, perhaps because of itself: the batch is rolled back and run again
    /// request by request.
    Request(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Batch(e) | Failure::Request(e) => e,
        }
    }
}

/// What a backend plugs into the engine. Each method runs on the writer, one at a time.
pub(crate) trait Backend {
    /// What the writer is asked to do.
    type Request;
    /// A connection for one batch (SQLite's writer owns its only one: `()`).
    type Conn;

    /// The fault a request injects (`Some(None)` clears it), or `None` for any other request.
    fn fault(request: &Self::Request) -> Option<Option<StoreFault>>;

    /// Told whenever the fault changes.
    fn fault_changed(&mut self, _fault: Option<StoreFault>) {}

    /// Whether `request` is delivery-side work that gives way to ingest (see the module
    /// docs): it may wait for a later batch when a batch already holds its share of them.
    fn yields(_request: &Self::Request) -> bool {
        false
    }

    /// The error `request` is answered with at once, before it joins a batch, or `None` to
    /// run it (SQLite draining a full disk refuses new work this way: the `sqlite::full`
    /// module).
    fn refuses(&mut self, _request: &Self::Request) -> Option<StoreError> {
        None
    }

    /// A connection for the next batch.
    async fn connect(&mut self) -> Result<Self::Conn>;

    /// Begins a transaction.
    async fn begin(&mut self, conn: &mut Self::Conn) -> Result<()>;

    /// Applies the first of `requests` (or a run of several at its head, written together),
    /// pushes one output per request applied to `outputs` and returns how many it applied
    /// (at least one). Counts what it writes into `counts`.
    async fn apply(
        &mut self,
        conn: &mut Self::Conn,
        requests: &[Self::Request],
        counts: &mut Counts,
        outputs: &mut Vec<Output>,
    ) -> Result<usize, Failure>;

    /// Writes the counters of the transaction, just before its commit.
    async fn write_counts(&mut self, conn: &mut Self::Conn, counts: Counts) -> Result<(), Failure>;

    /// Commits the transaction.
    async fn commit(&mut self, conn: &mut Self::Conn) -> Result<()>;

    /// Rolls the transaction back (if one is open; errors are the backend's to log).
    async fn rollback(&mut self, conn: &mut Self::Conn);

    /// The error a write fails with while a fault is injected: the database's own, raised by
    /// a real statement.
    async fn refuse(&mut self, conn: &mut Self::Conn) -> StoreError;

    /// Runs after each batch has been answered.
    async fn after_batch(&mut self, conn: &mut Self::Conn);
}

/// The writer: a backend and the requests of the batch being committed.
pub(crate) struct GroupCommit<B: Backend> {
    backend: B,
    max_batch: usize,
    /// The fault as of the request being run.
    fault: Option<StoreFault>,
    requests: Vec<B::Request>,
    replies: Vec<Reply>,
    outputs: Vec<Output>,
    /// Limits the lines written for failed batches: during an outage every batch fails.
    failure_log: LogLimiter,
    busy: BusyTime,
}

impl<B: Backend> GroupCommit<B> {
    /// A writer that commits up to `max_batch` requests at once, adding the time each batch
    /// takes to `busy` (the queue's, [`Queue::busy`]).
    pub(crate) fn new(backend: B, max_batch: usize, busy: BusyTime) -> Self {
        let max_batch = max_batch.max(1);
        GroupCommit {
            backend,
            max_batch,
            fault: None,
            requests: Vec::with_capacity(max_batch),
            replies: Vec::with_capacity(max_batch),
            outputs: Vec::with_capacity(max_batch),
            failure_log: LogLimiter::new(LOG_SUMMARY_INTERVAL),
            busy,
        }
    }

    /// Runs on the current thread until the store closes (for a backend whose calls block).
    pub(crate) fn run_blocking(self, inbox: Inbox<B::Request>) {
        block_on(self.run(inbox));
    }

    /// Takes batches from `inbox` and commits them until the store closes.
    pub(crate) async fn run(mut self, mut inbox: Inbox<B::Request>) {
        let mut closing = None;
        // Yielding requests carried over from earlier batches, in the order they were queued.
        let mut waiting: VecDeque<(B::Request, Reply)> = VecDeque::new();
        while closing.is_none() {
            let mut op = if waiting.is_empty() {
                match inbox.recv().await {
                    Some(op) => Some(op),
                    None => break,
                }
            } else {
                inbox.try_recv().ok()
            };
            while let Some(next) = op.take() {
                match next {
                    Op::Write(request, reply) if B::fault(&request).is_some() => {
                        // Nothing queued before a fault may run after it.
                        self.take_waiting(&mut waiting, usize::MAX);
                        self.requests.push(request);
                        self.replies.push(reply);
                    }
                    Op::Write(request, reply) => {
                        if let Some(err) = self.backend.refuses(&request) {
                            reply.send(Err(err));
                        } else if B::yields(&request) {
                            waiting.push_back((request, reply));
                        } else {
                            self.requests.push(request);
                            self.replies.push(reply);
                        }
                    }
                    Op::Close(reply) => {
                        closing = Some(reply);
                        self.take_waiting(&mut waiting, usize::MAX);
                        break;
                    }
                }
                if self.requests.len() >= self.max_batch
                    || waiting.len() >= self.max_batch.saturating_mul(4)
                {
                    break;
                }
                op = inbox.try_recv().ok();
            }
            let share = yielding_share(self.requests.len());
            self.take_waiting(&mut waiting, share);
            self.commit_batch().await;
        }
        // Nothing is left waiting here: a close takes it into its batch, and the queue is
        // only found closed once nothing waits.
        // Answer whatever was queued behind a close, so no requester waits forever.
        inbox.close();
        while let Ok(op) = inbox.try_recv() {
            match op {
                Op::Write(request, reply) => {
                    self.requests.push(request);
                    self.replies.push(reply);
                }
                Op::Close(reply) => drop(reply.send(Ok(()))),
            }
        }
        self.commit_batch().await;
        if let Some(reply) = closing {
            let _ = reply.send(Ok(()));
        }
    }

    /// Moves up to `most` of the waiting yielding requests, oldest first, into the batch.
    fn take_waiting(&mut self, waiting: &mut VecDeque<(B::Request, Reply)>, most: usize) {
        let n = most.min(waiting.len());
        for (request, reply) in waiting.drain(..n) {
            self.requests.push(request);
            self.replies.push(reply);
        }
    }

    /// Runs every queued request in one transaction and answers them after its commit; on a
    /// request's failure, runs each in a transaction of its own (see the module docs).
    async fn commit_batch(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let started = Instant::now();
        self.run_batch().await;
        self.busy.add(started.elapsed());
    }

    /// [`GroupCommit::commit_batch`]'s work, untimed.
    async fn run_batch(&mut self) {
        let mut conn = match self.backend.connect().await {
            Ok(conn) => conn,
            Err(err) => {
                self.log_failed_batch("no connection to the database", &err);
                self.fail_all(err);
                return;
            }
        };
        let fault_before = self.fault;
        self.outputs.clear();
        match self.run_together(&mut conn).await {
            Ok(()) => {
                for (reply, out) in self.replies.drain(..).zip(self.outputs.drain(..)) {
                    reply.send(Ok(out));
                }
                self.requests.clear();
            }
            Err(Failure::Batch(err)) => {
                self.set_fault(fault_before);
                self.log_failed_batch("commit failed", &err);
                self.fail_all(err);
            }
            Err(Failure::Request(_)) => {
                self.set_fault(fault_before);
                let mut requests = std::mem::take(&mut self.requests);
                let mut replies = std::mem::take(&mut self.replies);
                for (request, reply) in requests.drain(..).zip(replies.drain(..)) {
                    let result = self.run_alone(&mut conn, &request).await;
                    reply.send(result);
                }
                // Keep the buffers (and their capacity) for the next batch.
                self.requests = requests;
                self.replies = replies;
            }
        }
        self.backend.after_batch(&mut conn).await;
    }

    /// Logs a batch that failed as a whole: the first in full, then one summary per interval
    /// (an outage fails every batch, and a line each would flood the disk the logs share).
    /// The cadence of log lines reads the wall clock: it decides nothing about the data, and
    /// the engine has no clock of its own.
    fn log_failed_batch(&mut self, what: &str, err: &StoreError) {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        match self.failure_log.hit(now) {
            LogVerdict::Log => {
                tracing::error!(error = %err, requests = self.requests.len(), "{what}; answering every request of the batch with an error")
            }
            LogVerdict::Quiet => {}
            LogVerdict::Summary(s) => {
                let reason = format!("{what} (last error: {err})");
                tracing::error!(
                    count = s.count,
                    "{}",
                    s.describe("failed", "batches", &reason)
                )
            }
        }
    }

    async fn run_together(&mut self, conn: &mut B::Conn) -> Result<(), Failure> {
        self.backend.begin(conn).await.map_err(Failure::Batch)?;
        if let Err(failure) = self.apply_all(conn).await {
            self.backend.rollback(conn).await;
            return Err(failure);
        }
        if let Err(err) = self.backend.commit(conn).await {
            self.backend.rollback(conn).await;
            return Err(Failure::Batch(err));
        }
        Ok(())
    }

    /// Applies every request of the batch in the open transaction, then writes its counters.
    async fn apply_all(&mut self, conn: &mut B::Conn) -> Result<(), Failure> {
        let mut counts = Counts::default();
        let mut at = 0;
        while at < self.requests.len() {
            let rest = &self.requests[at..];
            if let Some(fault) = B::fault(&rest[0]) {
                // A fault changes the writer, not the database, so a rollback would not undo
                // it: `commit_batch` restores it by hand.
                self.fault = fault;
                self.backend.fault_changed(fault);
                self.outputs.push(Output::Unit);
                at += 1;
                continue;
            }
            if self.fault.is_some_and(StoreFault::rejects_writes) {
                // Run alone, the request gets the database's own error (`refuse`).
                return Err(Failure::Request(StoreError::Unavailable(
                    "writes are rejected (injected fault)".into(),
                )));
            }
            let applied = self
                .backend
                .apply(conn, rest, &mut counts, &mut self.outputs)
                .await?;
            if applied == 0 || self.outputs.len() != at + applied {
                return Err(Failure::Batch(StoreError::Corrupt(
                    "a request got no answer".into(),
                )));
            }
            at += applied;
        }
        self.backend.write_counts(conn, counts).await
    }

    async fn run_alone(&mut self, conn: &mut B::Conn, request: &B::Request) -> Result<Output> {
        if let Some(fault) = B::fault(request) {
            self.set_fault(fault);
            return Ok(Output::Unit);
        }
        if self.fault.is_some_and(StoreFault::rejects_writes) {
            return Err(self.backend.refuse(conn).await);
        }
        self.backend.begin(conn).await?;
        let mut counts = Counts::default();
        let mut outputs = Vec::with_capacity(1);
        let mut result = match self
            .backend
            .apply(
                conn,
                std::slice::from_ref(request),
                &mut counts,
                &mut outputs,
            )
            .await
        {
            Ok(_) => self.backend.write_counts(conn, counts).await,
            Err(failure) => Err(failure),
        }
        .map_err(Failure::into_error);
        if result.is_ok() {
            result = self.backend.commit(conn).await;
        }
        if let Err(err) = result {
            self.backend.rollback(conn).await;
            return Err(err);
        }
        outputs
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a request got no answer".into()))
    }

    /// Answers every request of the batch with `err`, except that faults still apply in order,
    /// so that a later retry sees the state asked for.
    fn fail_all(&mut self, err: StoreError) {
        for (request, reply) in self.requests.drain(..).zip(self.replies.drain(..)) {
            if let Some(fault) = B::fault(&request) {
                self.fault = fault;
                self.backend.fault_changed(fault);
                reply.send(Ok(Output::Unit));
            } else {
                reply.send(Err(err.clone()));
            }
        }
    }

    fn set_fault(&mut self, fault: Option<StoreFault>) {
        self.fault = fault;
        self.backend.fault_changed(fault);
    }
}

/// How many yielding requests a batch with `others` other requests takes: one for each of
/// them, and at least [`YIELDING_FLOOR`].
fn yielding_share(others: usize) -> usize {
    others.max(YIELDING_FLOOR)
}

/// Runs a future to completion on the current thread, parking it while the future waits (for
/// the writer's queue; a blocking backend never waits on anything else).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A request of the fake backend.
    enum Fake {
        /// Applies fine; answers `Count(n)`.
        Ok(u64),
        /// Fails when applied.
        Fail,
        /// Injects or clears a fault.
        Fault(Option<StoreFault>),
        /// Applies fine, like `Ok`, but yields to the others (a claim or a finish).
        Yield(u64),
    }

    /// Records what the engine asked for, in order.
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
        fail_commits: bool,
    }

    impl Recorder {
        fn note(&self, what: impl Into<String>) {
            self.log.lock().unwrap().push(what.into());
        }
    }

    impl Backend for Recorder {
        type Request = Fake;
        type Conn = ();

        fn fault(request: &Fake) -> Option<Option<StoreFault>> {
            match request {
                Fake::Fault(f) => Some(*f),
                _ => None,
            }
        }

        fn yields(request: &Fake) -> bool {
            matches!(request, Fake::Yield(_))
        }

        async fn connect(&mut self) -> Result<()> {
            Ok(())
        }

        async fn begin(&mut self, _: &mut ()) -> Result<()> {
            self.note("begin");
            Ok(())
        }

        async fn apply(
            &mut self,
            _: &mut (),
            requests: &[Fake],
            _: &mut Counts,
            outputs: &mut Vec<Output>,
        ) -> Result<usize, Failure> {
            match requests.first() {
                Some(Fake::Ok(n)) => {
                    self.note(format!("apply {n}"));
                    outputs.push(Output::Count(*n));
                    Ok(1)
                }
                Some(Fake::Yield(n)) => {
                    self.note(format!("apply y{n}"));
                    outputs.push(Output::Count(*n));
                    Ok(1)
                }
                Some(Fake::Fail) => {
                    self.note("apply fail");
                    Err(Failure::Request(StoreError::Unavailable("bad".into())))
                }
                Some(Fake::Fault(_)) | None => Ok(0),
            }
        }

        async fn write_counts(&mut self, _: &mut (), _: Counts) -> Result<(), Failure> {
            Ok(())
        }

        async fn commit(&mut self, _: &mut ()) -> Result<()> {
            if self.fail_commits {
                self.note("commit failed");
                return Err(StoreError::Unavailable("disk full".into()));
            }
            self.note("commit");
            Ok(())
        }

        async fn rollback(&mut self, _: &mut ()) {
            self.note("rollback");
        }

        async fn refuse(&mut self, _: &mut ()) -> StoreError {
            self.note("refuse");
            StoreError::Unavailable("read-only".into())
        }

        async fn after_batch(&mut self, _: &mut ()) {
            self.note("after");
        }
    }

    /// Queues `requests` before the writer starts, so that they form one batch, then runs the
    /// writer to the end and returns each answer and the log.
    fn run(requests: Vec<Fake>, fail_commits: bool) -> (Vec<Result<u64>>, Vec<String>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (queue, inbox) = queue();
        let mut answers = Vec::new();
        for request in requests {
            let (tx, rx) = oneshot::channel();
            let reply = match request {
                Fake::Fault(_) => {
                    let (unit_tx, unit_rx) = oneshot::channel();
                    answers.push(Answer::Unit(unit_rx));
                    drop(tx);
                    drop(rx);
                    Reply::Unit(unit_tx)
                }
                _ => {
                    answers.push(Answer::Count(rx));
                    Reply::Count(tx)
                }
            };
            queue
                .tx
                .try_send(Op::Write(request, reply))
                .expect("queue has room");
        }
        drop(queue);
        let backend = Recorder {
            log: log.clone(),
            fail_commits,
        };
        GroupCommit::new(backend, 16, BusyTime::default()).run_blocking(inbox);
        let answers = answers
            .into_iter()
            .map(|a| match a {
                Answer::Count(mut rx) => rx.try_recv().expect("answered"),
                Answer::Unit(mut rx) => rx.try_recv().expect("answered").map(|()| 0),
            })
            .collect();
        let log = log.lock().unwrap().clone();
        (answers, log)
    }

    enum Answer {
        Count(oneshot::Receiver<Result<u64>>),
        Unit(oneshot::Receiver<Result<()>>),
    }

    /// The log's batches: the requests applied between each `begin` and its `commit`.
    fn batches(log: &[String]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut current = Vec::new();
        for line in log {
            match line.as_str() {
                "begin" => current.clear(),
                "commit" => out.push(std::mem::take(&mut current)),
                l => {
                    if let Some(applied) = l.strip_prefix("apply ") {
                        current.push(applied.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn yielding_requests_take_a_capped_share_of_each_batch() {
        // (requests queued, in order; the batches committed)
        let y = |n: u64| Fake::Yield(n);
        let names = |from: u64, to: u64| (from..=to).map(|n| format!("y{n}")).collect::<Vec<_>>();
        let floor = YIELDING_FLOOR as u64;
        type Case = (Vec<Fake>, Vec<Vec<String>>);
        let cases: Vec<Case> = vec![
            // Few enough: one batch, in the order queued.
            (
                vec![y(1), Fake::Ok(1), y(2)],
                vec![vec!["1".into(), "y1".into(), "y2".into()]],
            ),
            // More than the floor behind one ingest: the ingest and the floor's worth, then
            // the rest, oldest first, in the next batch.
            (
                (1..=floor + 3).map(y).chain([Fake::Ok(1)]).collect(),
                vec![
                    std::iter::once("1".to_string())
                        .chain(names(1, floor))
                        .collect(),
                    names(floor + 1, floor + 3),
                ],
            ),
            // A fault is a barrier: what yielded before it runs before it.
            (
                vec![y(1), Fake::Ok(1), Fake::Fault(None), Fake::Ok(2), y(2)],
                vec![vec!["1".into(), "y1".into(), "2".into(), "y2".into()]],
            ),
        ];
        for (requests, want) in cases {
            let n = requests.len();
            let (answers, log) = run(requests, false);
            assert_eq!(answers.len(), n);
            assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
            assert_eq!(batches(&log), want, "{log:?}");
        }
    }

    #[test]
    fn the_share_is_one_per_other_request_and_at_least_the_floor() {
        // (other requests in the batch, yielding requests it takes)
        for (others, share) in [
            (0, YIELDING_FLOOR),
            (1, YIELDING_FLOOR),
            (YIELDING_FLOOR, YIELDING_FLOOR),
            (YIELDING_FLOOR + 1, YIELDING_FLOOR + 1),
            (500, 500),
        ] {
            assert_eq!(yielding_share(others), share, "{others} others");
        }
    }

    #[test]
    fn a_batch_commits_once_and_answers_in_order() {
        let (answers, log) = run(vec![Fake::Ok(1), Fake::Ok(2), Fake::Ok(3)], false);
        assert_eq!(
            answers.into_iter().map(|a| a.unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            log,
            ["begin", "apply 1", "apply 2", "apply 3", "commit", "after"]
        );
    }

    #[test]
    fn a_failing_request_fails_alone_and_the_others_commit_one_by_one() {
        let (answers, log) = run(vec![Fake::Ok(1), Fake::Fail, Fake::Ok(3)], false);
        assert_eq!(answers[0].as_ref().unwrap(), &1);
        assert!(matches!(answers[1], Err(StoreError::Unavailable(_))));
        assert_eq!(answers[2].as_ref().unwrap(), &3);
        assert_eq!(
            log,
            [
                "begin",
                "apply 1",
                "apply fail",
                "rollback",
                "begin",
                "apply 1",
                "commit",
                "begin",
                "apply fail",
                "rollback",
                "begin",
                "apply 3",
                "commit",
                "after"
            ]
        );
    }

    #[test]
    fn a_failing_commit_fails_the_whole_batch_but_faults_still_apply() {
        let (answers, log) = run(
            vec![
                Fake::Ok(1),
                Fake::Ok(2),
                Fake::Fault(Some(StoreFault::RejectWrites)),
            ],
            true,
        );
        assert!(matches!(answers[0], Err(StoreError::Unavailable(_))));
        assert!(matches!(answers[1], Err(StoreError::Unavailable(_))));
        assert!(answers[2].is_ok(), "the fault applies all the same");
        assert_eq!(
            log,
            [
                "begin",
                "apply 1",
                "apply 2",
                "commit failed",
                "rollback",
                "after"
            ]
        );
    }

    #[test]
    fn a_fault_fails_only_the_requests_queued_after_it() {
        let (answers, log) = run(
            vec![
                Fake::Ok(1),
                Fake::Fault(Some(StoreFault::RejectWrites)),
                Fake::Ok(2),
                Fake::Fault(None),
                Fake::Ok(3),
            ],
            false,
        );
        assert_eq!(answers[0].as_ref().unwrap(), &1);
        assert!(answers[1].is_ok());
        assert!(
            matches!(&answers[2], Err(StoreError::Unavailable(m)) if m == "read-only"),
            "{:?}",
            answers[2]
        );
        assert!(answers[3].is_ok());
        assert_eq!(answers[4].as_ref().unwrap(), &3);
        assert_eq!(
            log,
            [
                "begin", "apply 1", "rollback", "begin", "apply 1", "commit", "refuse", "begin",
                "apply 3", "commit", "after"
            ]
        );
    }
}

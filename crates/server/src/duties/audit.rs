//! The conservation audit of one source's window (`GET /api/v1/audit`, `intake audit`): what
//! the store counted and what it holds ([`Store::audit`]), and the checks that say whether the
//! numbers add up:
//!
//! * **received = accepted + duplicates + rejected (by reason)**: the request counters;
//! * **accepted counted = events stored**: `requests.accepted` (written by ingest in the
//!   transaction that stores the event) against the event rows of the same window, in total
//!   and by origin. Both cover every event ingest stores — webhooks and backfilled events
//!   alike — so they compare like with like. A 200 for an event that was never stored (the
//!   story's bug) shows here;
//! * **accepted = delivered + pending + dead, per routed destination**: each (event,
//!   destination) once, by the best state of its deliveries;
//! * **no missing deliveries**: no event of the window without a delivery to a routed
//!   destination ("received but never queued").
//!
//! What the system of record implies for the window is not read here: the command line asks a
//! dry-run backfill for it (through `/api/v1/recoveries`), so that this read stays a read of
//! the store. The report says whether the source has the API credentials that needs.
//!
//! Not a duty that runs: the logic the API door calls, kept beside the duties as the alert
//! book is, with the judgement ([`report`]) a pure function tested with a table.

use std::collections::{BTreeMap, BTreeSet};

use intake_core::config::{Config, SourceConfig};
use intake_core::Timestamp;
use intake_store::{AuditCounts, AuditQuery, AuditWindow, DestinationAudit, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::recovery::params::{self, Refusal};
use super::retention::{ensure_kept, Cut};

/// How many event ids a destination's missing deliveries list.
pub const SAMPLE: usize = 10;

/// The name of the check that the accepted count matches the stored events.
pub const ACCEPTED_STORED: &str = "accepted_stored";
/// The name of the check that each routed destination's deliveries add up to the events.
pub const DELIVERIES_ADD_UP: &str = "deliveries_add_up";
/// The name of the check that no event lacks a delivery to a routed destination.
pub const NO_MISSING_DELIVERIES: &str = "no_missing_deliveries";

/// `GET /api/v1/audit` query parameters, as received.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// The source (a tenant token: one of its tenant's).
    pub source: Option<String>,
    /// Window start: events received at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Window end: events received before (RFC 3339; not in the future).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
}

/// A checked audit request.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    /// The source's configuration.
    pub source: SourceConfig,
    /// Window start.
    pub from: Timestamp,
    /// Window end (exclusive).
    pub to: Timestamp,
}

/// Checks the parameters against the configuration: the source must exist and be visible
/// (`visible(tenant)`; else 404), the window be well formed and not reach into the future.
pub fn check(
    p: &AuditParams,
    config: &Config,
    visible: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Result<AuditRequest, Refusal> {
    let source = params::source_of(p.source.as_deref(), config, visible)?;
    let (from, to) = params::window(p.from.as_deref(), p.to.as_deref(), now)?;
    Ok(AuditRequest {
        source: source.clone(),
        from,
        to,
    })
}

/// The request counters of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Received {
    /// Every request counted: `accepted + duplicate + rejected.total`.
    pub total: u64,
    /// New events stored (`requests.accepted`), of every origin: webhooks and backfills.
    pub accepted: u64,
    /// Requests that repeated a stored event.
    pub duplicate: u64,
    /// Refused requests, by reason.
    pub rejected: Rejected,
}

/// Refused requests by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rejected {
    /// All of them.
    pub total: u64,
    /// Bad or missing signature (401).
    pub signature: u64,
    /// Unparseable body (400).
    pub invalid: u64,
    /// Body over the limit (413).
    pub too_large: u64,
}

/// What was accepted, as counted and as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AcceptedEvents {
    /// `requests.accepted` of the window.
    pub counted: u64,
    /// The `events.<origin>` counters: `webhook`, `backfill`, `canary`.
    pub counted_by_origin: BTreeMap<String, u64>,
    /// Event rows received in the window.
    pub stored: u64,
    /// Those, by origin.
    pub stored_by_origin: BTreeMap<String, u64>,
    /// Those, by normalized channel.
    pub stored_by_channel: BTreeMap<String, u64>,
}

/// One check of the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `accepted_stored`, `deliveries_add_up` or `no_missing_deliveries`.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// The numbers behind it, and what to do when it does not hold.
    pub detail: String,
}

/// The audit of one source's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditReport {
    /// The source's tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// The window asked for: start.
    pub from: Timestamp,
    /// The window asked for: end (exclusive).
    pub to: Timestamp,
    /// The window counted: widened to whole minutes (or hours, once minute counters are
    /// compacted away), so that counters and stored events cover the same events.
    pub window: AuditWindow,
    /// Requests by outcome.
    pub received: Received,
    /// Accepted events, counted and stored.
    pub accepted: AcceptedEvents,
    /// Per destination: the routed ones, then any other that events of the window have
    /// deliveries to.
    pub destinations: Vec<DestinationAudit>,
    /// The checks, in this order: `accepted_stored`, `deliveries_add_up`,
    /// `no_missing_deliveries`.
    pub checks: Vec<Check>,
    /// Whether every check holds.
    pub adds_up: bool,
    /// Whether the source has API credentials, so that its system of record can be asked what
    /// it has for the window (a dry-run backfill; `intake audit` does it).
    pub sor_api: bool,
}

/// Reads the store and judges what it read. A window that reaches before the retention
/// mark is refused ([`Cut::Expired`]): the events retention deleted there would show as
/// accepted and never stored, and the conservation law would lie.
pub async fn audit(
    store: &dyn Store,
    req: &AuditRequest,
    now: Timestamp,
) -> Result<AuditReport, Cut> {
    ensure_kept(store, "an audit", req.from).await?;
    let counts = store
        .audit(AuditQuery {
            source: req.source.id.clone(),
            from: req.from,
            to: req.to,
            routes: req.source.destinations.clone(),
            sample: SAMPLE,
        })
        .await?;
    Ok(report(req, counts, now))
}

/// The report of `counts`: the numbers, grouped as the conservation laws read, and the checks.
pub fn report(req: &AuditRequest, c: AuditCounts, now: Timestamp) -> AuditReport {
    let r = c.requests;
    let rejected = Rejected {
        total: r.rejected_signature + r.rejected_invalid + r.too_large,
        signature: r.rejected_signature,
        invalid: r.rejected_invalid,
        too_large: r.too_large,
    };
    let received = Received {
        total: r.accepted + r.duplicate + rejected.total,
        accepted: r.accepted,
        duplicate: r.duplicate,
        rejected,
    };
    let accepted = AcceptedEvents {
        counted: r.accepted,
        counted_by_origin: c.counted_by_origin,
        stored: c.stored,
        stored_by_origin: c.stored_by_origin,
        stored_by_channel: c.stored_by_channel,
    };
    // A requeue of the counted window queues what is missing; its end is no later than now
    // (a requeue refuses the future), which loses nothing: nothing was received after now.
    let requeue = format!(
        "intake recover requeue --source {} --from {} --to {}",
        req.source.id,
        c.window.from,
        c.window.to.min(now)
    );
    let checks = vec![
        accepted_stored(&accepted, &c.window),
        deliveries_add_up(accepted.stored, &c.destinations),
        no_missing_deliveries(&c.destinations, &requeue),
    ];
    AuditReport {
        tenant: req.source.tenant.clone(),
        source: req.source.id.clone(),
        from: req.from,
        to: req.to,
        window: c.window,
        received,
        adds_up: checks.iter().all(|k| k.ok),
        accepted,
        destinations: c.destinations,
        checks,
        sor_api: req.source.api.is_some(),
    }
}

/// `webhook 500, backfill 12`, or `none`.
fn listing(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn verdict(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        ok,
        detail,
    }
}

fn accepted_stored(a: &AcceptedEvents, window: &AuditWindow) -> Check {
    if !window.counters_kept {
        return verdict(
            ACCEPTED_STORED,
            false,
            format!(
                "the counters of this window were deleted by retention (hourly counters are \
                 kept 26 weeks), so what was accepted cannot be compared with the {} events \
                 stored; audit a more recent window",
                a.stored
            ),
        );
    }
    let origins: BTreeSet<&String> = a
        .counted_by_origin
        .keys()
        .chain(a.stored_by_origin.keys())
        .collect();
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let differing: Vec<String> = origins
        .into_iter()
        .filter(|o| get(&a.counted_by_origin, o) != get(&a.stored_by_origin, o))
        .map(|o| {
            format!(
                "{o}: {} counted, {} stored",
                get(&a.counted_by_origin, o),
                get(&a.stored_by_origin, o)
            )
        })
        .collect();
    if a.counted == a.stored && differing.is_empty() {
        return verdict(
            ACCEPTED_STORED,
            true,
            format!(
                "{} accepted (counted) = {} events stored ({})",
                a.counted,
                a.stored,
                listing(&a.stored_by_origin)
            ),
        );
    }
    let why = if a.counted > a.stored {
        format!(
            "{} acknowledged events are not in the store",
            a.counted - a.stored
        )
    } else if a.stored > a.counted {
        format!(
            "{} stored events were never counted as accepted",
            a.stored - a.counted
        )
    } else {
        "the totals agree but not by origin".to_string()
    };
    let by_origin = if differing.is_empty() {
        String::new()
    } else {
        format!(" ({})", differing.join("; "))
    };
    verdict(
        ACCEPTED_STORED,
        false,
        format!(
            "{} accepted (counted) ≠ {} events stored: {why}{by_origin}; the store lost \
             writes or counted without writing (see docs/audit.md)",
            a.counted, a.stored
        ),
    )
}

fn deliveries_add_up(events: u64, destinations: &[DestinationAudit]) -> Check {
    let routed: Vec<&DestinationAudit> = destinations.iter().filter(|d| d.routed).collect();
    if routed.is_empty() {
        return verdict(
            DELIVERIES_ADD_UP,
            true,
            "the source routes to no destination".into(),
        );
    }
    let mut ok = true;
    let mut parts = Vec::new();
    for d in routed {
        let sum = d.delivered + d.pending + d.dead;
        let line = format!(
            "{}: {} delivered + {} pending + {} dead",
            d.destination, d.delivered, d.pending, d.dead
        );
        if sum == events {
            parts.push(format!("{line} = {events} events"));
            continue;
        }
        ok = false;
        let unknown = events.saturating_sub(sum + d.missing);
        let mut why = Vec::new();
        if d.missing > 0 {
            why.push(format!("{} with no delivery to it", d.missing));
        }
        if unknown > 0 {
            why.push(format!("{unknown} whose deliveries are in no known state"));
        }
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        };
        parts.push(format!("{line} = {sum} ≠ {events} events{why}"));
    }
    verdict(DELIVERIES_ADD_UP, ok, parts.join("; "))
}

fn no_missing_deliveries(destinations: &[DestinationAudit], requeue: &str) -> Check {
    let routed: Vec<&DestinationAudit> = destinations.iter().filter(|d| d.routed).collect();
    let missing: Vec<String> = routed
        .iter()
        .filter(|d| d.missing > 0)
        .map(|d| {
            let first: Vec<&str> = d.missing_sample.iter().map(|e| e.as_str()).collect();
            format!(
                "{}: {} events received but never queued (first: {})",
                d.destination,
                d.missing,
                first.join(", ")
            )
        })
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = routed.iter().map(|d| d.destination.as_str()).collect();
        let detail = if names.is_empty() {
            "the source routes to no destination".to_string()
        } else {
            format!(
                "every event has a delivery to each routed destination ({})",
                names.join(", ")
            )
        };
        return verdict(NO_MISSING_DELIVERIES, true, detail);
    }
    verdict(
        NO_MISSING_DELIVERIES,
        false,
        format!("{}; queue them with `{requeue}`", missing.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::EventId;
    use intake_store::{CountersKept, RequestCounts};

    fn source(api: bool) -> SourceConfig {
        let text = format!(
            r#"
[[tenants]]
id = "maelys"

[[destinations]]
id = "handler"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdA=="

[[destinations]]
id = "crm"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdA=="

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["s"]
destinations = ["handler", "crm"]
{}
"#,
            if api {
                r#"api = { base_url = "http://127.0.0.1:9", token = "k" }"#
            } else {
                ""
            }
        );
        let config = Config::from_toml_str(&text).expect("a test configuration");
        config.sources[0].clone()
    }

    fn request() -> AuditRequest {
        AuditRequest {
            source: source(true),
            from: Timestamp(600_000),
            to: Timestamp(660_000),
        }
    }

    fn dest(name: &str, routed: bool, counts: (u64, u64, u64), missing: u64) -> DestinationAudit {
        DestinationAudit {
            destination: name.into(),
            routed,
            delivered: counts.0,
            pending: counts.1,
            dead: counts.2,
            missing,
            missing_sample: (0..missing.min(2))
                .map(|i| EventId::generate(Timestamp(600_000 + i as i64)))
                .collect(),
        }
    }

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    /// Ten webhooks and two backfilled events accepted, stored and delivered; two duplicates,
    /// three refusals.
    fn healthy() -> AuditCounts {
        AuditCounts {
            window: AuditWindow::plan(
                Timestamp(600_000),
                Timestamp(660_000),
                CountersKept::default(),
            ),
            requests: RequestCounts {
                accepted: 12,
                duplicate: 2,
                rejected_signature: 1,
                rejected_invalid: 1,
                too_large: 1,
            },
            counted_by_origin: map(&[("webhook", 10), ("backfill", 2)]),
            stored: 12,
            stored_by_origin: map(&[("webhook", 10), ("backfill", 2)]),
            stored_by_channel: map(&[("chat", 5), ("email", 7)]),
            destinations: vec![
                dest("handler", true, (11, 0, 1), 0),
                dest("crm", true, (8, 4, 0), 0),
                dest("old", false, (3, 0, 0), 0),
            ],
        }
    }

    fn verdicts(r: &AuditReport) -> Vec<(&str, bool)> {
        r.checks.iter().map(|c| (c.name.as_str(), c.ok)).collect()
    }

    #[test]
    fn a_healthy_window_adds_up() {
        let r = report(&request(), healthy(), Timestamp(700_000));
        assert_eq!(
            verdicts(&r),
            [
                (ACCEPTED_STORED, true),
                (DELIVERIES_ADD_UP, true),
                (NO_MISSING_DELIVERIES, true)
            ]
        );
        assert!(r.adds_up);
        assert_eq!(r.received.total, 17);
        assert_eq!(r.received.rejected.total, 3);
        assert!(r.sor_api);
        assert_eq!(
            r.checks[1].detail,
            "handler: 11 delivered + 0 pending + 1 dead = 12 events; \
             crm: 8 delivered + 4 pending + 0 dead = 12 events"
        );
        assert_eq!(
            r.checks[0].detail,
            "12 accepted (counted) = 12 events stored (backfill 2, webhook 10)"
        );
    }

    #[test]
    fn each_way_of_losing_work_fails_its_check_and_says_what_to_do() {
        type Break = fn(&mut AuditCounts);
        let cases: &[(&str, Break, [bool; 3], &[&str])] = &[
            (
                "200 answered, event never stored",
                |c| {
                    c.requests.accepted = 14;
                    c.counted_by_origin.insert("webhook".into(), 12);
                },
                [false, true, true],
                &[
                    "14 accepted (counted) ≠ 12 events stored",
                    "2 acknowledged events are not in the store",
                    "webhook: 12 counted, 10 stored",
                ],
            ),
            (
                "event stored, never counted",
                |c| c.requests.accepted = 11,
                [false, true, true],
                &["1 stored events were never counted"],
            ),
            (
                "totals agree, origins do not",
                |c| {
                    c.counted_by_origin = map(&[("webhook", 12)]);
                },
                [false, true, true],
                &["not by origin", "backfill: 0 counted, 2 stored"],
            ),
            (
                "received but never queued",
                |c| c.destinations[1] = dest("crm", true, (6, 4, 0), 2),
                [true, false, false],
                &[
                    "crm: 6 delivered + 4 pending + 0 dead = 10 ≠ 12 events (2 with no delivery to it)",
                    "crm: 2 events received but never queued (first: evt_",
                    "intake recover requeue --source maelys-kustomer --from 1970-01-01T00:10:00.000Z --to 1970-01-01T00:11:00.000Z",
                ],
            ),
            (
                "a delivery state this build does not know",
                |c| c.destinations[0] = dest("handler", true, (10, 0, 1), 0),
                [true, false, true],
                &["1 whose deliveries are in no known state"],
            ),
            (
                "a destination no longer routed is not judged",
                |c| c.destinations[2] = dest("old", false, (0, 0, 0), 0),
                [true, true, true],
                &[],
            ),
            (
                "counters deleted by retention",
                |c| c.window.counters_kept = false,
                [false, true, true],
                &["deleted by retention", "audit a more recent window"],
            ),
        ];
        for (what, broken, want, details) in cases {
            let mut c = healthy();
            broken(&mut c);
            let r = report(&request(), c, Timestamp(700_000));
            let got: Vec<bool> = r.checks.iter().map(|k| k.ok).collect();
            assert_eq!(got, want, "{what}: {:#?}", r.checks);
            assert_eq!(r.adds_up, want.iter().all(|ok| *ok), "{what}");
            let all: String = r.checks.iter().map(|k| format!("{}\n", k.detail)).collect();
            for d in *details {
                assert!(all.contains(d), "{what}: no {d:?} in\n{all}");
            }
        }
    }

    #[test]
    fn a_source_without_routes_or_api_says_so() {
        let mut req = request();
        req.source = source(false);
        req.source.destinations.clear();
        let mut c = healthy();
        c.destinations.retain(|d| !d.routed);
        let r = report(&req, c, Timestamp(700_000));
        assert!(r.adds_up, "{:#?}", r.checks);
        assert!(!r.sor_api);
        assert_eq!(r.checks[2].detail, "the source routes to no destination");
    }

    #[test]
    fn a_requeue_hint_never_reaches_into_the_future() {
        let mut c = healthy();
        c.destinations[1] = dest("crm", true, (6, 4, 0), 2);
        let r = report(&request(), c, Timestamp(630_000));
        assert!(
            r.checks[2].detail.contains("--to 1970-01-01T00:10:30.000Z"),
            "{}",
            r.checks[2].detail
        );
    }
}

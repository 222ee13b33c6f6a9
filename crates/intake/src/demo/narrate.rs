//! The narrator: what the demo says in the terminal, act by act, and the timings it keeps.
//!
//! Every act opens with a heading and closes with `✓ act N happened: <title>` and its
//! timings; a test of the real binary looks for those lines. Times are shown twice, on the
//! demo's clock (simulated with `--fast`) and on the wall clock, since the first is what the
//! product measured and the second is what the person waited.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use intake_core::Timestamp;

/// One act of the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Act {
    /// 1 to [`ACTS`]`.len()`.
    pub number: usize,
    /// What happens in it, as the story tells it.
    pub title: &'static str,
    /// The dashboard's pages to look at while it plays.
    pub pages: &'static [&'static str],
    /// What to see there.
    pub look: &'static str,
}

/// The story, act by act (the six steps).
pub const ACTS: [Act; 6] = [
    Act {
        number: 1,
        title: "the handler path stops processing",
        pages: &["/"],
        look: "demo-kustomer's queue grows and its oldest delivery ages",
    },
    Act {
        number: 2,
        title: "the alert fires and on-call is notified",
        pages: &["/alerts"],
        look: "canary_failed or queue_stalled firing, with its reason",
    },
    Act {
        number: 3,
        title: "an incident is declared by itself and the tenant is told",
        pages: &["/incidents"],
        look: "the incident, its timeline and the notices sent (or `intake incident show ID`)",
    },
    Act {
        number: 4,
        title: "the fault heals",
        pages: &["/"],
        look: "the queue drains as the held deliveries go out",
    },
    Act {
        number: 5,
        title: "a backfill recovers what was lost, and the audit adds up",
        pages: &["/recoveries", "/audit"],
        look: "the backfill's report, and the window adding up",
    },
    Act {
        number: 6,
        title: "the incident is resolved and the postmortem drafted",
        pages: &["/incidents"],
        look: "the incident resolved, and the tenant told it is over",
    },
];

/// How long one act took.
#[derive(Debug, Clone, PartialEq)]
pub struct ActTiming {
    /// The act.
    pub act: Act,
    /// On the demo's clock.
    pub clock: Duration,
    /// On the wall clock.
    pub wall: Duration,
    /// When it ended, on the demo's clock, from the start of the story.
    pub at: Duration,
}

/// Writes the story to stdout and keeps each act's timings.
pub struct Narrator {
    start: (Timestamp, Instant),
    current: Option<(Act, Timestamp, Instant)>,
    timings: Vec<ActTiming>,
}

impl Narrator {
    /// A narrator whose story starts at `now` on the demo's clock.
    pub fn new(now: Timestamp) -> Narrator {
        Narrator {
            start: (now, Instant::now()),
            current: None,
            timings: Vec::new(),
        }
    }

    /// Opens `act` at `now`; `base` is the dashboard's URL.
    pub fn begin(&mut self, act: Act, now: Timestamp, base: &str) {
        let at = now.since(self.start.0);
        print_now(&format!(
            "\n== Act {}/{} · {}   [{}]\n   Look at {}: {}\n",
            act.number,
            ACTS.len(),
            capitalized(act.title),
            clock_text(at),
            pages(base, act.pages),
            act.look
        ));
        self.current = Some((act, now, Instant::now()));
    }

    /// One line of the story, indented under its act.
    pub fn say(&self, line: &str) {
        let mut out = String::new();
        for l in line.lines() {
            let _ = writeln!(out, "   {l}");
        }
        print_now(&out);
    }

    /// A block printed as it is (a report, the postmortem).
    pub fn show(&self, block: &str) {
        let mut out = String::new();
        for l in block.lines() {
            let _ = writeln!(out, "   │ {l}");
        }
        print_now(&out);
    }

    /// Closes the current act at `now`: it happened.
    pub fn done(&mut self, now: Timestamp) {
        let Some((act, begun, wall)) = self.current.take() else {
            return;
        };
        let timing = ActTiming {
            act,
            clock: now.since(begun),
            wall: wall.elapsed(),
            at: now.since(self.start.0),
        };
        print_now(&format!("   {}\n", happened(&timing)));
        self.timings.push(timing);
    }

    /// The timings of the acts that happened.
    pub fn timings(&self) -> &[ActTiming] {
        &self.timings
    }

    /// The wall time since the story began.
    pub fn wall(&self) -> Duration {
        self.start.1.elapsed()
    }
}

/// Prints and flushes, so that a person (or a pipe) sees each line when it happens.
fn print_now(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `✓ act 2 happened: the alert fires … (2m 5s on the demo's clock, 1.4 s wall)`
pub fn happened(t: &ActTiming) -> String {
    format!(
        "✓ act {} happened: {} ({} on the demo's clock, {:.1} s wall)",
        t.act.number,
        t.act.title,
        short(t.clock),
        t.wall.as_secs_f64()
    )
}

/// The table of every act's timings, printed at the end.
pub fn summary(timings: &[ActTiming], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<4} {:<58} {:>12} {:>9} {:>9}",
        "act", "", "demo clock", "wall", "ended at"
    );
    for t in timings {
        let _ = writeln!(
            out,
            "{:<4} {:<58} {:>12} {:>8.1}s {:>9}",
            t.act.number,
            t.act.title,
            short(t.clock),
            t.wall.as_secs_f64(),
            clock_text(t.at)
        );
    }
    let total = timings.last().map_or(Duration::ZERO, |t| t.at);
    let _ = writeln!(
        out,
        "all {} acts happened in {} on the demo's clock, {:.1} s wall",
        timings.len(),
        short(total),
        wall.as_secs_f64()
    );
    out
}

/// `+3m05s`: a point in the story, from its start.
pub fn clock_text(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{}m{:02}s", s / 60, s % 60)
}

/// `2m 5s`, `40s`, `0s`: a span, to the second.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m {s}s"),
    }
}

/// `http://h/recoveries and http://h/audit`
fn pages(base: &str, paths: &[&str]) -> String {
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    urls.join(" and ")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_points_read_as_people_write_them() {
        let cases = [
            (0, "0s", "+0m00s"),
            (40, "40s", "+0m40s"),
            (60, "1m", "+1m00s"),
            (125, "2m 5s", "+2m05s"),
            (3725, "62m 5s", "+62m05s"),
        ];
        for (secs, span, point) in cases {
            let d = Duration::from_millis(secs * 1000 + 999);
            assert_eq!(short(d), span, "{secs}");
            assert_eq!(clock_text(d), point, "{secs}");
        }
        assert_eq!(capitalized("the fault heals"), "The fault heals");
        assert_eq!(
            pages("http://h", &["/recoveries", "/audit"]),
            "http://h/recoveries and http://h/audit"
        );
    }

    #[test]
    fn each_act_closes_with_the_line_the_binary_test_looks_for() {
        let t = ActTiming {
            act: ACTS[1],
            clock: Duration::from_secs(125),
            wall: Duration::from_millis(1400),
            at: Duration::from_secs(200),
        };
        assert_eq!(
            happened(&t),
            "✓ act 2 happened: the alert fires and on-call is notified (2m 5s on the demo's \
             clock, 1.4 s wall)"
        );
        let table = summary(&[t], Duration::from_secs(3));
        assert!(table.contains("2m 5s"), "{table}");
        assert!(table.contains("+3m20s"), "{table}");
        assert!(
            table.contains("all 1 acts happened in 3m 20s on the demo's clock, 3.0 s wall"),
            "{table}"
        );
        for (i, act) in ACTS.iter().enumerate() {
            assert_eq!(act.number, i + 1);
        }
    }
}

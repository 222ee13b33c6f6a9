//! Planned quiet days (`[[monitor.calendars]]`): dates known in advance to be quiet, for
//! every tenant or some, so that a public holiday or a company's closing day needs no silence.
//!
//! The flow detectors ask [`QuietDays::quiet`] for a tenant at a minute; on such a day
//! `inbound_drop` does not judge the tenant's flows, and `inbound_stopped` judges a silence
//! against a quiet day's traffic instead of an ordinary one's (an outage still pages).

use std::collections::BTreeSet;

use intake_core::config::QuietCalendar;

use crate::history::Minute;

#[derive(Debug, Clone, PartialEq)]
struct Calendar {
    name: String,
    /// Every tenant when `None`.
    tenants: Option<BTreeSet<String>>,
    /// The dates' midnight, in minutes from UTC.
    offset: i64,
    /// Days since 1970-01-01 in the calendar's local time.
    days: BTreeSet<i64>,
}

/// Every configured calendar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuietDays {
    calendars: Vec<Calendar>,
}

impl QuietDays {
    /// The calendars of the configuration. It was validated (`Config::check`); an entry that
    /// does not parse is left out rather than guessed.
    pub fn new(config: &[QuietCalendar]) -> Self {
        let calendars = config
            .iter()
            .filter_map(|c| {
                let offset = c.offset_minutes().ok()?;
                let days = c.days().ok()?.into_iter().collect();
                Some(Calendar {
                    name: c.name.clone(),
                    tenants: (!c.tenants.is_empty()).then(|| c.tenants.iter().cloned().collect()),
                    offset,
                    days,
                })
            })
            .collect();
        QuietDays { calendars }
    }

    /// True when no calendar is configured.
    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }

    /// The calendar that makes minute `m` (minutes since the epoch, UTC) a quiet day for
    /// `tenant`, if any.
    pub fn quiet(&self, tenant: &str, m: Minute) -> Option<QuietDay<'_>> {
        self.calendars.iter().find_map(|c| {
            let day = (m + c.offset).div_euclid(1440);
            (c.tenants.as_ref().is_none_or(|t| t.contains(tenant)) && c.days.contains(&day)).then(
                || QuietDay {
                    name: &c.name,
                    since: day * 1440 - c.offset,
                },
            )
        })
    }
}

/// A planned quiet day of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietDay<'a> {
    /// The calendar's name.
    pub name: &'a str,
    /// The day's first minute (its local midnight, in minutes since the epoch, UTC).
    pub since: Minute,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(name: &str, tenants: &[&str], offset: Option<&str>, dates: &[&str]) -> QuietCalendar {
        QuietCalendar {
            name: name.into(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            utc_offset: offset.map(Into::into),
            dates: dates.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_date_is_quiet_from_its_local_midnight_for_its_tenants() {
        let q = QuietDays::new(&[
            cal("jp", &["kumo"], Some("+09:00"), &["1970-01-02"]),
            cal("all", &[], None, &["1970-01-04"]),
            cal("bad", &[], None, &["soon"]),
        ]);
        // 1970-01-02 00:00 in Tokyo is 1970-01-01 15:00 UTC.
        let day2_tokyo = 1440 - 9 * 60;
        let cases = [
            ("kumo", day2_tokyo - 1, None),
            ("kumo", day2_tokyo, Some("jp")),
            ("kumo", day2_tokyo + 1439, Some("jp")),
            ("kumo", day2_tokyo + 1440, None),
            ("maelys", day2_tokyo, None),
            ("maelys", 3 * 1440, Some("all")),
            ("kumo", 4 * 1440 - 1, Some("all")),
            ("kumo", 4 * 1440, None),
        ];
        for (tenant, m, want) in cases {
            assert_eq!(q.quiet(tenant, m).map(|d| d.name), want, "{tenant} at {m}");
        }
        assert_eq!(
            q.quiet("kumo", day2_tokyo + 5).map(|d| d.since),
            Some(day2_tokyo)
        );
        assert!(!q.is_empty());
        assert!(QuietDays::new(&[]).is_empty());
    }
}

//! A job's schedule in its time zone: the run times cron gives, and the names of their runs.
//!
//! croner walks the wall clock of the zone and resolves daylight-saving transitions as
//! cron does: a time in a skipped hour runs once, just after the gap; a fixed time in a
//! repeated hour runs once, at its first occurrence.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use jiff::Timestamp;

use crate::api::backup_job::{BackupJobSpec, RUN_SUFFIX_LEN, parse_schedule, parse_time_zone};

/// How many past run times one pass walks through to count those missed; beyond it the
/// newest is looked up directly (an operator down for a day with a seconds schedule).
const MISSED_WALK_LIMIT: usize = 1000;

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: Tz,
}

/// The run times due in a window: how many, and the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub count: usize,
    pub newest: Timestamp,
}

impl Schedule {
    /// The schedule of `spec`.
    ///
    /// # Errors
    /// The expression or the zone does not parse (validation rejects both at apply).
    pub fn of(spec: &BackupJobSpec) -> Result<Self, String> {
        Ok(Self {
            cron: parse_schedule(&spec.schedule)?,
            zone: parse_time_zone(spec.time_zone.as_deref())?,
        })
    }

    /// The first run time strictly after `after`.
    #[must_use]
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        // croner keeps the fraction of a second it starts from; run times are whole seconds.
        let whole = Timestamp::from_second(after.as_second()).ok()?;
        let start = to_chrono(whole)?.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        from_chrono(next.with_timezone(&Utc))
    }

    /// The run times in `(after, until]`; `None` when there is none.
    #[must_use]
    pub fn due(&self, after: Timestamp, until: Timestamp) -> Option<Due> {
        let mut due: Option<Due> = None;
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor).filter(|t| *t <= until) {
            let count = due.map_or(0, |d| d.count) + 1;
            due = Some(Due {
                count,
                newest: next,
            });
            if count == MISSED_WALK_LIMIT {
                return Some(Due {
                    count,
                    newest: self.newest_until(until).unwrap_or(next),
                });
            }
            cursor = next;
        }
        due
    }

    fn newest_until(&self, until: Timestamp) -> Option<Timestamp> {
        let end = to_chrono(until)?.with_timezone(&self.zone);
        let newest = self.cron.find_previous_occurrence(&end, true).ok()?;
        from_chrono(newest.with_timezone(&Utc))
    }
}

fn to_chrono(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).ok()?)
}

fn from_chrono(t: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::new(
        t.timestamp(),
        i32::try_from(t.timestamp_subsec_nanos()).ok()?,
    )
    .ok()
}

/// The service name of `job`'s run at `scheduled`: `<job>-<UTC timestamp>`, so a run
/// time always maps to the same name and a second create of it is refused by swarm.
#[must_use]
pub fn run_name(job: &str, scheduled: Timestamp) -> String {
    let suffix = scheduled.strftime("-%Y%m%dt%H%M%Sz").to_string();
    debug_assert_eq!(suffix.len(), RUN_SUFFIX_LEN);
    format!("{job}{suffix}")
}

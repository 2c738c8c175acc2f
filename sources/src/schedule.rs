//! A PingSource's schedule as Knative reads it: five cron fields, or six
//! with a leading seconds field, or a descriptor (`@hourly`, `@daily`,
//! ...), in an IANA time zone (UTC unless `timezone` or a `CRON_TZ=`
//! prefix names one). `@every` is refused, as Knative refuses it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::{
    parser::{CronParser, Seconds, Year},
    Cron,
};

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    timezone: Tz,
    text: String,
}

/// Why a schedule or time zone is not valid; each names its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule '{0}': @every is not supported (use a cron expression)")]
    Every(String),
    #[error("schedule '{schedule}': {reason}")]
    Invalid { schedule: String, reason: String },
    #[error("timezone '{0}' is not an IANA time zone")]
    Timezone(String),
    #[error("schedule '{0}': the time zone is given both as CRON_TZ and in spec.timezone")]
    TwoTimezones(String),
}

impl ScheduleError {
    /// The spec field at fault, as a status message names it.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Timezone(_) => "spec.timezone",
            _ => "spec.schedule",
        }
    }
}

impl Schedule {
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let text = schedule.trim();
        let (prefix_tz, pattern) = match text
            .strip_prefix("CRON_TZ=")
            .or_else(|| text.strip_prefix("TZ="))
        {
            Some(rest) => match rest.split_once(char::is_whitespace) {
                Some((tz, pattern)) => (Some(tz), pattern.trim()),
                None => (Some(rest), ""),
            },
            None => (None, text),
        };
        let timezone = match (prefix_tz, timezone.filter(|t| !t.is_empty())) {
            (Some(_), Some(_)) => return Err(ScheduleError::TwoTimezones(text.to_owned())),
            (Some(tz), None) | (None, Some(tz)) => {
                Tz::from_str(tz).map_err(|_| ScheduleError::Timezone(tz.to_owned()))?
            }
            (None, None) => Tz::UTC,
        };
        if pattern.to_ascii_lowercase().starts_with("@every") {
            return Err(ScheduleError::Every(text.to_owned()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| ScheduleError::Invalid {
                schedule: text.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            cron,
            timezone,
            text: text.to_owned(),
        })
    }

    /// The first tick strictly after `after` (always on a whole second:
    /// the tests hold it to that).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.timezone == other.timezone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn next_ticks_in_their_time_zone() {
        let cases = [
            (
                "*/5 * * * *",
                None,
                "2026-12-03T12:01:30Z",
                "2026-12-03T12:05:00Z",
            ),
            (
                "*/5 * * * *",
                None,
                "2026-12-03T12:05:00Z",
                "2026-12-03T12:10:00Z",
            ),
            (
                "*/2 * * * * *",
                None,
                "2026-12-03T12:00:01Z",
                "2026-12-03T12:00:02Z",
            ),
            (
                "@hourly",
                None,
                "2026-12-03T12:00:00Z",
                "2026-12-03T13:00:00Z",
            ),
            (
                "@daily",
                None,
                "2026-12-03T12:00:00Z",
                "2026-12-04T00:00:00Z",
            ),
            (
                "0 9 * * *",
                Some("Europe/Paris"),
                "2026-12-03T07:00:00Z",
                "2026-12-03T08:00:00Z",
            ),
            (
                "0 9 * * *",
                Some("Europe/Paris"),
                "2026-07-03T05:00:00Z",
                "2026-07-03T07:00:00Z",
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                None,
                "2026-12-03T00:00:00Z",
                "2026-12-04T00:00:00Z",
            ),
            (
                "0 0 * * MON",
                None,
                "2026-12-03T12:00:00Z",
                "2026-12-07T00:00:00Z",
            ),
        ];
        for (schedule, tz, after, want) in cases {
            let parsed =
                Schedule::parse(schedule, tz).unwrap_or_else(|e| panic!("{schedule}: {e}"));
            assert_eq!(
                parsed.next_after(at(after)),
                Some(at(want)),
                "{schedule} in {tz:?} after {after}"
            );
        }
    }

    #[test]
    fn bad_schedules_and_zones_name_their_field() {
        let cases = [
            (
                "@every 1m",
                None,
                "spec.schedule",
                "@every is not supported",
            ),
            ("* * *", None, "spec.schedule", "schedule '* * *'"),
            ("61 * * * *", None, "spec.schedule", "schedule '61 * * * *'"),
            ("* * * * * * 2030", None, "spec.schedule", "schedule"),
            ("", None, "spec.schedule", "schedule ''"),
            (
                "* * * * *",
                Some("Mars/Olympus"),
                "spec.timezone",
                "'Mars/Olympus' is not an IANA",
            ),
            (
                "CRON_TZ=UTC * * * * *",
                Some("UTC"),
                "spec.schedule",
                "both",
            ),
        ];
        for (schedule, tz, field, message) in cases {
            let error = Schedule::parse(schedule, tz).expect_err(schedule);
            assert_eq!(error.field(), field, "{schedule}");
            assert!(error.to_string().contains(message), "{schedule}: {error}");
        }
    }
}

//! Calendar arithmetic: UTC date and time of day from and to
//! [`SystemTime`], in the proleptic Gregorian calendar, without time zones
//! (sessionfs shows and names everything in UTC).
//!
//! The one place that converts between seconds since the epoch and
//! year/month/day: session names carry a timestamp made here (see
//! [`super::name`]), and `sessionfs list` prints times made here.
//!
//! Invariants: a [`DateTime`] always holds a real date (no 31 February)
//! and a time of day within 00:00:00..=23:59:60 (a leap second as plainbox
//! might write it counts as the next second); times before the epoch round
//! down to the whole second before them, so every instant falls in exactly
//! one second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// The date and time, when they name a real instant (month 1..=12, a
    /// day the month has, hour 0..=23, minute 0..=59, second 0..=60).
    pub fn new(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<DateTime> {
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        // 2026-02-31 and the like do not come back as themselves.
        if civil_from_days(days_from_civil(year, month, day)) != (year, month, day) {
            return None;
        }
        Some(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// The UTC date and time of `t` (rounded down to the second).
    pub fn from_system_time(t: SystemTime) -> DateTime {
        let secs = unix_seconds(t);
        let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
        let rem = secs.rem_euclid(SECS_PER_DAY) as u32;
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// The instant, when it is not before the epoch.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.unix_seconds()).ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// Whole seconds since the epoch, rounded down (so half a second before
/// the epoch is -1).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn days_round_trip() {
        for z in [-800_000, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn instants_become_utc_dates_and_back() {
        let t = DateTime::from_system_time(at(1_795_310_523));
        assert_eq!(t, DateTime::new(2026, 11, 22, 1, 22, 3).unwrap());
        assert_eq!(t.to_system_time(), Some(at(1_795_310_523)));
        let leap = DateTime::from_system_time(at(951_782_400));
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        assert_eq!(
            DateTime::from_system_time(UNIX_EPOCH),
            DateTime::new(1970, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn times_before_the_epoch_round_down() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(unix_seconds(t), -1);
        assert_eq!(
            DateTime::from_system_time(t),
            DateTime::new(1969, 12, 31, 23, 59, 59).unwrap()
        );
        assert_eq!(DateTime::from_system_time(t).to_system_time(), None);
    }

    #[test]
    fn impossible_dates_and_times_are_refused() {
        assert!(DateTime::new(2026, 2, 29, 0, 0, 0).is_none());
        assert!(DateTime::new(2024, 2, 29, 0, 0, 0).is_some());
        assert!(DateTime::new(2026, 13, 1, 0, 0, 0).is_none());
        assert!(DateTime::new(2026, 4, 31, 0, 0, 0).is_none());
        assert!(DateTime::new(2026, 1, 0, 0, 0, 0).is_none());
        assert!(DateTime::new(2026, 1, 1, 24, 0, 0).is_none());
        assert!(DateTime::new(2026, 1, 1, 0, 60, 0).is_none());
        assert!(DateTime::new(2026, 1, 1, 0, 0, 61).is_none());
        // A leap second is the next second.
        let leap = DateTime::new(2016, 12, 31, 23, 59, 60).unwrap();
        let next = DateTime::new(2017, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(leap.unix_seconds(), next.unix_seconds());
    }
}

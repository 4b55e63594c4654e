//! Instants as the API shows them: RFC 3339 / ISO 8601 in UTC with milliseconds
//! (`2026-12-02T01:20:29.635Z`), stored as Unix milliseconds. Written here rather than pulled
//! from a date library because this one format, both ways, is all the API needs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An instant, in Unix milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::date_time("RFC 3339 / ISO 8601, UTC, milliseconds")
    }
}

impl utoipa::ToSchema for Timestamp {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an RFC 3339 UTC timestamp such as 2026-12-02T01:20:29Z")]
pub struct TimestampError;

impl Timestamp {
    /// The last millisecond of year 9999: RFC 3339 has four digits for the year, so no
    /// instant the API accepts lies beyond it.
    pub const MAX_MILLIS: i64 = 253_402_300_799_999;

    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only: `Z` or `+00:00`).
    pub fn parse(raw: &str) -> Result<Self, TimestampError> {
        let b = raw.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return Err(TimestampError);
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(TimestampError);
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let s = raw.get(r).ok_or(TimestampError)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(TimestampError);
            }
            s.parse().map_err(|_| TimestampError)
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = &raw[19..];
        let mut ms = 0;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return Err(TimestampError);
            }
            let first3 = format!("{:0<3}", &frac[..digits.min(3)]);
            ms = first3.parse().map_err(|_| TimestampError)?;
            rest = &frac[digits..];
        }
        if !matches!(rest, "Z" | "z" | "+00:00") {
            return Err(TimestampError);
        }
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || s > 59
        {
            return Err(TimestampError);
        }
        let days = days_from_civil(y, mo, d);
        Ok(Self(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the classic era-based algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, mi) = (in_day / 3_600_000, in_day / 60_000 % 60);
        let (s, ms) = (in_day / 1000 % 60, in_day % 1000);
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_print_and_parse() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_796_174_428_635, "2026-12-02T01:20:28.635Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(Timestamp(ms).to_string(), text);
            assert_eq!(Timestamp::parse(text), Ok(Timestamp(ms)));
        }
        assert_eq!(
            Timestamp::parse("2026-12-02T01:20:28Z"),
            Ok(Timestamp(1_796_174_428_000))
        );
        assert_eq!(
            Timestamp::parse("2026-12-02T01:20:28.6+00:00"),
            Ok(Timestamp(1_796_174_428_600))
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = days_from_civil(1900, 1, 1);
        for day in start..start + 146_097 {
            let ms = day * 86_400_000 + 45_296_789;
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn malformed_and_non_utc_are_refused() {
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02T01:20:28",
            "2026-12-02T01:20:28+01:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T01:20:28.Z",
            "２026-12-02T01:20:28Z",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(TimestampError), "{bad}");
        }
    }
}

/// Where time comes from, passed in so that deadlines (a reservation's expiry, say) are tested
/// by moving a clock rather than by waiting.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Timestamp::now().millis()
    }
}

/// A clock that moves only when told: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock at the system's time now.
    pub fn now() -> Self {
        Self(std::sync::atomic::AtomicI64::new(Timestamp::now().millis()))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.0
            .fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

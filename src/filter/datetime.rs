//! Datetime ranges: `range` with string bounds, as Qdrant reads them. Bounds and payload values
//! are RFC 3339 timestamps (or the looser forms Qdrant also accepts: a space for the `T`, no
//! seconds, a date alone, no offset meaning UTC), compared as instants to the microsecond, as
//! Qdrant stores them (finer digits are dropped).

use serde_json::Value;

/// Bounds on a datetime, as written (RFC 3339 strings), with the instants they stand for.
///
/// ```
/// use grape_vector_db::{Condition, Payload, PointId};
/// let c: Condition = serde_json::from_str(
///     r#"{"key": "at", "range": {"gte": "2024-01-01T00:00:00Z", "lt": "2024-02-01"}}"#,
/// ).unwrap();
/// let p: Payload = serde_json::from_str(r#"{"at": "2024-01-15 08:30:00+02:00"}"#).unwrap();
/// assert!(c.matches(PointId::Num(1), &p));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatetimeRange {
    /// `gt`, `gte`, `lt`, `lte` as written.
    bounds: [Option<String>; 4],
    /// The same, in microseconds since 1970-01-01T00:00:00Z.
    instants: [Option<i64>; 4],
}

/// The bound names, in the order of [`DatetimeRange`]'s arrays.
pub(super) const BOUNDS: [&str; 4] = ["gt", "gte", "lt", "lte"];

impl DatetimeRange {
    /// The range of these bounds (`gt`, `gte`, `lt`, `lte`), or the first one that is not a
    /// timestamp.
    pub(super) fn new(bounds: [Option<String>; 4]) -> Result<DatetimeRange, String> {
        let mut instants = [None; 4];
        for (i, bound) in bounds.iter().enumerate() {
            if let Some(text) = bound {
                instants[i] = Some(parse(text).ok_or_else(|| {
                    format!("{}: {text:?} is not an RFC 3339 datetime", BOUNDS[i])
                })?);
            }
        }
        Ok(DatetimeRange { bounds, instants })
    }

    /// The bounds `gt`, `gte`, `lt`, `lte` in microseconds since the Unix epoch.
    pub(crate) fn instants(&self) -> [Option<i64>; 4] {
        self.instants
    }

    /// The bounds as written, for writing the filter back out.
    pub(super) fn bounds(&self) -> &[Option<String>; 4] {
        &self.bounds
    }

    /// Whether a payload value is a timestamp within the bounds (anything else never is).
    pub(super) fn contains_value(&self, v: &Value) -> bool {
        let Some(t) = v.as_str().and_then(parse) else {
            return false;
        };
        let [gt, gte, lt, lte] = self.instants;
        gt.is_none_or(|b| t > b)
            && gte.is_none_or(|b| t >= b)
            && lt.is_none_or(|b| t < b)
            && lte.is_none_or(|b| t <= b)
    }
}

/// Parses a timestamp into microseconds since the Unix epoch (rounded down): `YYYY-MM-DD`, optionally followed
/// by `T`, `t` or a space and `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction`, optionally followed
/// by `Z`, `z`, `UTC` or an offset `±HH:MM` / `±HHMM` (none means UTC).
pub(crate) fn parse(text: &str) -> Option<i64> {
    let s = text.trim();
    // Ten bytes of date, unless a character straddles them (then it is no date).
    let cut = s.len().min(10);
    let (date, rest) = (s.get(..cut)?, s.get(cut..)?);
    let days = days_from_date(date)?;
    let rest = match rest.chars().next() {
        None => return Some(days * 86_400 * MICROS),
        Some('T' | 't' | ' ') => rest[1..].trim_start(),
        Some(_) => return None,
    };
    let (clock, zone) = split_zone(rest)?;
    let micros_of_day = time_of_day(clock)?;
    let offset = offset_seconds(zone)?;
    Some((days * 86_400 - offset) * MICROS + micros_of_day)
}

const MICROS: i64 = 1_000_000;

/// Digits of a fixed-width field.
fn number(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD` date.
fn days_from_date(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (
        number(&date[..4])?,
        number(&date[5..7])?,
        number(&date[8..])?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > month_days[m as usize - 1] {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), with March as the first month of the year.
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month = i64::from((m + 9) % 12);
    let day_of_year = (153 * month + 2) / 5 + i64::from(d) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// Splits `HH:MM[:SS[.f]]` from the zone after it.
fn split_zone(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(s.len());
    Some((&s[..end], s[end..].trim_start()))
}

fn time_of_day(clock: &str) -> Option<i64> {
    let mut parts = clock.splitn(3, ':');
    let hour = number(parts.next()?).filter(|&h| h < 24)?;
    let minute = number(parts.next()?).filter(|&m| m < 60)?;
    let (second, fraction) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            // A leap second (:60) is read as the next second's start, as chrono does.
            let second = number(whole).filter(|&s| s <= 60)?;
            let fraction = match frac {
                "" if !sec.contains('.') => 0,
                digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    let six: String = digits
                        .chars()
                        .chain(std::iter::repeat('0'))
                        .take(6)
                        .collect();
                    six.parse::<i64>().ok()?
                }
                _ => return None,
            };
            (second, fraction)
        }
    };
    if clock
        .split(':')
        .any(|p| p.split('.').next().is_some_and(|f| f.len() != 2))
    {
        return None;
    }
    Some((i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * MICROS + fraction)
}

/// Seconds east of UTC of a zone suffix.
fn offset_seconds(zone: &str) -> Option<i64> {
    let sign = match zone {
        "" | "Z" | "z" | "UTC" => return Some(0),
        _ if zone.starts_with('+') => 1,
        _ if zone.starts_with('-') => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|&c| c != ':').collect();
    if digits.len() != 4 || zone[1..].len() > 5 {
        return None;
    }
    let (h, m) = (number(&digits[..2])?, number(&digits[2..])?);
    (h < 24 && m < 60).then(|| sign * (i64::from(h) * 3600 + i64::from(m) * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_from_every_accepted_form() {
        let at = |s: &str| parse(s).unwrap_or_else(|| panic!("{s}"));
        let base = at("2024-03-01T12:30:00Z");
        assert_eq!(base, 1_709_296_200 * MICROS);
        for same in [
            "2024-03-01t12:30:00z",
            "2024-03-01 12:30:00",
            "2024-03-01T12:30",
            "2024-03-01T14:30:00+02:00",
            "2024-03-01T14:30:00+0200",
            "2024-03-01T10:30:00-02:00",
            "2024-03-01T12:30:00.000Z",
            "2024-03-01 12:30:00 UTC",
        ] {
            assert_eq!(at(same), base, "{same}");
        }
        assert_eq!(at("2024-03-01T12:30:00.5Z") - base, MICROS / 2);
        // Qdrant keeps microseconds: a nanosecond more is the same instant.
        assert_eq!(at("2024-03-01T12:30:00.000000001Z"), base);
        assert_eq!(at("2024-02-29"), at("2024-02-29T00:00:00Z"));
        assert_eq!(at("1969-12-31T23:59:59Z"), -MICROS);
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-03-01T25:00",
            "24-03-01",
            "2024-03-01T12:3",
            "2024-03-01X12:00",
            "2024-03-01T12:00+2",
            "tomorrow",
            "",
            "2024-02W）-01", // a character across the tenth byte (found by the fuzzer)
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

//! Timestamp: a UTC instant in the fields the format and the key layout use.
//! A leaf module: stages of the pipeline may use it.

/// A UTC instant split into the fields the format needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// 0..=9999.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
    /// 0..=999.
    pub millis: u16,
}

impl Timestamp {
    /// From milliseconds since the Unix epoch; `None` after year 9999.
    pub fn from_unix_millis(millis: u64) -> Option<Timestamp> {
        let nanos = i128::from(millis) * 1_000_000;
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        let year = u16::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        Some(Timestamp {
            year,
            month: t.month() as u8,
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            millis: t.millisecond(),
        })
    }

    /// The same hour of the same day (files never straddle an hour).
    pub fn same_hour(&self, other: &Timestamp) -> bool {
        (self.year, self.month, self.day, self.hour)
            == (other.year, other.month, other.day, other.hour)
    }

    /// `yyyy/mm/dd/hh/MM-SS-mmm`: the time part of an object key.
    pub fn key_path(&self) -> String {
        format!(
            "{:04}/{:02}/{:02}/{:02}/{:02}-{:02}-{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// Writes `YYYY-MM-DDThh:mm:ssZ` (20 bytes), or `YYYY-MM-DDThh:mm:ss.mmmZ`
    /// (24 bytes) with `millis`, into `out`; returns the length.
    pub fn write_to(&self, out: &mut [u8; 24], millis: bool) -> usize {
        digits(&mut out[0..4], self.year);
        out[4] = b'-';
        digits(&mut out[5..7], self.month.into());
        out[7] = b'-';
        digits(&mut out[8..10], self.day.into());
        out[10] = b'T';
        digits(&mut out[11..13], self.hour.into());
        out[13] = b':';
        digits(&mut out[14..16], self.minute.into());
        out[16] = b':';
        digits(&mut out[17..19], self.second.into());
        if millis {
            out[19] = b'.';
            digits(&mut out[20..23], self.millis);
            out[23] = b'Z';
        } else {
            out[19] = b'Z';
        }
        Self::text_len(millis)
    }

    /// The length [`write_to`](Self::write_to) writes: 20 bytes, 24 with `millis`.
    pub const fn text_len(millis: bool) -> usize {
        if millis { 24 } else { 20 }
    }

    /// Writes the milliseconds where [`write_to`](Self::write_to) puts
    /// them with `millis` (bytes 20..23), leaving the rest of `out` as it is.
    pub(crate) fn write_millis_to(&self, out: &mut [u8; 24]) {
        digits(&mut out[20..23], self.millis);
    }

    /// Parses `YYYY-MM-DDThh:mm:ssZ` or `YYYY-MM-DDThh:mm:ss.mmmZ` (UTC, a real calendar date).
    pub fn parse(s: &str) -> Option<(Timestamp, bool)> {
        let b = s.as_bytes();
        let millis = match b.len() {
            20 => false,
            24 => true,
            _ => return None,
        };
        let num = |r: std::ops::Range<usize>| -> Option<u16> {
            b[r].iter().try_fold(0u16, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
            })
        };
        let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
        if seps.iter().any(|&(i, c)| b[i] != c) || b[b.len() - 1] != b'Z' {
            return None;
        }
        if millis && b[19] != b'.' {
            return None;
        }
        let t = Timestamp {
            year: num(0..4)?,
            month: u8::try_from(num(5..7)?).ok()?,
            day: u8::try_from(num(8..10)?).ok()?,
            hour: u8::try_from(num(11..13)?).ok()?,
            minute: u8::try_from(num(14..16)?).ok()?,
            second: u8::try_from(num(17..19)?).ok()?,
            millis: if millis { num(20..23)? } else { 0 },
        };
        let month = time::Month::try_from(t.month).ok()?;
        time::Date::from_calendar_date(i32::from(t.year), month, t.day).ok()?;
        (t.hour < 24 && t.minute < 60 && t.second < 60).then_some((t, millis))
    }
}

/// Converts Unix milliseconds to [`Timestamp`]s, remembering the last
/// second converted: records come in time order, many to a second, so the
/// calendar arithmetic runs once a second and a record of the same second
/// only takes its milliseconds.
#[derive(Debug, Default)]
pub(crate) struct Timestamps {
    /// The last second converted (Unix seconds) and its timestamp.
    last: Option<(u64, Timestamp)>,
}

impl Timestamps {
    /// As [`Timestamp::from_unix_millis`].
    pub(crate) fn at(&mut self, unix_millis: u64) -> Option<Timestamp> {
        let (second, millis) = (unix_millis / 1000, (unix_millis % 1000) as u16);
        if let Some((s, t)) = self.last
            && s == second
        {
            return Some(Timestamp { millis, ..t });
        }
        let t = Timestamp::from_unix_millis(unix_millis)?;
        self.last = Some((second, t));
        Some(t)
    }
}

/// Writes `v` in decimal into all of `out`, zero-padded (its lowest
/// `out.len()` digits).
fn digits(out: &mut [u8], v: u16) {
    let mut v = v;
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo gives what the full conversion gives, across second, hour,
    /// day and year boundaries, for stamps in and out of order, and `None`
    /// after year 9999.
    #[test]
    fn remembered_seconds_convert_as_the_full_conversion() {
        let new_year_2027 = 1_798_761_600_000u64;
        let mut stamps = vec![0, 999, 1000, 1001, 59_999, 60_000];
        for base in [new_year_2027, 1_709_164_800_000 /* 2024-02-29 */] {
            for d in [
                -3_600_001i64,
                -1001,
                -1000,
                -999,
                -1,
                0,
                1,
                998,
                999,
                1000,
                1999,
            ] {
                stamps.push(base.saturating_add_signed(d));
            }
            stamps.extend([base + 500, base - 500, base + 500]);
        }
        stamps.extend([253_402_300_799_999, 253_402_300_800_000, 5]);
        let mut memo = Timestamps::default();
        for &ms in &stamps {
            assert_eq!(memo.at(ms), Timestamp::from_unix_millis(ms), "{ms}");
        }
    }

    #[test]
    fn text_len_is_what_write_to_writes() {
        let t = Timestamp::from_unix_millis(1_798_761_600_123).expect("in range");
        for millis in [false, true] {
            assert_eq!(
                t.write_to(&mut [0u8; 24], millis),
                Timestamp::text_len(millis)
            );
        }
    }
}

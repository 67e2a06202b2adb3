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

    /// `YYYY-MM-DDThh:mm:ssZ`, or `YYYY-MM-DDThh:mm:ss.mmmZ` with `millis`.
    pub fn write(&self, out: &mut Vec<u8>, millis: bool) {
        let t = self;
        fn digits(out: &mut Vec<u8>, v: u16, n: usize) {
            let mut buf = [b'0'; 4];
            let mut v = v;
            for i in (0..n).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            out.extend_from_slice(&buf[..n]);
        }
        digits(out, t.year, 4);
        out.push(b'-');
        digits(out, t.month.into(), 2);
        out.push(b'-');
        digits(out, t.day.into(), 2);
        out.push(b'T');
        digits(out, t.hour.into(), 2);
        out.push(b':');
        digits(out, t.minute.into(), 2);
        out.push(b':');
        digits(out, t.second.into(), 2);
        if millis {
            out.push(b'.');
            digits(out, t.millis, 3);
        }
        out.push(b'Z');
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

//! JSON bodies: one validating pass that finds the byte spans of the values
//! at the configured paths, and of string values for the patterns, without
//! building a tree. Everything outside those spans is copied as it is.

use std::ops::Range;

use super::Region;
use crate::config::{JsonPath, PathStep};

/// Deeper documents are treated as unparsable (the scanner recurses).
const MAX_DEPTH: usize = 128;

/// One level of the path to the value being scanned.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    /// An object member; the key's raw bytes (between the quotes), and
    /// whether they hold escapes.
    Key(Range<usize>, bool),
    /// An array item.
    Index(u64),
}

/// The state of one scan.
pub(super) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    paths: &'a [JsonPath],
    want_text: bool,
    stack: &'a mut Vec<Seg>,
    regions: &'a mut Vec<Region>,
}

/// Finds the regions of `body`: `Region::Marker` for each value at one of
/// `paths`, and (when `want_text`) `Region::JsonText` for every other string
/// value. `Err` if `body` is not one JSON value.
pub(super) fn scan(
    body: &[u8],
    paths: &[JsonPath],
    want_text: bool,
    stack: &mut Vec<Seg>,
    regions: &mut Vec<Region>,
) -> Result<(), ()> {
    stack.clear();
    let mut s = Scanner {
        b: body,
        i: 0,
        paths,
        want_text,
        stack,
        regions,
    };
    s.ws();
    s.value(0)?;
    s.ws();
    if s.i == s.b.len() { Ok(()) } else { Err(()) }
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// Whether the value at the current path is to be replaced.
    fn at_a_path(&self) -> bool {
        let Some(last) = self.stack.last() else {
            return false;
        };
        self.paths.iter().any(|p| {
            // Most values fail on their own key or index: check it first.
            p.steps
                .last()
                .is_some_and(|step| step_matches(step, last, self.b))
                && matches(&p.steps, &self.stack[..], self.b)
        })
    }

    fn value(&mut self, depth: usize) -> Result<(), ()> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        let start = self.i;
        let replace = self.at_a_path();
        let regions_before = self.regions.len();
        match self.peek().ok_or(())? {
            b'{' => self.object(depth)?,
            b'[' => self.array(depth)?,
            b'"' => {
                let (content, escaped) = self.string()?;
                if self.want_text && !replace && !content.is_empty() {
                    self.regions.push(Region::JsonText(content, escaped));
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return Err(()),
        }
        if replace {
            // Whatever was found inside goes with the value.
            self.regions.truncate(regions_before);
            self.regions.push(Region::Marker(start..self.i, true));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), ()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(());
            }
            let (key, escaped) = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.stack.push(Seg::Key(key, escaped));
            self.value(depth + 1)?;
            self.stack.pop();
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), ()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        let mut n = 0u64;
        loop {
            self.ws();
            self.stack.push(Seg::Index(n));
            self.value(depth + 1)?;
            self.stack.pop();
            n += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    /// A string; returns the range of its content (between the quotes) and
    /// whether it holds escapes.
    fn string(&mut self) -> Result<(Range<usize>, bool), ()> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Plain bytes up to the next quote, backslash or control byte.
            let rest = &self.b[self.i..];
            let to = memchr::memchr2(b'"', b'\\', rest).ok_or(())?;
            if rest[..to].iter().any(|&c| c < 0x20) {
                return Err(());
            }
            self.i += to;
            match self.peek().ok_or(())? {
                b'"' => {
                    self.i += 1;
                    return Ok((start..self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1).ok_or(())? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6).ok_or(())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            self.i += 6;
                        }
                        _ => return Err(()),
                    }
                }
                0..=0x1f => return Err(()),
                _ => self.i += 1,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), ()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        Ok(())
    }
}

/// Whether the concrete path `segs` is one that `steps` describes.
fn matches(steps: &[PathStep], segs: &[Seg], b: &[u8]) -> bool {
    match steps.split_first() {
        None => segs.is_empty(),
        Some((PathStep::Descend, rest)) => {
            matches(rest, segs, b) || (!segs.is_empty() && matches(steps, &segs[1..], b))
        }
        Some((step, rest)) => match segs.split_first() {
            None => false,
            Some((seg, tail)) => step_matches(step, seg, b) && matches(rest, tail, b),
        },
    }
}

fn step_matches(step: &PathStep, seg: &Seg, b: &[u8]) -> bool {
    match (step, seg) {
        (PathStep::Any, _) => true,
        (PathStep::Index(n), Seg::Index(m)) => n == m,
        (PathStep::Key(name), Seg::Key(raw, false)) => b[raw.clone()] == *name.as_bytes(),
        (PathStep::Key(name), Seg::Key(raw, true)) => {
            unescape(&b[raw.clone()]).is_some_and(|k| k == *name)
        }
        _ => false,
    }
}

/// The text of a JSON string's raw content (escapes decoded); `None` if an
/// escape does not decode (a lone surrogate).
pub(super) fn unescape(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex = |chars: &mut std::str::Chars| -> Option<u32> {
                    let s: String = chars.by_ref().take(4).collect();
                    u32::from_str_radix(&s, 16).ok()
                };
                let hi = hex(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

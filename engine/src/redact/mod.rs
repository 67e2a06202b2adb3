//! Redaction: the writer replaces configured values in a record's bodies
//! before the record is formatted, so they never reach disk. Never on the
//! capture path.
//!
//! - JSON bodies: the values at `JsonPaths` become the marker as a JSON
//!   string; patterns apply inside string values.
//! - CSV bodies: the fields in `CsvColumns` become the marker; patterns
//!   apply inside the other fields.
//! - Other `text/*` bodies: patterns apply anywhere.
//! - Binary bodies are written as they are.
//!
//! Everything not replaced stays byte for byte. A body that does not parse
//! as its content type (or is not UTF-8) is kept whole, with the patterns
//! applied as for plain text, or its record is dropped (`OnUnparsable`).

mod csv;
mod json;

use std::ops::Range;

use regex::bytes::Regex;

use crate::config::{OnUnparsable, Redaction, compile_pattern};
use crate::format::{Encoding, EncodingRules, Payload, escape_into, media_type};

/// A span of a body and what happens to it.
#[derive(Debug, Clone)]
enum Region {
    /// Replaced by the marker; `true`: as a JSON string (quoted).
    Marker(Range<usize>, bool),
    /// The content of a JSON string value; `true` if it holds escapes.
    JsonText(Range<usize>, bool),
    /// A CSV field; `true` if it is quoted.
    CsvText(Range<usize>, bool),
}

impl Region {
    fn range(&self) -> &Range<usize> {
        match self {
            Region::Marker(r, _) | Region::JsonText(r, _) | Region::CsvText(r, _) => r,
        }
    }
}

/// How a body is read for redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Csv,
    Text,
    Binary,
}

/// What happened to a record's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing was replaced.
    Unchanged,
    /// Something was replaced.
    Redacted,
    /// A body did not parse as its content type and was kept whole
    /// (patterns applied as for text); `true` if something was replaced.
    KeptUnparsable(bool),
    /// A body did not parse and the record is to be dropped.
    Drop,
}

/// The writer's redaction state: the rules, compiled, and buffers reused
/// from record to record.
#[derive(Debug)]
pub(crate) struct Redactor {
    rules: Redaction,
    patterns: Vec<Regex>,
    /// Per pattern: whether a match inside any region of a body is also a
    /// match in the whole body (no anchors, no quotes), so one search over
    /// the body can rule it out.
    prefilterable: Vec<bool>,
    /// Per pattern, for the body at hand: whether it may match in it.
    live: Vec<bool>,
    encodings: EncodingRules,
    quoted_marker: Vec<u8>,
    regions: Vec<Region>,
    stack: Vec<json::Seg>,
    /// The redacted bodies, when they changed: `[input, output]`.
    bodies: [Vec<u8>; 2],
    changed: [bool; 2],
}

impl Redactor {
    /// Compiles the rules (already validated with the config).
    pub(crate) fn new(
        rules: &Redaction,
        encodings: EncodingRules,
    ) -> Result<Redactor, regex::Error> {
        let patterns = rules
            .patterns
            .iter()
            .map(|p| compile_pattern(p))
            .collect::<Result<_, _>>()?;
        let prefilterable = rules
            .patterns
            .iter()
            .map(|p| !(p.contains(['^', '$', '"']) || p.contains("\\A") || p.contains("\\z")))
            .collect();
        let mut quoted_marker = Vec::with_capacity(rules.marker.len() + 2);
        quoted_marker.push(b'"');
        escape_into(&mut quoted_marker, rules.marker.as_bytes());
        quoted_marker.push(b'"');
        Ok(Redactor {
            rules: rules.clone(),
            live: vec![false; rules.patterns.len()],
            patterns,
            prefilterable,
            encodings,
            quoted_marker,
            regions: Vec::new(),
            stack: Vec::new(),
            bodies: [Vec::new(), Vec::new()],
            changed: [false, false],
        })
    }

    fn kind(&self, content_type: &str) -> Kind {
        let mt = media_type(content_type);
        match self.encodings.encoding_for_type(content_type) {
            Encoding::Json => Kind::Json,
            Encoding::Csv => Kind::Csv,
            Encoding::Base64 if mt == "application/json" || mt.ends_with("+json") => Kind::Json,
            Encoding::Base64 if mt == "text/csv" => Kind::Csv,
            Encoding::Base64 if mt.starts_with("text/") => Kind::Text,
            Encoding::Base64 => Kind::Binary,
        }
    }

    /// Redacts the bodies of one record into the redactor's buffers; read
    /// the result with [`Redactor::view`].
    pub(crate) fn apply(&mut self, input: Option<Payload>, output: Option<Payload>) -> Verdict {
        let mut redacted = false;
        let mut unparsable = false;
        for (slot, payload, wanted) in [
            (0, input, self.rules.apply.input()),
            (1, output, self.rules.apply.output()),
        ] {
            self.changed[slot] = false;
            let Some(p) = payload.filter(|_| wanted) else {
                continue;
            };
            match self.body(slot, p) {
                Ok(changed) => redacted |= changed,
                Err(changed) => {
                    unparsable = true;
                    redacted |= changed;
                }
            }
        }
        match (unparsable, self.rules.on_unparsable) {
            (true, OnUnparsable::Drop) => Verdict::Drop,
            (true, OnUnparsable::Keep) => Verdict::KeptUnparsable(redacted),
            (false, _) if redacted => Verdict::Redacted,
            (false, _) => Verdict::Unchanged,
        }
    }

    /// The record's bodies after [`Redactor::apply`].
    pub(crate) fn view<'a>(
        &'a self,
        input: Option<Payload<'a>>,
        output: Option<Payload<'a>>,
    ) -> (Option<Payload<'a>>, Option<Payload<'a>>) {
        let pick = |slot: usize, p: Option<Payload<'a>>| {
            p.map(|p| {
                if self.changed[slot] {
                    Payload::new(p.content_type, &self.bodies[slot])
                } else {
                    p
                }
            })
        };
        (pick(0, input), pick(1, output))
    }

    /// Redacts one body into `bodies[slot]`. `Ok(changed)`, or
    /// `Err(changed)` if it did not parse (then patterns were applied to it
    /// as text, if it is UTF-8).
    fn body(&mut self, slot: usize, p: Payload) -> Result<bool, bool> {
        let kind = self.kind(p.content_type);
        if kind == Kind::Binary {
            return Ok(false);
        }
        // One search of the whole body rules out most patterns for most
        // bodies; a region is only searched with the patterns that may match.
        // (Escapes in JSON, doubled quotes in CSV: the regions' text differs
        // from the body's, so no pattern is ruled out.)
        let rewritten = match kind {
            Kind::Json => p.data.contains(&b'\\'),
            Kind::Csv => p.data.windows(2).any(|w| w == b"\"\""),
            _ => false,
        };
        for (i, re) in self.patterns.iter().enumerate() {
            self.live[i] = !self.prefilterable[i] || rewritten || re.is_match(p.data);
        }
        let want_text = self.live.iter().any(|&l| l);
        self.regions.clear();
        let utf8 = crate::format::is_utf8(p.data);
        let parsed = utf8
            && match kind {
                Kind::Json if !self.rules.json_paths.is_empty() || want_text => json::scan(
                    p.data,
                    &self.rules.json_paths,
                    want_text,
                    &mut self.stack,
                    &mut self.regions,
                )
                .is_ok(),
                Kind::Csv if !self.rules.csv_columns.is_empty() || want_text => csv::scan(
                    p.data,
                    &self.rules.csv_columns,
                    want_text,
                    &mut self.regions,
                )
                .is_ok(),
                _ => true,
            };
        let whole_text = !parsed || kind == Kind::Text;
        if whole_text {
            self.regions.clear();
        }
        let mut out = std::mem::take(&mut self.bodies[slot]);
        out.clear();
        let changed = if whole_text {
            utf8 && self.patterns_into(p.data, &mut out)
        } else {
            self.emit(p.data, &mut out)
        };
        self.bodies[slot] = out;
        self.changed[slot] = changed;
        if parsed { Ok(changed) } else { Err(changed) }
    }

    /// Writes `body` with its regions applied into `out`; whether anything changed.
    fn emit(&self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let mut at = 0;
        let mut changed = false;
        for region in &self.regions {
            let r = region.range().clone();
            out.extend_from_slice(&body[at..r.start]);
            match region {
                Region::Marker(_, true) => {
                    out.extend_from_slice(&self.quoted_marker);
                    changed = true;
                }
                Region::Marker(_, false) => {
                    out.extend_from_slice(self.rules.marker.as_bytes());
                    changed = true;
                }
                Region::JsonText(_, false) | Region::CsvText(_, false) => {
                    changed |= self.patterns_into(&body[r.clone()], out);
                }
                Region::JsonText(_, true) => {
                    changed |= self.escaped_json_text(&body[r.clone()], out);
                }
                Region::CsvText(_, true) => {
                    changed |= self.quoted_csv_field(&body[r.clone()], out);
                }
            }
            at = r.end;
        }
        out.extend_from_slice(&body[at..]);
        changed
    }

    /// Appends `text` with every pattern's matches replaced by the marker;
    /// whether anything matched. Patterns apply one after the other.
    fn patterns_into(&self, text: &[u8], out: &mut Vec<u8>) -> bool {
        let live = |i: &usize| self.live[*i];
        let Some(first) = (0..self.patterns.len())
            .filter(live)
            .find(|&i| self.patterns[i].is_match(text))
        else {
            out.extend_from_slice(text);
            return false;
        };
        let mut current = text.to_vec();
        for re in (first..self.patterns.len())
            .filter(live)
            .map(|i| &self.patterns[i])
        {
            if !re.is_match(&current) {
                continue;
            }
            let mut next = Vec::with_capacity(current.len());
            let mut at = 0;
            for m in re.find_iter(&current) {
                next.extend_from_slice(&current[at..m.start()]);
                next.extend_from_slice(self.rules.marker.as_bytes());
                at = m.end();
            }
            next.extend_from_slice(&current[at..]);
            current = next;
        }
        out.extend_from_slice(&current);
        true
    }

    /// A JSON string's content that holds escapes: the patterns see the
    /// decoded text; if any matches, the string is written escaped anew.
    fn escaped_json_text(&self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(text) = json::unescape(raw) else {
            out.extend_from_slice(raw);
            return false;
        };
        let mut replaced = Vec::new();
        if !self.patterns_into(text.as_bytes(), &mut replaced) {
            out.extend_from_slice(raw);
            return false;
        }
        escape_into(out, &replaced);
        true
    }

    /// A quoted CSV field: the patterns see its text (quotes removed,
    /// `""` as `"`); if any matches, the field is quoted anew.
    fn quoted_csv_field(&self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let inner = &raw[1..raw.len() - 1];
        let mut text = Vec::with_capacity(inner.len());
        let mut i = 0;
        while i < inner.len() {
            text.push(inner[i]);
            i += if inner[i] == b'"' { 2 } else { 1 };
        }
        let mut replaced = Vec::new();
        if !self.patterns_into(&text, &mut replaced) {
            out.extend_from_slice(raw);
            return false;
        }
        out.push(b'"');
        for &c in &replaced {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
        true
    }
}

#[cfg(test)]
mod tests;

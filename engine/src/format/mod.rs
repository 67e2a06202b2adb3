//! Format: one capture record as one SageMaker JSON line.
//!
//! ```text
//! {"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2\n","encoding":"CSV"},
//!  "endpointOutput":{...,"mode":"OUTPUT",...}},"eventMetadata":{"eventId":"<uuid>","inferenceId":"7",
//!  "inferenceTime":"2024-01-19T19:27:57Z"},"eventVersion":"0"}\n
//! ```
//! (shown wrapped; a real line has no whitespace between tokens.) The full
//! specification, including which rules are SageMaker's and which are
//! capline's, is in `docs/FORMAT.md`. The reading side (`capline cat
//! --validate`) lives in [`check`].

pub mod check;
mod escape;

use std::borrow::Cow;
use std::mem::MaybeUninit;

pub use escape::escape_into;
pub(crate) use escape::escaped_both;
use escape::{escape_text_into, escaped_len};

use crate::config::ContentTypes;
pub use crate::timestamp::Timestamp;

/// One side of an inference: a Content-Type header and the body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The Content-Type header exactly as observed (parameters included).
    pub content_type: &'a str,
    /// The body, byte for byte.
    pub data: &'a [u8],
}

impl<'a> Payload<'a> {
    /// A payload from a content type and body.
    pub fn new(content_type: &'a str, data: &'a [u8]) -> Self {
        Payload { content_type, data }
    }
}

/// How `data` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The bytes as a JSON string; the media type is in the CSV list.
    Csv,
    /// The bytes as a JSON string; the media type is in the JSON list.
    Json,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// The `encoding` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Csv => "CSV",
            Encoding::Json => "JSON",
            Encoding::Base64 => "BASE64",
        }
    }
}

/// Lower-cased media type of a Content-Type header: the part before `;`, trimmed.
pub fn media_type(content_type: &str) -> Cow<'_, str> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    if base.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(base.to_ascii_lowercase())
    } else {
        Cow::Borrowed(base)
    }
}

/// `bytes` without the leading and trailing ASCII characters that
/// `str::trim` removes: `u8::is_ascii_whitespace` and the vertical tab.
fn trim_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let ws = |c: &u8| c.is_ascii_whitespace() || *c == 0x0b;
    let start = bytes.iter().position(|c| !ws(c)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// CSV if a listed CSV type `is` the header's, else JSON if a listed JSON
/// type is, else BASE64.
fn pick(types: &ContentTypes, is: impl Fn(&String) -> bool) -> Encoding {
    if types.csv.iter().any(&is) {
        Encoding::Csv
    } else if types.json.iter().any(&is) {
        Encoding::Json
    } else {
        Encoding::Base64
    }
}

/// SageMaker's encoding rule, plus capline's: text that is not UTF-8 is BASE64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodingRules {
    /// `None`: no `CaptureContentTypeHeader`, so everything is BASE64.
    types: Option<ContentTypes>,
}

impl EncodingRules {
    /// Rules from a config's `CaptureContentTypeHeader` (lists already lower-cased).
    pub fn new(types: Option<ContentTypes>) -> Self {
        EncodingRules { types }
    }

    /// The encoding SageMaker would pick from the content type alone.
    ///
    /// The writer asks once per payload. An ASCII header (nearly every one)
    /// is matched in place, byte by byte and ignoring ASCII case, without
    /// building the lower-cased media type; the lists hold lower-cased
    /// ASCII media types only (`config`), so this matches exactly what
    /// comparing [`media_type`] with them would.
    pub fn encoding_for_type(&self, content_type: &str) -> Encoding {
        let Some(types) = &self.types else {
            return Encoding::Base64;
        };
        if content_type.is_ascii() {
            let b = content_type.as_bytes();
            let base = b.iter().position(|&c| c == b';').map_or(b, |i| &b[..i]);
            let base = trim_ascii_whitespace(base);
            pick(types, |t| t.as_bytes().eq_ignore_ascii_case(base))
        } else {
            let mt = media_type(content_type);
            pick(types, |t| *t == mt)
        }
    }

    /// The encoding for this payload: by content type, then BASE64 if the text is not UTF-8.
    pub fn encoding(&self, p: &Payload) -> Encoding {
        match self.encoding_for_type(p.content_type) {
            Encoding::Base64 => Encoding::Base64,
            text if is_utf8(p.data) => text,
            _ => Encoding::Base64,
        }
    }
}

/// Whether `data` is UTF-8 (SIMD-checked: on the writer's path this check
/// reads every text body, and `std::str::from_utf8` took more of the
/// writer's time than escaping the same bytes).
#[inline]
pub fn is_utf8(data: &[u8]) -> bool {
    // Short bodies (a model's one-number answer) are nearly always ASCII,
    // which a word-at-a-time check settles sooner than either validator
    // (simdutf8 hands inputs under 64 bytes to `std`).
    if data.len() < 64 && data.is_ascii() {
        return true;
    }
    simdutf8::basic::from_utf8(data).is_ok()
}

/// Longest Content-Type header `capture()` accepts, in bytes.
pub const MAX_CONTENT_TYPE: usize = 1024;

/// Largest `inferenceId`, in bytes (SageMaker's limit).
pub const MAX_INFERENCE_ID: usize = 64;

/// SageMaker's `InferenceId` rule: 1–64 printable ASCII characters, not starting with a space.
pub fn is_valid_inference_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_INFERENCE_ID
        && b[0] != b' '
        && b.iter().all(|c| (0x20..=0x7e).contains(c))
}

/// Everything one line holds.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// `endpointInput`, when the capture mode includes it.
    pub input: Option<Payload<'a>>,
    /// `endpointOutput`, when the capture mode includes it.
    pub output: Option<Payload<'a>>,
    /// `eventId` as 16 bytes, written as a lower-case hyphenated UUID.
    pub event_id: [u8; 16],
    /// `inferenceId`, written only when present.
    pub inference_id: Option<&'a str>,
    /// `inferenceTime`.
    pub time: Timestamp,
}

/// Where lines are written: a `Vec<u8>`, or the writer's aligned I/O buffer
/// (which implements this trait where it is defined, in the I/O stage).
pub trait LineBuf {
    /// Appends bytes.
    fn extend_from_slice(&mut self, s: &[u8]);
    /// Makes room for `n` more bytes.
    fn reserve(&mut self, n: usize);
    /// Appends `data` as standard base64 with padding.
    fn append_base64(&mut self, data: &[u8]);
    /// Uninitialized room for at least `n` more bytes.
    fn spare(&mut self, n: usize) -> &mut [MaybeUninit<u8>];
    /// Marks the first `n` bytes of the spare room as data.
    ///
    /// # Safety
    /// Those bytes must have been initialized through [`LineBuf::spare`].
    unsafe fn advance(&mut self, n: usize);
}

impl LineBuf for Vec<u8> {
    #[inline]
    fn extend_from_slice(&mut self, s: &[u8]) {
        Vec::extend_from_slice(self, s);
    }
    #[inline]
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
    fn append_base64(&mut self, data: &[u8]) {
        base64_simd::STANDARD.encode_append(data, self);
    }
    fn spare(&mut self, n: usize) -> &mut [MaybeUninit<u8>] {
        Vec::reserve(self, n);
        self.spare_capacity_mut()
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the caller initialized `n` bytes of the spare capacity.
        unsafe { self.set_len(self.len() + n) };
    }
}

/// Base64 is encoded this many input bytes at a time: whole groups of three,
/// so the pieces' encodings joined are the whole's.
const BASE64_PIECE: usize = 1536;
const _: () = assert!(BASE64_PIECE.is_multiple_of(3));

/// [`LineBuf::append_base64`] a piece at a time, each piece's successor
/// prefetched first: a large kept body was copied into the ring with
/// streaming stores, so it is read from memory, and the encoder does not
/// ask for its input ahead of its loads (DECISIONS.md, "The writer
/// prefetches the bodies it reads").
fn append_base64_prefetched<B: LineBuf>(out: &mut B, data: &[u8]) {
    let mut pieces = data.chunks(BASE64_PIECE).peekable();
    while let Some(piece) = pieces.next() {
        if let Some(next) = pieces.peek() {
            crate::prefetch::read_lines(next);
        }
        out.append_base64(piece);
    }
}

/// Serializes events into SageMaker lines.
///
/// A writer remembers the last content type it saw on each side, and what
/// it decided for it (`TypeMemo`): keep one writer for a stream of lines.
#[derive(Debug, Clone, Default)]
pub struct LineWriter {
    rules: EncodingRules,
    millis: bool,
    /// The input side's last content type, then the output side's.
    memo: [TypeMemo; 2],
    /// The last `inferenceTime` written.
    time: TimeMemo,
}

/// The last `inferenceTime` written, kept for its second: lines come in
/// time order, many to a second, so the date and time are formatted once
/// a second and only the milliseconds (when written) once a line.
#[derive(Debug, Clone, Default)]
struct TimeMemo {
    /// The second `text` is for (`millis` 0); `None` before the first line.
    second: Option<Timestamp>,
    /// [`Timestamp::write_to`]'s output for it; its first `len` bytes count.
    text: [u8; 24],
    len: usize,
}

impl TimeMemo {
    /// `t` as [`Timestamp::write_to`] writes it.
    fn text(&mut self, t: &Timestamp, millis: bool) -> &[u8] {
        let second = Timestamp { millis: 0, ..*t };
        if self.second != Some(second) {
            self.len = second.write_to(&mut self.text, millis);
            self.second = Some(second);
        }
        if millis {
            t.write_millis_to(&mut self.text);
        }
        &self.text[..self.len]
    }
}

/// One side's last content type, and what the writer made of it: the
/// encoding its media type picks, and the payload's opening up to its data
/// (key, escaped content type, mode). Consecutive records of an endpoint
/// nearly always carry the same content types, so the writer matches a type
/// against the rules and escapes it once per change, not once per payload
/// (DECISIONS.md, "The writer remembers each side's last content type").
#[derive(Debug, Clone, Default)]
struct TypeMemo {
    /// The content type's bytes, as observed.
    content_type: Vec<u8>,
    /// The encoding its media type picks; `None` while nothing is remembered.
    by_type: Option<Encoding>,
    /// `"endpointInput":{"observedContentType":"…","mode":"INPUT","data":"`.
    head: Vec<u8>,
}

impl TypeMemo {
    /// The encoding `content_type`'s media type picks, with the payload's
    /// opening appended to `out`: from memory when it is the type seen last.
    fn open<B: LineBuf>(
        &mut self,
        rules: &EncodingRules,
        side: Side,
        content_type: &str,
        out: &mut B,
    ) -> Encoding {
        if let Some(enc) = self.by_type
            && self.content_type == content_type.as_bytes()
        {
            out.extend_from_slice(&self.head);
            return enc;
        }
        let enc = rules.encoding_for_type(content_type);
        // Remembered only up to the longest type `capture()` accepts; a
        // longer one (from another caller) is matched and escaped every time.
        if content_type.len() > MAX_CONTENT_TYPE {
            self.by_type = None;
            write_head(out, side, content_type);
            return enc;
        }
        self.content_type.clear();
        self.content_type.extend_from_slice(content_type.as_bytes());
        self.head.clear();
        write_head(&mut self.head, side, content_type);
        self.by_type = Some(enc);
        out.extend_from_slice(&self.head);
        enc
    }
}

/// A payload's opening, up to its data.
fn write_head<B: LineBuf>(out: &mut B, side: Side, content_type: &str) {
    out.extend_from_slice(side.key);
    out.extend_from_slice(CONTENT_TYPE);
    escape_into(out, content_type.as_bytes());
    out.extend_from_slice(MODE);
    out.extend_from_slice(side.mode);
    out.extend_from_slice(DATA);
}

impl LineWriter {
    /// A writer with the given encoding rules; `millis` adds milliseconds to `inferenceTime`.
    pub fn new(rules: EncodingRules, millis: bool) -> Self {
        LineWriter {
            rules,
            millis,
            memo: Default::default(),
            time: TimeMemo::default(),
        }
    }

    /// The encoding rules in use.
    pub fn rules(&self) -> &EncodingRules {
        &self.rules
    }

    /// Appends one line, `\n` included, to `out`.
    pub fn write<B: LineBuf>(&mut self, out: &mut B, ev: &Event) {
        out.extend_from_slice(OPEN);
        if let Some(p) = &ev.input {
            self.payload(out, INPUT, p);
        }
        if let Some(p) = &ev.output {
            if ev.input.is_some() {
                out.extend_from_slice(b",");
            }
            self.payload(out, OUTPUT, p);
        }
        out.extend_from_slice(EVENT_ID);
        let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::from_bytes(ev.event_id)
            .hyphenated()
            .encode_lower(&mut uuid);
        out.extend_from_slice(&uuid);
        if let Some(id) = ev.inference_id {
            out.extend_from_slice(INFERENCE_ID);
            escape_into(out, id.as_bytes());
        }
        out.extend_from_slice(INFERENCE_TIME);
        out.extend_from_slice(self.time.text(&ev.time, self.millis));
        out.extend_from_slice(CLOSE);
    }

    /// One payload, encoded as [`EncodingRules::encoding`] says: the
    /// content type picks, and a text body that is not UTF-8 is BASE64.
    /// The escaper settles the UTF-8 question for ASCII bodies as it goes.
    fn payload<B: LineBuf>(&mut self, out: &mut B, side: Side, p: &Payload) {
        let memo = &mut self.memo[side.index];
        let enc = match memo.open(&self.rules, side, p.content_type, out) {
            text @ (Encoding::Csv | Encoding::Json) if escape_text_into(out, p.data) => text,
            _ => {
                append_base64_prefetched(out, p.data);
                Encoding::Base64
            }
        };
        out.extend_from_slice(ENCODING);
        out.extend_from_slice(enc.as_str().as_bytes());
        out.extend_from_slice(PAYLOAD_CLOSE);
    }

    /// The exact length of the line [`write`](Self::write) makes for `ev`.
    /// Costs a pass over the payloads.
    pub fn line_len(&self, ev: &Event) -> usize {
        let payload = |side: Side, p: &Payload| {
            let enc = self.rules.encoding(p);
            let data = match enc {
                Encoding::Base64 => base64_simd::STANDARD.encoded_length(p.data.len()),
                Encoding::Csv | Encoding::Json => escaped_len(p.data),
            };
            side.overhead() + escaped_len(p.content_type.as_bytes()) + data + enc.as_str().len()
        };
        let mut n = self.fixed_len(ev);
        n += ev.input.as_ref().map_or(0, |p| payload(INPUT, p));
        n += ev.output.as_ref().map_or(0, |p| payload(OUTPUT, p));
        n + ev.inference_id.map_or(0, |id| escaped_len(id.as_bytes()))
    }

    /// An upper bound of [`line_len`](Self::line_len), from the field sizes alone: no
    /// byte grows to more than six when escaped, and BASE64 to less.
    pub fn max_line_len(&self, ev: &Event) -> usize {
        let payload = |side: Side, p: &Payload| {
            side.overhead() + 6 * (p.content_type.len() + p.data.len()) + "BASE64".len()
        };
        let mut n = self.fixed_len(ev);
        n += ev.input.as_ref().map_or(0, |p| payload(INPUT, p));
        n += ev.output.as_ref().map_or(0, |p| payload(OUTPUT, p));
        n + ev.inference_id.map_or(0, |id| 6 * id.len())
    }

    /// The bytes of a line outside its payloads and inference id.
    fn fixed_len(&self, ev: &Event) -> usize {
        let both = usize::from(ev.input.is_some() && ev.output.is_some());
        let id = ev.inference_id.map_or(0, |_| INFERENCE_ID.len());
        let time = Timestamp::text_len(self.millis);
        OPEN.len()
            + both
            + EVENT_ID.len()
            + uuid::fmt::Hyphenated::LENGTH
            + id
            + INFERENCE_TIME.len()
            + time
            + CLOSE.len()
    }
}

// The pieces of a line, in order.
const OPEN: &[u8] = b"{\"captureData\":{";
const CONTENT_TYPE: &[u8] = b"\"observedContentType\":\"";
const MODE: &[u8] = b"\",\"mode\":\"";
const DATA: &[u8] = b"\",\"data\":\"";
const ENCODING: &[u8] = b"\",\"encoding\":\"";
const PAYLOAD_CLOSE: &[u8] = b"\"}";
const EVENT_ID: &[u8] = b"},\"eventMetadata\":{\"eventId\":\"";
const INFERENCE_ID: &[u8] = b"\",\"inferenceId\":\"";
const INFERENCE_TIME: &[u8] = b"\",\"inferenceTime\":\"";
const CLOSE: &[u8] = b"\"},\"eventVersion\":\"0\"}\n";

/// Which side of the inference a payload is.
#[derive(Clone, Copy)]
struct Side {
    /// Its memo's index in [`LineWriter`].
    index: usize,
    key: &'static [u8],
    mode: &'static [u8],
}

const INPUT: Side = Side {
    index: 0,
    key: b"\"endpointInput\":{",
    mode: b"INPUT",
};
const OUTPUT: Side = Side {
    index: 1,
    key: b"\"endpointOutput\":{",
    mode: b"OUTPUT",
};

impl Side {
    /// The payload's bytes outside its content type, data and encoding name.
    fn overhead(self) -> usize {
        self.key.len()
            + CONTENT_TYPE.len()
            + MODE.len()
            + self.mode.len()
            + DATA.len()
            + ENCODING.len()
            + PAYLOAD_CLOSE.len()
    }
}

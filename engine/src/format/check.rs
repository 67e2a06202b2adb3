//! Reading lines back: parse a SageMaker capture line into its parts and check
//! it against the schema and the encoding rule. Used by `capline cat --validate`
//! and by the golden tests.

use simd_json::{BorrowedValue as Value, StaticNode};

use super::{Encoding, EncodingRules, Payload, Timestamp, is_valid_inference_id};

/// One payload of a parsed line, with `data` decoded back to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPayload {
    /// `observedContentType`.
    pub content_type: String,
    /// `encoding`.
    pub encoding: Encoding,
    /// `data`, decoded (BASE64) or as the string's UTF-8 bytes (CSV, JSON).
    pub data: Vec<u8>,
}

impl ParsedPayload {
    /// Borrowed as a [`Payload`], to re-serialize it.
    pub fn as_payload(&self) -> Payload<'_> {
        Payload::new(&self.content_type, &self.data)
    }
}

/// A parsed, schema-checked line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord {
    /// `captureData.endpointInput`.
    pub input: Option<ParsedPayload>,
    /// `captureData.endpointOutput`.
    pub output: Option<ParsedPayload>,
    /// `eventMetadata.eventId`.
    pub event_id: [u8; 16],
    /// `eventMetadata.inferenceId`.
    pub inference_id: Option<String>,
    /// `eventMetadata.inferenceTime`.
    pub time: Timestamp,
    /// Whether `inferenceTime` carried milliseconds.
    pub time_has_millis: bool,
}

type Object<'a> = simd_json::value::borrowed::Object<'a>;

fn object<'a, 'v>(v: &'a Value<'v>, what: &str) -> Result<&'a Object<'v>, String> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(format!("{what} must be an object")),
    }
}

fn string<'a>(o: &'a Object, key: &str, what: &str) -> Result<&'a str, String> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s.as_ref()),
        Some(_) => Err(format!("{what}.{key} must be a string")),
        None => Err(format!("{what}.{key} is missing")),
    }
}

fn only_keys(o: &Object, known: &[&str], what: &str) -> Result<(), String> {
    match o.keys().find(|k| !known.contains(&k.as_ref())) {
        Some(k) => Err(format!("{what} has unknown key {k:?}")),
        None => Ok(()),
    }
}

fn payload(
    v: &Value,
    what: &str,
    mode: &str,
    rules: Option<&EncodingRules>,
) -> Result<ParsedPayload, String> {
    let o = object(v, what)?;
    only_keys(
        o,
        &["observedContentType", "mode", "data", "encoding"],
        what,
    )?;
    let content_type = string(o, "observedContentType", what)?;
    let m = string(o, "mode", what)?;
    if m != mode {
        return Err(format!("{what}.mode must be {mode:?}, got {m:?}"));
    }
    let data = string(o, "data", what)?;
    let encoding = match string(o, "encoding", what)? {
        "CSV" => Encoding::Csv,
        "JSON" => Encoding::Json,
        "BASE64" => Encoding::Base64,
        other => {
            return Err(format!(
                "{what}.encoding must be CSV, JSON or BASE64, got {other:?}"
            ));
        }
    };
    let bytes = match encoding {
        Encoding::Base64 => base64_simd::STANDARD
            .decode_to_vec(data)
            .map_err(|_| format!("{what}.data is not valid base64 but encoding is BASE64"))?,
        Encoding::Csv | Encoding::Json => data.as_bytes().to_vec(),
    };
    if let Some(rules) = rules {
        let expected = rules.encoding(&Payload::new(content_type, &bytes));
        if expected != encoding {
            return Err(format!(
                "{what}.encoding is {} but the encoding rule gives {} for content type {content_type:?}",
                encoding.as_str(),
                expected.as_str()
            ));
        }
    }
    Ok(ParsedPayload {
        content_type: content_type.to_string(),
        encoding,
        data: bytes,
    })
}

/// Parses `8-4-4-4-12` hex into 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Parses one line (without its `\n`) and checks it against the schema.
///
/// With `rules`, the `encoding` of each payload must also be the one the
/// encoding rule gives; without, any of CSV/JSON/BASE64 is accepted as long as
/// BASE64 data decodes.
pub fn parse_line(line: &[u8], rules: Option<&EncodingRules>) -> Result<ParsedRecord, String> {
    let mut buf = line.to_vec();
    let doc = simd_json::to_borrowed_value(&mut buf).map_err(|e| format!("not JSON: {e}"))?;
    let root = object(&doc, "the line")?;
    only_keys(
        root,
        &["captureData", "eventMetadata", "eventVersion"],
        "the line",
    )?;

    let cd = object(
        root.get("captureData").ok_or("captureData is missing")?,
        "captureData",
    )?;
    only_keys(cd, &["endpointInput", "endpointOutput"], "captureData")?;
    let input = cd
        .get("endpointInput")
        .map(|v| payload(v, "captureData.endpointInput", "INPUT", rules))
        .transpose()?;
    let output = cd
        .get("endpointOutput")
        .map(|v| payload(v, "captureData.endpointOutput", "OUTPUT", rules))
        .transpose()?;
    if input.is_none() && output.is_none() {
        return Err("captureData has neither endpointInput nor endpointOutput".into());
    }

    const MD: &str = "eventMetadata";
    let md = object(root.get(MD).ok_or("eventMetadata is missing")?, MD)?;
    only_keys(md, &["eventId", "inferenceId", "inferenceTime"], MD)?;
    let id = string(md, "eventId", MD)?;
    let event_id = parse_uuid(id).ok_or_else(|| format!("{MD}.eventId is not a UUID: {id:?}"))?;
    let inference_id = match md.get("inferenceId") {
        None => None,
        Some(_) => {
            let s = string(md, "inferenceId", MD)?;
            if !is_valid_inference_id(s) {
                return Err(format!(
                    "{MD}.inferenceId must be 1-64 printable ASCII characters, got {s:?}"
                ));
            }
            Some(s.to_string())
        }
    };
    let ts = string(md, "inferenceTime", MD)?;
    let (time, time_has_millis) = Timestamp::parse(ts).ok_or_else(|| {
        format!("{MD}.inferenceTime must be UTC YYYY-MM-DDThh:mm:ss[.mmm]Z, got {ts:?}")
    })?;

    match root.get("eventVersion") {
        Some(Value::String(v)) if v == "0" => {}
        Some(Value::Static(StaticNode::Null)) | Some(_) => {
            return Err("eventVersion must be the string \"0\"".into());
        }
        None => return Err("eventVersion is missing".into()),
    }
    Ok(ParsedRecord {
        input,
        output,
        event_id,
        inference_id,
        time,
        time_has_millis,
    })
}

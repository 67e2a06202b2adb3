//! Fuzz check shared by the `serialize_record` target and the corpus replay
//! test: any record serializes to one line that serde_json (an independent
//! parser) reads back to the same content types, bytes, ids and time.

use capline::config::ContentTypes;
use capline::format::{
    EncodingRules, Event, LineWriter, Payload, Timestamp, is_valid_inference_id,
};

fn take<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&n, rest)) = data.split_first() else {
        return &[];
    };
    let n = (n as usize).min(rest.len());
    let (head, tail) = rest.split_at(n);
    *data = tail;
    head
}

/// A plain base64 decoder, independent of the one the engine uses.
pub fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64 alphabet") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A payload object of a serde_json-parsed line, decoded back to bytes.
pub fn decoded(p: &serde_json::Value) -> Vec<u8> {
    let data = p["data"].as_str().expect("data is a string");
    match p["encoding"].as_str() {
        Some("BASE64") => base64_decode(data),
        Some("CSV" | "JSON") => data.as_bytes().to_vec(),
        other => panic!("bad encoding {other:?}"),
    }
}

/// Panics on any violation.
pub fn check(mut data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    data = data.get(1..).unwrap_or(&[]);
    let in_ct = String::from_utf8_lossy(take(&mut data)).into_owned();
    let out_ct = String::from_utf8_lossy(take(&mut data)).into_owned();
    let id = String::from_utf8_lossy(take(&mut data)).into_owned();
    let in_data = take(&mut data).to_vec();
    let out_data = data.to_vec();
    let id = is_valid_inference_id(&id).then_some(id.as_str());
    let millis = u64::from(flags) * 1_000_003_331;
    let time = Timestamp::from_unix_millis(millis).expect("in range");
    let types = (flags & 1 == 0).then(|| ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    });
    let mut line = Vec::new();
    LineWriter::new(EncodingRules::new(types), flags & 2 == 0).write(
        &mut line,
        &Event {
            input: Some(Payload::new(&in_ct, &in_data)),
            output: (flags & 4 == 0).then(|| Payload::new(&out_ct, &out_data)),
            event_id: [flags; 16],
            inference_id: id,
            time,
        },
    );
    assert_eq!(line.pop(), Some(b'\n'));
    assert!(line.iter().all(|&b| b >= 0x20), "raw control character");
    let v: serde_json::Value = serde_json::from_slice(&line).expect("serde_json parses the line");
    let cd = &v["captureData"];
    assert_eq!(
        cd["endpointInput"]["observedContentType"].as_str(),
        Some(in_ct.as_str())
    );
    assert_eq!(decoded(&cd["endpointInput"]), in_data);
    if flags & 4 == 0 {
        assert_eq!(decoded(&cd["endpointOutput"]), out_data);
        assert_eq!(
            cd["endpointOutput"]["observedContentType"].as_str(),
            Some(out_ct.as_str())
        );
    } else {
        assert!(cd.get("endpointOutput").is_none());
    }
    assert_eq!(v["eventMetadata"]["inferenceId"].as_str(), id);
    assert_eq!(v["eventVersion"].as_str(), Some("0"));
    let rec = capline::format::check::parse_line(&line, None).expect("capline reads its own line");
    assert_eq!(rec.input.expect("input").data, in_data);
}

//! Record shapes shared by the benches: deterministic payloads of the sizes
//! and kinds the benchmarks name.

/// A named request/response pair.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Bench id, e.g. `csv_1k`.
    pub name: &'static str,
    /// Request Content-Type.
    pub request_type: &'static str,
    /// Request body.
    pub request: Vec<u8>,
    /// Response Content-Type.
    pub response_type: &'static str,
    /// Response body.
    pub response: Vec<u8>,
}

impl Shape {
    /// Payload bytes in the pair.
    pub fn bytes(&self) -> u64 {
        (self.request.len() + self.response.len()) as u64
    }
}

/// CSV text of exactly `n` bytes ending in `\n`: numbers and commas, like the churn rows.
pub fn csv(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n - 1 {
        out.extend_from_slice(format!("{}.{},", i * 37 % 400, i % 10).as_bytes());
        i += 1;
    }
    out.truncate(n - 1);
    out.push(b'\n');
    out
}

/// JSON text of exactly `n` bytes, quote-heavy (one `"` every 6 bytes or so).
pub fn json(n: usize) -> Vec<u8> {
    let mut out = b"{\"instances\":[".to_vec();
    let mut i = 0u64;
    while out.len() < n - 3 {
        out.extend_from_slice(format!("{{\"f\":{i}}},").as_bytes());
        i += 1;
    }
    out.truncate(n - 2);
    out.extend_from_slice(b"]}");
    out
}

/// `n` pseudo-random bytes (a fixed xorshift stream).
pub fn binary(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The format bench shapes: 1 KiB CSV pair, 1 KiB JSON pair, 16 KiB binary (BASE64).
pub fn format_shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "csv_1k_pair",
            request_type: "text/csv",
            request: csv(1024),
            response_type: "text/csv; charset=utf-8",
            response: csv(1024),
        },
        Shape {
            name: "json_1k_pair",
            request_type: "application/json",
            request: json(1024),
            response_type: "application/json",
            response: json(1024),
        },
        Shape {
            name: "base64_16k",
            request_type: "application/x-npy",
            request: binary(16 * 1024),
            response_type: "text/csv",
            response: b"0.7312".to_vec(),
        },
    ]
}

//! A fast stand-in model server for the endpoint benchmark: the SageMaker
//! container contract (`GET /ping`, `POST /invocations`), answering every
//! invocation with `0.5` (text/csv) after reading the whole body.
//!
//! `fast-model PORT`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let ping = req.uri().path() == "/ping";
    let _ = req.into_body().collect().await;
    let body = if ping {
        Bytes::new()
    } else {
        Bytes::from_static(b"0.5")
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/csv"),
    );
    Ok(r)
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: fast-model PORT");
    capline_benches::serve_forever(port, answer);
}

//! A fast stand-in model server for the endpoint benchmark: the SageMaker
//! container contract (`GET /ping`, `POST /invocations`), answering every
//! invocation with `0.5` (text/csv) after reading the whole body.
//!
//! `fast-model PORT`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
}

//! The operator's small HTTP listener: `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Answers one request.
pub fn route(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/healthz") | (&Method::GET, "/readyz") => {
            (StatusCode::OK, "text/plain", "ok\n".to_owned())
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Serves `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    crate::listener::serve(listener, "ops", shutdown, move |request| {
        let response = route(&metrics, request.method(), request.uri().path());
        async move { response }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let metrics = Metrics::default();
        assert_eq!(
            route(&metrics, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&metrics, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&metrics, &Method::GET, "/metrics").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&metrics, &Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&metrics, &Method::POST, "/metrics").status(),
            StatusCode::NOT_FOUND
        );
    }
}

//! Small pieces of HTTP: request headers and query parameters in, plain
//! and typed responses out.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::exposition::chunked::ChunkedBody;

/// Pages and errors are written whole; /metrics is sent as it is written.
pub type Body = Either<Full<Bytes>, ChunkedBody>;

/// A header's value; a header split over several lines joins with ','.
pub fn header(req: &Request<Incoming>, name: HeaderName) -> Option<String> {
    let values: Vec<&str> = req
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

pub fn typed(text: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(text.into())));
    set(&mut response, CONTENT_TYPE, content_type);
    response
}

pub fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = typed(text, "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

pub fn set(response: &mut Response<Body>, name: HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("limit=5"), "limit"), Some("5"));
        assert_eq!(query_param(Some("a=1&limit=7"), "limit"), Some("7"));
        assert_eq!(query_param(Some("limits=7"), "limit"), None);
        assert_eq!(query_param(None, "limit"), None);
    }
}

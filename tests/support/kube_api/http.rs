//! Just enough HTTP/1.1 for kube-rs: one GET per connection, answered with
//! a Content-Length body or a chunked stream, then `Connection: close` so
//! the client never reuses a connection the server is about to drop.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The Accept header, empty when absent.
    pub accept: String,
}

/// Reads one request head. The body, if any, is ignored: kube-rs's LIST
/// and WATCH are bodiless GETs.
pub fn read_request(stream: &TcpStream) -> io::Result<Request> {
    const MAX_HEAD: u64 = 64 * 1024;
    let mut reader = BufReader::new(io::Read::take(stream, MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP request line: {line:?}"),
        ));
    };
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        accept: String::new(),
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(request);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("accept") {
                request.accept = value.trim().to_string();
            }
        }
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "Error",
    }
}

/// A whole JSON response.
pub fn write_json(mut stream: &TcpStream, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    )?;
    stream.flush()
}

/// The head of a watch response; `write_chunk` sends each event after it.
pub fn start_chunked(mut stream: &TcpStream) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()
}

/// One watch event: a JSON line in a chunk of its own. kube-rs splits the
/// stream on newlines, not chunks, so the newline is what matters.
pub fn write_chunk(mut stream: &TcpStream, line: &Value) -> io::Result<()> {
    let data = format!("{line}\n");
    write!(stream, "{:x}\r\n{data}\r\n", data.len())?;
    stream.flush()
}

/// The last chunk: the watch ended cleanly (its timeout, or after an ERROR).
pub fn end_chunked(mut stream: &TcpStream) -> io::Result<()> {
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

/// A `Status` object, the body of every error the API server returns and
/// the object of a watch's ERROR event.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

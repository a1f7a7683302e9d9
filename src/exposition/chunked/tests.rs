//! Unit tests of the chunked body and its warm buffer.

use super::*;

/// Everything a writer sends, after `write` ran and the writer finished.
pub(crate) fn written(gzip: bool, write: impl FnOnce(&mut ChunkedText)) -> Vec<u8> {
    let buffers = WarmBuffers::default();
    let (mut writer, body) = buffers.writer(1024, gzip);
    write(&mut writer);
    buffers.finish(writer);
    body.written().expect("a finished body")
}

fn lines(n: usize) -> impl Fn(&mut ChunkedText) {
    move |w: &mut ChunkedText| {
        for i in 0..n {
            w.push_str(&format!("line {i}\n"));
            w.line_end();
        }
    }
}

fn expected(n: usize) -> String {
    (0..n).map(|i| format!("line {i}\n")).collect()
}

#[test]
fn chunks_arrive_whole_and_in_order() {
    let n = 4 * CHUNK / 10; // about 4 chunks of text
    assert_eq!(written(false, lines(n)), expected(n).into_bytes());
}

#[test]
fn gzip_chunks_form_one_gzip_stream() {
    let n = 4 * CHUNK / 10; // several chunks, and more gzip blocks
    let compressed = written(true, lines(n));
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, expected(n));
}

#[test]
fn spans_copy_text_from_chunks_already_sent() {
    // About 11 bytes each: spans in several chunks.
    const SPANS: usize = 3 * CHUNK / 10;
    let out = written(false, |w| {
        w.keep_chunks();
        let mut spans = Vec::new();
        for i in 0..SPANS {
            let start = w.mark();
            w.push_str(&format!("label{i}"));
            spans.push(w.span_from(start));
            w.push_str("\n");
            w.line_end();
        }
        w.flush();
        for span in spans {
            w.copy(span);
            w.push_str("!\n");
            w.line_end();
        }
        w.drop_kept();
    });
    let text = String::from_utf8(out).unwrap();
    let first: String = (0..SPANS).map(|i| format!("label{i}\n")).collect();
    let second: String = (0..SPANS).map(|i| format!("label{i}!\n")).collect();
    assert_eq!(text, first + &second);
}

#[test]
fn the_next_body_reuses_the_buffer_once_the_last_one_is_sent() {
    let buffers = WarmBuffers::default();
    let (mut writer, body) = buffers.writer(4 << 20, false);
    let address = writer.current.as_ptr();
    lines(300_000)(&mut writer);
    buffers.finish(writer);
    drop(body); // hyper sent it and dropped every chunk
    let (writer, _body) = buffers.writer(4 << 20, false);
    assert_eq!(writer.current.as_ptr(), address);
    assert!(writer.current.capacity() >= 4 << 20);
}

#[test]
fn a_gzip_body_the_client_dropped_is_not_compressed() {
    let buffers = WarmBuffers::default();
    let (mut writer, body) = buffers.writer(4 << 20, true);
    let address = writer.current.as_ptr();
    drop(body); // the client left before the first chunk
    lines(300_000)(&mut writer);
    buffers.finish(writer);
    // No compressing thread holds a chunk: the buffer is free at once.
    let (writer, _body) = buffers.writer(4 << 20, true);
    assert_eq!(writer.current.as_ptr(), address);
}

#[test]
fn a_gzip_writer_dropped_midway_fails_its_body_and_does_not_panic() {
    let buffers = WarmBuffers::default();
    let (mut writer, body) = buffers.writer(1024, true);
    lines(100_000)(&mut writer);
    drop(writer); // as if encoding panicked
    assert_eq!(body.written(), None, "the body must not end as complete");
    // The client left too: gzp's own drop would panic on its error.
    let (mut writer, body) = buffers.writer(1024, true);
    lines(100_000)(&mut writer);
    drop(body);
    drop(writer);
}

#[test]
fn a_body_still_being_sent_keeps_its_buffer() {
    let buffers = WarmBuffers::default();
    let (mut writer, _sending) = buffers.writer(4 << 20, false);
    let address = writer.current.as_ptr();
    lines(300_000)(&mut writer);
    buffers.finish(writer);
    let (writer, _body) = buffers.writer(4 << 20, false);
    assert_ne!(writer.current.as_ptr(), address);
}

#[test]
fn a_body_much_smaller_than_the_buffer_gets_a_smaller_one() {
    let buffers = WarmBuffers::default();
    let (mut writer, body) = buffers.writer(64 << 20, false);
    let address = writer.current.as_ptr();
    lines(10)(&mut writer);
    buffers.finish(writer);
    drop(body);
    let (writer, _body) = buffers.writer(1 << 20, false);
    assert_ne!(writer.current.as_ptr(), address);
    assert!(writer.current.capacity() < 4 << 20);
}

//! Reads a server-sent event stream (the WHATWG `text/event-stream`
//! format) from a response body: the part of `EventSource` that `crunchbox
//! upload` needs to follow `GET /v1/avatar/{id}/events`.

use bytes::Bytes;
use http_body_util::BodyExt;

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `message` when the server gave none.
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the event stream broke off: {0}")]
    Body(String),
    #[error("an event line is longer than {0} bytes")]
    LineTooLong(usize),
}

/// The longest line kept; the server's events are small JSON documents.
const MAX_LINE: usize = 1 << 20;

/// Events from `body`, parsed as its chunks arrive.
pub struct EventReader<B> {
    body: B,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting this one belongs to it.
    after_cr: bool,
    /// Complete lines not yet processed.
    lines: std::collections::VecDeque<String>,
    name: String,
    data: String,
    done: bool,
}

impl<B> EventReader<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    pub fn new(body: B) -> Self {
        EventReader {
            body,
            line: Vec::new(),
            after_cr: false,
            lines: Default::default(),
            name: String::new(),
            data: String::new(),
            done: false,
        }
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<Event>, StreamError> {
        loop {
            while let Some(line) = self.lines.pop_front() {
                if let Some(event) = self.field(&line) {
                    return Ok(Some(event));
                }
            }
            if self.done {
                // An event not ended by a blank line is discarded (WHATWG).
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        self.split(&chunk)?;
                    }
                }
                Some(Err(e)) => return Err(StreamError::Body(e.to_string())),
                None => self.done = true,
            }
        }
    }

    /// Cuts `chunk` into lines at CRLF, LF or CR.
    fn split(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.lines.push_back(line);
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            if rest[end] == b'\r' && end + 1 == rest.len() {
                self.after_cr = true;
            }
            rest = &rest[end + if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(StreamError::LineTooLong(MAX_LINE));
        }
        Ok(())
    }

    /// Applies one line; a blank line dispatches the event gathered so far.
    fn field(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            let mut data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return None;
            }
            data.pop(); // the newline after the last data line
            let name = if name.is_empty() { "message".to_owned() } else { name };
            return Some(Event { name, data });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => {} // a comment (keep-alive)
            "event" => value.clone_into(&mut self.name),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            _ => {} // id, retry: nothing to resume or pace here
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    /// Reads every event from a body sent in the given chunks.
    async fn events(chunks: &[&str]) -> Vec<Event> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::copy_from_slice(c.as_bytes())))).collect();
        let mut reader = EventReader::new(StreamBody::new(stream::iter(frames)));
        let mut out = Vec::new();
        while let Some(event) = reader.next().await.unwrap() {
            out.push(event);
        }
        out
    }

    fn event(name: &str, data: &str) -> Event {
        Event { name: name.into(), data: data.into() }
    }

    #[tokio::test]
    async fn named_events_comments_and_multiline_data() {
        let got = events(&[": keep-alive\n\nevent: status\ndata: {\"a\":1}\n\n", "data:x\ndata: y\nid: 3\n\n"]).await;
        assert_eq!(got, [event("status", "{\"a\":1}"), event("message", "x\ny")]);
    }

    #[tokio::test]
    async fn lines_split_anywhere_and_any_line_ending() {
        let got = events(&["event: sta", "tus\r", "\ndata: 1\r\r", "event:status\rdata:2\n", "\n"]).await;
        assert_eq!(got, [event("status", "1"), event("status", "2")]);
    }

    #[tokio::test]
    async fn an_unfinished_event_is_dropped() {
        assert_eq!(events(&["event: status\ndata: 1\n\nevent: status\ndata: 2\n"]).await, [event("status", "1")]);
        assert!(events(&["event: status\n\n"]).await.is_empty(), "no data, no event");
    }
}

//! HTTP/1.1 spoken by hand over a TCP socket, for what no HTTP client
//! sends: broken request lines, conflicting framing, too many headers,
//! bodies that stop half way.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names in lowercase.
    pub headers: Vec<(String, String)>,
    /// Empty for a chunked (streamed) answer, which is not read.
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A client connection.
pub struct RawConnection {
    stream: TcpStream,
    /// Read but not yet consumed.
    buffer: Vec<u8>,
}

impl RawConnection {
    /// Connects to `base` (`http://host:port`).
    pub async fn open(base: &str) -> Self {
        let address = base.trim_start_matches("http://");
        let stream = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write the request");
        self.stream.flush().await.expect("flush the request");
    }

    /// Reads more into the buffer; false at the end of the stream (or a
    /// reset, which is an end too).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next answer, which must come whole within `within`.
    pub async fn response(&mut self, within: Duration) -> RawResponse {
        tokio::time::timeout(within, self.read_response())
            .await
            .unwrap_or_else(|_| panic!("no whole answer within {within:?}"))
    }

    async fn read_response(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.fill().await,
                "the connection ended before an answer's head: {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
        };
        let head = String::from_utf8(self.buffer[..head_end].to_vec()).expect("a UTF-8 head");
        self.buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status in {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("a numeric Content-Length");
            while self.buffer.len() < length {
                assert!(self.fill().await, "the connection ended inside a body");
            }
            response.body = self.buffer.drain(..length).collect();
        }
        response
    }

    /// Whether `text` arrives within `within` (reading an answer's body as
    /// it streams).
    pub async fn read_until(&mut self, text: &str, within: Duration) -> bool {
        let needle = text.as_bytes();
        tokio::time::timeout(within, async {
            loop {
                if self.buffer.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
                if !self.fill().await {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Whether the server closes the connection within `within` (anything
    /// it still sends is read and dropped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            while self.fill().await {
                self.buffer.clear();
            }
        })
        .await
        .is_ok()
    }
}

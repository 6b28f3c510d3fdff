//! The HTTP client of the subcommands that talk to a running Herald
//! (`automations`, `forget`, `subject`): one request at a time on a
//! current-thread runtime, the key as a bearer token, the answer as status
//! and JSON body whatever the status.

use std::time::Duration;

use serde_json::Value;

use super::publish::ServerArgs;

/// One request's answer: status and JSON body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    server: ServerArgs,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the server the flags name; a request may take up to
    /// `timeout`.
    pub fn new(server: &ServerArgs, timeout: Duration) -> Result<Self, String> {
        let base = server.base()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        Ok(Self {
            http,
            base,
            server: server.clone(),
            runtime,
        })
    }

    /// Sends one request; its answer whatever the status.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = self.server.key() {
            request = request.bearer_auth(key.expose());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("could not reach {url}: {e}"))?;
            let status = response.status().as_u16();
            let text = response
                .text()
                .await
                .map_err(|e| format!("reading the answer of {url}: {e}"))?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok(Answer { status, body })
        })
    }
}

/// One path segment, percent-encoded (everything but `A-Z a-z 0-9 - _ . ~`).
pub(crate) fn path_segment(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

//! Reading a running `herald`'s readiness and metrics over HTTP.

use serde_json::Value;

/// `GET /readyz`: the status and the JSON body (`Null` when none answered).
pub async fn readyz(base: &str) -> (u16, Value) {
    match reqwest::get(format!("{base}/readyz")).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// The `/metrics` text (empty when nothing answered).
pub async fn metrics(base: &str) -> String {
    match reqwest::get(format!("{base}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of `series` (a name with its labels as rendered, e.g.
/// `herald_stalled{component="relay"}`) in a metrics text.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// The value of `series` on the process at `base`.
pub async fn metric(base: &str, series: &str) -> Option<f64> {
    value(&metrics(base).await, series)
}

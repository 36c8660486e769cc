//! The control API over HTTP: one call, its deadline, and the API's error
//! answer as a [`CtlError::Api`].

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::CtlError;
use crate::http_client::HttpClient;

/// Deadline for an API call (downloads have none while data flows).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The control API at one address, with one token.
pub(super) struct Api {
    pub(super) client: HttpClient,
    pub(super) base: String,
    pub(super) token: String,
}

impl Api {
    pub(super) fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("authorization", format!("Bearer {}", self.token)),
            ("content-type", "application/json".to_owned()),
        ]
    }

    pub(super) fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// One API call; a non-2xx answer becomes [`CtlError::Api`].
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let method: hyper::Method = method.parse().map_err(|_| CtlError::Usage(method.into()))?;
        let url = self.url(path);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let answer = self
            .client
            .call(method, &url, &self.headers(), body, CALL_TIMEOUT)
            .await
            .map_err(|source| CtlError::Http {
                url: url.clone(),
                source,
            })?;
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&answer.status) {
            Ok(v)
        } else {
            Err(api_error(answer.status, &v))
        }
    }
}

pub(super) fn api_error(status: u16, v: &Value) -> CtlError {
    CtlError::Api {
        status,
        code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
        message: v["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    }
}

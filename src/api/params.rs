//! Query parameters as the API takes them: each at most once. A repeated
//! parameter is a 400 naming it in the JSON error shape (axum's `Query`
//! answers such requests in plain text, and a map would silently keep one
//! of the values, so `?customer_id=a&customer_id=b` could mean either).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::ApiError;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// Parses a query string (without the `?`).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let invalid =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        let uri: axum::http::Uri = format!("/?{query}")
            .parse()
            .map_err(|_| invalid("the query string is not valid".into()))?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|e| invalid(format!("the query string is not valid: {e}")))?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(invalid(format!("{k}: given more than once")));
            }
            map.insert(k, v);
        }
        Ok(Self(map))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_at_most_once() {
        let p = Params::parse("status=completed&limit=5&q=a%20b").unwrap();
        assert_eq!(p.0["q"], "a b");
        assert_eq!(p.0["limit"], "5");
        assert!(Params::parse("").unwrap().0.is_empty());
        let e = Params::parse("customer_id=a&customer_id=b").unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(e.message().starts_with("customer_id:"), "{}", e.message());
    }
}

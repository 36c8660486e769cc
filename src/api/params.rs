//! Query parameters as the API takes them: each at most once. A repeated
//! parameter is a 400 naming it in the JSON error shape (axum's `Query`
//! answers such requests in plain text, and a map would silently keep one
//! of the values, so `?customer_id=a&customer_id=b` could mean either).
//! [`TypedQuery`] decodes them into a type that also documents them in
//! the OpenAPI document (`utoipa::IntoParams`), naming a bad one.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// Parses a query string (without the `?`).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidRequest, message);
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

/// Query parameters decoded into `T` (which should refuse unknown
/// fields): each at most once, a wrong one answered 400 `invalid_request`
/// naming it.
#[derive(Debug)]
pub struct TypedQuery<T>(pub T);

impl<T: DeserializeOwned> TypedQuery<T> {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        Params::parse(query)?;
        let decoder = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(decoder)
            .map(TypedQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = if path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                };
                ApiError::new(ErrorCode::InvalidRequest, message)
            })
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for TypedQuery<T> {
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
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        assert!(e.message().starts_with("customer_id:"), "{}", e.message());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Page {
        limit: Option<u32>,
        status: Option<String>,
    }

    #[test]
    fn a_typed_query_names_the_parameter_that_is_wrong() {
        let q = TypedQuery::<Page>::parse("limit=5&status=a%20b").unwrap().0;
        assert_eq!((q.limit, q.status.as_deref()), (Some(5), Some("a b")));
        assert!(TypedQuery::<Page>::parse("").unwrap().0.limit.is_none());
        let e = TypedQuery::<Page>::parse("limit=x").unwrap_err();
        assert!(e.message().starts_with("limit:"), "{}", e.message());
        let e = TypedQuery::<Page>::parse("limit=1&limit=2").unwrap_err();
        assert!(e.message().starts_with("limit:"), "{}", e.message());
        let e = TypedQuery::<Page>::parse("colour=red").unwrap_err();
        assert!(e.message().contains("colour"), "{}", e.message());
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
    }
}

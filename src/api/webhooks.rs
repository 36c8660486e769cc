//! Webhook delivery state for operators: `GET /v1/webhooks/deliveries`
//! (filter by `status` and `endpoint`, paged) and
//! `POST /v1/webhooks/deliveries/{id}/retry` to queue a failed delivery
//! again. Admin tokens only: deliveries carry every tenant's events.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::params::Params;
use super::recordings::{DEFAULT_LIMIT, bad_param, page_param};
use super::{ApiError, ApiResult, ApiState, ok, principal};
use crate::engine::{EngineError, Principal};
use crate::timefmt::{rfc3339, unix_now};

const STATES: [&str; 3] = ["pending", "delivered", "failed"];

fn admin_only(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(s, headers)? {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "webhook deliveries need an admin token",
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::from(EngineError::Internal(e.to_string()))
}

pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Params(q): Params,
) -> ApiResult {
    admin_only(&s, &headers)?;
    let (mut status, mut endpoint) = (None, None);
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0u64);
    for (k, v) in &q {
        match k.as_str() {
            "status" if STATES.contains(&v.as_str()) => status = Some(v.as_str()),
            "status" => {
                return Err(bad_param(
                    "status",
                    format!("{v:?} is not one of {}", STATES.join(", ")),
                ));
            }
            "endpoint" => endpoint = Some(v.as_str()),
            other => {
                if !page_param(other, v, &mut limit, &mut offset)? {
                    return Err(bad_param(other, "unknown query parameter"));
                }
            }
        }
    }
    let (rows, total) = s
        .engine
        .catalog()
        .list_deliveries(status, endpoint, limit, offset)
        .map_err(internal)?;
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                let next = (r.status == "pending").then(|| {
                    rfc3339(std::time::Duration::from_millis(
                        r.next_attempt_ms.max(0) as u64
                    ))
                });
                o.insert("next_attempt_at".into(), json!(next));
            }
            v
        })
        .collect();
    let has_more = offset.saturating_add(rows.len() as u64) < total;
    ok(
        StatusCode::OK,
        json!({"data": data, "pagination": {"total": total, "limit": limit, "offset": offset, "has_more": has_more}}),
    )
}

pub async fn retry(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin_only(&s, &headers)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "delivery_not_found",
            format!("no webhook delivery {id:?}"),
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let catalog = s.engine.catalog();
    let row = catalog
        .get_delivery(id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let now = unix_now();
    if !catalog
        .retry_delivery(id, now.as_millis() as i64, &rfc3339(now))
        .map_err(internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_not_failed",
            format!(
                "delivery {id} is {}; only failed deliveries are retried",
                row.status
            ),
        ));
    }
    let row = catalog
        .get_delivery(id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    ok(StatusCode::ACCEPTED, row)
}

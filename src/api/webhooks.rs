//! Webhook delivery state for operators: `GET /v1/webhooks/deliveries`
//! (filter by `status` and `endpoint`, paged) and
//! `POST /v1/webhooks/deliveries/{id}/retry` to queue a failed delivery
//! again. Admin tokens only: deliveries carry every tenant's events.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::params::TypedQuery;
use super::recordings::page;
use super::views::{DeliveryView, Page, Pagination};
use super::{ApiError, ApiResult, ApiState, ErrorCode, blocking, ok, principal};
use crate::catalog::outbox::DeliveryStatus;
use crate::engine::{EngineError, Principal};
use crate::timefmt::{rfc3339, unix_now};

fn admin_only(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(s, headers)? {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "webhook deliveries need an admin token",
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::from(EngineError::Internal(e.to_string()))
}

/// `GET /v1/webhooks/deliveries` parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListQuery {
    status: Option<DeliveryStatus>,
    /// Deliveries to this endpoint URL only.
    endpoint: Option<String>,
    /// Deliveries on a page (default 50, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
    /// Deliveries skipped.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// List webhook deliveries
///
/// Admin tokens only.
#[utoipa::path(get, path = "/v1/webhooks/deliveries", operation_id = "list_webhook_deliveries",
    tag = "webhooks", params(DeliveryListQuery),
    responses((status = 200, description = "A page of deliveries", body = Page<DeliveryView>)))]
pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    TypedQuery(q): TypedQuery<DeliveryListQuery>,
) -> ApiResult {
    blocking(move || {
        admin_only(&s, &headers)?;
        let (limit, offset) = page(q.limit, q.offset)?;
        let status = q.status.map(DeliveryStatus::as_str);
        let endpoint = q.endpoint.as_deref();
        let (rows, total) = s
            .engine
            .catalog()
            .list_deliveries(status, endpoint, limit, offset)
            .map_err(internal)?;
        let pagination = Pagination::new(total, limit, offset, rows.len());
        let data = rows.into_iter().map(DeliveryView::from).collect();
        ok(StatusCode::OK, Page { data, pagination })
    })
    .await
}

/// Retry a failed webhook delivery
///
/// Admin tokens only.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/retry", operation_id = "retry_webhook_delivery",
    tag = "webhooks", params(("id" = i64, Path, description = "The delivery id")),
    responses((status = 202, description = "Queued again", body = DeliveryView)))]
pub async fn retry(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    blocking(move || {
        admin_only(&s, &headers)?;
        let not_found = || {
            ApiError::new(
                ErrorCode::DeliveryNotFound,
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
                ErrorCode::DeliveryNotFailed,
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
        ok(StatusCode::ACCEPTED, DeliveryView::from(row))
    })
    .await
}

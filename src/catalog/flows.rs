//! Call flows (auto-record rules) as stored: one row per (customer, id)
//! holding the rule as JSON, whether it is enabled, and a version that
//! every change raises. What a rule means is the engine's
//! (`engine::flows`); this module only keeps them.

use super::db::{Row, args};
use super::{Catalog, CatalogError, Where, all, scope};

/// One stored call flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub customer_id: Option<String>,
    pub call_flow_id: String,
    /// The rule's own fields, as the engine serialized them.
    pub body_json: String,
    pub version: u32,
    pub created_at: String,
    pub updated_at: String,
}

const FLOW_COLUMNS: &str = "customer_id, call_flow_id, body_json, version, created_at, updated_at";

fn row_to_flow(r: &Row) -> Result<FlowRow, CatalogError> {
    Ok(FlowRow {
        customer_id: Some(r.get::<String>(0)?).filter(|c| !c.is_empty()),
        call_flow_id: r.get(1)?,
        body_json: r.get(2)?,
        version: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

impl Catalog {
    /// Stores a new flow at version 1; false when the customer already
    /// has one with this id.
    pub fn insert_flow(
        &self,
        customer_id: Option<&str>,
        call_flow_id: &str,
        body_json: &str,
        enabled: bool,
        now: &str,
    ) -> Result<bool, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "INSERT INTO call_flows
                     (customer_id, call_flow_id, body_json, enabled, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5) ON CONFLICT DO NOTHING",
                args![scope(customer_id), call_flow_id, body_json, enabled, now],
            )
        })?;
        Ok(n == 1)
    }

    /// Replaces a flow's body if it is still at `version` (raising it by
    /// one); false when it is gone or was changed meanwhile.
    pub fn update_flow(
        &self,
        customer_id: Option<&str>,
        call_flow_id: &str,
        version: u32,
        body_json: &str,
        enabled: bool,
        now: &str,
    ) -> Result<bool, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "UPDATE call_flows SET body_json = ?4, enabled = ?5, version = version + 1, updated_at = ?6
                 WHERE customer_id = ?1 AND call_flow_id = ?2 AND version = ?3",
                args![scope(customer_id), call_flow_id, version, body_json, enabled, now],
            )
        })?;
        Ok(n == 1)
    }

    pub fn delete_flow(
        &self,
        customer_id: Option<&str>,
        call_flow_id: &str,
    ) -> Result<bool, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "DELETE FROM call_flows WHERE customer_id = ?1 AND call_flow_id = ?2",
                args![scope(customer_id), call_flow_id],
            )
        })?;
        Ok(n == 1)
    }

    pub fn get_flow(
        &self,
        customer_id: Option<&str>,
        call_flow_id: &str,
    ) -> Result<Option<FlowRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {FLOW_COLUMNS} FROM call_flows WHERE customer_id = ?1 AND call_flow_id = ?2"
                ),
                args![scope(customer_id), call_flow_id],
            )?
            .as_ref()
            .map(row_to_flow)
            .transpose()
        })
    }

    /// Every customer's flow with this id (for the admin).
    pub fn flows_with_id(&self, call_flow_id: &str) -> Result<Vec<FlowRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {FLOW_COLUMNS} FROM call_flows WHERE call_flow_id = ?1 ORDER BY customer_id"
                ),
                args![call_flow_id],
            )
        })?;
        all(rows, row_to_flow)
    }

    /// A page of flows, oldest first: one customer's (`Some`), or every
    /// customer's (`None`, the admin); with the total.
    pub fn list_flows(
        &self,
        customer_id: Option<Option<&str>>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<FlowRow>, u64), CatalogError> {
        let mut w = Where::default();
        if let Some(c) = customer_id {
            w.eq("customer_id", Some(scope(c)));
        }
        self.run(|db| {
            w.page(
                db,
                "call_flows",
                FLOW_COLUMNS,
                "created_at, customer_id, call_flow_id",
                (limit, offset),
                row_to_flow,
            )
        })
    }

    /// A customer's enabled flows, oldest first (the order ties are broken in).
    pub fn enabled_flows(&self, customer_id: Option<&str>) -> Result<Vec<FlowRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {FLOW_COLUMNS} FROM call_flows WHERE customer_id = ?1 AND enabled = 1
                     ORDER BY created_at, call_flow_id"
                ),
                args![scope(customer_id)],
            )
        })?;
        all(rows, row_to_flow)
    }
}

//! Call flows: per-tenant rules that start recording calls to or from a
//! number (Audian's "Enable recording for all calls to a phone number").
//! This module owns what a rule is, how it is checked, and which rule a
//! new call matches; the catalog keeps them (`catalog::flows`).
//!
//! Precedence, for a call created without a `recording` block (a call's
//! own block, even `{"enabled": false}`, always wins over rules): among
//! the tenant's enabled rules whose number matches, an exact number beats
//! a prefix, a longer prefix beats a shorter one, and of equals the oldest
//! rule wins. An `inbound` rule compares the call's `to`, an `outbound`
//! rule its `from`, a `both` rule either. Numbers are compared after
//! dropping a `sip:`/`sips:`/`tel:` scheme, anything from `@` or `;`, and
//! visual separators (space, `-`, `.`, parentheses).

use serde::{Deserialize, Serialize};

use crate::catalog::flows::FlowRow;
use crate::events::Event;
use crate::ids::random_id;
use crate::timefmt::{rfc3339, unix_now};

use super::access::{IdKind, Principal, resolve};
use super::model::RecordingRequest;
use super::recordings::CallLeg;
use super::validate::{check_id, check_text};
use super::{Engine, EngineError};
use crate::recording::Role;

/// Which of a call's numbers a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    /// Calls to the number: the call's `to`.
    #[default]
    Inbound,
    /// Calls from the number: the call's `from`.
    Outbound,
    /// Either.
    Both,
}

/// `POST /v1/call-flows`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallFlowRequest {
    /// Default: generated (`flow-…`).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_flow_id: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// A number (`+14155552671`, or an extension such as `1001`: up to 15
    /// digits after an optional `+`), or a prefix ending in `*` (`+1415*`).
    #[schema(pattern = r"^\+?[0-9]{1,15}\*?$")]
    pub phone_number: String,
    #[serde(default)]
    pub direction: FlowDirection,
    /// Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// What matching calls are recorded with: every option of
    /// `record/start` (no `recording_id`: each call's is generated).
    #[serde(default)]
    pub recording: RecordingRequest,
}

/// `PATCH /v1/call-flows/{id}`: the fields it carries replace the stored
/// ones (`recording` as a whole).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallFlowPatch {
    #[schema(min_length = 1, max_length = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[schema(pattern = r"^\+?[0-9]{1,15}\*?$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<FlowDirection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingRequest>,
}

/// The rule's own fields, as stored.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct FlowBody {
    name: String,
    phone_number: String,
    direction: FlowDirection,
    enabled: bool,
    recording: RecordingRequest,
}

/// A call flow as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallFlow {
    pub call_flow_id: String,
    pub customer_id: Option<String>,
    pub name: String,
    pub phone_number: String,
    pub direction: FlowDirection,
    pub enabled: bool,
    pub recording: RecordingRequest,
    /// 1 at creation, raised by every change.
    pub version: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl CallFlow {
    fn from_row(row: FlowRow) -> Result<Self, EngineError> {
        let body: FlowBody = serde_json::from_str(&row.body_json).map_err(|e| {
            EngineError::Internal(format!(
                "call flow {} in the catalog is unreadable: {e}",
                row.call_flow_id
            ))
        })?;
        Ok(Self {
            call_flow_id: row.call_flow_id,
            customer_id: row.customer_id,
            name: body.name,
            phone_number: body.phone_number,
            direction: body.direction,
            enabled: body.enabled,
            recording: body.recording,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    fn body(&self) -> FlowBody {
        FlowBody {
            name: self.name.clone(),
            phone_number: self.phone_number.clone(),
            direction: self.direction,
            enabled: self.enabled,
            recording: self.recording.clone(),
        }
    }

    /// How specific this rule is for a call from `from` to `to` (both
    /// normalized), or `None` when it does not match: exact beats prefix,
    /// then the longer number.
    fn specificity(&self, from: &str, to: &str) -> Option<(bool, usize)> {
        let (number, prefix) = match self.phone_number.strip_suffix('*') {
            Some(p) => (p, true),
            None => (self.phone_number.as_str(), false),
        };
        let hits = |n: &str| {
            if prefix {
                n.starts_with(number)
            } else {
                n == number
            }
        };
        let matched = match self.direction {
            FlowDirection::Inbound => hits(to),
            FlowDirection::Outbound => hits(from),
            FlowDirection::Both => hits(to) || hits(from),
        };
        matched.then_some((!prefix, number.len()))
    }
}

/// A call's number as rules compare it (see the module documentation).
pub fn normalize_number(n: &str) -> String {
    let n = n.trim();
    let n = ["sips:", "sip:", "tel:"]
        .iter()
        .find_map(|s| {
            n.get(..s.len())
                .filter(|p| p.eq_ignore_ascii_case(s))
                .map(|_| &n[s.len()..])
        })
        .unwrap_or(n);
    let n = n.split(['@', ';']).next().unwrap_or_default();
    n.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect()
}

/// The rule a call from `from` to `to` is recorded by: the most specific
/// match among `flows` (enabled, oldest first).
pub fn best_flow<'a>(flows: &'a [CallFlow], from: &str, to: &str) -> Option<&'a CallFlow> {
    let (from, to) = (normalize_number(from), normalize_number(to));
    let mut best: Option<(&CallFlow, (bool, usize))> = None;
    for flow in flows.iter().filter(|f| f.enabled) {
        if let Some(s) = flow.specificity(&from, &to)
            && best.is_none_or(|(_, b)| s > b)
        {
            best = Some((flow, s));
        }
    }
    best.map(|(f, _)| f)
}

fn check_phone_number(field: &str, n: &str) -> Result<(), EngineError> {
    let digits = n.strip_prefix('+').unwrap_or(n);
    let digits = digits.strip_suffix('*').unwrap_or(digits);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EngineError::InvalidRequest(format!(
            "{field}: {n:?} is not a number (+14155552671, or up to 15 digits) or a prefix ending in * (+1415*)"
        )));
    }
    Ok(())
}

fn internal(e: crate::catalog::CatalogError) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl Engine {
    /// Checks a rule's fields; its recording block is resolved as it
    /// would be for a two-party call, so a bad format, rate or option is
    /// refused now rather than when a call matches.
    fn check_flow(&self, flow: &CallFlow) -> Result<(), EngineError> {
        if flow.name.trim().is_empty() {
            return Err(EngineError::InvalidRequest(
                "name: must not be empty".into(),
            ));
        }
        check_text("name", &flow.name)?;
        check_phone_number("phone_number", &flow.phone_number)?;
        let r = &flow.recording;
        if r.enabled.is_some() {
            return Err(EngineError::InvalidRequest(
                "recording.enabled: a call flow is switched with its own enabled".into(),
            ));
        }
        if r.recording_id.is_some() {
            return Err(EngineError::InvalidRequest(
                "recording.recording_id: every matching call gets its own; leave it out".into(),
            ));
        }
        let legs = [("caller", Role::Caller), ("callee", Role::Callee)].map(|(id, role)| CallLeg {
            id: id.to_owned(),
            role,
            label: None,
        });
        // Prompts are cached per rate, so this loads the announcement once.
        self.recording_options(
            r,
            &legs,
            self.cfg
                .recording
                .sample_rate_for(self.cfg.recording.format),
        )
        .map_err(|e| match e {
            EngineError::InvalidRequest(m) => EngineError::InvalidRequest(format!("recording.{m}")),
            EngineError::InvalidFormat(m) => EngineError::InvalidFormat(format!("recording: {m}")),
            other => other,
        })?;
        Ok(())
    }

    pub fn create_flow(
        &self,
        who: &Principal,
        req: CallFlowRequest,
    ) -> Result<CallFlow, EngineError> {
        let id = match req.call_flow_id {
            Some(id) => {
                check_id("call_flow_id", &id)?;
                id
            }
            None => random_id("flow-"),
        };
        let now = rfc3339(unix_now());
        let flow = CallFlow {
            call_flow_id: id,
            customer_id: who.tenant(),
            name: req.name,
            phone_number: req.phone_number,
            direction: req.direction,
            enabled: req.enabled.unwrap_or(true),
            recording: req.recording,
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        self.check_flow(&flow)?;
        let body = serde_json::to_string(&flow.body())
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        if !self
            .catalog
            .insert_flow(who.scope(), &flow.call_flow_id, &body, flow.enabled, &now)
            .map_err(internal)?
        {
            return Err(EngineError::CallFlowExists(flow.call_flow_id));
        }
        tracing::info!(call_flow = %flow.call_flow_id, customer = ?flow.customer_id, number = %flow.phone_number, "call flow created");
        self.emit(Event::CallFlowCreated(Box::new(flow.clone())));
        Ok(flow)
    }

    /// The flow `who` means by `id`.
    pub fn get_flow(&self, who: &Principal, id: &str) -> Result<CallFlow, EngineError> {
        let own = self.catalog.get_flow(who.scope(), id).map_err(internal)?;
        let row = resolve(
            who,
            IdKind::CallFlow,
            id,
            own,
            || self.catalog.flows_with_id(id).map_err(internal),
            |r| r.customer_id.as_deref(),
        )?;
        CallFlow::from_row(row)
    }

    /// A page of flows (a tenant's own; the admin's: everyone's), oldest
    /// first, with the total.
    pub fn list_flows(
        &self,
        who: &Principal,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<CallFlow>, u64), EngineError> {
        let customer = match who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(Some(t.as_str())),
        };
        let (rows, total) = self
            .catalog
            .list_flows(customer, limit, offset)
            .map_err(internal)?;
        let flows = rows
            .into_iter()
            .map(CallFlow::from_row)
            .collect::<Result<_, _>>()?;
        Ok((flows, total))
    }

    /// Applies `patch` to the stored flow if nobody changed it since it
    /// was read; raises its version.
    pub fn update_flow(
        &self,
        who: &Principal,
        id: &str,
        patch: CallFlowPatch,
    ) -> Result<CallFlow, EngineError> {
        let mut flow = self.get_flow(who, id)?;
        let read_version = flow.version;
        if let Some(v) = patch.name {
            flow.name = v;
        }
        if let Some(v) = patch.phone_number {
            flow.phone_number = v;
        }
        if let Some(v) = patch.direction {
            flow.direction = v;
        }
        if let Some(v) = patch.enabled {
            flow.enabled = v;
        }
        if let Some(v) = patch.recording {
            flow.recording = v;
        }
        self.check_flow(&flow)?;
        let now = rfc3339(unix_now());
        let body = serde_json::to_string(&flow.body())
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        if !self
            .catalog
            .update_flow(
                flow.customer_id.as_deref(),
                &flow.call_flow_id,
                read_version,
                &body,
                flow.enabled,
                &now,
            )
            .map_err(internal)?
        {
            return Err(EngineError::CallFlowChanged(flow.call_flow_id));
        }
        flow.version = read_version + 1;
        flow.updated_at = now;
        tracing::info!(call_flow = %flow.call_flow_id, customer = ?flow.customer_id, version = flow.version, "call flow updated");
        self.emit(Event::CallFlowUpdated(Box::new(flow.clone())));
        Ok(flow)
    }

    pub fn delete_flow(&self, who: &Principal, id: &str) -> Result<CallFlow, EngineError> {
        let flow = self.get_flow(who, id)?;
        if !self
            .catalog
            .delete_flow(flow.customer_id.as_deref(), &flow.call_flow_id)
            .map_err(internal)?
        {
            return Err(EngineError::CallFlowNotFound(id.to_owned()));
        }
        tracing::info!(call_flow = %flow.call_flow_id, customer = ?flow.customer_id, "call flow deleted");
        self.emit(Event::CallFlowDeleted(Box::new(flow.clone())));
        Ok(flow)
    }

    /// The rule that records a new call of `customer` from `from` to `to`.
    pub(super) fn matching_flow(
        &self,
        customer: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Option<CallFlow>, EngineError> {
        let flows = self
            .catalog
            .enabled_flows(customer)
            .map_err(internal)?
            .into_iter()
            .map(CallFlow::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(best_flow(&flows, from, to).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: &str, number: &str, direction: FlowDirection) -> CallFlow {
        CallFlow {
            call_flow_id: id.into(),
            customer_id: None,
            name: id.into(),
            phone_number: number.into(),
            direction,
            enabled: true,
            recording: RecordingRequest::default(),
            version: 1,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn chosen<'a>(flows: &'a [CallFlow], from: &str, to: &str) -> Option<&'a str> {
        best_flow(flows, from, to).map(|f| f.call_flow_id.as_str())
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        use FlowDirection::*;
        let flows = [
            flow("country", "+1*", Inbound),
            flow("city", "+1415*", Inbound),
            flow("line", "+14155552671", Inbound),
            flow("city-again", "+1415*", Inbound),
        ];
        assert_eq!(chosen(&flows, "x", "+14155552671"), Some("line"));
        assert_eq!(
            chosen(&flows, "x", "+14155550000"),
            Some("city"),
            "ties: the oldest"
        );
        assert_eq!(chosen(&flows, "x", "+12125550000"), Some("country"));
        assert_eq!(chosen(&flows, "x", "+442075550000"), None);
    }

    #[test]
    fn direction_decides_which_number_is_compared() {
        use FlowDirection::*;
        let flows = [
            flow("in", "+1415*", Inbound),
            flow("out", "+1212*", Outbound),
        ];
        assert_eq!(chosen(&flows, "+14155550000", "+4420"), None);
        assert_eq!(chosen(&flows, "+12125550000", "+4420"), Some("out"));
        assert_eq!(chosen(&flows, "+4420", "+12125550000"), None);
        let both = [flow("both", "1001", Both)];
        assert_eq!(chosen(&both, "1001", "2000"), Some("both"));
        assert_eq!(chosen(&both, "2000", "1001"), Some("both"));
    }

    #[test]
    fn uris_and_separators_are_compared_as_numbers() {
        assert_eq!(
            normalize_number("sip:+1 (415) 555-2671@pbx.example.com;user=phone"),
            "+14155552671"
        );
        assert_eq!(normalize_number("TEL:+1.415.555.2671"), "+14155552671");
        let flows = [flow("line", "+14155552671", FlowDirection::Inbound)];
        assert_eq!(
            chosen(
                &flows,
                "",
                "<sip:+14155552671@sbc>".trim_matches(['<', '>'])
            ),
            Some("line")
        );
    }

    #[test]
    fn disabled_rules_never_match() {
        let mut off = flow("off", "+1*", FlowDirection::Inbound);
        off.enabled = false;
        assert_eq!(chosen(&[off], "", "+14155550000"), None);
    }

    #[test]
    fn numbers_and_prefixes_are_checked() {
        for ok in ["+14155552671", "1001", "+1415*", "4*"] {
            assert!(check_phone_number("n", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "*",
            "+1415**",
            "14a5",
            "+1234567890123456",
            "+1 415",
        ] {
            assert!(check_phone_number("n", bad).is_err(), "{bad}");
        }
    }
}

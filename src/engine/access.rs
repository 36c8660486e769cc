//! Who may see what: the API's principals, how ids resolve to a customer's
//! objects (see the `engine` module documentation), and the registry
//! lookups that apply both.

use super::state::{Call, Recording, Registry};
use super::{Engine, EngineError};

impl Engine {
    /// `e`, or, when it says the call is not here and a shared catalog
    /// says another recorder holds it (not ended), which one: call control
    /// goes to the recorder that has the call's sockets and media.
    pub fn held_elsewhere(&self, who: &Principal, call_id: &str, e: EngineError) -> EngineError {
        if !matches!(e, EngineError::CallNotFound(_)) || !self.catalog.is_shared() {
            return e;
        }
        let scope = match who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(Some(t.as_str())),
        };
        match self.catalog.open_call_node(scope, call_id) {
            Ok(Some(node)) if node != self.catalog.node_id() => EngineError::HeldByOtherNode {
                what: format!("call {call_id}"),
                node,
            },
            _ => e,
        }
    }

    /// Refuses to serve a recording whose file is on another recorder's
    /// disk (a shared catalog with local storage).
    pub fn file_is_here(&self, row: &crate::catalog::RecordingRow) -> Result<(), EngineError> {
        if self.catalog.is_shared()
            && !row.node_id.is_empty()
            && row.node_id != self.catalog.node_id()
        {
            return Err(EngineError::HeldByOtherNode {
                what: format!("recording {}'s file", row.recording_id),
                node: row.node_id.clone(),
            });
        }
        Ok(())
    }

    /// The customer of the call `who` means by `call_id` (live or
    /// catalogued), if `who` may see it.
    pub fn call_visible(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<Option<String>, EngineError> {
        let internal = |e: crate::catalog::CatalogError| EngineError::Internal(e.to_string());
        let own = self
            .catalog
            .has_call(who.scope(), call_id)
            .map_err(internal)?
            .then(|| who.tenant());
        resolve(
            who,
            IdKind::Call,
            call_id,
            own,
            || self.catalog.calls_with_id(call_id).map_err(internal),
            |customer| customer.as_deref(),
        )
    }
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

impl Principal {
    pub(super) fn sees(&self, tenant: &Option<String>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(t) => tenant.as_deref() == Some(t.as_str()),
        }
    }

    pub(super) fn tenant(&self) -> Option<String> {
        self.scope().map(str::to_owned)
    }

    /// The customer whose ids this principal names (the admin: its own).
    pub(super) fn scope(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }
}

/// How the engine names a call or recording: its customer and its id,
/// `customer/id` (the admin's own: `id`). Neither ids nor customer ids can
/// hold a `/`, so keys never collide. The media workers, writers and logs
/// see only keys; answers and events carry the id and the customer apart.
pub fn scoped_key(customer: Option<&str>, id: &str) -> String {
    match customer {
        Some(c) => format!("{c}/{id}"),
        None => id.to_owned(),
    }
}

/// Which kind of id a lookup names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdKind {
    Call,
    Recording,
    CallFlow,
}

impl IdKind {
    pub(super) fn field(self) -> &'static str {
        match self {
            IdKind::Call => "call_id",
            IdKind::Recording => "recording_id",
            IdKind::CallFlow => "call_flow_id",
        }
    }

    pub(super) fn not_found(self, id: &str) -> EngineError {
        match self {
            IdKind::Call => EngineError::CallNotFound(id.into()),
            IdKind::Recording => EngineError::RecordingNotFound(id.into()),
            IdKind::CallFlow => EngineError::CallFlowNotFound(id.into()),
        }
    }
}

/// The object `who` means by `id` (see the module documentation): `own`,
/// the object with this id in `who`'s own scope, if there is one; else,
/// for the admin only, the one object among `others()` (every customer's
/// with this id), whose customer `customer_of` tells.
pub(super) fn resolve<T>(
    who: &Principal,
    kind: IdKind,
    id: &str,
    own: Option<T>,
    others: impl FnOnce() -> Result<Vec<T>, EngineError>,
    customer_of: impl Fn(&T) -> Option<&str>,
) -> Result<T, EngineError> {
    if let Some(own) = own {
        return Ok(own);
    }
    if let Principal::Tenant(_) = who {
        return Err(kind.not_found(id));
    }
    let mut found = others()?;
    match found.len() {
        0 => Err(kind.not_found(id)),
        1 => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousId {
            what: kind.field(),
            id: id.into(),
            customers: found
                .iter()
                .map(|t| customer_of(t).unwrap_or("admin"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

impl Registry {
    /// The call `who` means by `call_id`.
    pub(super) fn call(&self, who: &Principal, call_id: &str) -> Result<&Call, EngineError> {
        resolve(
            who,
            IdKind::Call,
            call_id,
            self.calls.get(&scoped_key(who.scope(), call_id)),
            || Ok(self.calls.values().filter(|c| c.id == call_id).collect()),
            |c| c.tenant.as_deref(),
        )
    }

    /// The recording `who` means by `id`.
    pub(super) fn recording(&self, who: &Principal, id: &str) -> Result<&Recording, EngineError> {
        resolve(
            who,
            IdKind::Recording,
            id,
            self.recordings.get(&scoped_key(who.scope(), id)),
            || Ok(self.recordings.values().filter(|r| r.id == id).collect()),
            |r| r.tenant.as_deref(),
        )
    }
}

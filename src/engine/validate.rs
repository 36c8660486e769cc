//! Checks on request fields that their serde types cannot state: ids,
//! free text, a leg's declaration, and the limits on each.

use crate::ids::is_valid_id;
use crate::recording::Role;

use super::EngineError;
use super::model::*;

pub(super) fn default_leg_id(role: Role, index: usize) -> String {
    match role {
        Role::Caller => "caller".into(),
        Role::Callee => "callee".into(),
        Role::Participant => format!("participant-{}", index + 1),
    }
}

pub(super) fn check_id(field: &str, id: &str) -> Result<(), EngineError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "{field}: {id:?} is not a valid id (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
        )))
    }
}

/// Longest `from`, `to` or leg `label`, in bytes.
pub const MAX_TEXT: usize = 256;

/// Most legs a call (or conference) may have.
pub const MAX_LEGS: usize = 64;

/// Most dynamic payload types one leg may declare.
pub(super) const MAX_PAYLOAD_TYPES: usize = 32;

/// A free-text field: at most [`MAX_TEXT`] bytes, no control characters.
pub(super) fn check_text(field: &str, v: &str) -> Result<(), EngineError> {
    if v.len() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{field}: at most {MAX_TEXT} bytes and no control characters"
        )));
    }
    Ok(())
}

pub(super) fn validate_leg(
    field: &str,
    l: &LegRequest,
    reference: ReferenceType,
) -> Result<(), EngineError> {
    if let Some(id) = &l.leg_id {
        check_id(&format!("{field}.leg_id"), id)?;
    }
    if let Some(label) = &l.label {
        check_text(&format!("{field}.label"), label)?;
    }
    if l.payload_types.len() > MAX_PAYLOAD_TYPES {
        return Err(EngineError::InvalidRequest(format!(
            "{field}.payload_types: at most {MAX_PAYLOAD_TYPES} entries"
        )));
    }
    if let Some(source) = &l.source {
        crate::io::udp::ExpectedSource::parse(source)
            .map_err(|e| EngineError::InvalidRequest(format!("{field}.source: {e}")))?;
    }
    if reference == ReferenceType::Call && l.role == Role::Participant {
        return Err(EngineError::InvalidRequest(format!(
            "{field}.role: \"participant\" legs belong to conferences (reference_type \"conference\")"
        )));
    }
    Ok(())
}

//! SIPREC: the daemon as a Session Recording Server (RFC 7865/7866), so
//! SBCs and PBXs fork calls to it with no glue code.
//!
//! - [`metadata`]: the RFC 7865 XML (participants, streams, who sends what);
//! - [`offer`]: the multipart INVITE body, its SDP streams and codecs, the
//!   roles, and the SDP answer;
//! - [`uas`]: the SIP user agent server, sans IO (transactions, dialogs,
//!   retransmissions), over `rsip`;
//! - [`sessions`]: sessions as engine calls and recordings;
//! - [`server`]: the UDP and TCP listeners that drive it all.

pub mod metadata;
pub mod offer;
pub mod server;
pub mod sessions;
pub mod uas;

use serde::{Deserialize, Serialize};

/// What a SIPREC client said about a call, kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiprecCall {
    /// The client's address (`ip:port`).
    pub src: String,
    /// The recording INVITE's Call-ID.
    pub sip_call_id: String,
    /// The recording metadata, as understood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<metadata::Metadata>,
    /// The metadata as sent (XML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_metadata: Option<String>,
    /// What could not be understood or mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

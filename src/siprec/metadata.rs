//! RFC 7865 recording metadata (`application/rs-metadata+xml`), as real
//! session recording clients send it: the recording session, its
//! participants (AOR, display name) and streams (by SDP label), and which
//! participant sends which stream.
//!
//! Vendors differ in everything the RFC leaves open, so this reader goes
//! by local element names, case-insensitively, in any namespace; takes ids
//! from `id`, `participant_id`, `stream_id` or `session_id`; links
//! participants to streams by `<send>` inside `<participant>` (the 2010
//! drafts, Acme Packet) or inside `<participantstreamassoc>` (RFC 7865);
//! and reads Acme Packet's `callingParty` extension. What it cannot map it
//! says in [`Metadata::notes`] rather than failing: the SDP alone is
//! enough to record.

use serde::{Deserialize, Serialize};

/// One participant of the recorded session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Participant {
    pub participant_id: String,
    /// Its address of record (`sip:…`, `tel:…`, or what the SRC sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ids of the streams it sends.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sends: Vec<String>,
    /// A vendor's own mark of the calling party (Acme Packet
    /// `callingParty`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling_party: Option<bool>,
}

/// One stream of the recorded session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetaStream {
    pub stream_id: String,
    /// The SDP `a=label` it is carried under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// What the metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The recorded call's own SIP session id, when the SRC sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_session_id: Option<String>,
    /// When the recorded session started (`start-time`, else the first
    /// `associate-time`), as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub participants: Vec<Participant>,
    pub streams: Vec<MetaStream>,
    /// What could not be understood or mapped.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

/// Why metadata could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the recording metadata is not well-formed XML: {0}")]
    Xml(String),
    #[error("the recording metadata's root element is <{0}>, not <recording>")]
    NotRecording(String),
}

/// Most participants and streams read from one document.
const MAX_ITEMS: usize = 64;

fn local(node: &roxmltree::Node<'_, '_>) -> String {
    node.tag_name().name().to_ascii_lowercase()
}

/// The first attribute of `node` among `names` (compared without case).
fn attr(node: &roxmltree::Node<'_, '_>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        node.attributes()
            .find(|a| a.name().eq_ignore_ascii_case(n))
            .map(|a| a.value().trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

fn child<'a, 'i>(node: &roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.is_element() && local(c) == name)
}

fn text_of(node: &roxmltree::Node<'_, '_>) -> Option<String> {
    let t: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    Some(t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn child_text(node: &roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).and_then(|c| text_of(&c))
}

/// Reads an RFC 7865 document.
pub fn parse(xml: &str) -> Result<Metadata, MetadataError> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml.trim(), opts)
        .map_err(|e| MetadataError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if local(&root) != "recording" {
        return Err(MetadataError::NotRecording(
            root.tag_name().name().to_owned(),
        ));
    }
    let mut m = Metadata::default();
    for node in root.children().filter(roxmltree::Node::is_element) {
        match local(&node).as_str() {
            "session" => {
                m.session_id = m.session_id.or_else(|| attr(&node, &["session_id", "id"]));
                m.sip_session_id = m
                    .sip_session_id
                    .or_else(|| child_text(&node, "sipsessionid"));
                m.start_time = m.start_time.or_else(|| {
                    child_text(&node, "start-time").or_else(|| child_text(&node, "associate-time"))
                });
            }
            "participant" if m.participants.len() < MAX_ITEMS => {
                let Some(id) = attr(&node, &["participant_id", "id"]) else {
                    m.notes
                        .push("a <participant> without an id was left out".into());
                    continue;
                };
                let name_id = child(&node, "nameid");
                let aor = name_id.as_ref().and_then(|n| attr(n, &["aor"]));
                let name = name_id.as_ref().and_then(|n| child_text(n, "name"));
                let sends = node
                    .children()
                    .filter(|c| c.is_element() && local(c) == "send")
                    .filter_map(|c| text_of(&c))
                    .collect();
                let calling_party = node
                    .descendants()
                    .find(|d| d.is_element() && local(d) == "callingparty")
                    .and_then(|d| text_of(&d))
                    .and_then(|t| match t.to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => None,
                    });
                if m.start_time.is_none() {
                    m.start_time = child_text(&node, "associate-time");
                }
                m.participants.push(Participant {
                    participant_id: id,
                    aor,
                    name,
                    sends,
                    calling_party,
                });
            }
            "stream" if m.streams.len() < MAX_ITEMS => {
                let Some(id) = attr(&node, &["stream_id", "id"]) else {
                    m.notes.push("a <stream> without an id was left out".into());
                    continue;
                };
                m.streams.push(MetaStream {
                    stream_id: id,
                    label: child_text(&node, "label"),
                });
            }
            "sessionrecordingassoc" | "participantsessionassoc" if m.start_time.is_none() => {
                m.start_time = child_text(&node, "associate-time");
            }
            "participantstreamassoc" => {
                let Some(id) = attr(&node, &["participant_id", "id"]) else {
                    continue;
                };
                let sends: Vec<String> = node
                    .children()
                    .filter(|c| c.is_element() && local(c) == "send")
                    .filter_map(|c| text_of(&c))
                    .collect();
                match m.participants.iter_mut().find(|p| p.participant_id == id) {
                    Some(p) => {
                        for s in sends {
                            if !p.sends.contains(&s) {
                                p.sends.push(s);
                            }
                        }
                    }
                    None => m.notes.push(format!(
                        "<participantstreamassoc> names participant {id:?}, which is not described"
                    )),
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

impl Metadata {
    /// The participant that sends the stream carried under SDP label
    /// `label`, and its index among the participants.
    pub fn sender_of_label(&self, label: &str) -> Option<(usize, &Participant)> {
        let stream = self
            .streams
            .iter()
            .find(|s| s.label.as_deref() == Some(label))?;
        self.participants
            .iter()
            .enumerate()
            .find(|(_, p)| p.sends.contains(&stream.stream_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_send_inside_participant_and_the_calling_party_mark() {
        let m = parse(
            r#"<?xml version='1.0'?><recording xmlns='urn:ietf:params:xml:ns:recording'>
            <session id="S1"><associate-time>2019-03-09T16:50:20</associate-time></session>
            <participant id="A"><nameID aor="sip:9000@h"><name>9000</name></nameID><send>s1</send>
              <extensiondata xmlns:apkt="x"><apkt:callingParty>true</apkt:callingParty></extensiondata></participant>
            <participant id="B"><nameID aor="sip:1002@h"/><send>s2</send></participant>
            <stream id="s1"><label>L1</label></stream><stream id="s2"><label>L2</label></stream>
            </recording>"#,
        )
        .unwrap();
        assert_eq!(m.session_id.as_deref(), Some("S1"));
        assert_eq!(m.start_time.as_deref(), Some("2019-03-09T16:50:20"));
        assert_eq!(m.participants[0].calling_party, Some(true));
        assert_eq!(
            m.sender_of_label("L2").unwrap().1.aor.as_deref(),
            Some("sip:1002@h")
        );
        assert!(m.notes.is_empty());
    }

    #[test]
    fn garbage_and_other_roots_are_errors() {
        assert!(matches!(parse("hello"), Err(MetadataError::Xml(_))));
        assert!(matches!(
            parse("<metadata/>"),
            Err(MetadataError::NotRecording(_))
        ));
        // No entity expansion games.
        assert!(parse("<!DOCTYPE r [<!ENTITY a 'x'>]><recording>&a;</recording>").is_err());
    }
}

//! recengine: a real-time call-recording engine.
//!
//! # Architecture
//!
//! Two crates. `recengine-core` (re-exported here as [`core`]) is the
//! sans-IO media core: RTP parsing, jitter buffering, decoding,
//! resampling, mixing, encoding, and `core::call::CallMedia`, one call's
//! media as a state machine. It depends on codecs only (no tokio, axum or
//! rusqlite), so the compiler keeps IO out of it; time is an argument.
//! This crate is everything around it:
//!
//! - the daemon ([`daemon`]) wires [`api`] (HTTP control API) →
//!   [`engine`] (the control plane: calls, legs, recording state machines)
//!   → [`io`] (legs' sockets, media worker threads driving `CallMedia`,
//!   the writer pool, crash recovery) and records outcomes in [`catalog`]
//!   (SQLite) and [`events`] (event log, socket, webhooks);
//! - `recengine pcap` ([`offline`], reading files with [`capture`]) drives
//!   the same `CallMedia` with capture timestamps as the clock, and makes
//!   the same bytes from the same packets;
//! - [`ctl`] and [`loadgen`] are clients of the API; [`config`] is
//!   `engine.toml`; [`recording`] is what a sidecar says;
//!   [`testkit`] is deterministic test material.
//!
//! The README's "Code map" lists every folder and file with its job.

pub mod api;
pub mod audio_file;
pub mod capture;
pub mod catalog;
pub mod check;
pub mod config;
/// The sans-IO media core: the `recengine-core` crate.
pub use recengine_core as core;
pub mod crypto;
pub mod ctl;
pub mod daemon;
pub mod encryption;
pub mod engine;
pub mod error;
pub mod events;
pub mod http_client;
pub mod ids;
pub mod io;
pub mod loadgen;
pub mod notices;
pub mod objects;
pub mod offline;
pub mod offload;
pub mod recording;
pub mod siprec;
pub mod storage_path;
pub mod testkit;
pub mod timefmt;

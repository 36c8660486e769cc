//! recengine: a real-time call-recording engine.
//!
//! # Architecture
//!
//! - [`core`]: the sans-IO media pipeline (RTP parsing, jitter buffering,
//!   decoding, resampling, mixing, encoding) and `core::call::CallMedia`,
//!   one call's media as a state machine the daemon's workers and
//!   `recengine pcap` drive alike. Pure functions of bytes and a clock
//!   value; see its drive contract.
//! - [`capture`]: reading pcap/pcapng files and finding RTP streams in them,
//!   for the offline `recengine pcap` command, which runs the same core code
//!   the daemon runs with capture timestamps as the clock.
//! - [`config`]: the `engine.toml` schema, its embedded defaults and
//!   validation that names every bad key with its line.

pub mod api;
pub mod capture;
pub mod catalog;
pub mod config;
pub mod core;
pub mod crypto;
pub mod ctl;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod events;
pub mod http_client;
pub mod ids;
pub mod io;
pub mod loadgen;
pub mod offline;
pub mod recording;
pub mod storage_path;
pub mod testkit;
pub mod timefmt;

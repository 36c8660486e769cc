//! The sans-IO media core: bytes and a clock value in, bytes and events out.
//!
//! Nothing in here opens a socket or a file, reads the wall clock, spawns a
//! thread or sleeps. Time is always a `now: Duration` argument, measured from
//! an epoch the caller chooses (the daemon's start, or a capture's first
//! packet), so every behaviour can be driven by a virtual clock in tests and
//! by capture timestamps in `recengine pcap`.
//!
//! # Drive contract
//!
//! Per leg, a [`leg::LegReceiver`]:
//! 1. [`push`](leg::LegReceiver::push) each datagram as it arrives, with its
//!    arrival time;
//! 2. [`pull`](leg::LegReceiver::pull) on every tick (the daemon ticks every
//!    20 ms) with the current time: audio due by `now − playout_delay` is
//!    decoded into the sink, and silence fills time nobody sent audio for;
//! 3. [`finish`](leg::LegReceiver::finish) once at the end to release the
//!    rest without waiting.
//!
//! A whole call — its legs, tracks and recordings — is a
//! [`call::CallMedia`], with its own drive contract; the daemon and
//! `recengine pcap` drive calls only through it.

pub mod call;
pub mod decode;
pub mod encode;
pub mod format;
pub mod jitter;
pub mod leg;
pub mod mixer;
pub mod notice;
pub mod opus;
pub mod recorder;
pub mod repair;
pub mod resample;
pub mod rtp;
pub mod testkit;
pub mod time;
pub mod track;

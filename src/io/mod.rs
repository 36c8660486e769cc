//! The thin shells around the core that own files, sockets, threads and the
//! clock.

pub mod clock;
pub mod legs;
pub mod ports;
pub mod recovery;
pub mod sink;
pub mod udp;
pub mod worker;
pub mod writer;

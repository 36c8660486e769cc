//! The thin shells around the core that own files (and, later, sockets,
//! threads and the clock).

pub mod sink;

//! Running blocking client code (the PostgreSQL client, the object-store
//! client's `block_on`) from any thread: both drive their IO on a tokio
//! runtime of their own, which cannot start on a thread that is already
//! driving async tasks. From inside a runtime the work goes to a
//! short-lived thread of its own; elsewhere (the blocking pool, plain
//! threads) it runs where it is.

/// Runs `f` where it may block on a runtime of its own.
pub fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

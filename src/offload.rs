//! Running blocking client code (the PostgreSQL client, the object-store
//! client's `block_on`) from any thread. Both drive their IO on a tokio
//! runtime of their own, which cannot start on a thread that is already
//! driving async tasks. Work the daemon puts on tokio's blocking pool goes
//! through [`spawn_blocking`], which marks the thread as one that may
//! block; [`off_async`] runs there directly, and anywhere else inside a
//! runtime moves the work to a short-lived thread of its own.

use std::cell::Cell;

thread_local! {
    static MAY_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// `tokio::task::spawn_blocking`, with the thread marked as one that may
/// block while `f` runs.
pub fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(move || {
        let before = MAY_BLOCK.replace(true);
        let out = f();
        MAY_BLOCK.set(before);
        out
    })
}

/// Runs `f` where it may block on a runtime of its own.
pub fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if MAY_BLOCK.get() || tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_here() -> std::thread::ThreadId {
        off_async(|| std::thread::current().id())
    }

    #[test]
    fn blocking_work_runs_in_place_except_on_an_async_thread() {
        let here = std::thread::current().id();
        assert_eq!(blocks_here(), here, "a plain thread may block");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let here = std::thread::current().id();
            assert_ne!(blocks_here(), here, "an async thread must not");
            let (pool, ran) = spawn_blocking(|| (std::thread::current().id(), blocks_here()))
                .await
                .unwrap();
            assert_eq!(pool, ran, "a marked blocking-pool thread may");
        });
    }
}

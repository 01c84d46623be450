//! `Access::Inline`: engine work running on an async worker that cannot be retried
//! elsewhere once it is under way (a script that has started, and may have written). Where
//! such work must block (a cold read, making room in a full shard), the thread first leaves
//! its async worker, so the worker's other clients are served by another thread meanwhile,
//! and then blocks as `MayBlock` work does. How to leave is the server's business (tokio's
//! `block_in_place`), installed once with [`set_leave_async_worker`]; the engine stays free of
//! async code. This file owns that rule and the per-thread note that the thread has left.

use std::cell::Cell;
use std::sync::OnceLock;

use super::api::{Access, EngineError, EngineResult};

static LEAVE_ASYNC_WORKER: OnceLock<fn()> = OnceLock::new();

thread_local! {
    /// This thread has left its async worker since its inline work began.
    static LEFT_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Installs how a thread leaves its async worker (once per process; later calls are
/// ignored). Without it, inline work simply blocks where it stands.
pub fn set_leave_async_worker(leave: fn()) {
    let _ = LEAVE_ASYNC_WORKER.set(leave);
}

/// Inline work begins on this thread: it has not left its worker yet.
pub(super) fn start_inline() {
    LEFT_WORKER.set(false);
}

/// Leaves the async worker before inline work blocks, or runs long (a script past its
/// inline time): at most once per piece of inline work.
pub fn leave_async_worker() {
    if LEFT_WORKER.replace(true) {
        return;
    }
    if let Some(leave) = LEAVE_ASYNC_WORKER.get() {
        leave();
    }
}

impl Access {
    /// Before a call blocks (disk I/O, a long wait): `HotOnly` refuses with `WouldBlock`,
    /// having changed nothing, so the caller retries on a blocking thread; `Inline` leaves
    /// the async worker first; `MayBlock` goes ahead.
    pub fn prepare_to_block(self) -> EngineResult<()> {
        match self {
            Access::HotOnly => Err(EngineError::WouldBlock),
            Access::Inline => {
                leave_async_worker();
                Ok(())
            }
            Access::MayBlock => Ok(()),
        }
    }
}

//! The engine's background threads: the demoter (woken by the hot tier near its limit),
//! the active expirer, the evictor (keeping the cold tier within `maxdisk`), and the
//! checkpointer (with the WAL on). They stop and are joined when
//! the [`BackgroundTasks`] handle is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::api::EngineError;
use super::cold::ColdError;
use super::disk_health::{Backoff, MAX_RETRY_BACKOFF};
use super::durability::CheckpointReason;
use super::Engine;

impl Engine {
    /// Starts the demoter and the active expirer; they stop when the handle is dropped.
    pub fn start_background_tasks(self: &Arc<Self>) -> BackgroundTasks {
        let stop = Arc::new(AtomicBool::new(false));
        let demoter = {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hc-demoter".into())
                .spawn(move || engine.demoter_loop(&stop))
                .expect("spawn demoter thread")
        };
        let expirer = {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hc-expirer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // When off, expired keys go only when a command reads them.
                        if engine.active_expiry.load(Ordering::Relaxed) {
                            if let Err(err) = engine.run_active_expiry_cycle() {
                                // A failing cold tier is logged once, by its health.
                                if !engine.cold.health().is_failing() {
                                    tracing::warn!(%err, "active expiry cycle failed");
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .expect("spawn expirer thread")
        };
        let evictor = {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hc-evictor".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match engine.enforce_disk_budget() {
                            Ok(true) => continue,
                            Ok(false) => {}
                            // RocksDB is catching up (a flush or an L0 compaction): the
                            // evictor's deletes are what it catches up for, so try again
                            // soon rather than at the next 100 ms tick.
                            Err(EngineError::Cold(ColdError::Stalled)) => {
                                std::thread::sleep(Duration::from_millis(5));
                                continue;
                            }
                            Err(err) => tracing::warn!(%err, "disk budget pass failed"),
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .expect("spawn evictor thread")
        };
        let mut threads = vec![demoter, expirer, evictor];
        if self.logging() {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name("hc-checkpointer".into())
                    .spawn(move || engine.checkpointer_loop(&stop))
                    .expect("spawn checkpointer thread"),
            );
        }
        BackgroundTasks {
            stop,
            engine: Arc::clone(self),
            threads,
        }
    }

    /// Keeps shards within budget. While cold writes fail it tries again after a pause
    /// that doubles up to `MAX_RETRY_BACKOFF`, so it resumes by itself once the disk does
    /// (the cold tier's health logs the failure once, and its end).
    pub(super) fn demoter_loop(&self, stop: &AtomicBool) {
        let mut backoff = Backoff::new(MAX_RETRY_BACKOFF);
        while !stop.load(Ordering::Relaxed) {
            self.hot.wait_for_demoter_wakeup(Duration::from_millis(100));
            match self.demote_over_budget_shards() {
                Ok(()) => backoff.reset(),
                Err(err) => {
                    if !self.cold.health().is_failing() {
                        tracing::debug!(%err, "demotion failed; entries stay in the hot tier");
                    }
                    std::thread::sleep(backoff.next_wait());
                }
            }
        }
    }

    /// Runs periodic checkpoints (by time and by WAL size) while the WAL is on.
    pub(super) fn checkpointer_loop(&self, stop: &AtomicBool) {
        let mut last_run = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if self.checkpoint_due(last_run) {
                // A failure is logged by `checkpoint`; the next interval tries again.
                let _ = self.checkpoint(CheckpointReason::Periodic);
                last_run = std::time::Instant::now();
            }
        }
    }
}

/// Stops and joins the engine's background threads when dropped.
pub struct BackgroundTasks {
    stop: Arc<AtomicBool>,
    engine: Arc<Engine>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.engine.hot.wake_demoter();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

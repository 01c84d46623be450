//! Cold GETs batched across clients. A GET whose key missed the hot tier is queued here
//! instead of going to a blocking thread on its own; `server.cold_readers` threads each take
//! everything queued, read it with one `Engine::read_cold_batch` (one RocksDB multi_get),
//! and hand each key's answer (`Engine::answer_cold_batch`) back to its connection as soon as
//! it is made. Under load a batch holds the reads of many clients and a reader wakes once per
//! batch, not once per read.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::commands::dispatch::ColdGetAnswer as Answer;
use crate::engine::Engine;

/// Most keys one batch reads: enough to amortise the multi_get, few enough that the first
/// client in the batch does not wait long for the last.
const MAX_BATCH: usize = 128;

struct Request {
    db: u16,
    key: Bytes,
    reply: oneshot::Sender<Answer>,
}

pub struct ColdReads {
    /// None when there are no readers (`cold_readers: 0`) or they have been stopped.
    queue: Mutex<Option<Sender<Request>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl ColdReads {
    /// Starts `threads` readers over `engine`; with 0 (or if no thread can be started)
    /// `get` always declines and GETs go to the blocking pool as other commands do.
    pub fn start(engine: &Arc<Engine>, threads: usize) -> ColdReads {
        let (sender, receiver) = mpsc::channel::<Request>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut readers = Vec::with_capacity(threads);
        for index in 0..threads {
            let (engine, receiver) = (Arc::clone(engine), Arc::clone(&receiver));
            match std::thread::Builder::new()
                .name(format!("hc-cold-reader-{index}"))
                .spawn(move || read_batches(&engine, &receiver))
            {
                Ok(handle) => readers.push(handle),
                Err(err) => tracing::warn!(%err, "cannot start a cold reader thread"),
            }
        }
        ColdReads {
            queue: Mutex::new((!readers.is_empty()).then_some(sender)),
            readers: Mutex::new(readers),
        }
    }

    /// GET `key` in `db` through the next batch. `None` when the readers are not running
    /// (stopped, or one panicked on this batch): the caller runs the GET itself.
    pub async fn get(&self, db: u16, key: Bytes) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        {
            let queue = self.queue.lock();
            queue.as_ref()?.send(Request { db, key, reply }).ok()?;
        }
        answer.await.ok()
    }

    /// Stops accepting reads and waits for the readers to finish the ones queued.
    pub fn stop(&self) {
        drop(self.queue.lock().take());
        for reader in self.readers.lock().drain(..) {
            if reader.join().is_err() {
                tracing::error!("a cold reader thread panicked");
            }
        }
    }
}

impl Drop for ColdReads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One reader: waits for a request, takes it and everything queued behind it (up to
/// MAX_BATCH), answers them all, repeats until the queue is closed. Readers take turns at
/// the queue, so a second reader collects the next batch while the first reads.
fn read_batches(engine: &Engine, receiver: &Mutex<Receiver<Request>>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let receiver = receiver.lock();
            match receiver.recv() {
                Ok(request) => batch.push(request),
                Err(_) => return,
            }
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        }
        let (keys, mut replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|request| ((request.db, request.key), Some(request.reply)))
            .unzip();
        // Each answer leaves as soon as it is made. A panic answers nobody left in this
        // batch (their connections then run the GET on the blocking pool, which reports it)
        // and leaves this reader serving the next one.
        let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let started = Instant::now();
            let read = engine.read_cold_batch(keys);
            engine.answer_cold_batch(read, |index, answer| {
                if let Some(reply) = replies[index].take() {
                    // A client that went away no longer waits for its answer.
                    let _ = reply.send((answer, started.elapsed()));
                }
            });
        }));
        if answered.is_err() {
            tracing::error!(keys = replies.len(), "a cold read batch panicked");
        }
    }
}

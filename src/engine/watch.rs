//! WATCH bookkeeping: which clients watch which keys, so that every change to a watched key
//! (write, delete, expiry, flush) marks those clients' transactions as doomed (I7).
//! When nobody watches anything, `touch` costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Set when a key the owner watches changes; EXEC then aborts.
pub type WatchFlag = Arc<AtomicBool>;

#[derive(Default)]
pub struct WatchRegistry {
    /// Number of (key, client) registrations, so `touch` can skip the lock when zero.
    registrations: AtomicUsize,
    watchers: Mutex<HashMap<Vec<u8>, Vec<WatchFlag>>>,
}

impl WatchRegistry {
    pub fn watch(&self, encoded: Vec<u8>, flag: &WatchFlag) {
        let mut watchers = self.watchers.lock();
        let flags = watchers.entry(encoded).or_default();
        if !flags.iter().any(|existing| Arc::ptr_eq(existing, flag)) {
            flags.push(Arc::clone(flag));
            self.registrations.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn unwatch(&self, encoded: &[u8], flag: &WatchFlag) {
        let mut watchers = self.watchers.lock();
        if let Some(flags) = watchers.get_mut(encoded) {
            let before = flags.len();
            flags.retain(|existing| !Arc::ptr_eq(existing, flag));
            self.registrations
                .fetch_sub(before - flags.len(), Ordering::Relaxed);
            if flags.is_empty() {
                watchers.remove(encoded);
            }
        }
    }

    /// A key changed.
    pub fn touch(&self, encoded: &[u8]) {
        if self.registrations.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(flags) = self.watchers.lock().get(encoded) {
            for flag in flags {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Every key with this prefix changed (FLUSHDB / FLUSHALL).
    pub fn touch_prefix_range(&self, from: &[u8], to: &[u8]) {
        if self.registrations.load(Ordering::Relaxed) == 0 {
            return;
        }
        for (key, flags) in self.watchers.lock().iter() {
            if key.as_slice() >= from && key.as_slice() < to {
                for flag in flags {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_marks_only_watchers_of_that_key_and_unwatch_stops_it() {
        let registry = WatchRegistry::default();
        let a: WatchFlag = Arc::default();
        let b: WatchFlag = Arc::default();
        registry.watch(b"k1".to_vec(), &a);
        registry.watch(b"k1".to_vec(), &a);
        registry.watch(b"k2".to_vec(), &b);
        registry.touch(b"k1");
        assert!(a.load(Ordering::Relaxed));
        assert!(!b.load(Ordering::Relaxed));
        registry.unwatch(b"k2", &b);
        registry.touch(b"k2");
        assert!(!b.load(Ordering::Relaxed));
        registry.touch_prefix_range(b"k", b"l");
        registry.unwatch(b"k1", &a);
        assert_eq!(registry.registrations.load(Ordering::Relaxed), 0);
    }
}

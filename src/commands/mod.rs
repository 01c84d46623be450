//! Commands: the table (`table`), the generic checks every command passes (`dispatch`),
//! argument helpers (`args`), and one file per family. A handler parses its arguments,
//! calls the engine through a [`Store`], and returns a [`Reply`]; it never does I/O itself.

pub mod acl;
pub mod args;
pub mod clients;
pub mod dispatch;
pub mod error;
pub mod state;
pub mod table;

mod collections;
mod connection;
mod hash;
mod keys;
pub mod replication;
pub mod scripting;
mod server;
mod set;
mod string;
mod transaction;

use bytes::Bytes;

use crate::engine::types::{AppliedCounts, ElementOp, Value, ValueType};
use crate::engine::{
    Access, Engine, EngineError, EngineResult, ExpireCondition, KeyInfo, KeyTtl, RenameOutcome,
    ScanPage, SetOptions, SetOutcome, Txn,
};
use crate::protocol::Reply;
pub use clients::{ClientHandle, ClientRegistry, ClientState, ReplyMode};
pub use dispatch::execute;
pub use error::{error_reply, CommandError, CommandResult, ErrorCode};
pub use state::{Shared, ShutdownRequest};

/// Every family's commands; the table is built from these.
pub(crate) const FAMILIES: &[&[table::CommandSpec]] = &[
    string::COMMANDS,
    hash::COMMANDS,
    set::COMMANDS,
    keys::COMMANDS,
    server::COMMANDS,
    connection::COMMANDS,
    transaction::COMMANDS,
    acl::command::COMMANDS,
    scripting::command::COMMANDS,
    scripting::function_command::COMMANDS,
    replication::command::COMMANDS,
];

/// Redis's `addReplyHelp`: a usage line, the subcommand lines, and HELP itself.
pub(crate) fn help_reply(command: &str, lines: &[&str]) -> Reply {
    let mut reply = vec![Reply::Simple(format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    reply.extend(lines.iter().map(|line| Reply::Simple((*line).to_string())));
    reply.push(Reply::Simple("HELP".into()));
    reply.push(Reply::Simple("    Prints this help.".into()));
    Reply::Array(reply)
}

/// What a handler works with.
pub struct Ctx<'a, 'e> {
    pub shared: &'a Shared,
    pub client: &'a mut ClientState,
    pub store: &'a mut Store<'e>,
}

impl Ctx<'_, '_> {
    pub fn db(&self) -> u16 {
        self.client.db
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Before blocking work (a synced disk write, a walk over every key): on the async
    /// worker's first try it is `WouldBlock`, so the dispatcher retries the command on a
    /// blocking thread; a script running inline leaves its worker first.
    pub fn off_async_workers(&self) -> Result<(), CommandError> {
        Ok(self.store.access().prepare_to_block()?)
    }

    /// Counts a key lookup in INFO's keyspace_hits / keyspace_misses.
    pub fn count_lookup(&self, hit: bool) {
        self.shared.stats.keyspace_lookup(hit);
    }

    /// Records a security event made by this client in the audit log.
    pub fn audit(&self, event: &str, detail: serde_json::Value) {
        let handle = &self.client.handle;
        self.shared
            .audit
            .record(event, Some((handle.id, handle.addr)), detail);
    }
}

/// How a command reaches the engine: directly (one call = one atomic single-key operation)
/// or through a transaction that already holds the shards of every key it may touch
/// (multi-key commands and EXEC).
pub enum Store<'e> {
    Direct {
        engine: &'e Engine,
        access: Access,
        /// The answer a cold-read batch already has for the one GET this store runs
        /// (`Engine::answer_cold_batch`); taken by that GET instead of reading again.
        batched_get: Option<EngineResult<Option<Bytes>>>,
    },
    Txn(Txn<'e>),
}

impl Store<'_> {
    pub fn access(&self) -> Access {
        match self {
            Store::Direct { access, .. } => *access,
            Store::Txn(txn) => txn.access(),
        }
    }

    pub fn get(&mut self, db: u16, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        match self {
            Store::Direct {
                engine,
                access,
                batched_get,
            } => match batched_get.take() {
                Some(answer) => answer,
                None => engine.get(*access, db, key),
            },
            Store::Txn(txn) => txn.get(db, key),
        }
    }

    pub fn inspect(&mut self, db: u16, key: &[u8]) -> Result<Option<KeyInfo>, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.inspect(*access, db, key),
            Store::Txn(txn) => txn.inspect(db, key),
        }
    }

    pub fn exists(&mut self, db: u16, key: &[u8]) -> Result<bool, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.exists(*access, db, key),
            Store::Txn(txn) => txn.exists(db, key),
        }
    }

    pub fn ttl(&mut self, db: u16, key: &[u8]) -> Result<KeyTtl, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.ttl(*access, db, key),
            Store::Txn(txn) => txn.ttl(db, key),
        }
    }

    pub fn set(
        &mut self,
        db: u16,
        key: &[u8],
        value: Bytes,
        options: SetOptions,
    ) -> Result<SetOutcome, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.set(*access, db, key, value, options),
            Store::Txn(txn) => txn.set(db, key, value, options),
        }
    }

    pub fn delete(&mut self, db: u16, key: &[u8]) -> Result<bool, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.delete(*access, db, key),
            Store::Txn(txn) => txn.delete(db, key),
        }
    }

    pub fn expire_at(
        &mut self,
        db: u16,
        key: &[u8],
        at: u64,
        condition: ExpireCondition,
    ) -> Result<bool, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => {
                engine.expire_at(*access, db, key, at, condition)
            }
            Store::Txn(txn) => txn.expire_at(db, key, at, condition),
        }
    }

    pub fn persist(&mut self, db: u16, key: &[u8]) -> Result<bool, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.persist(*access, db, key),
            Store::Txn(txn) => txn.persist(db, key),
        }
    }

    pub fn update<T>(
        &mut self,
        db: u16,
        key: &[u8],
        update: impl FnOnce(Option<Bytes>) -> Result<(Option<Bytes>, T), CommandError>,
    ) -> Result<T, CommandError> {
        match self {
            Store::Direct { engine, access, .. } => engine.update(*access, db, key, update),
            Store::Txn(txn) => txn.update(db, key, update),
        }
    }

    /// See [`Txn::read_value`].
    pub fn read_value<T>(
        &mut self,
        db: u16,
        key: &[u8],
        read: impl FnOnce(Option<&Value>) -> T,
    ) -> Result<T, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.read_value(*access, db, key, read),
            Store::Txn(txn) => txn.read_value(db, key, read),
        }
    }

    /// See [`Txn::update_elements`].
    pub fn update_elements<T>(
        &mut self,
        db: u16,
        key: &[u8],
        value_type: ValueType,
        plan: impl FnOnce(Option<&Value>) -> Result<(Vec<ElementOp>, T), CommandError>,
    ) -> Result<(T, AppliedCounts), CommandError> {
        match self {
            Store::Direct { engine, access, .. } => {
                engine.update_elements(*access, db, key, value_type, plan)
            }
            Store::Txn(txn) => txn.update_elements(db, key, value_type, plan),
        }
    }

    /// Runs `op` inside a transaction holding the shards of `keys`: the current one, or a
    /// fresh one when called directly (which needs `MayBlock`).
    fn with_txn<T>(
        &mut self,
        keys: &[&[u8]],
        op: impl FnOnce(&mut Txn<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self {
            Store::Direct { access, .. } if *access == Access::HotOnly => {
                Err(EngineError::WouldBlock)
            }
            Store::Direct { engine, .. } => op(&mut engine.transaction_for_keys(keys)?),
            Store::Txn(txn) => op(txn),
        }
    }

    /// Runs `op` with every shard held.
    fn with_all_shards<T>(
        &mut self,
        op: impl FnOnce(&mut Txn<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self {
            Store::Direct { access, .. } if *access == Access::HotOnly => {
                Err(EngineError::WouldBlock)
            }
            Store::Direct { engine, .. } => op(&mut engine.transaction_all()?),
            Store::Txn(txn) => op(txn),
        }
    }

    pub fn rename(
        &mut self,
        db: u16,
        source: &[u8],
        destination: &[u8],
        only_if_absent: bool,
    ) -> Result<RenameOutcome, EngineError> {
        self.with_txn(&[source, destination], |txn| {
            txn.rename(db, source, destination, only_if_absent)
        })
    }

    pub fn copy(
        &mut self,
        db: u16,
        source: &[u8],
        dst_db: u16,
        destination: &[u8],
        replace: bool,
    ) -> Result<bool, EngineError> {
        self.with_txn(&[source, destination], |txn| {
            txn.copy(db, source, dst_db, destination, replace)
        })
    }

    pub fn move_key(&mut self, db: u16, key: &[u8], dst_db: u16) -> Result<bool, EngineError> {
        self.with_txn(&[key], |txn| txn.move_key(db, key, dst_db))
    }

    /// Runs several single-key operations atomically (MSET, MSETNX, DEL k1 k2, ...).
    pub fn atomically<T>(
        &mut self,
        keys: &[&[u8]],
        op: impl FnOnce(&mut Txn<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.with_txn(keys, op)
    }

    pub fn flushdb(&mut self, db: u16) -> Result<(), EngineError> {
        self.with_all_shards(|txn| txn.flushdb(db))
    }

    pub fn flushall(&mut self) -> Result<(), EngineError> {
        self.with_all_shards(|txn| txn.flushall())
    }

    pub fn dbsize(&self, db: u16) -> Result<u64, EngineError> {
        match self {
            Store::Direct { engine, .. } => engine.dbsize(db),
            Store::Txn(txn) => txn.dbsize(db),
        }
    }

    pub fn scan(
        &mut self,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> Result<ScanPage, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => {
                engine.scan(*access, db, cursor, pattern, count)
            }
            Store::Txn(txn) => txn.scan(db, cursor, pattern, count),
        }
    }

    /// KEYS: every live key matching `pattern`.
    pub fn keys(&mut self, db: u16, pattern: &[u8]) -> Result<Vec<Bytes>, EngineError> {
        match self {
            Store::Direct { engine, access, .. } => engine.keys(*access, db, pattern),
            Store::Txn(txn) => crate::engine::scan_to_end(|cursor| {
                txn.scan(db, cursor, Some(pattern), crate::engine::KEYS_SCAN_COUNT)
            }),
        }
    }

    /// RANDOMKEY: some live key, searched from a random slot.
    pub fn random_key(&mut self, db: u16) -> Result<Option<Bytes>, EngineError> {
        let slots = u64::from(crate::engine::slot::SLOT_COUNT);
        let start = rand::random_range(0..slots);
        let mut cursor = start;
        let mut wrapped = false;
        loop {
            let page = self.scan(db, cursor, None, 1)?;
            if !page.keys.is_empty() {
                let pick = rand::random_range(0..page.keys.len());
                return Ok(page.keys.into_iter().nth(pick));
            }
            if page.cursor == 0 {
                if wrapped || start == 0 {
                    return Ok(None);
                }
                wrapped = true;
            }
            cursor = page.cursor;
            if wrapped && cursor >= start {
                return Ok(None);
            }
        }
    }
}

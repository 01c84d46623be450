//! Offline operations on a data directory: the library behind `hypercache-tool`
//! (CONVENTIONS 9: the CLI is a thin wrapper). Every operation but a forced `check` takes the
//! directory's lock, so none can run beside a live server, and every one that opens the engine
//! goes through the server's own recovery and ends with its clean-shutdown checkpoint.
//!
//! Long operations call `progress(done)` as they go; the CLI turns that into a progress bar.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use serde::Serialize;

use crate::commands::{self, ClientState, Shared};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::engine::cold::{self, ColdRead, RocksCold};
use crate::engine::entry::{decode_cold_value, is_expired, ColdValue};
use crate::engine::filter::hash_key;
use crate::engine::keys;
use crate::engine::types::Value;
use crate::engine::{self, wal, Access, Engine, KeyTtl};
use crate::protocol::{parse_command, ParserLimits, Reply};

/// Where progress goes: called with the number of items (records, keys, bytes) done so far.
pub type Progress<'a> = &'a dyn Fn(u64);

/// Unix milliseconds now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The configuration an operation opens the engine with: `config` (the server's, from
/// `--config`), pointed at `dir`, with the WAL turned on whenever the directory has one. Opening
/// a crashed WAL directory as a pure cache would discard its cold tier; replaying the log
/// instead is never wrong.
pub fn effective_config(dir: &Path, config: &Config) -> Config {
    let mut config = config.clone();
    config.storage.dir = dir.to_path_buf();
    let has_wal = std::fs::read_dir(dir.join("wal"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if has_wal {
        config.persistence.wal = true;
    }
    config
}

// ----- check --------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct WalSummary {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub first_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub dir: PathBuf,
    /// A live server held the directory (checked read-only with `--force`).
    pub live_server: bool,
    pub wal: WalSummary,
    pub checkpoint_lsn: Option<u64>,
    pub checkpoint_unix_ms: Option<u64>,
    /// Live keys per database in the cold tier (database -> keys).
    pub cold_keys: BTreeMap<u16, u64>,
    /// Keys whose value has expired (or that compaction turned into markers).
    pub cold_expired_keys: u64,
    pub cold_value_bytes: u64,
    pub cold_disk_bytes: u64,
    /// Keys the saved filter was checked against, if a clean shutdown saved one.
    pub filter_checked_keys: Option<u64>,
    /// Every problem found; empty means the directory is sound.
    pub problems: Vec<String>,
}

/// Verifies a data directory: every WAL record's CRC and LSN order, the checkpoint meta
/// record, every cold value (RocksDB verifies block checksums as it reads) and, when a clean
/// shutdown saved the filter, that it covers every cold key. Refuses a directory a live
/// server holds unless `force` (then RocksDB is opened read-only).
pub fn check(dir: &Path, force: bool, progress: Progress<'_>) -> Result<CheckReport, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let live_server = DataDir::is_in_use(dir);
    if live_server && !force {
        return Err(format!(
            "{} is in use by a running server; pass --force to check it read-only",
            dir.display()
        ));
    }
    let _lock = if live_server {
        None
    } else {
        Some(DataDir::lock(dir)?)
    };
    let mut report = CheckReport {
        dir: dir.to_path_buf(),
        live_server,
        ..CheckReport::default()
    };
    let wal_dir = dir.join("wal");
    if wal_dir.exists() {
        let wal = wal::check(&wal_dir).map_err(|err| err.to_string())?;
        report.wal = WalSummary {
            segments: wal.segments,
            records: wal.records,
            bytes: wal.bytes,
            first_lsn: wal.first_lsn,
            last_lsn: wal.last_lsn,
        };
        if let Some((path, offset)) = &wal.torn_tail {
            report.problems.push(format!(
                "WAL {} ends in a torn record at byte {offset} (the server truncates it at start; `hypercache-tool recover` does it now)",
                path.display()
            ));
        }
        for (path, offset, reason) in &wal.problems {
            report.problems.push(format!(
                "WAL {} at byte {offset}: {reason} (`hypercache-tool recover --salvage` drops it)",
                path.display()
            ));
        }
    }
    let cold_dir = dir.join("cold");
    if !cold_dir.join("CURRENT").exists() {
        return Ok(report);
    }
    let cold = RocksCold::open_read_only(&cold_dir).map_err(|err| err.to_string())?;
    report.cold_disk_bytes = cold.disk_bytes();
    match engine::read_checkpoint_record(&cold) {
        Ok(Some(record)) => {
            report.checkpoint_lsn = Some(record.lsn);
            report.checkpoint_unix_ms = Some(record.unix_ms);
            if let Some(last) = report.wal.last_lsn {
                if record.wal_on && last < record.lsn {
                    report.problems.push(format!(
                        "the WAL ends at LSN {last}, before the checkpoint at LSN {}: segments are missing",
                        record.lsn
                    ));
                }
            }
        }
        Ok(None) => {}
        Err(err) => report.problems.push(err.to_string()),
    }
    let saved_filter = match engine::read_saved_state(&cold) {
        Ok(state) => state.map(|(_, _, filter)| filter),
        Err(err) => {
            report.problems.push(err.to_string());
            None
        }
    };
    let now = now_ms();
    let mut filter_missing = 0u64;
    let mut seen = 0u64;
    for_each_cold_entry(&cold, |key, value| {
        seen += 1;
        if seen.is_multiple_of(10_000) {
            progress(seen);
        }
        if key.len() < keys::KEY_PREFIX_LEN {
            report
                .problems
                .push(format!("cold key {key:?} is shorter than its prefix"));
            return;
        }
        report.cold_value_bytes += value.len() as u64;
        match decode_cold_value(value) {
            Ok(ColdValue::Live { expire_at, .. }) if !is_expired(expire_at, now) => {
                *report.cold_keys.entry(keys::db_of(key)).or_default() += 1;
            }
            Ok(_) => report.cold_expired_keys += 1,
            Err(err) => report.problems.push(format!(
                "cold value of {:?} (db {}): {err}",
                String::from_utf8_lossy(keys::user_key(key)),
                keys::db_of(key)
            )),
        }
        if let Some(filter) = &saved_filter {
            if !filter.may_contain(hash_key(key)) {
                filter_missing += 1;
            }
        }
    })
    .map_err(|err| format!("reading the cold tier failed: {err}"))?;
    if saved_filter.is_some() {
        report.filter_checked_keys = Some(seen);
        if filter_missing > 0 {
            report.problems.push(format!(
                "the saved filter misses {filter_missing} of {seen} cold keys (the server rebuilds it after a crash; a clean start would trust it)"
            ));
        }
    }
    Ok(report)
}

/// Calls `visit` with every data entry of the user databases (all keys below the meta
/// records), in key order.
fn for_each_cold_entry(
    cold: &dyn ColdRead,
    mut visit: impl FnMut(&[u8], &[u8]),
) -> Result<(), cold::ColdError> {
    let end = keys::META_DB.to_be_bytes();
    cold::for_each_data_page(cold, &end, |page| {
        for (key, value) in page {
            visit(key, value);
        }
    })
}

// ----- recover ------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct RecoverReport {
    /// Every byte range dropped from the WAL: file, offset, why.
    pub dropped: Vec<String>,
    /// With `--to-checkpoint`: the checkpoint restored and where the replaced data went.
    pub restored: Option<PathBuf>,
    pub moved_aside: Vec<PathBuf>,
}

/// Repairs the WAL: truncates a torn tail; with `salvage`, also drops damaged records (each
/// reported; their LSNs become holes so numbering stays continuous). Without `salvage`, damage
/// other than a torn tail is refused, changing nothing.
pub fn recover(dir: &Path, salvage: bool) -> Result<RecoverReport, String> {
    let _lock = DataDir::lock(dir)?;
    let wal_dir = dir.join("wal");
    if !wal_dir.exists() {
        return Ok(RecoverReport::default());
    }
    let dropped = wal::repair(&wal_dir, salvage).map_err(|err| {
        let text = err.to_string();
        if salvage {
            text
        } else {
            format!("{text} (pass --salvage to drop the damaged records)")
        }
    })?;
    Ok(RecoverReport {
        dropped: dropped
            .into_iter()
            .map(|(path, offset, reason)| format!("{} at byte {offset}: {reason}", path.display()))
            .collect(),
        ..RecoverReport::default()
    })
}

// ----- checkpoints --------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CheckpointEntry {
    pub id: String,
    pub path: PathBuf,
    pub lsn: Option<u64>,
    pub unix_ms: Option<u64>,
    pub disk_bytes: u64,
}

/// Runs a checkpoint through the engine and keeps a RocksDB copy of it.
pub fn checkpoint_create(dir: &Path, config: &Config) -> Result<CheckpointEntry, String> {
    let data_dir = DataDir::lock(dir)?;
    let engine = data_dir.open_engine(&effective_config(dir, config))?;
    let path = engine
        .checkpoint_with_copy()
        .map_err(|err| format!("checkpoint failed: {err}"))?;
    data_dir.close_engine(&engine, true)?;
    describe_checkpoint(&path)
}

/// The retained checkpoints, oldest first.
pub fn checkpoint_list(dir: &Path) -> Result<Vec<CheckpointEntry>, String> {
    engine::list_checkpoints(dir)
        .iter()
        .map(|path| describe_checkpoint(path))
        .collect()
}

fn describe_checkpoint(path: &Path) -> Result<CheckpointEntry, String> {
    let cold = RocksCold::open_read_only(path)
        .map_err(|err| format!("cannot open checkpoint {}: {err}", path.display()))?;
    let record = engine::read_checkpoint_record(&cold).map_err(|err| err.to_string())?;
    Ok(CheckpointEntry {
        id: path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        lsn: record.map(|r| r.lsn),
        unix_ms: record.map(|r| r.unix_ms),
        disk_bytes: dir_bytes(path),
    })
}

/// Makes a retained checkpoint the directory's data: the current cold tier and WAL are moved
/// aside (never deleted), the checkpoint's files are linked (or copied) into `cold/`, and the
/// next start opens exactly the checkpoint's state.
pub fn checkpoint_restore(dir: &Path, id: &str) -> Result<RecoverReport, String> {
    let _lock = DataDir::lock(dir)?;
    let source = engine::checkpoints_dir(dir).join(id);
    if !source.join("CURRENT").exists() {
        return Err(format!(
            "no checkpoint {id} in {} (see `hypercache-tool checkpoint list`)",
            engine::checkpoints_dir(dir).display()
        ));
    }
    let stamp = now_ms();
    let mut moved_aside = Vec::new();
    for name in ["cold", "wal"] {
        let current = dir.join(name);
        if current.exists() {
            let aside = dir.join(format!("{name}.before-restore-{stamp}"));
            std::fs::rename(&current, &aside)
                .map_err(|err| format!("cannot move {} aside: {err}", current.display()))?;
            moved_aside.push(aside);
        }
    }
    let target = dir.join("cold");
    std::fs::create_dir_all(&target)
        .map_err(|err| format!("cannot create {}: {err}", target.display()))?;
    for entry in std::fs::read_dir(&source).map_err(|err| err.to_string())? {
        let entry = entry.map_err(|err| err.to_string())?;
        let to = target.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &to).is_err() {
            std::fs::copy(entry.path(), &to)
                .map_err(|err| format!("cannot copy {}: {err}", entry.path().display()))?;
        }
    }
    // The checkpoint is a consistent state: the next start must not treat it as a crash
    // (which, without the WAL, would discard it).
    let marker = dir.join(crate::datadir::RUNNING_MARKER);
    if marker.exists() {
        std::fs::remove_file(&marker).map_err(|err| err.to_string())?;
    }
    Ok(RecoverReport {
        restored: Some(source),
        moved_aside,
        ..RecoverReport::default()
    })
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

// ----- compact ------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CompactReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub expired_keys_removed: u64,
    pub keys: u64,
}

/// Offline compaction: recovery, then every expired key removed (both tiers, expiry index),
/// then a full RocksDB compaction, then the clean-shutdown checkpoint.
pub fn compact(
    dir: &Path,
    config: &Config,
    progress: Progress<'_>,
) -> Result<CompactReport, String> {
    let data_dir = DataDir::lock(dir)?;
    let cold_dir = dir.join("cold");
    let bytes_before = dir_bytes(&cold_dir);
    let engine = data_dir.open_engine(&effective_config(dir, config))?;
    let keys_before: u64 = engine.tier_report().keys_per_db.iter().sum();
    // Expiry cycles walk each database's expiry index from where the last one stopped; two
    // empty cycles in a row mean every index has been walked to its end.
    let mut empty_cycles = 0;
    let mut removed_total = 0u64;
    while empty_cycles < 2 {
        let removed = engine
            .run_active_expiry_cycle()
            .map_err(|err| format!("expiring keys failed: {err}"))?;
        removed_total += removed as u64;
        empty_cycles = if removed == 0 { empty_cycles + 1 } else { 0 };
        progress(removed_total);
    }
    engine
        .compact_cold_tier()
        .map_err(|err| format!("compaction failed: {err}"))?;
    let keys: u64 = engine.tier_report().keys_per_db.iter().sum();
    data_dir.close_engine(&engine, true)?;
    drop(engine);
    Ok(CompactReport {
        bytes_before,
        bytes_after: dir_bytes(&cold_dir),
        expired_keys_removed: keys_before - keys,
        keys,
    })
}

// ----- export -------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub keys: u64,
    /// FUNCTION libraries, exported as FUNCTION LOAD REPLACE before the keys.
    pub libraries: u64,
    pub bytes: u64,
}

/// What to export.
#[derive(Debug, Default, Clone)]
pub struct ExportFilter {
    pub db: Option<u16>,
    pub pattern: Option<Vec<u8>>,
}

/// Writes the live data set (expired keys left out) as RESP commands `redis-cli --pipe`
/// loads: `SELECT db` before each database's keys, then `SET key value` with `PXAT` for keys
/// that expire, HSET / SADD (and PEXPIREAT) for hashes and sets (`write_key`).
pub fn export(
    dir: &Path,
    config: &Config,
    filter: &ExportFilter,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<ExportReport, String> {
    let data_dir = DataDir::lock(dir)?;
    let engine = data_dir.open_engine(&effective_config(dir, config))?;
    let result = export_from(&engine, filter, out, progress);
    data_dir.close_engine(&engine, true)?;
    result
}

fn export_from(
    engine: &Engine,
    filter: &ExportFilter,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<ExportReport, String> {
    let mut report = ExportReport::default();
    let write_err = |err: std::io::Error| format!("writing the export failed: {err}");
    let dbs: Vec<u16> = match filter.db {
        Some(db) if db >= engine.databases() => {
            return Err(format!(
                "database {db} does not exist ({} databases)",
                engine.databases()
            ))
        }
        Some(db) => vec![db],
        None => (0..engine.databases()).collect(),
    };
    let mut buf = Vec::new();
    // FUNCTION libraries first, as commands any Redis 7 accepts (REPLACE: an import over a
    // server that has them already succeeds).
    let libraries = crate::commands::scripting::functions::saved_library_codes(engine)?;
    for code in &libraries {
        write_command(&mut buf, &[b"FUNCTION", b"LOAD", b"REPLACE", code]);
    }
    report.libraries = libraries.len() as u64;
    report.bytes += buf.len() as u64;
    out.write_all(&buf).map_err(write_err)?;
    buf.clear();
    for db in dbs {
        let mut selected = false;
        let mut cursor = 0;
        loop {
            let page = engine
                .scan(
                    Access::MayBlock,
                    db,
                    cursor,
                    filter.pattern.as_deref(),
                    engine::KEYS_SCAN_COUNT,
                )
                .map_err(|err| err.to_string())?;
            for key in &page.keys {
                let Some(value) = engine
                    .read_value(Access::MayBlock, db, key, |value| value.cloned())
                    .map_err(|err| err.to_string())?
                else {
                    continue;
                };
                let ttl = engine
                    .ttl(Access::MayBlock, db, key)
                    .map_err(|err| err.to_string())?;
                if !selected {
                    write_command(&mut buf, &[b"SELECT", db.to_string().as_bytes()]);
                    selected = true;
                }
                write_key(&mut buf, key, &value, ttl);
                report.keys += 1;
                report.bytes += buf.len() as u64;
                out.write_all(&buf).map_err(write_err)?;
                buf.clear();
                if report.keys.is_multiple_of(10_000) {
                    progress(report.keys);
                }
            }
            if page.cursor == 0 {
                break;
            }
            cursor = page.cursor;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(report)
}

/// Elements per HSET / SADD line of an export: long enough to load fast, short enough for
/// any server's query buffer.
const EXPORT_ELEMENTS_PER_COMMAND: usize = 1024;

/// The commands that recreate one key: `SET key value [PXAT at]` for a string; for a hash
/// or a set, HSET / SADD lines of up to `EXPORT_ELEMENTS_PER_COMMAND` elements (and
/// HPEXPIREAT for each field with a deadline), then `PEXPIREAT` when the key expires.
fn write_key(out: &mut Vec<u8>, key: &[u8], value: &Value, ttl: KeyTtl) {
    let expires_at = match ttl {
        KeyTtl::ExpiresAt(at) => Some(at.to_string()),
        _ => None,
    };
    match value {
        Value::String(string) => {
            let bytes = string.to_bytes();
            match &expires_at {
                Some(at) => write_command(out, &[b"SET", key, &bytes, b"PXAT", at.as_bytes()]),
                None => write_command(out, &[b"SET", key, &bytes]),
            }
            return;
        }
        Value::Hash(hash) => {
            let fields: Vec<_> = hash.iter().collect();
            for chunk in fields.chunks(EXPORT_ELEMENTS_PER_COMMAND) {
                let mut args: Vec<&[u8]> = vec![b"HSET", key];
                for (field, value) in chunk {
                    args.extend([&field[..], &value[..]]);
                }
                write_command(out, &args);
            }
            // Field deadlines (Redis 7.4 and Valkey 9 load these; Redis 7.0 refuses them).
            for (field, _) in &fields {
                if let Some(at) = hash.deadline(field) {
                    let at = at.to_string();
                    write_command(
                        out,
                        &[b"HPEXPIREAT", key, at.as_bytes(), b"FIELDS", b"1", field],
                    );
                }
            }
        }
        Value::Set(set) => {
            let members: Vec<_> = set.iter().collect();
            for chunk in members.chunks(EXPORT_ELEMENTS_PER_COMMAND) {
                let mut args: Vec<&[u8]> = vec![b"SADD", key];
                args.extend(chunk.iter().map(|member| &member[..]));
                write_command(out, &args);
            }
        }
    }
    if let Some(at) = expires_at {
        write_command(out, &[b"PEXPIREAT", key, at.as_bytes()]);
    }
}

fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

// ----- import -------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub commands: u64,
    pub errors: u64,
    /// The first few error replies, with the command's position in the stream.
    pub first_errors: Vec<String>,
    pub keys: u64,
}

const IMPORT_ERRORS_KEPT: usize = 10;

/// Runs a RESP command stream (an export, or a Redis AOF in RESP form) against the directory
/// through the server's own command dispatcher: every command Redis clients may send works,
/// MULTI/EXEC included. Command errors are counted and reported, not fatal; a malformed
/// stream is.
pub fn import(
    dir: &Path,
    config: &Config,
    input: &mut dyn Read,
    progress: Progress<'_>,
) -> Result<ImportReport, String> {
    let data_dir = DataDir::lock(dir)?;
    let config = &effective_config(dir, config);
    let engine = Arc::new(data_dir.open_engine(config)?);
    let result = import_into(&engine, config, input, progress);
    data_dir.close_engine(&engine, true)?;
    result
}

fn import_into(
    engine: &Arc<Engine>,
    config: &Config,
    input: &mut dyn Read,
    progress: Progress<'_>,
) -> Result<ImportReport, String> {
    // Import runs as the default user of a server without users or passwords.
    let acl = crate::commands::acl::Acl::from_config(&Default::default())?;
    let shared = Shared::new(Arc::clone(engine), config.clone(), None, 0, acl);
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let handle = shared
        .clients
        .register(local, local, usize::MAX, 0)
        .map_err(|_| "cannot register the import client")?;
    let mut client = ClientState::new(handle, shared.acl.default_user(), true);
    let limits = ParserLimits {
        max_bulk_len: config.limits.proto_max_bulk_len.0 as usize,
        ..ParserLimits::default()
    };
    let mut report = ImportReport::default();
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        loop {
            let args = parse_command(&mut buf, &limits).map_err(|err| {
                format!(
                    "the stream is not valid RESP after command {}: {err}",
                    report.commands
                )
            })?;
            let Some(args) = args else { break };
            report.commands += 1;
            if let Reply::Error(text) = commands::execute(&shared, &mut client, &args) {
                report.errors += 1;
                if report.first_errors.len() < IMPORT_ERRORS_KEPT {
                    report.first_errors.push(format!(
                        "command {} ({}): {text}",
                        report.commands,
                        String::from_utf8_lossy(&args[0])
                    ));
                }
            }
            if report.commands.is_multiple_of(10_000) {
                progress(report.commands);
            }
        }
        let read = input
            .read(&mut chunk)
            .map_err(|err| format!("reading the input failed: {err}"))?;
        if read == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    if !buf.is_empty() {
        return Err(format!(
            "the stream ends inside a command ({} bytes after command {})",
            buf.len(),
            report.commands
        ));
    }
    report.keys = engine.tier_report().keys_per_db.iter().sum();
    Ok(report)
}

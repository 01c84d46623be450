//! The generic checks every command passes, each once, in Redis's order (CONVENTIONS 2):
//! lookup, arity, authentication, ACL permissions, out-of-memory, MISCONF, MULTI queueing. Then the command
//! runs against the engine through a [`Store`]: on the async worker with `Access::HotOnly` first, and on a blocking
//! thread (`MayBlock`, or a transaction holding every key's shard) when it must.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::acl::{self, DenialContext};
use super::table::{self, CommandSpec};
use super::{error_reply, CommandError, CommandResult, Ctx, ErrorCode, Store};
use super::{ClientState, Shared};
use crate::commands::replication::LinkState;
use crate::engine::Access;
use crate::engine::EngineResult;
use crate::protocol::Reply;

/// A GET's answer from a cold-read batch, and how long the batch took to make it (the cold
/// read's share of the command's time, for command stats and the slow log).
pub type ColdGetAnswer = (EngineResult<Option<Bytes>>, Duration);

/// A command found in the table: the spec that runs, and its container for subcommands.
#[derive(Clone, Copy)]
pub struct Resolved {
    pub spec: &'static CommandSpec,
    pub parent: Option<&'static CommandSpec>,
}

impl Resolved {
    /// "get", or "config|get" for a subcommand (the name COMMAND and INFO use).
    pub fn full_name(&self) -> String {
        self.spec.full_name(self.parent)
    }

    fn flags(&self) -> u32 {
        self.spec.flags | self.parent.map_or(0, |parent| parent.flags)
    }

    /// Runs as a transaction over its keys' shards: more than one key, so the command must
    /// be atomic across shards (I7).
    pub fn needs_transaction(&self, args: &[Bytes]) -> bool {
        self.spec.key_count(args.len()) > 1
    }
}

/// What the connection should do with a command.
pub enum Plan {
    /// Answer at once (errors, +QUEUED, MULTI/DISCARD/...).
    Reply(Reply),
    Run(Job),
}

/// How a command that passed the checks runs. [`Job::run`] is the one place that tells the
/// three apart; a connection first offers a job to [`Job::run_without_blocking`] and
/// otherwise hands it to a blocking thread.
#[derive(Clone, Copy)]
pub enum Job {
    /// One command straight against the engine.
    Direct(Resolved),
    /// A multi-key command, inside one transaction over its keys' shards (I7).
    Transaction(Resolved),
    /// EXEC: the queue as one transaction holding every shard its commands touch.
    Exec,
}

impl Job {
    /// Runs on the async worker (`Access::HotOnly`) when that needs no blocking;
    /// `Err(CommandError::WouldBlock)` otherwise, with nothing done and nothing recorded.
    pub fn run_without_blocking(
        self,
        shared: &Shared,
        client: &mut ClientState,
        args: &[Bytes],
    ) -> CommandResult {
        match self {
            Job::Direct(command) => run_direct(shared, client, command, args, Access::HotOnly),
            Job::Transaction(_) | Job::Exec => Err(CommandError::WouldBlock),
        }
    }

    /// Runs where blocking is allowed: a blocking thread, or outside any connection.
    pub fn run(self, shared: &Shared, client: &mut ClientState, args: &[Bytes]) -> Reply {
        let result = match self {
            Job::Direct(command) => run_direct(shared, client, command, args, Access::MayBlock),
            Job::Transaction(command) => run_in_transaction(shared, client, command, args),
            Job::Exec => exec(shared, client),
        };
        result.unwrap_or_else(CommandError::into_reply)
    }

    /// The command, if this is a plain `GET key`: the one command whose cold read can join
    /// a batch of other clients' (`server::cold_reads`).
    pub fn batchable_get(&self, args: &[Bytes]) -> Option<Resolved> {
        match self {
            Job::Direct(command)
                if command.parent.is_none() && command.spec.name == "get" && args.len() == 2 =>
            {
                Some(*command)
            }
            _ => None,
        }
    }
}

/// Runs one command outside a connection (import, scripts, replication apply, tests): the
/// same checks, stats and slow log as a connection's, on the calling thread, which may
/// block.
pub fn execute(shared: &Shared, client: &mut ClientState, args: &[Bytes]) -> Reply {
    match plan(shared, client, args) {
        Plan::Reply(reply) => reply,
        Plan::Run(job) => job.run(shared, client, args),
    }
}

fn unknown_command(args: &[Bytes]) -> CommandError {
    let name = String::from_utf8_lossy(&args[0]);
    let mut text = format!("unknown command '{name}', with args beginning with: ");
    for arg in args.iter().skip(1).take(16) {
        text.push_str(&format!("'{}' ", String::from_utf8_lossy(arg)));
    }
    CommandError::err(text)
}

/// Finds the command and its subcommand; checks arity.
pub fn resolve(args: &[Bytes]) -> Result<Resolved, CommandError> {
    let Some(spec) = table::lookup(&args[0]) else {
        return Err(unknown_command(args));
    };
    let mut resolved = Resolved { spec, parent: None };
    if !spec.subcommands.is_empty() && args.len() >= 2 {
        let Some(sub) = spec.subcommand(&args[1]) else {
            return Err(CommandError::err(format!(
                "unknown subcommand '{}'. Try {} HELP.",
                String::from_utf8_lossy(&args[1]),
                spec.name.to_ascii_uppercase()
            )));
        };
        resolved = Resolved {
            spec: sub,
            parent: Some(spec),
        };
    }
    if !resolved.spec.arity_ok(args.len()) {
        return Err(CommandError::err(format!(
            "wrong number of arguments for '{}' command",
            resolved.full_name()
        )));
    }
    Ok(resolved)
}

/// The generic checks; decides how the command runs.
pub fn plan(shared: &Shared, client: &mut ClientState, args: &[Bytes]) -> Plan {
    shared.stats.command_received();
    match check(shared, client, args) {
        Ok(plan) => plan,
        Err(error) => {
            shared.stats.error_reply();
            Plan::Reply(error.into_reply())
        }
    }
}

/// `plan` before its stats: each generic check, in Redis's order.
fn check(shared: &Shared, client: &mut ClientState, args: &[Bytes]) -> Result<Plan, CommandError> {
    let resolved = resolve(args).inspect_err(|_| {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
    })?;
    let flags = resolved.flags();
    if !client.authenticated && flags & table::NO_AUTH == 0 {
        return Err(CommandError::new(
            ErrorCode::NoAuth,
            "Authentication required.",
        ));
    }
    let context = match client.multi {
        Some(_) => DenialContext::Multi,
        None => DenialContext::TopLevel,
    };
    if let Err(refusal) = acl::check(shared, client, resolved, args, context) {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        if resolved.parent.is_none() && resolved.spec.name == "exec" {
            // Redis answers a refused EXEC as an aborted transaction, saying why.
            client.end_multi();
            unwatch_all(shared, client);
            return Err(CommandError::new(
                ErrorCode::ExecAbort,
                format!(
                    "Transaction discarded because of: {} {}",
                    ErrorCode::NoPerm.prefix(),
                    refusal.message()
                ),
            ));
        }
        return Err(refusal.error());
    }
    if let Some(refusal) = oom_refusal(shared, flags) {
        // Inside MULTI it also dooms the transaction, as in Redis.
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return Err(refusal);
    }
    if let Some(refusal) = misconf_refusal(shared, flags) {
        return Err(refusal);
    }
    if let Some(refusal) = replication_refusal(shared, flags) {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return Err(refusal);
    }
    if client.multi.is_some() {
        let name = resolved.spec.name;
        let controls = resolved.parent.is_none()
            && matches!(
                name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            );
        if !controls {
            if flags & table::NO_MULTI != 0 {
                client.multi_failed = true;
                return Ok(Plan::Reply(
                    CommandError::err("Command not allowed inside a transaction").into_reply(),
                ));
            }
            client.queue(args.to_vec());
            return Ok(Plan::Reply(Reply::Simple("QUEUED".into())));
        }
        if name == "exec" && resolved.parent.is_none() {
            return Ok(Plan::Run(Job::Exec));
        }
    }
    Ok(Plan::Run(if resolved.needs_transaction(args) {
        Job::Transaction(resolved)
    } else {
        Job::Direct(resolved)
    }))
}

/// Runs a command straight against the engine: on the async worker with `HotOnly`, where
/// `WouldBlock` means it must move to a blocking thread, or there with `MayBlock`.
fn run_direct(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
    access: Access,
) -> CommandResult {
    let mut store = Store::Direct {
        engine: &shared.engine,
        access,
        batched_get: None,
    };
    run(shared, client, command, args, &mut store)
}

/// Runs a GET with the answer its cold-read batch already read (stats and reply exactly as
/// any GET, its time including the batch's time to make the answer, so a slow cold read
/// shows in the slow log). `WouldBlock` if the command could not use it.
pub fn run_batched_get(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
    (answer, cold_read_time): ColdGetAnswer,
) -> CommandResult {
    let mut store = Store::Direct {
        engine: &shared.engine,
        access: Access::HotOnly,
        batched_get: Some(answer),
    };
    let started = Instant::now()
        .checked_sub(cold_read_time)
        .unwrap_or_else(Instant::now);
    run_since(shared, client, command, args, &mut store, started)
}

/// Runs a multi-key command inside one transaction over its keys' shards.
fn run_in_transaction(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
) -> CommandResult {
    let keys: Vec<&[u8]> = command
        .spec
        .key_positions(args.len())
        .into_iter()
        .map(|position| &args[position][..])
        .collect();
    let mut store = Store::Txn(shared.engine.transaction_for_keys(&keys)?);
    run(shared, client, command, args, &mut store)
}

/// EXEC: runs the queue as one transaction holding every shard its commands touch.
fn exec(shared: &Shared, client: &mut ClientState) -> CommandResult {
    shared.stats.command_received();
    let failed = client.multi_failed;
    let queue = client.end_multi();
    let watched_changed = client.watch_flag.load(std::sync::atomic::Ordering::Relaxed);
    unwatch_all(shared, client);
    if failed {
        return Ok(error_reply(
            ErrorCode::ExecAbort,
            "Transaction discarded because of previous errors.",
        ));
    }
    if watched_changed {
        return Ok(Reply::NilArray);
    }
    let commands: Vec<Resolved> = queue
        .iter()
        .map(|args| resolve(args).expect("queued commands resolved when queued"))
        .collect();
    let all_shards = commands
        .iter()
        .any(|command| command.flags() & table::ALL_SHARDS != 0);
    let txn = if all_shards {
        shared.engine.transaction_all()
    } else {
        let keys: Vec<&[u8]> = commands
            .iter()
            .zip(&queue)
            .flat_map(|(command, args)| {
                command
                    .spec
                    .key_positions(args.len())
                    .into_iter()
                    .map(move |position| &args[position][..])
            })
            .collect();
        shared.engine.transaction_for_keys(&keys)
    };
    // Busy: the transaction is discarded, as an aborted one is.
    let mut store = Store::Txn(txn?);
    let mut replies = Vec::with_capacity(queue.len());
    for (command, args) in commands.into_iter().zip(&queue) {
        // The users may have changed since the command was queued (Redis checks again).
        if let Err(refusal) = acl::check(shared, client, command, args, DenialContext::Multi) {
            replies.push(refusal.error().into_reply());
            continue;
        }
        // A transaction holds its shards, so nothing in it is ever told to block.
        let reply =
            run(shared, client, command, args, &mut store).unwrap_or_else(CommandError::into_reply);
        replies.push(reply);
    }
    Ok(Reply::Array(replies))
}

/// Runs the handler, then records stats and the slow log. Any error but `WouldBlock`
/// (nothing happened and nothing was recorded) is already a reply.
fn run(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
    store: &mut Store<'_>,
) -> CommandResult {
    run_since(shared, client, command, args, store, Instant::now())
}

/// `run`, timed (command stats, slow log) from `started`.
fn run_since(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
    store: &mut Store<'_>,
    started: Instant,
) -> CommandResult {
    let (name, subcommand) = match command.parent {
        Some(parent) => (parent.name, Some(command.spec.name)),
        None => (command.spec.name, None),
    };
    client.handle.touch(name, subcommand, started);
    // One time for the whole command (and a script's commands), as Redis fixes it.
    let _time = shared.engine.clock().freeze_at(started);
    let result = {
        let mut ctx = Ctx {
            shared,
            client,
            store,
        };
        (command.spec.handler)(&mut ctx, args)
    };
    let reply = match result {
        Err(CommandError::WouldBlock) => return Err(CommandError::WouldBlock),
        Ok(reply) => reply,
        // Behind a running script, Redis's text names the KILL that would stop it.
        Err(
            error @ CommandError::Reply {
                code: ErrorCode::Busy,
                ..
            },
        ) => match shared.scripts.busy_text() {
            Some(text) => CommandError::new(ErrorCode::Busy, text).into_reply(),
            None => error.into_reply(),
        },
        Err(error) => error.into_reply(),
    };
    let elapsed = started.elapsed();
    let failed = matches!(reply, Reply::Error(_));
    if failed {
        shared.stats.error_reply();
    }
    shared
        .stats
        .record_command(name, subcommand, elapsed, failed);
    // Passwords never reach the slow log (Redis redacts the same arguments).
    let logged = acl::without_secrets(command, args);
    shared.slowlog.record(&logged, elapsed, || {
        let handle = &client.handle;
        let name = handle.name.lock().clone().unwrap_or_default();
        (handle.addr.to_string(), name)
    });
    Ok(reply)
}

/// Redis's answer to a command that may grow memory (`denyoom`) while used memory is over
/// maxmemory and nothing can be freed.
fn oom_refusal(shared: &Shared, flags: u32) -> Option<CommandError> {
    if flags & table::DENYOOM == 0 {
        return None;
    }
    let refusal = shared.engine.oom_refusal()?;
    Some(CommandError::new(ErrorCode::Oom, refusal.message()))
}

/// Redis's answer to a write while its AOF (here the WAL) cannot be written.
fn misconf_refusal(shared: &Shared, flags: u32) -> Option<CommandError> {
    if flags & table::WRITE == 0 {
        return None;
    }
    let failure = shared.engine.wal_failure()?;
    Some(CommandError::new(
        ErrorCode::Misconf,
        format!("Errors writing to the AOF file: {failure}"),
    ))
}

/// Redis's refusals that come from replication: writes on a read-only replica, commands
/// while a full sync loads, reads on a replica without its primary when stale data is not
/// to be served, and writes on a primary with too few good replicas. Two atomic loads on
/// the common path (a primary with min-replicas-to-write off).
fn replication_refusal(shared: &Shared, flags: u32) -> Option<CommandError> {
    let replication = &shared.replication;
    if shared.engine.is_replica() {
        if flags & table::WRITE != 0 && replication.read_only() {
            return Some(CommandError::new(
                ErrorCode::ReadOnly,
                "You can't write against a read only replica.",
            ));
        }
        let link = replication.link_state();
        if link == LinkState::Syncing && flags & table::LOADING == 0 {
            return Some(CommandError::new(
                ErrorCode::Loading,
                "HyperCache is loading the dataset in memory",
            ));
        }
        if link != LinkState::Connected
            && flags & table::STALE == 0
            && !replication.serve_stale_data()
        {
            return Some(CommandError::new(
                ErrorCode::MasterDown,
                "Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ));
        }
        return None;
    }
    if flags & table::WRITE != 0 && !replication.enough_good_replicas() {
        return Some(CommandError::new(
            ErrorCode::NoReplicas,
            "Not enough good replicas to write.",
        ));
    }
    None
}

/// A command a script runs (redis.call / redis.pcall), with the script's client and its
/// transaction, after the checks a client's command gets, in Redis's words for scripts.
/// The reply, and for a command that ran, whether it writes.
pub fn run_from_script(
    shared: &Shared,
    client: &mut ClientState,
    args: &[Bytes],
    store: &mut Store<'_>,
    read_only: bool,
) -> (Reply, Option<bool>) {
    let refuse = |text: &str| (Reply::Error(format!("ERR {text}")), None);
    let command = match resolve(args) {
        Ok(command) => command,
        Err(_)
            if table::lookup(&args[0]).is_none_or(|spec| {
                !spec.subcommands.is_empty()
                    && args.len() >= 2
                    && spec.subcommand(&args[1]).is_none()
            }) =>
        {
            return refuse("Unknown Redis command called from script")
        }
        Err(_) => return refuse("Wrong number of args calling Redis command from script"),
    };
    let flags = command.flags();
    if flags & table::NOSCRIPT != 0 {
        return refuse("This Redis command is not allowed from script");
    }
    let writes = flags & table::WRITE != 0;
    if read_only && writes {
        return refuse("Write commands are not allowed from read-only scripts.");
    }
    if let Err(refusal) = acl::check(shared, client, command, args, DenialContext::Lua) {
        return (refusal.error().into_reply(), None);
    }
    if let Some(refusal) = oom_refusal(shared, flags).or_else(|| misconf_refusal(shared, flags)) {
        return (refusal.into_reply(), None);
    }
    let reply = run(shared, client, command, args, store).unwrap_or_else(CommandError::into_reply);
    (reply, Some(writes))
}

pub fn unwatch_all(shared: &Shared, client: &mut ClientState) {
    for (db, key) in client.watched.drain(..) {
        shared.engine.unwatch(db, &key, &client.watch_flag);
    }
    client
        .watch_flag
        .store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Cleans up what a disconnecting client left registered.
pub fn forget_client(shared: &Shared, client: &ClientState) {
    for (db, key) in &client.watched {
        shared.engine.unwatch(*db, key, &client.watch_flag);
    }
}

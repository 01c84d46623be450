//! A fuzz harness for command argument parsing (issue 14): every command and subcommand of
//! the table, called in-process through the dispatcher with random arguments drawn from
//! the words Redis commands parse (options, numbers at and past every limit, globs, empty
//! and binary strings) and from random bytes. Each call must return a well-formed reply,
//! never panic, and never answer the "internal error" a panicking command would get. The
//! failing case is shrunk by proptest to the smallest command that shows it.
//!
//! `HC_FUZZ_CASES` sets the number of cases (default 50,000, a few seconds in CI);

mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use hypercache::commands::{execute, table, ClientState, Shared};
use hypercache::protocol::{write_reply, ProtocolVersion, Reply};

/// Commands that stop the server or sleep for as long as they are told.
const EXCLUDED: &[&str] = &[
    "shutdown",
    "debug",
    "acl|setuser",
    "acl|deluser",
    "acl|load",
];

/// Every command and subcommand as the words a client sends ("config", "get"), with its
/// arity (negative: at least).
fn commands() -> Vec<(Vec<&'static str>, i32)> {
    let mut names = Vec::new();
    for spec in table::all() {
        if spec.subcommands.is_empty() {
            if !EXCLUDED.contains(&spec.name) {
                names.push((vec![spec.name], spec.arity));
            }
        } else {
            for sub in spec.subcommands {
                let full = format!("{}|{}", spec.name, sub.name);
                if !EXCLUDED.contains(&spec.name) && !EXCLUDED.contains(&full.as_str()) {
                    names.push((vec![spec.name, sub.name], sub.arity));
                }
            }
        }
    }
    names.sort();
    names
}

/// How many arguments to send: mostly what the arity allows (so most calls reach the
/// command's own parsing), sometimes one too few or too many.
fn argument_count(words: usize, arity: i32, choice: u8) -> usize {
    let least = (arity.unsigned_abs() as usize).saturating_sub(words);
    match choice % 10 {
        0 => least.saturating_sub(1),
        1 => least + 1,
        _ if arity > 0 => least,
        extra => least + usize::from(extra % 4),
    }
}

/// The words commands parse, numbers at their limits, and odd bytes.
const WORDS: &[&str] = &[
    "k0",
    "k1",
    "k2",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "NX",
    "XX",
    "GT",
    "LT",
    "KEEPTTL",
    "GET",
    "PERSIST",
    "COUNT",
    "MATCH",
    "TYPE",
    "string",
    "BYTE",
    "BIT",
    "AND",
    "OR",
    "XOR",
    "NOT",
    "LEN",
    "IDX",
    "MINMATCHLEN",
    "WITHMATCHLEN",
    "ABSTTL",
    "REPLACE",
    "DB",
    "SKIPME",
    "ID",
    "USER",
    "ADDR",
    "LADDR",
    "MAXAGE",
    "ON",
    "OFF",
    "SKIP",
    "yes",
    "no",
    "SAVE",
    "NOSAVE",
    "ASYNC",
    "SYNC",
    "WITHSCORES",
    "LIMIT",
    "RESET",
    "HELP",
    "ALL",
    "default",
    "*",
    "?",
    "[",
    "[a-",
    "\\",
    "*a*a*a*a*a*a*b",
    "0",
    "1",
    "-1",
    "2",
    "100",
    "100000",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "1.5",
    "-0.0",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "1e308",
    "1e-308",
    "0x10",
    " 1",
    "1 ",
    "",
    "\0",
    "\r\n",
];

fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::sample::select(WORDS).prop_map(|word| word.as_bytes().to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => (0usize..4096).prop_map(|len| vec![b'x'; len]),
    ]
}

fn case() -> impl Strategy<Value = (usize, u8, Vec<Vec<u8>>)> {
    (
        any::<usize>(),
        any::<u8>(),
        proptest::collection::vec(argument(), 0..10),
    )
}

fn cases() -> u32 {
    std::env::var("HC_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(50_000)
}

/// Checks a reply can be written in both protocols and is not the panic answer.
fn check_reply(reply: &Reply, command: &[Bytes]) -> Result<(), TestCaseError> {
    for protocol in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
        let mut out = BytesMut::new();
        write_reply(&mut out, reply, protocol);
        prop_assert!(!out.is_empty(), "an empty reply to {command:?}");
    }
    if let Reply::Error(text) = reply {
        prop_assert!(
            !text.contains("internal error"),
            "{text} answering {command:?}"
        );
    }
    Ok(())
}

#[test]
fn every_command_survives_random_arguments() {
    let server = common::TestServer::start();
    let shared: Arc<Shared> = Arc::clone(&server.shared);
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let handle = shared
        .clients
        .register(local, local, usize::MAX, 0)
        .unwrap();
    // The runner's closure is `Fn`; the one client is borrowed for each case.
    let client = std::cell::RefCell::new(ClientState::new(handle, shared.acl.default_user(), true));
    let commands = commands();
    assert!(commands.len() > 100, "{} commands", commands.len());
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let started = std::time::Instant::now();
    let (answered, errors) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&case(), |(which, choice, arguments)| {
        let mut client = client.borrow_mut();
        let (words, arity) = &commands[which % commands.len()];
        let mut command: Vec<Bytes> = words
            .iter()
            .map(|word| Bytes::from_static(word.as_bytes()))
            .collect();
        let count = argument_count(words.len(), *arity, choice);
        command.extend(
            arguments
                .into_iter()
                .map(Bytes::from)
                .chain(std::iter::repeat(Bytes::from_static(b"k0")))
                .take(count),
        );
        let reply = execute(&shared, &mut client, &command);
        check_reply(&reply, &command)?;
        let tally = if matches!(reply, Reply::Error(_)) {
            &errors
        } else {
            &answered
        };
        tally.set(tally.get() + 1);
        // Each case starts from a plain connection: no MULTI, RESP2, db 0, replies on.
        let reset = execute(&shared, &mut client, &[Bytes::from_static(b"RESET")]);
        prop_assert_eq!(reset, Reply::Simple("RESET".into()));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    println!(
        "{} cases over {} commands in {:.1} s: {} answered, {} errors",
        cases(),
        commands.len(),
        started.elapsed().as_secs_f64(),
        answered.get(),
        errors.get()
    );
    // A harness whose every call fails to parse would test nothing past the parsers.
    assert!(
        answered.get() * 5 > answered.get() + errors.get(),
        "under a fifth of the calls got past argument parsing"
    );
    // The server is still whole: PING over the network, and the keyspace counts agree.
    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

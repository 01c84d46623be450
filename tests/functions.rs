//! FUNCTION and FCALL (issue 18) against the binary: Redis's replies and error texts in raw
//! RESP (checked against Debian's redis-server 7.0.15), `#!lua` flags on EVAL, DUMP and
//! RESTORE, FUNCTION KILL of a busy function while others get Redis's -BUSY text, libraries
//! that survive restarts (kill -9 with the WAL, a clean stop without it), scripts that are
//! all or nothing across kill -9 under `appendfsync always`, and ioredis's defineCommand.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{resp, BinaryServer, RawClient};

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

fn load(client: &mut RawClient, code: &str, reply: &[u8]) {
    client.roundtrip(&resp(&[b"FUNCTION", b"LOAD", code.as_bytes()]), reply);
}

fn error(text: &str) -> Vec<u8> {
    format!("-{text}\r\n").into_bytes()
}

const LIBRARY: &str = "#!lua name=mylib\n\
redis.register_function('setk', function(keys, args) return redis.call('set', keys[1], args[1]) end)\n\
redis.register_function{function_name='getk', callback=function(keys, args) return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads'}";

#[test]
fn functions_follow_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut c = RawClient::connect(server.port);

    // Library metadata and registration errors.
    load(&mut c, "return 1", &error("ERR Missing library metadata"));
    load(
        &mut c,
        "#!lua\nreturn 1",
        &error("ERR Library name was not given"),
    );
    load(
        &mut c,
        "#!js name=x\nreturn 1",
        &error("ERR Engine 'js' not found"),
    );
    load(
        &mut c,
        "#!lua name=x foo=bar\n",
        &error("ERR Invalid metadata value given: foo=bar"),
    );
    load(
        &mut c,
        "#!lua name=x\nreturn 1",
        &error("ERR No functions registered"),
    );
    load(
        &mut c,
        "#!lua name=x\nredis.register_function('h', 1)",
        &error("ERR Error registering functions: ERR second argument to redis.register_function must be a function"),
    );
    load(
        &mut c,
        "#!lua name=x\nredis.register_function('h-1', function() end)",
        &error("ERR Error registering functions: ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"),
    );
    load(
        &mut c,
        "#!lua name=x\nlocal s = string.format('%d', 1)",
        &error("ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'string'"),
    );
    load(&mut c, LIBRARY, &bulk("mylib"));
    load(
        &mut c,
        LIBRARY,
        &error("ERR Library 'mylib' already exists"),
    );
    load(
        &mut c,
        "#!lua name=other\nredis.register_function('setk', function() return 1 end)",
        &error("ERR Function setk already exists"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY.as_bytes()]),
        &bulk("mylib"),
    );

    // FCALL and FCALL_RO.
    c.roundtrip(&resp(&[b"FCALL", b"setk", b"1", b"k", b"v"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"FCALL", b"getk", b"1", b"k"]), &bulk("v"));
    c.roundtrip(&resp(&[b"FCALL_RO", b"getk", b"1", b"k"]), &bulk("v"));
    c.roundtrip(
        &resp(&[b"FCALL_RO", b"setk", b"1", b"k", b"v"]),
        &error("ERR Can not execute a script with write flag using *_ro command."),
    );
    c.roundtrip(
        &resp(&[b"FCALL", b"nope", b"0"]),
        &error("ERR Function not found"),
    );
    c.roundtrip(
        &resp(&[b"FCALL", b"setk", b"-1"]),
        &error("ERR Number of keys can't be negative"),
    );

    // Errors inside functions name the function and the line, as Redis does.
    load(
        &mut c,
        "#!lua name=e\n\
redis.register_function('e1', function(k, a) return redis.call('nosuch') end)\n\
redis.register_function('e2', function(k, a)\n error('boom') end)\n\
redis.register_function{function_name='e3', callback=function(k, a) return redis.call('set', 'x', '1') end, flags={'no-writes'}}\n\
redis.register_function('e4', function(k, a) return {err='MYERR bad'} end)\n\
redis.register_function('e5', function(k, a) return KEYS end)\n\
redis.register_function('e6', function(k, a) return {k[1], a[1], #k, #a} end)\n\
redis.register_function('e7', function(k, a) return redis.call('fcall', 'e6', 0) end)",
        &bulk("e"),
    );
    let fcall = |c: &mut RawClient, name: &str, reply: &[u8]| {
        c.roundtrip(&resp(&[b"FCALL", name.as_bytes(), b"0"]), reply)
    };
    fcall(
        &mut c,
        "e1",
        &error("ERR Unknown Redis command called from script script: e1, on @user_function:2."),
    );
    fcall(
        &mut c,
        "e2",
        &error("ERR user_function:4: boom script: e2, on @user_function:4."),
    );
    fcall(&mut c, "e3", &error("ERR Write commands are not allowed from read-only scripts. script: e3, on @user_function:5."));
    fcall(&mut c, "e4", &error("MYERR bad"));
    fcall(&mut c, "e5", &error("ERR user_function:7: Script attempted to access nonexistent global variable 'KEYS' script: e5, on @user_function:7."));
    fcall(
        &mut c,
        "e7",
        &error(
            "ERR This Redis command is not allowed from script script: e7, on @user_function:9.",
        ),
    );
    c.roundtrip(
        &resp(&[b"FCALL", b"e6", b"1", b"key", b"a", b"b"]),
        b"*4\r\n$3\r\nkey\r\n$1\r\na\r\n:1\r\n:2\r\n",
    );
    // An EVAL's KEYS never leak into a function's globals.
    c.roundtrip(
        &resp(&[b"EVAL", b"return KEYS[1]", b"1", b"kk"]),
        &bulk("kk"),
    );
    fcall(&mut c, "e5", &error("ERR user_function:7: Script attempted to access nonexistent global variable 'KEYS' script: e5, on @user_function:7."));

    // LIST, STATS, DELETE.
    c.roundtrip(
        &resp(&[b"FUNCTION", b"LIST", b"WITHCODE", b"LIBRARYNAME", b"my*"]),
        &[
            b"*1\r\n*8\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n$6\r\nengine\r\n$3\r\nLUA\r\n$9\r\nfunctions\r\n*2\r\n".as_slice(),
            b"*6\r\n$4\r\nname\r\n$4\r\ngetk\r\n$11\r\ndescription\r\n$5\r\nreads\r\n$5\r\nflags\r\n*1\r\n+no-writes\r\n",
            b"*6\r\n$4\r\nname\r\n$4\r\nsetk\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*0\r\n",
            &b"$12\r\nlibrary_code\r\n"[..],
            &bulk(LIBRARY),
        ]
        .concat(),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"LIST", b"LIBRARYNAME"]),
        &error("ERR library name argument was not given"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"LIST", b"BAD"]),
        &error("ERR Unknown argument BAD"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"STATS"]),
        b"*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*2\r\n$3\r\nLUA\r\n*4\r\n$15\r\nlibraries_count\r\n:2\r\n$15\r\nfunctions_count\r\n:9\r\n",
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"DELETE", b"nope"]),
        &error("ERR Library not found"),
    );
    c.roundtrip(&resp(&[b"FUNCTION", b"DELETE", b"e"]), b"+OK\r\n");
    c.roundtrip(
        &resp(&[b"FUNCTION", b"KILL"]),
        &error("NOTBUSY No scripts in execution right now."),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"FLUSH", b"BAD"]),
        &error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
    );

    // DUMP and RESTORE.
    let mut con = server.client();
    let payload: Vec<u8> = redis::cmd("FUNCTION").arg("DUMP").query(&mut con).unwrap();
    c.roundtrip(&resp(&[b"FUNCTION", b"FLUSH"]), b"+OK\r\n");
    c.roundtrip(
        &resp(&[b"FCALL", b"getk", b"1", b"k"]),
        &error("ERR Function not found"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"RESTORE", b"garbage"]),
        &error("ERR DUMP payload version or checksum are wrong"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"RESTORE", &payload, b"BAD"]),
        &error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."),
    );
    c.roundtrip(&resp(&[b"FUNCTION", b"RESTORE", &payload]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"FCALL", b"getk", b"1", b"k"]), &bulk("v"));
    c.roundtrip(
        &resp(&[b"FUNCTION", b"RESTORE", &payload]),
        &error("ERR Library mylib already exists"),
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]),
        b"+OK\r\n",
    );
    c.roundtrip(
        &resp(&[b"FUNCTION", b"RESTORE", &payload, b"FLUSH"]),
        b"+OK\r\n",
    );

    // `#!lua` flags on EVAL.
    let eval = |c: &mut RawClient, command: &[u8], body: &str, reply: &[u8]| {
        c.roundtrip(&resp(&[command, body.as_bytes(), b"0"]), reply)
    };
    eval(
        &mut c,
        b"EVAL",
        "#!lua flags=no-writes\nreturn redis.call('set','a','1')",
        &error("ERR Write commands are not allowed from read-only scripts. script: 71c6978aa8dbb43cfeb7536150d4b9326e6031a2, on @user_script:2."),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!lua\nreturn redis.call('set','a','1')",
        b"+OK\r\n",
    );
    eval(
        &mut c,
        b"EVAL_RO",
        "#!lua\nreturn redis.call('get','a')",
        &error("ERR Can not execute a script with write flag using *_ro command."),
    );
    eval(
        &mut c,
        b"EVAL_RO",
        "return redis.call('get','a')",
        &bulk("1"),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!lua flags=bad\nreturn 1",
        &error("ERR Unexpected flag in script shebang: bad"),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!lua name=x\nreturn 1",
        &error("ERR Unknown lua shebang option: name=x"),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!js\nreturn 1",
        &error("ERR Unexpected engine in script shebang: #!js"),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!lua",
        &error("ERR Invalid script shebang"),
    );
    eval(
        &mut c,
        b"EVAL",
        "#!lua flags=no-writes,allow-oom\nreturn 1",
        b":1\r\n",
    );
    c.roundtrip(
        &resp(&[b"SCRIPT", b"LOAD", b"#!lua flags=bad\nreturn 1"]),
        &error("ERR Unexpected flag in script shebang: bad"),
    );
}

#[test]
fn a_busy_function_is_killed_with_function_kill() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut admin = RawClient::connect(server.port);
    admin.roundtrip(
        &resp(&[b"CONFIG", b"SET", b"busy-reply-threshold", b"100"]),
        b"+OK\r\n",
    );
    load(
        &mut admin,
        "#!lua name=spin\nredis.register_function('spin', function() while true do end end)",
        &bulk("spin"),
    );
    let mut looping = RawClient::connect(server.port);
    looping
        .stream
        .write_all(&resp(&[b"FCALL", b"spin", b"1", b"k"]))
        .unwrap();
    // FUNCTION STATS names the running function and its command.
    let mut con = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Vec<redis::Value> = redis::cmd("FUNCTION").arg("STATS").query(&mut con).unwrap();
        if let redis::Value::Array(running) = &stats[1] {
            assert_eq!(running[1], redis::Value::BulkString(b"spin".to_vec()));
            assert_eq!(
                running[3],
                redis::Value::Array(
                    ["FCALL", "spin", "1", "k"]
                        .iter()
                        .map(|arg| redis::Value::BulkString(arg.as_bytes().to_vec()))
                        .collect()
                )
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the function never showed in FUNCTION STATS"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut other = RawClient::connect(server.port);
    other.roundtrip(
        &resp(&[b"GET", b"k"]),
        &error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."),
    );
    // Another script waits for its turn as in Redis; a key in a shard the function does not
    // hold is served (scripts lock their keys' shards, not the whole keyspace).
    other.roundtrip(
        &resp(&[b"EVAL", b"return 1", b"0"]),
        &error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."),
    );
    other.roundtrip(&resp(&[b"GET", b"other"]), b"$-1\r\n");
    other.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
    other.roundtrip(
        &resp(&[b"SCRIPT", b"KILL"]),
        &error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."),
    );
    other.roundtrip(&resp(&[b"FUNCTION", b"KILL"]), b"+OK\r\n");
    let reply = looping.read_until(b"\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("-ERR Script killed by user with"),
        "{text}"
    );
    looping.roundtrip(&resp(&[b"SET", b"k", b"v"]), b"+OK\r\n");
}

/// FUNCTION LIST's library names.
fn library_names(con: &mut redis::Connection) -> Vec<String> {
    let listed: Vec<Vec<redis::Value>> = redis::cmd("FUNCTION").arg("LIST").query(con).unwrap();
    listed
        .iter()
        .map(|fields| match &fields[1] {
            redis::Value::BulkString(name) => String::from_utf8_lossy(name).into_owned(),
            other => panic!("library name {other:?}"),
        })
        .collect()
}

#[test]
fn libraries_survive_restarts() {
    let wal = ["--appendonly", "yes", "--appendfsync", "always"];
    // With the WAL: kill -9 right after the replies.
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &wal);
    let mut c = RawClient::connect(server.port);
    load(&mut c, LIBRARY, &bulk("mylib"));
    load(
        &mut c,
        "#!lua name=gone\nredis.register_function('gone', function() return 1 end)",
        &bulk("gone"),
    );
    c.roundtrip(&resp(&[b"FUNCTION", b"DELETE", b"gone"]), b"+OK\r\n");
    server.kill9();
    let server = BinaryServer::start(dir.path(), &wal);
    let mut con = server.client();
    assert_eq!(library_names(&mut con), ["mylib"]);
    let mut c = RawClient::connect(server.port);
    c.roundtrip(&resp(&[b"FCALL", b"setk", b"1", b"k", b"v"]), b"+OK\r\n");
    // A checkpoint in between (the record is then in the cold tier only), then kill -9.
    c.roundtrip(&resp(&[b"SAVE"]), b"+OK\r\n");
    server.kill9();
    let server = BinaryServer::start(dir.path(), &wal);
    let mut con = server.client();
    assert_eq!(library_names(&mut con), ["mylib"]);
    let value: String = redis::cmd("FCALL")
        .arg("getk")
        .arg(1)
        .arg("k")
        .query(&mut con)
        .unwrap();
    assert_eq!(value, "v");
    drop(con);
    server.terminate();

    // Without the WAL: a clean stop.
    let dir = tempfile::tempdir().unwrap();
    let no_wal = ["--appendonly", "no"];
    let server = BinaryServer::start(dir.path(), &no_wal);
    let mut c = RawClient::connect(server.port);
    load(&mut c, LIBRARY, &bulk("mylib"));
    assert!(server.terminate().success());
    let server = BinaryServer::start(dir.path(), &no_wal);
    let mut con = server.client();
    assert_eq!(library_names(&mut con), ["mylib"]);
}

/// Keys each script writes together.
const GROUP: usize = 8;
const WRITERS: usize = 2;

/// One writer's loop: every call sets its group's keys to the next sequence number,
/// alternating FCALL and EVAL; returns the last acknowledged and the last sent number.
fn write_groups(port: u16, writer: usize, start: u64, stop: &AtomicBool) -> (u64, u64) {
    let mut client = RawClient::connect(port);
    let keys: Vec<Vec<u8>> = (0..GROUP)
        .map(|i| format!("w{writer}:k{i}").into_bytes())
        .collect();
    let (mut acked, mut sent) = (start, start);
    let body = b"for i = 1, #KEYS do redis.call('set', KEYS[i], ARGV[1]) end return #KEYS";
    for seq in start + 1..start + 100_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let seq_text = seq.to_string();
        let group = GROUP.to_string();
        let mut args: Vec<&[u8]> = if seq % 2 == 0 {
            vec![b"FCALL", b"set_all", group.as_bytes()]
        } else {
            vec![b"EVAL", body, group.as_bytes()]
        };
        args.extend(keys.iter().map(Vec::as_slice));
        args.push(seq_text.as_bytes());
        sent = seq;
        if client.stream.write_all(&resp(&args)).is_err() {
            break;
        }
        match client.try_read_line() {
            Some(line) if line == b":8\r\n" => acked = seq,
            Some(line) => panic!("writer {writer}: {}", String::from_utf8_lossy(&line)),
            None => break,
        }
    }
    (acked, sent)
}

#[test]
fn scripts_are_all_or_nothing_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server-stderr.log");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let flags = ["--appendonly", "yes", "--appendfsync", "always"];
    let start = || BinaryServer::start_with_env(&data, &flags, &[], Some(&log));
    let server = start();
    let mut c = RawClient::connect(server.port);
    load(
        &mut c,
        "#!lua name=groups\nredis.register_function('set_all', function(keys, args) for i = 1, #keys do redis.call('set', keys[i], args[1]) end return #keys end)",
        &bulk("groups"),
    );
    let mut server = server;
    let mut last = [0u64; WRITERS];
    for (cycle, kill_after_ms) in [150u64, 400, 250].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (port, from, stop) = (server.port, last[writer], Arc::clone(&stop));
                std::thread::spawn(move || write_groups(port, writer, from, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        let runs: Vec<(u64, u64)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        server = start();
        let mut con = server.client();
        for (writer, (acked, sent)) in runs.into_iter().enumerate() {
            let keys: Vec<String> = (0..GROUP).map(|i| format!("w{writer}:k{i}")).collect();
            let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
            let first = values[0];
            assert!(
                values.iter().all(|value| *value == first),
                "cycle {cycle}, writer {writer}: half a script survived: {values:?}"
            );
            let recovered = first.unwrap_or(0);
            assert!(
                recovered >= acked && recovered <= sent,
                "cycle {cycle}, writer {writer}: recovered {recovered}, acknowledged {acked}, sent {sent}"
            );
            assert!(
                acked > last[writer],
                "cycle {cycle}, writer {writer}: no script ran"
            );
            eprintln!(
                "cycle {cycle}, writer {writer}: {} scripts acknowledged, recovered at \
                 {recovered} (acknowledged {acked}, sent {sent})",
                acked - last[writer]
            );
            last[writer] = recovered;
        }
    }
}

#[test]
fn ioredis_define_command_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let script = format!(
        r##"
const Redis = require("ioredis");
const r = new Redis({port});
r.defineCommand("addTo", {{ numberOfKeys: 1, lua: "return redis.call('incrby', KEYS[1], ARGV[1])" }});
(async () => {{
  console.log(await r.addTo("n", 5), await r.addTo("n", 2));
  await r.script("FLUSH");
  const results = await r.pipeline().addTo("n", 1).get("n").exec();
  console.log(JSON.stringify(results), await r.get("n"));
  await r.function("LOAD", "#!lua name=lib\nredis.register_function('hello', function(k, a) return 'hi ' .. a[1] end)");
  console.log(await r.fcall("hello", 0, "node"));
  r.disconnect();
}})().catch((err) => {{ console.error(err); process.exit(1); }});
"##,
        port = server.port
    );
    let (stdout, stderr) = common::run_node_with_ioredis(&script);
    assert_eq!(
        stdout,
        // After SCRIPT FLUSH, ioredis's pipeline gets NOSCRIPT and sends the script again
        // after the GET: Redis 7.0.15 answers this same sequence with the same "7".
        "5 7\n[[null,8],[null,\"7\"]] 8\nhi node\n",
        "node stderr: {}",
        stderr
    );
}

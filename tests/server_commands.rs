//! Command families through a real client (the `redis` crate) against the in-process
//! server: keys, connection, transactions, authentication, databases, tiering.

mod common;

use common::TestServer;
use redis::{Commands, RedisResult, Value};

fn cmd(con: &mut redis::Connection, args: &[&str]) -> RedisResult<Value> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(con)
}

fn error_text(result: RedisResult<Value>) -> String {
    let err = result.expect_err("expected an error reply");
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => err.to_string(),
    }
}

/// Every XX / GT / LT combination Redis allows, with Redis 7.0.15's answers: a key without a
/// TTL counts as an infinite TTL, so LT passes and GT fails on it, and XX fails on it whatever
/// it is combined with.
#[test]
fn expire_conditions_combine_as_in_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.set("k", "v").unwrap();
    for (args, reply) in [
        (&["EXPIRE", "k", "200", "LT", "XX"][..], 0),
        (&["EXPIRE", "k", "200", "LT"][..], 1),
        (&["TTL", "k"][..], 200),
        (&["EXPIRE", "k", "100", "XX", "LT"][..], 1),
        (&["TTL", "k"][..], 100),
        (&["EXPIRE", "k", "300", "XX", "LT"][..], 0),
        (&["EXPIRE", "k", "50", "XX", "GT"][..], 0),
        (&["EXPIRE", "k", "150", "XX", "GT"][..], 1),
        (&["TTL", "k"][..], 150),
    ] {
        assert_eq!(cmd(&mut con, args).unwrap(), Value::Int(reply), "{args:?}");
    }
    let _: () = con.set("p", "v").unwrap();
    for args in [
        &["EXPIRE", "p", "100", "GT", "XX"][..],
        &["EXPIRE", "p", "100", "GT"][..],
        &["EXPIRE", "p", "100", "XX"][..],
    ] {
        assert_eq!(cmd(&mut con, args).unwrap(), Value::Int(0), "{args:?}");
    }
    assert_eq!(cmd(&mut con, &["TTL", "p"]).unwrap(), Value::Int(-1));
}

#[test]
fn keys_family_matches_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.set("a", "1").unwrap();
    let _: () = con.set("b", "2").unwrap();
    assert_eq!(con.del::<_, i64>(&["a", "b", "nope"]).unwrap(), 2);
    let _: () = con.set("a", "1").unwrap();
    assert_eq!(
        cmd(&mut con, &["EXISTS", "a", "a", "zz"]).unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        cmd(&mut con, &["TYPE", "a"]).unwrap(),
        Value::SimpleString("string".into())
    );
    assert_eq!(
        cmd(&mut con, &["TYPE", "zz"]).unwrap(),
        Value::SimpleString("none".into())
    );

    assert_eq!(cmd(&mut con, &["TTL", "a"]).unwrap(), Value::Int(-1));
    assert_eq!(cmd(&mut con, &["TTL", "zz"]).unwrap(), Value::Int(-2));
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "a", "100"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut con, &["TTL", "a"]).unwrap(), Value::Int(100));
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "a", "50", "GT"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "a", "500", "GT"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "a", "5", "NX"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        error_text(cmd(&mut con, &["EXPIRE", "a", "5", "NX", "XX"])),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        error_text(cmd(&mut con, &["EXPIRE", "a", "5", "FOO"])),
        "ERR Unsupported option FOO"
    );
    let Value::Int(pttl) = cmd(&mut con, &["PTTL", "a"]).unwrap() else {
        panic!()
    };
    assert!(pttl > 499_000 && pttl <= 500_000, "{pttl}");
    let Value::Int(at) = cmd(&mut con, &["EXPIRETIME", "a"]).unwrap() else {
        panic!()
    };
    let Value::Int(pat) = cmd(&mut con, &["PEXPIRETIME", "a"]).unwrap() else {
        panic!()
    };
    assert_eq!(at, pat / 1000);
    assert_eq!(cmd(&mut con, &["PERSIST", "a"]).unwrap(), Value::Int(1));
    assert_eq!(cmd(&mut con, &["PERSIST", "a"]).unwrap(), Value::Int(0));
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "a", "-1"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut con, &["EXISTS", "a"]).unwrap(), Value::Int(0));

    for i in 0..25 {
        let _: () = con.set(format!("user:{i}"), i).unwrap();
    }
    let _: () = con.set("other", "x").unwrap();
    let mut keys: Vec<String> = con.keys("user:*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 25);
    let scanned: Vec<String> = con.scan_match("user:1*").unwrap().collect();
    assert_eq!(scanned.len(), 11);
    let none: Value = cmd(&mut con, &["SCAN", "0", "TYPE", "list", "COUNT", "1000"]).unwrap();
    assert_eq!(
        none,
        Value::Array(vec![Value::BulkString(b"0".to_vec()), Value::Array(vec![])])
    );
    assert_eq!(
        error_text(cmd(&mut con, &["SCAN", "x"])),
        "ERR invalid cursor"
    );
    let random: String = cmd_string(&mut con, &["RANDOMKEY"]);
    assert!(random.starts_with("user:") || random == "other");
    assert_eq!(cmd(&mut con, &["DBSIZE"]).unwrap(), Value::Int(26));

    assert_eq!(
        cmd(&mut con, &["RENAME", "other", "renamed"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        error_text(cmd(&mut con, &["RENAME", "other", "x"])),
        "ERR no such key"
    );
    assert_eq!(
        cmd(&mut con, &["RENAMENX", "renamed", "user:1"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut con, &["COPY", "renamed", "copied"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &["COPY", "renamed", "copied"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut con, &["COPY", "renamed", "copied", "REPLACE"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &["COPY", "renamed", "copied", "DB", "3"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        error_text(cmd(&mut con, &["COPY", "renamed", "renamed"])),
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        cmd(&mut con, &["MOVE", "copied", "4"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &["MOVE", "user:1", "4"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &["TOUCH", "renamed", "user:2", "gone"]).unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        cmd_string(&mut con, &["OBJECT", "ENCODING", "user:2"]),
        "int"
    );
    assert_eq!(
        cmd_string(&mut con, &["OBJECT", "ENCODING", "renamed"]),
        "embstr"
    );
    assert_eq!(
        cmd(&mut con, &["OBJECT", "IDLETIME", "renamed"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut con, &["OBJECT", "ENCODING", "gone"]).unwrap(),
        Value::Nil
    );

    let _: () = redis::cmd("SELECT").arg(4).query(&mut con).unwrap();
    assert_eq!(cmd(&mut con, &["DBSIZE"]).unwrap(), Value::Int(2));
    let _: () = redis::cmd("SELECT").arg(3).query(&mut con).unwrap();
    assert_eq!(cmd_string(&mut con, &["GET", "copied"]), "x");
}

fn cmd_string(con: &mut redis::Connection, args: &[&str]) -> String {
    match cmd(con, args).unwrap() {
        Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        Value::SimpleString(text) => text,
        other => panic!("{args:?} gave {other:?}"),
    }
}

#[test]
fn databases_are_isolated() {
    let server = TestServer::start();
    let mut zero = server.client();
    let mut five = server.client();
    let _: () = redis::cmd("SELECT").arg(5).query(&mut five).unwrap();
    let _: () = zero.set("k", "zero").unwrap();
    let _: () = five.set("k", "five").unwrap();
    assert_eq!(zero.get::<_, String>("k").unwrap(), "zero");
    assert_eq!(five.get::<_, String>("k").unwrap(), "five");
    let _: () = redis::cmd("FLUSHDB").query(&mut five).unwrap();
    assert_eq!(zero.get::<_, String>("k").unwrap(), "zero");
    assert_eq!(five.get::<_, Option<String>>("k").unwrap(), None);
}

#[test]
fn multi_exec_discard_and_watch() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut other = server.client();

    // A redis-py style pipeline transaction.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("t")
        .cmd("INCRBY")
        .arg("t")
        .arg(10)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (1, 11));

    assert_eq!(cmd(&mut con, &["MULTI"]).unwrap(), Value::Okay);
    assert_eq!(
        cmd(&mut con, &["SET", "q", "1"]).unwrap(),
        Value::SimpleString("QUEUED".into())
    );
    assert_eq!(
        error_text(cmd(&mut con, &["MULTI"])),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(cmd(&mut con, &["DISCARD"]).unwrap(), Value::Okay);
    assert_eq!(cmd(&mut con, &["EXISTS", "q"]).unwrap(), Value::Int(0));
    assert_eq!(
        error_text(cmd(&mut con, &["EXEC"])),
        "ERR EXEC without MULTI"
    );
    assert_eq!(
        error_text(cmd(&mut con, &["DISCARD"])),
        "ERR DISCARD without MULTI"
    );

    // A queueing error aborts the whole transaction.
    cmd(&mut con, &["MULTI"]).unwrap();
    cmd(&mut con, &["SET", "q", "1"]).unwrap();
    assert_eq!(
        error_text(cmd(&mut con, &["GET"])),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        error_text(cmd(&mut con, &["EXEC"])),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(cmd(&mut con, &["EXISTS", "q"]).unwrap(), Value::Int(0));

    // WATCH: a change by another client aborts EXEC (nil reply)...
    let _: () = con.set("w", "0").unwrap();
    cmd(&mut con, &["WATCH", "w"]).unwrap();
    let _: () = other.set("w", "changed").unwrap();
    cmd(&mut con, &["MULTI"]).unwrap();
    cmd(&mut con, &["SET", "w", "mine"]).unwrap();
    assert_eq!(cmd(&mut con, &["EXEC"]).unwrap(), Value::Nil);
    assert_eq!(con.get::<_, String>("w").unwrap(), "changed");

    // ... a change to another key does not, and neither does UNWATCH'd history.
    cmd(&mut con, &["WATCH", "w"]).unwrap();
    let _: () = other.set("unrelated", "x").unwrap();
    cmd(&mut con, &["MULTI"]).unwrap();
    cmd(&mut con, &["SET", "w", "mine"]).unwrap();
    cmd(&mut con, &["GET", "w"]).unwrap();
    assert_eq!(
        cmd(&mut con, &["EXEC"]).unwrap(),
        Value::Array(vec![Value::Okay, Value::BulkString(b"mine".to_vec())])
    );
    cmd(&mut con, &["WATCH", "w"]).unwrap();
    let _: () = other.del("w").unwrap();
    cmd(&mut con, &["UNWATCH"]).unwrap();
    cmd(&mut con, &["MULTI"]).unwrap();
    cmd(&mut con, &["SET", "w", "again"]).unwrap();
    assert_eq!(
        cmd(&mut con, &["EXEC"]).unwrap(),
        Value::Array(vec![Value::Okay])
    );
    assert_eq!(
        error_text(cmd(&mut con, &["MULTI"]).and_then(|_| cmd(&mut con, &["WATCH", "x"]))),
        "ERR WATCH inside MULTI is not allowed"
    );
    cmd(&mut con, &["DISCARD"]).unwrap();
}

#[test]
fn exec_is_atomic_for_other_clients() {
    let server = TestServer::start();
    let port = server.port;
    // Two clients move 1 unit at a time between two keys inside MULTI/EXEC; a third reads
    // both in a transaction and must always see the same total.
    let mut setup = server.client();
    let _: () = setup.set("{acct}a", 1000).unwrap();
    let _: () = setup.set("{acct}b", 0).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                for _ in 0..300 {
                    let _: () = redis::pipe()
                        .atomic()
                        .cmd("DECR")
                        .arg("{acct}a")
                        .ignore()
                        .cmd("INCR")
                        .arg("{acct}b")
                        .ignore()
                        .query(&mut con)
                        .unwrap();
                }
            })
        })
        .collect();
    let mut reader = server.client();
    for _ in 0..300 {
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .get("{acct}a")
            .get("{acct}b")
            .query(&mut reader)
            .unwrap();
        assert_eq!(a + b, 1000, "saw a half-applied transaction");
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let (a, b): (i64, i64) = (setup.get("{acct}a").unwrap(), setup.get("{acct}b").unwrap());
    assert_eq!((a, b), (400, 600));
}

#[test]
fn auth_with_requirepass() {
    let server = TestServer::start_with(|config| {
        config.security.requirepass = Some("sekret".into());
    });
    let mut raw = server.raw();
    raw.roundtrip(b"GET k\r\n", b"-NOAUTH Authentication required.\r\n");
    raw.roundtrip(
        b"AUTH wrong\r\n",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    raw.roundtrip(b"AUTH sekret\r\n", b"+OK\r\n");
    raw.roundtrip(b"GET k\r\n", b"$-1\r\n");
    // Authenticated, a client may announce more than 10 arguments and longer ones.
    let mut mset = b"*11\r\n$4\r\nMSET\r\n".to_vec();
    for i in 0..5 {
        mset.extend_from_slice(format!("$2\r\nk{i}\r\n$16385\r\n").as_bytes());
        mset.extend_from_slice(&[b'v'; 16385]);
        mset.extend_from_slice(b"\r\n");
    }
    raw.roundtrip(&mset, b"+OK\r\n");

    // Before AUTH, Redis's limits on what a client may announce (answers as Redis 7.0.15).
    for (request, error) in [
        (&b"*100\r\n"[..], "unauthenticated multibulk length"),
        (&b"*11\r\n"[..], "unauthenticated multibulk length"),
        (&b"*1\r\n$100000000\r\n"[..], "unauthenticated bulk length"),
        (&b"*1\r\n$16385\r\n"[..], "unauthenticated bulk length"),
    ] {
        let mut stranger = server.raw();
        let reply = format!("-ERR Protocol error: {error}\r\n");
        stranger.roundtrip(request, reply.as_bytes());
        assert!(stranger.is_closed(), "{request:?}");
    }
    let mut stranger = server.raw();
    // At the limits themselves it is read, and answered as any unauthenticated command.
    stranger.send(b"*2\r\n$3\r\nGET\r\n$16384\r\n");
    stranger.roundtrip(
        &[&[b'k'; 16384][..], b"\r\n"].concat(),
        b"-NOAUTH Authentication required.\r\n",
    );
    // An AUTH earlier in the same pipeline lifts the limits for what follows it.
    let mut pipelined = server.raw();
    let mut request = b"AUTH sekret\r\n".to_vec();
    request.extend_from_slice(&mset);
    pipelined.roundtrip(&request, b"+OK\r\n+OK\r\n");

    let mut hello = server.raw();
    hello.send(b"HELLO 3 AUTH default sekret SETNAME app\r\n");
    hello.read_until(b"$7\r\nmodules\r\n*0\r\n");
    hello.roundtrip(b"CLIENT GETNAME\r\n", b"$3\r\napp\r\n");

    let client =
        redis::Client::open(format!("redis://:sekret@127.0.0.1:{}/", server.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set("k", "v").unwrap();

    let open = TestServer::start();
    let mut raw = open.raw();
    raw.roundtrip(
        b"AUTH x\r\n",
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    );
}

#[test]
fn client_commands() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut victim = server.client();
    let Value::Int(victim_id) = cmd(&mut victim, &["CLIENT", "ID"]).unwrap() else {
        panic!()
    };
    assert_eq!(
        cmd(&mut con, &["CLIENT", "SETNAME", "worker-1"]).unwrap(),
        Value::Okay
    );
    assert_eq!(cmd_string(&mut con, &["CLIENT", "GETNAME"]), "worker-1");
    assert_eq!(
        error_text(cmd(&mut con, &["CLIENT", "SETNAME", "has space"])),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        cmd(&mut con, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut con, &["CLIENT", "SETINFO", "LIB-VER", "0.32"]).unwrap(),
        Value::Okay
    );
    let list = cmd_string(&mut con, &["CLIENT", "LIST"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("name=worker-1") && list.contains("lib-name=redis-rs"),
        "{list}"
    );
    assert!(list.contains("cmd=client|list"), "{list}");
    let info = cmd_string(&mut con, &["CLIENT", "INFO"]);
    assert!(info.contains("name=worker-1"));
    assert_eq!(
        cmd(&mut con, &["CLIENT", "KILL", "ID", &victim_id.to_string()]).unwrap(),
        Value::Int(1)
    );
    assert!(
        cmd(&mut victim, &["PING"]).is_err(),
        "killed client still served"
    );
    // Filters as Redis 7.0.15 answers them: unknown types and users are errors, known types
    // with no such client kill none, and SKIPME no may kill the caller itself.
    assert_eq!(
        error_text(cmd(&mut con, &["CLIENT", "KILL", "TYPE", "wrong_type"])),
        "ERR Unknown client type 'wrong_type'"
    );
    assert_eq!(
        error_text(cmd(&mut con, &["CLIENT", "KILL", "USER", "nobody"])),
        "ERR No such user 'nobody'"
    );
    for kind in ["master", "replica", "slave", "pubsub"] {
        assert_eq!(
            cmd(&mut con, &["CLIENT", "KILL", "TYPE", kind]).unwrap(),
            Value::Int(0),
            "{kind}"
        );
    }
    assert_eq!(
        cmd(
            &mut con,
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]
        )
        .unwrap(),
        Value::Int(0)
    );
    let mut caller = server.client();
    assert_eq!(
        cmd(
            &mut caller,
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]
        )
        .unwrap(),
        Value::Int(2),
        "both connections, the caller included"
    );
    assert!(
        cmd(&mut caller, &["PING"]).is_err(),
        "the caller was killed"
    );

    let mut raw = server.raw();
    raw.roundtrip(b"CLIENT REPLY OFF\r\n", b"");
    raw.send(b"SET silent 1\r\n");
    raw.roundtrip(b"CLIENT REPLY ON\r\n", b"+OK\r\n");
    raw.roundtrip(
        b"CLIENT REPLY SKIP\r\nGET silent\r\nGET silent\r\n",
        b"$1\r\n1\r\n",
    );
    raw.roundtrip(b"QUIT\r\n", b"+OK\r\n");
    assert!(raw.is_closed());
}

#[test]
fn data_far_larger_than_the_hot_tier_stays_correct_over_resp() {
    let server = TestServer::start_with(|config| {
        config.storage.hot_max_bytes = Some(hypercache::config::ByteSize(256 << 10));
    });
    let mut con = server.client();
    let value = "v".repeat(900);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.set(format!("big:{i}"), format!("{i}:{value}"))
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    for i in (0..5000).step_by(7) {
        let got: String = con.get(format!("big:{i}")).unwrap();
        assert_eq!(got, format!("{i}:{value}"));
    }
    let info = cmd_string(&mut con, &["INFO", "tiers"]);
    let demotions: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("demotions:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(demotions > 3000, "{info}");
    assert_eq!(cmd(&mut con, &["DBSIZE"]).unwrap(), Value::Int(5000));
    let scanned: Vec<String> = con.scan_match("big:*").unwrap().collect();
    let unique: std::collections::HashSet<_> = scanned.into_iter().collect();
    assert_eq!(unique.len(), 5000);
}

#[test]
fn info_config_slowlog_and_command_answer_from_live_state() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.set("k", "v").unwrap();

    let default = cmd_string(&mut con, &["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Tiers",
        "# Keyspace",
    ] {
        assert!(default.contains(section), "INFO lacks {section}");
    }
    assert!(!default.contains("# Commandstats"));
    let everything = cmd_string(&mut con, &["INFO", "everything"]);
    assert!(everything.contains("cmdstat_set:calls=1,"), "{everything}");
    assert!(everything.contains("db0:keys=1"));
    let tiers = cmd_string(&mut con, &["INFO", "tiers"]);
    for field in [
        "hot_hits",
        "hot_misses",
        "cold_hits",
        "cold_misses",
        "filter_short_circuits",
        "filter_false_positives",
        "promotions",
        "demotions",
        "evictions",
        "hot_used_bytes",
        "hot_keys",
        "cold_keys_estimate",
        "cold_disk_bytes",
        "filter_used_bytes",
        "filter_load_factor",
    ] {
        assert!(
            tiers.contains(&format!("\r\n{field}:")),
            "INFO tiers lacks {field}"
        );
    }
    let memory = cmd_string(&mut con, &["INFO", "memory"]);
    for field in [
        "used_memory",
        "used_memory_rss",
        "maxmemory",
        "budget_hot_bytes",
        "budget_cold_cache_bytes",
        "budget_filter_bytes",
        "budget_clients_bytes",
    ] {
        assert!(
            memory.contains(&format!("\r\n{field}:")),
            "INFO memory lacks {field}"
        );
    }
    assert!(memory.contains("\r\nmaxmemory:67108864\r\n"), "{memory}");

    // CONFIG GET * lists every parameter, and CONFIG SET takes every value back.
    let Value::Array(all) = cmd(&mut con, &["CONFIG", "GET", "*"]).unwrap() else {
        panic!()
    };
    assert!(all.len() >= 40, "only {} entries", all.len());
    let pairs: Vec<String> = all
        .into_iter()
        .map(|value| match value {
            Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut set = vec!["CONFIG", "SET"];
    set.extend(pairs.iter().map(String::as_str));
    assert_eq!(cmd(&mut con, &set).unwrap(), Value::Okay);
    assert_eq!(
        cmd(&mut con, &["CONFIG", "SET", "timeout", "30"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut con, &["CONFIG", "GET", "timeout"]).unwrap(),
        Value::Array(vec![
            Value::BulkString(b"timeout".to_vec()),
            Value::BulkString(b"30".to_vec())
        ])
    );
    assert_eq!(
        error_text(cmd(&mut con, &["CONFIG", "SET", "port", "1"])),
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );

    // Every command is slower than 0 µs.
    assert_eq!(
        cmd(&mut con, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]).unwrap(),
        Value::Okay
    );
    let _: () = con.set("slow", "1").unwrap();
    let Value::Int(len) = cmd(&mut con, &["SLOWLOG", "LEN"]).unwrap() else {
        panic!()
    };
    assert!(len >= 1);
    assert_eq!(cmd(&mut con, &["SLOWLOG", "RESET"]).unwrap(), Value::Okay);

    let Value::Int(count) = cmd(&mut con, &["COMMAND", "COUNT"]).unwrap() else {
        panic!()
    };
    assert!(count >= 70, "{count}");
    let Value::Array(info) = cmd(&mut con, &["COMMAND", "INFO", "get", "nosuch"]).unwrap() else {
        panic!()
    };
    assert_eq!(info[1], Value::Nil);
    let Value::Array(get) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(get[0], Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], Value::Int(2));
    assert_eq!(
        cmd(&mut con, &["MEMORY", "USAGE", "nosuch"]).unwrap(),
        Value::Nil
    );
    let Value::Int(usage) = cmd(&mut con, &["MEMORY", "USAGE", "k"]).unwrap() else {
        panic!()
    };
    assert!(usage > 0);
}

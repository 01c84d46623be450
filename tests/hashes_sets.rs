//! Hashes and sets (issue 17) through real clients: every command's replies and error texts
//! as Redis 7.0.15 gives them (each expected line below was checked against Debian's
//! redis-server), WRONGTYPE across families, RESP3 reply types, and the data surviving
//! demotion to the cold tier, a restart and a kill -9.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{resp, BinaryServer, TestServer};
use hypercache::config::ByteSize;
use redis::{Commands, Value};

/// A reply as one line: integers and strings as text, nil as `nil`, arrays in brackets,
/// errors as `ERR text`. `{...}` sorts an array first, for replies whose order is the
/// server's own (set members).
fn render(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Okay => "OK".into(),
        Value::Array(items) | Value::Set(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(","))
        }
        Value::Map(pairs) => {
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", render(k), render(v)))
                .collect();
            format!("%[{}]", items.join(","))
        }
        other => format!("{other:?}"),
    }
}

fn run(con: &mut redis::Connection, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    match command.query::<Value>(con) {
        Ok(value) => render(&value),
        Err(err) => match (err.code(), err.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => err.to_string(),
        },
    }
}

/// Sorts the items of a rendered flat array (`[b,a]` -> `[a,b]`).
fn sorted(rendered: &str) -> String {
    let inner = rendered
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not an array: {rendered}"));
    let mut items: Vec<&str> = inner.split(',').filter(|item| !item.is_empty()).collect();
    items.sort_unstable();
    format!("{{{}}}", items.join(","))
}

/// Runs each `(command, expected)`; an expected `{...}` compares the reply's items sorted.
fn check(con: &mut redis::Connection, script: &[(&str, &str)]) {
    for (line, expected) in script {
        let got = run(con, line);
        let got = match expected.starts_with('{') {
            true => sorted(&got),
            false => got,
        };
        assert_eq!(&got, expected, "{line}");
    }
}

#[test]
fn hash_commands_answer_as_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    check(
        &mut con,
        &[
            ("HSET h a 1 b 2 c 3", "3"),
            ("HSET h a 10 d 4", "1"),
            ("HGET h a", "10"),
            ("HGET h zz", "nil"),
            ("HGET nokey a", "nil"),
            ("HMGET h a zz b", "[10,nil,2]"),
            ("HMGET nokey a b", "[nil,nil]"),
            ("HSETNX h a 5", "0"),
            ("HSETNX h e 5", "1"),
            ("HDEL h a zz", "1"),
            ("HDEL h zz", "0"),
            ("HLEN h", "4"),
            ("HLEN nokey", "0"),
            ("HEXISTS h b", "1"),
            ("HEXISTS h zz", "0"),
            ("HSTRLEN h b", "1"),
            ("HSTRLEN h zz", "0"),
            ("HKEYS h", "[b,c,d,e]"),
            ("HVALS h", "[2,3,4,5]"),
            ("HGETALL h", "[b,2,c,3,d,4,e,5]"),
            ("HGETALL nokey", "[]"),
            ("HKEYS nokey", "[]"),
            ("HINCRBY h n 5", "5"),
            ("HINCRBY h n -7", "-2"),
            ("HINCRBY h b x", "ERR value is not an integer or out of range"),
            ("HINCRBY h e 9223372036854775807", "ERR increment or decrement would overflow"),
            ("HINCRBYFLOAT h f 1.5", "1.5"),
            ("HINCRBYFLOAT h f 1e3", "1001.5"),
            ("HINCRBYFLOAT h f inf", "ERR value is NaN or Infinity"),
            ("HINCRBYFLOAT h f abc", "ERR value is not a valid float"),
            ("HSET h t abc", "1"),
            ("HINCRBYFLOAT h t 1", "ERR hash value is not a float"),
            ("HINCRBY h t 1", "ERR hash value is not an integer"),
            ("HSET h odd", "ERR wrong number of arguments for 'hset' command"),
            ("HSET h a 1 b", "ERR wrong number of arguments for 'hset' command"),
            ("HMSET h a 1 b", "ERR wrong number of arguments for 'hmset' command"),
            ("HMSET h z 26", "OK"),
            ("HGET h z", "26"),
            ("TYPE h", "hash"),
            ("HSCAN h 0 MATCH z*", "[0,[z,26]]"),
            ("HSCAN h 0 MATCH z* NOVALUES", "[0,[z]]"),
            ("HSCAN h 0 COUNT 0", "ERR syntax error"),
            ("HSCAN h x", "ERR invalid cursor"),
            ("HSCAN nokey 0", "[0,[]]"),
            ("HRANDFIELD nokey", "nil"),
            ("HRANDFIELD nokey 3", "[]"),
            ("HRANDFIELD h 0", "[]"),
            ("HRANDFIELD h 1 foo", "ERR syntax error"),
            ("HRANDFIELD h 1 WITHVALUES extra", "ERR syntax error"),
            (
                "HRANDFIELD h -9223372036854775808",
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ),
            ("HRANDFIELD h -4611686018427387904 WITHVALUES", "ERR value is out of range"),
            // Deleting the last field deletes the key.
            ("HSET single f v", "1"),
            ("HDEL single f", "1"),
            ("EXISTS single", "0"),
        ],
    );
}

/// Field expiry as Valkey 9.1 answers it (Redis 7.0.15 has no field expiry).
#[test]
fn field_expiry_answers_as_valkey() {
    let server = TestServer::start();
    let mut con = server.client();
    let numfields =
        "ERR numfields should be greater than 0 and match the provided number of fields";
    check(
        &mut con,
        &[
            ("HSET h a 1 b 2 c 3", "3"),
            ("HEXPIRE h 100 FIELDS 2 a zz", "[1,-2]"),
            ("HEXPIRE nokey 100 FIELDS 1 a", "[-2]"),
            ("HTTL h FIELDS 3 a b zz", "[100,-1,-2]"),
            ("HEXPIRE h 50 GT FIELDS 1 a", "[0]"),
            ("HEXPIRE h 500 GT FIELDS 1 a", "[1]"),
            ("HEXPIRE h 50 NX FIELDS 2 a b", "[0,1]"),
            ("HEXPIRE h 50 XX FIELDS 2 a b", "[1,1]"),
            ("HEXPIRE h 10 LT FIELDS 2 a b", "[1,1]"),
            ("HPERSIST h FIELDS 3 a b zz", "[1,1,-2]"),
            ("HPERSIST h FIELDS 1 a", "[-1]"),
            ("HPERSIST nokey FIELDS 1 a", "[-2]"),
            ("HTTL nokey FIELDS 1 a", "[-2]"),
            ("HEXPIRE h 0 FIELDS 1 c", "[2]"),
            ("HGETALL h", "[a,1,b,2]"),
            (
                "HEXPIRE h 100 FIELDS 0",
                "ERR wrong number of arguments for 'hexpire' command",
            ),
            ("HEXPIRE h 100 FIELDS 2 a", numfields),
            ("HEXPIRE h 100 FIELDS 1 a b", numfields),
            ("HEXPIRE h 100 foo 1 a", numfields),
            (
                "HEXPIRE h abc FIELDS 1 a",
                "ERR value is not an integer or out of range",
            ),
            (
                "HEXPIRE h -1 FIELDS 1 a",
                "ERR invalid expire time in 'hexpire' command",
            ),
            (
                "HEXPIRE h 100 FIELDS x a",
                "ERR value is not an integer or out of range",
            ),
            ("HEXPIREAT h 1 FIELDS 1 a", "[2]"),
            ("HGETALL h", "[b,2]"),
            (
                "HEXPIRE h 100 NX XX FIELDS 1 b",
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            (
                "HEXPIRE h 100 GT LT FIELDS 1 b",
                "ERR GT and LT options at the same time are not compatible",
            ),
            ("HEXPIRE h 100 FIELDS 1 b", "[1]"),
            // Setting a field again drops its deadline.
            ("HSET h b 6", "0"),
            ("HTTL h FIELDS 1 b", "[-1]"),
            (
                "HEXPIREAT h 9999999999999999 FIELDS 1 b",
                "ERR invalid expire time in 'hexpireat' command",
            ),
            (
                "HPEXPIRE h 9223372036854775807 FIELDS 1 b",
                "ERR invalid expire time in 'hpexpire' command",
            ),
            ("HTTL h FIELDS 2 a", "ERR syntax error"),
            ("HTTL h foo 1 a", "ERR syntax error"),
            ("SET s v", "OK"),
            (
                "HEXPIRE s 10 FIELDS 1 a",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "HTTL s FIELDS 1 a",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("HSET h x 1 y 2", "2"),
            ("HEXPIRE h 1000 FIELDS 2 x x", "[1,1]"),
            ("HEXPIRE h 0 FIELDS 2 y y", "[2,-2]"),
            ("HPERSIST h FIELDS 2 x x", "[1,-1]"),
            ("OBJECT ENCODING h", "hashtable"),
            // HINCRBY and HINCRBYFLOAT keep the field's deadline.
            ("HSET h n 1", "1"),
            ("HEXPIRE h 100 FIELDS 1 n", "[1]"),
            ("HINCRBY h n 2", "3"),
            ("HTTL h FIELDS 1 n", "[100]"),
            ("HINCRBYFLOAT h n 1.5", "4.5"),
            ("HTTL h FIELDS 1 n", "[100]"),
        ],
    );
}

/// HSCAN / SSCAN over large collections page by COUNT, and keep SCAN's promise while
/// elements are removed between the pages (below and above the cursor): every element
/// present for the whole scan is returned. Small ones come whole, cursor 0, as in Redis.
#[test]
fn scans_of_large_collections_page_and_return_every_lasting_element() {
    let server = TestServer::start();
    let mut con = server.client();
    let names: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
    let pairs: Vec<(&String, &String)> = names.iter().map(|name| (name, name)).collect();
    let _: () = con.hset_multiple("big", &pairs).unwrap();
    let _: () = con.sadd("bigset", &names).unwrap();
    for (command, key, step) in [("HSCAN", "big", 2), ("SSCAN", "bigset", 1)] {
        // No changes: every element exactly once, in pages of COUNT positions.
        let (mut cursor, mut seen, mut pages) = (0u64, Vec::new(), 0);
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd(command)
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(50)
                .query(&mut con)
                .unwrap();
            assert!(
                page.len() <= 50 * step,
                "{command}: {} in one page",
                page.len()
            );
            seen.extend(page.into_iter().step_by(step));
            pages += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        seen.sort();
        let mut all = names.clone();
        all.sort();
        assert_eq!(seen, all, "{command}");
        assert!(pages >= 20, "{command}: {pages} pages");
    }
    // Removals between pages: every third element goes, spread over the scan.
    let victims: Vec<&String> = names.iter().step_by(3).collect();
    for (command, key, step) in [("HSCAN", "big", 2), ("SSCAN", "bigset", 1)] {
        let (mut cursor, mut seen) = (0u64, BTreeSet::new());
        let mut doomed = victims.iter().rev().chain(victims.iter());
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd(command)
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(40)
                .query(&mut con)
                .unwrap();
            seen.extend(page.into_iter().step_by(step));
            for victim in doomed.by_ref().take(15) {
                let _: i64 = match command {
                    "HSCAN" => con.hdel(key, *victim).unwrap(),
                    _ => con.srem(key, *victim).unwrap(),
                };
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let missing: Vec<&String> = names
            .iter()
            .enumerate()
            .filter(|(i, name)| i % 3 != 0 && !seen.contains(*name))
            .map(|(_, name)| name)
            .collect();
        assert!(missing.is_empty(), "{command} missed {missing:?}");
    }
    let _: () = con
        .hset_multiple("small", &[("a", 1), ("b", 2), ("c", 3)])
        .unwrap();
    assert_eq!(run(&mut con, "HSCAN small 0 COUNT 1"), "[0,[a,1,b,2,c,3]]");
}

/// HSET of the same value still touches a WATCHed key, as in Redis (its EXEC aborts).
#[test]
fn hset_of_the_same_value_aborts_a_watching_exec() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut other = server.client();
    let _: () = con.hset("h", "f", "v").unwrap();
    let _: () = redis::cmd("WATCH").arg("h").query(&mut con).unwrap();
    let _: i64 = other.hset("h", "f", "v").unwrap();
    let result: Option<(i64,)> = redis::pipe()
        .atomic()
        .hset("h", "g", "w")
        .query(&mut con)
        .unwrap();
    assert_eq!(result, None, "EXEC ran although a watched key was written");
}

/// Without a WAL, removing a key deletes its cold copy at once, which may block: an SREM
/// that empties a set with a cold copy must not change the set on a first try that then
/// finds it has to block (it used to leave an empty set and answer 0 on the retry).
#[test]
fn emptying_a_collection_with_a_cold_copy_answers_once_and_removes_it() {
    let server = TestServer::start_with(|config| {
        config.persistence.wal = false;
        config.storage.hot_max_bytes = Some(ByteSize(256 << 10));
    });
    let mut con = server.client();
    let _: i64 = con.sadd("solo", "x").unwrap();
    let _: i64 = con.hset("one", "f", "v").unwrap();
    let filler = "x".repeat(1000);
    for i in 0..3000 {
        let _: () = con.set(format!("fill:{i}"), &filler).unwrap();
    }
    // Read back: promoted, with its cold copy still there.
    assert!(con.sismember::<_, _, bool>("solo", "x").unwrap());
    assert_eq!(con.hget::<_, _, String>("one", "f").unwrap(), "v");
    assert_eq!(con.srem::<_, _, i64>("solo", "x").unwrap(), 1);
    assert_eq!(con.hdel::<_, _, i64>("one", "f").unwrap(), 1);
    assert!(!con.exists::<_, bool>("solo").unwrap());
    assert!(!con.exists::<_, bool>("one").unwrap());
    drop(con);
    let dir = server.stop();
    let server = TestServer::start_with(|config| {
        config.persistence.wal = false;
        config.storage.dir = dir.path().to_path_buf();
    });
    let mut con = server.client();
    assert_eq!(con.exists::<_, i64>(&["solo", "one"]).unwrap(), 0);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 3000);
}

/// Waits (at most 5 s) until `done` holds, polling; the bound keeps a broken build from
/// hanging the suite.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// A field whose deadline passes is gone for every reader; a hash whose fields all expired
/// is no key; deadlines survive a restart (the cold value and the WAL carry them).
#[test]
fn expired_fields_vanish_and_deadlines_survive_a_restart() {
    let server = TestServer::start_with(|config| {
        config.persistence.wal = true;
    });
    let mut con = server.client();
    let _: () = con
        .hset_multiple("h", &[("a", 1), ("b", 2), ("c", 3)])
        .unwrap();
    let _: Value = redis::cmd("HPEXPIRE")
        .arg("h")
        .arg(20)
        .arg("FIELDS")
        .arg(1)
        .arg("a")
        .query(&mut con)
        .unwrap();
    let _: Value = redis::cmd("HEXPIRE")
        .arg("h")
        .arg(1000)
        .arg("FIELDS")
        .arg(1)
        .arg("b")
        .query(&mut con)
        .unwrap();
    assert!(eventually(|| con
        .hget::<_, _, Option<String>>("h", "a")
        .unwrap()
        .is_none()));
    assert_eq!(con.hlen::<_, i64>("h").unwrap(), 2);
    assert_eq!(run(&mut con, "HKEYS h"), "[b,c]");
    assert_eq!(run(&mut con, "HRANDFIELD h 10"), "[b,c]");
    drop(con);
    let dir = server.stop();
    let server = TestServer::start_with(|config| {
        config.persistence.wal = true;
        config.storage.dir = dir.path().to_path_buf();
    });
    let mut con = server.client();
    let ttls: Vec<i64> = redis::cmd("HTTL")
        .arg("h")
        .arg("FIELDS")
        .arg(2)
        .arg("b")
        .arg("c")
        .query(&mut con)
        .unwrap();
    assert!((990..=1000).contains(&ttls[0]) && ttls[1] == -1, "{ttls:?}");
    let _: Value = redis::cmd("HPEXPIRE")
        .arg("h")
        .arg(20)
        .arg("FIELDS")
        .arg(2)
        .arg("b")
        .arg("c")
        .query(&mut con)
        .unwrap();
    assert!(eventually(|| con.hlen::<_, i64>("h").unwrap() == 0));
    assert!(!con.exists::<_, bool>("h").unwrap());
}

/// The active expiry cycle reclaims expired fields of hashes nobody reads: EXISTS and the
/// engine's own field count (neither purges) see them go.
#[test]
fn active_expiry_reclaims_fields_nobody_reads() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.hset_multiple("gone", &[("a", 1)]).unwrap();
    let _: () = con.hset_multiple("kept", &[("a", 1), ("b", 2)]).unwrap();
    for key in ["gone", "kept"] {
        let _: Value = redis::cmd("HPEXPIRE")
            .arg(key)
            .arg(20)
            .arg("FIELDS")
            .arg(1)
            .arg("a")
            .query(&mut con)
            .unwrap();
    }
    let engine = &server.shared.engine;
    let fields = |key: &[u8]| {
        engine
            .inspect(hypercache::engine::Access::MayBlock, 0, key)
            .unwrap()
            .map(|info| info.len)
    };
    assert!(eventually(|| fields(b"kept") == Some(1)));
    assert!(eventually(|| !con.exists::<_, bool>("gone").unwrap()));
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 1);
}

#[test]
fn set_commands_answer_as_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    check(
        &mut con,
        &[
            ("SADD s a b c", "3"),
            ("SADD s a d", "1"),
            ("SREM s a zz", "1"),
            ("SREM s zz", "0"),
            ("SISMEMBER s b", "1"),
            ("SISMEMBER s zz", "0"),
            ("SMISMEMBER s b zz c", "[1,0,1]"),
            ("SMISMEMBER nokey a", "[0]"),
            ("SCARD s", "3"),
            ("SCARD nokey", "0"),
            ("SMEMBERS s", "{b,c,d}"),
            ("TYPE s", "set"),
            ("SPOP nokey", "nil"),
            ("SPOP s 0", "[]"),
            ("SPOP nokey 3", "[]"),
            ("SPOP s -1", "ERR value is out of range, must be positive"),
            ("SRANDMEMBER nokey", "nil"),
            ("SRANDMEMBER nokey 3", "[]"),
            ("SRANDMEMBER s 0", "[]"),
            ("SMOVE s dst b", "1"),
            ("SMOVE s dst zz", "0"),
            ("SMOVE nokey dst b", "0"),
            ("SMOVE s s c", "1"),
            ("SMOVE s s zz", "0"),
            ("SMEMBERS dst", "{b}"),
            ("SET str v", "OK"),
            (
                "SMOVE s str c",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("SMOVE nokey str c", "0"),
            ("SADD k1 a b c d", "4"),
            ("SADD k2 c d e", "3"),
            ("SADD k3 a c f", "3"),
            ("SINTER k1 k2", "{c,d}"),
            ("SINTER k1 k2 nokey", "{}"),
            (
                "SINTER k1 str",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "SINTER nokey str",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("SUNION k1 nokey k2", "{a,b,c,d,e}"),
            ("SDIFF k1 k2 k3", "{b}"),
            ("SDIFF nokey k1", "{}"),
            ("SINTERSTORE out k1 k2", "2"),
            ("SMEMBERS out", "{c,d}"),
            ("SUNIONSTORE out k1 k3", "5"),
            ("SDIFFSTORE out k1 k1", "0"),
            ("EXISTS out", "0"),
            ("EXPIRE k3 100", "1"),
            ("SINTERSTORE str k1 k2", "2"),
            ("TYPE str", "set"),
            ("SUNIONSTORE k3 k3 k2", "5"),
            ("TTL k3", "-1"),
            ("SINTERCARD 2 k1 k2", "2"),
            ("SINTERCARD 2 k1 k2 LIMIT 1", "1"),
            ("SINTERCARD 2 k1 k2 LIMIT 0", "2"),
            ("SINTERCARD 0 k1", "ERR numkeys should be greater than 0"),
            ("SINTERCARD x k1", "ERR numkeys should be greater than 0"),
            (
                "SINTERCARD 5 k1",
                "ERR Number of keys can't be greater than number of args",
            ),
            ("SINTERCARD 1 k1 LIMIT -1", "ERR LIMIT can't be negative"),
            ("SINTERCARD 1 k1 LIM 2", "ERR syntax error"),
            ("SSCAN k1 0 MATCH a*", "[0,[a]]"),
            ("SSCAN k1 x", "ERR invalid cursor"),
            ("SSCAN k1 0 NOVALUES", "ERR syntax error"),
            ("SPOP k2 10", "{c,d,e}"),
            ("EXISTS k2", "0"),
            (
                "SRANDMEMBER k1 -2000000",
                "ERR value is out of range, a negative count may ask for at most 1048576 elements",
            ),
            ("SADD ints 1 2 3", "3"),
            ("OBJECT ENCODING ints", "intset"),
            ("SADD ints x", "1"),
            ("OBJECT ENCODING ints", "listpack"),
        ],
    );
}

#[test]
fn every_family_answers_wrongtype_for_another_type() {
    let server = TestServer::start();
    let mut con = server.client();
    let wrong = "WRONGTYPE Operation against a key holding the wrong kind of value";
    check(
        &mut con,
        &[
            ("HSET h f v", "1"),
            ("SADD s m", "1"),
            ("SET str v", "OK"),
            ("GET h", wrong),
            ("APPEND h x", wrong),
            ("INCR s", wrong),
            ("STRLEN h", wrong),
            ("GETRANGE s 0 1", wrong),
            ("SET h x GET", wrong),
            ("GETDEL s", wrong),
            ("HGET s f", wrong),
            ("HSET str f v", wrong),
            ("HGETALL s", wrong),
            ("HRANDFIELD str", wrong),
            ("SADD h m", wrong),
            ("SISMEMBER str m", wrong),
            ("SMEMBERS h", wrong),
            ("SPOP h", wrong),
            (
                "LCS h str",
                "ERR The specified keys must contain string values",
            ),
            // MGET reads a key of another type as nil, as in Redis.
            ("MGET h str s", "[nil,v,nil]"),
            // SET overwrites whatever was there; so does a STORE form.
            ("SET h plain", "OK"),
            ("TYPE h", "string"),
        ],
    );
}

#[test]
fn generic_commands_work_on_every_type() {
    let server = TestServer::start();
    let mut con = server.client();
    check(
        &mut con,
        &[
            ("HSET h a 1 b 2", "2"),
            ("SADD s x y", "2"),
            ("SET str v", "OK"),
            ("EXPIRE h 100", "1"),
            ("TTL h", "100"),
            ("PERSIST h", "1"),
            ("TTL h", "-1"),
            ("RENAME h h2", "OK"),
            ("TYPE h2", "hash"),
            ("COPY h2 h3", "1"),
            ("HGETALL h3", "[a,1,b,2]"),
            ("COPY s s2", "1"),
            ("SMEMBERS s2", "{x,y}"),
            ("MOVE s2 1", "1"),
            ("EXISTS s2", "0"),
            // SCAN walks slots in order: h3's comes first.
            ("SCAN 0 TYPE hash COUNT 1000", "[0,[h3,h2]]"),
            ("SCAN 0 TYPE set COUNT 1000", "[0,[s]]"),
            ("SCAN 0 TYPE string COUNT 1000", "[0,[str]]"),
            ("SCAN 0 TYPE zset COUNT 1000", "[0,[]]"),
            ("OBJECT ENCODING h2", "listpack"),
            ("OBJECT ENCODING str", "embstr"),
            ("OBJECT ENCODING nokey", "nil"),
            ("UNLINK s h3", "2"),
            ("DBSIZE", "2"),
        ],
    );
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("h2")
        .query(&mut con)
        .unwrap();
    assert!(usage > 0, "MEMORY USAGE of a hash: {usage}");
}

/// SCAN TYPE over many pages: the cursor goes on while the keys are filtered.
#[test]
fn scan_type_keeps_the_cursor_and_filters_the_keys() {
    let server = TestServer::start();
    let mut con = server.client();
    for i in 0..50 {
        let _: () = con.hset(format!("h{i}"), "f", "v").unwrap();
        let _: () = con.sadd(format!("s{i}"), "m").unwrap();
    }
    let mut cursor = 0u64;
    let mut hashes = BTreeSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("TYPE")
            .arg("hash")
            .arg("COUNT")
            .arg(7)
            .query(&mut con)
            .unwrap();
        hashes.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let expected: BTreeSet<String> = (0..50).map(|i| format!("h{i}")).collect();
    assert_eq!(hashes, expected);
}

#[test]
fn random_picks_follow_the_count_rules() {
    let server = TestServer::start();
    let mut con = server.client();
    let fields: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    for field in &fields {
        let _: () = con.hset("h", field, "v").unwrap();
        let _: () = con.sadd("s", field).unwrap();
    }
    let all: BTreeSet<String> = fields.iter().cloned().collect();
    for key_command in [("HRANDFIELD", "h"), ("SRANDMEMBER", "s")] {
        let distinct: Vec<String> = redis::cmd(key_command.0)
            .arg(key_command.1)
            .arg(5)
            .query(&mut con)
            .unwrap();
        let unique: BTreeSet<String> = distinct.iter().cloned().collect();
        assert_eq!((distinct.len(), unique.len()), (5, 5), "{key_command:?}");
        assert!(unique.is_subset(&all));
        let everything: BTreeSet<String> = redis::cmd(key_command.0)
            .arg(key_command.1)
            .arg(100)
            .query(&mut con)
            .unwrap();
        assert_eq!(everything, all);
        let repeating: Vec<String> = redis::cmd(key_command.0)
            .arg(key_command.1)
            .arg(-100)
            .query(&mut con)
            .unwrap();
        assert_eq!(repeating.len(), 100);
        assert!(repeating.iter().all(|field| all.contains(field)));
    }
    let pairs: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-6)
        .arg("WITHVALUES")
        .query(&mut con)
        .unwrap();
    assert_eq!(pairs.len(), 12);
    assert!(pairs
        .chunks(2)
        .all(|pair| all.contains(&pair[0]) && pair[1] == "v"));
    let popped: BTreeSet<String> = redis::cmd("SPOP").arg("s").arg(8).query(&mut con).unwrap();
    assert_eq!(popped.len(), 8);
    let left: BTreeSet<String> = con.smembers("s").unwrap();
    assert_eq!(left.len(), 12);
    assert!(left.is_disjoint(&popped));
    assert_eq!(left.union(&popped).cloned().collect::<BTreeSet<_>>(), all);
}

/// RESP3 gives HGETALL a map, SMEMBERS / SPOP with a count / SINTER a set, and
/// HRANDFIELD WITHVALUES pairs; SRANDMEMBER with a count stays an array (Redis 7.0.15's
/// bytes).
#[test]
fn resp3_reply_types_match_redis() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(&resp(&[b"HELLO", b"3"]));
    raw.read_until(b"modules\r\n*0\r\n");
    for (request, reply) in [
        (&[&b"HSET"[..], b"h", b"f", b"v"][..], &b":1\r\n"[..]),
        (&[b"SADD", b"s", b"a"], b":1\r\n"),
        (&[b"HGETALL", b"h"], b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"),
        (&[b"HGETALL", b"nokey"], b"%0\r\n"),
        (&[b"SMEMBERS", b"s"], b"~1\r\n$1\r\na\r\n"),
        (&[b"SINTER", b"s"], b"~1\r\n$1\r\na\r\n"),
        (&[b"SRANDMEMBER", b"s", b"2"], b"*1\r\n$1\r\na\r\n"),
        (
            &[b"HRANDFIELD", b"h", b"1", b"WITHVALUES"],
            b"*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
        (&[b"SPOP", b"nokey", b"2"], b"~0\r\n"),
        (&[b"SPOP", b"s", b"1"], b"~1\r\n$1\r\na\r\n"),
    ] {
        raw.roundtrip(&resp(request), reply);
    }
}

/// A script and MULTI/EXEC reach the new families through the same table.
#[test]
fn scripts_and_transactions_use_hashes_and_sets() {
    let server = TestServer::start();
    let mut con = server.client();
    let script = redis::Script::new(
        "redis.call('HSET', KEYS[1], 'f', ARGV[1]); redis.call('SADD', KEYS[2], ARGV[1]); \
         return {redis.call('HGET', KEYS[1], 'f'), redis.call('SCARD', KEYS[2])}",
    );
    let (value, card): (String, i64) = script
        .key("{t}h")
        .key("{t}s")
        .arg("one")
        .invoke(&mut con)
        .unwrap();
    assert_eq!((value.as_str(), card), ("one", 1));
    let (added, moved, members): (i64, i64, Vec<String>) = redis::pipe()
        .atomic()
        .sadd("{t}a", &["x", "y"])
        .smove("{t}a", "{t}b", "x")
        .smembers("{t}b")
        .query(&mut con)
        .unwrap();
    assert_eq!((added, moved, members), (2, 1, vec!["x".to_string()]));
}

/// Concurrent SMOVEs between two sets never lose or duplicate a member (I7): each moves
/// atomically over both keys.
#[test]
fn concurrent_smoves_keep_every_member_exactly_once() {
    let server = TestServer::start();
    let mut con = server.client();
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let _: () = con.sadd("left", &members).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mut con = server.client();
            let members = members.clone();
            std::thread::spawn(move || {
                for (i, member) in members.iter().enumerate().take(400 / 4) {
                    let (from, to) = match (i + t) % 2 {
                        0 => ("left", "right"),
                        _ => ("right", "left"),
                    };
                    let _: i64 = con.smove(from, to, member).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let left: BTreeSet<String> = con.smembers("left").unwrap();
    let right: BTreeSet<String> = con.smembers("right").unwrap();
    assert!(left.is_disjoint(&right));
    assert_eq!(left.len() + right.len(), members.len());
}

/// ioredis, a client nobody here wrote: a session store and a tag index, with its own
/// reply conversions (HGETALL as an object, SMEMBERS as an array).
#[test]
fn ioredis_keeps_sessions_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let script = format!(
        r##"
const Redis = require("ioredis");
const r = new Redis({port});
(async () => {{
  console.log(await r.hset("session:7", {{ user: "lin", cart: "1" }}));
  await r.expire("session:7", 600);
  console.log(await r.hincrby("session:7", "cart", 4), JSON.stringify(await r.hgetall("session:7")));
  await r.sadd("tag:a", "x", "y", "z");
  await r.sadd("tag:b", "y", "z", "w");
  console.log(JSON.stringify((await r.sinter("tag:a", "tag:b")).sort()), await r.scard("tag:a"));
  r.disconnect();
}})().catch((err) => {{ console.error(err); process.exit(1); }});
"##,
        port = server.port
    );
    let (stdout, stderr) = common::run_node_with_ioredis(&script);
    assert_eq!(
        stdout, "2\n5 {\"user\":\"lin\",\"cart\":\"5\"}\n[\"y\",\"z\"] 3\n",
        "node stderr: {}",
        stderr
    );
}

fn expected_hash(i: usize, deleted_first: bool) -> HashMap<String, String> {
    (0..8)
        .filter(|j| !(deleted_first && *j == 0))
        .map(|j| (format!("f{j}"), format!("v{i}-{j}").repeat(10)))
        .collect()
}

fn expected_set(i: usize, deleted_first: bool) -> BTreeSet<String> {
    (0..8)
        .filter(|j| !(deleted_first && *j == 0))
        .map(|j| format!("m{i}-{j}"))
        .collect()
}

const TIERED_KEYS: usize = 6_000;

/// Writes hashes and sets far beyond a 16 MB budget, then changes a third of them.
fn write_collections(con: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    for i in 0..TIERED_KEYS {
        let fields: Vec<(String, String)> = expected_hash(i, false).into_iter().collect();
        pipe.hset_multiple(format!("h:{i}"), &fields).ignore();
        let members: Vec<String> = expected_set(i, false).into_iter().collect();
        pipe.sadd(format!("s:{i}"), members).ignore();
        if i % 500 == 499 {
            pipe.query::<()>(con).unwrap();
            pipe = redis::pipe();
        }
    }
    pipe.query::<()>(con).unwrap();
    for i in (0..TIERED_KEYS).step_by(3) {
        let _: i64 = con.hdel(format!("h:{i}"), "f0").unwrap();
        let _: i64 = con.srem(format!("s:{i}"), format!("m{i}-0")).unwrap();
    }
}

fn check_collections(con: &mut redis::Connection) {
    for i in 0..TIERED_KEYS {
        let changed = i % 3 == 0;
        let hash: HashMap<String, String> = con.hgetall(format!("h:{i}")).unwrap();
        assert_eq!(hash, expected_hash(i, changed), "h:{i}");
        let set: BTreeSet<String> = con.smembers(format!("s:{i}")).unwrap();
        assert_eq!(set, expected_set(i, changed), "s:{i}");
    }
    let size: i64 = redis::cmd("DBSIZE").query(con).unwrap();
    assert_eq!(size, 2 * TIERED_KEYS as i64);
}

/// Most collections live in the cold tier: they are demoted whole and read back exactly,
/// and a clean restart keeps them (the shutdown checkpoint).
#[test]
fn collections_move_between_tiers_and_survive_a_restart() {
    // A hot tier of 1 MB: most collections live in the cold tier.
    let server = TestServer::start_with(|config| {
        config.storage.maxmemory = ByteSize(16 << 20);
        config.storage.hot_max_bytes = Some(ByteSize(1 << 20));
    });
    let mut con = server.client();
    write_collections(&mut con);
    // Most of the 2 x TIERED_KEYS collections must be cold for this test to mean anything.
    let hot_keys = server.shared.engine.tier_report().hot_keys;
    assert!(
        hot_keys < TIERED_KEYS,
        "{hot_keys} of {} keys hot: the test needs the cold tier",
        2 * TIERED_KEYS
    );
    check_collections(&mut con);
    drop(con);
    let dir = server.stop();
    let server = TestServer::start_with(|config| {
        config.storage.maxmemory = ByteSize(16 << 20);
        config.storage.hot_max_bytes = Some(ByteSize(1 << 20));
        config.storage.dir = dir.path().to_path_buf();
    });
    check_collections(&mut server.client());
}

/// kill -9 of the real binary under `appendfsync always`: every acknowledged HSET, HDEL,
/// SADD and SREM is replayed from the WAL, over a cold tier holding older versions.
#[test]
fn collections_survive_kill_9_under_appendfsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--maxmemory",
        "16mb",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ];
    // A hot tier of 1 MB: most collections are cold when the records are replayed.
    let env = [("HYPERCACHE_STORAGE__HOT_MAX_BYTES", "1mb")];
    let server = BinaryServer::start_with_env(dir.path(), &args, &env, None);
    let mut con = server.client();
    write_collections(&mut con);
    // A collection of 100,000 fields, partly demoted, then unlinked: nothing of it may
    // come back after the crash (I2).
    let mut pipe = redis::pipe();
    for chunk in 0..100 {
        let fields: Vec<(String, u32)> = (0..1000).map(|i| (format!("f{chunk}:{i}"), i)).collect();
        pipe.hset_multiple("huge", &fields).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    let _: i64 = con.hset("huge", "after-save", 1).unwrap();
    assert_eq!(con.unlink::<_, i64>("huge").unwrap(), 1);
    drop(con);
    server.kill9();
    let server = BinaryServer::start_with_env(dir.path(), &args, &env, None);
    let mut con = server.client();
    check_collections(&mut con);
    assert!(!con.exists::<_, bool>("huge").unwrap());
}

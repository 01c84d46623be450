//! Lua scripting (issue 18) against the binary: Redis's conversion rules and error texts
//! in raw RESP (checked against Debian's redis-server 7.0.15), the sandbox, EVALSHA and
//! the script cache, read-only scripts, atomicity against other clients, SCRIPT KILL of a
//! busy script while others get -BUSY, and redis-py's Lock and register_script.

mod common;

use std::io::Write;

use common::{resp, BinaryServer, RawClient};

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

/// SCRIPT LOAD's answer for `body`: its SHA1.
fn sha_of(client: &mut RawClient, body: &str) -> String {
    client.send(&resp(&[b"SCRIPT", b"LOAD", body.as_bytes()]));
    let reply = client.read_exact_reply(b"$40\r\n\r\n".len() + 40);
    String::from_utf8_lossy(&reply[5..45]).into_owned()
}

fn eval(client: &mut RawClient, body: &str, rest: &[&[u8]], reply: &[u8]) {
    let mut args: Vec<&[u8]> = vec![b"EVAL", body.as_bytes()];
    args.extend_from_slice(rest);
    client.roundtrip(&resp(&args), reply);
}

#[test]
fn replies_and_errors_follow_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut c = RawClient::connect(server.port);
    c.roundtrip(&resp(&[b"SET", b"s", b"abc"]), b"+OK\r\n");

    // Lua to RESP.
    eval(
        &mut c,
        "return {1,2,{3,'x'},nil,5}",
        &[b"0"],
        b"*3\r\n:1\r\n:2\r\n*2\r\n:3\r\n$1\r\nx\r\n",
    );
    eval(&mut c, "return {ok='fine'}", &[b"0"], b"+fine\r\n");
    eval(
        &mut c,
        "return {err='bad thing'}",
        &[b"0"],
        b"-bad thing\r\n",
    );
    eval(&mut c, "return 3.99", &[b"0"], b":3\r\n");
    eval(&mut c, "return true", &[b"0"], b":1\r\n");
    eval(&mut c, "return false", &[b"0"], b"$-1\r\n");
    eval(
        &mut c,
        "return redis.error_reply('my err')",
        &[b"0"],
        b"-my err\r\n",
    );
    eval(
        &mut c,
        "return redis.status_reply('fine')",
        &[b"0"],
        b"+fine\r\n",
    );
    eval(
        &mut c,
        "return redis.sha1hex('')",
        &[b"0"],
        &bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    );
    eval(
        &mut c,
        "return KEYS[1]..ARGV[1]",
        &[b"1", b"k", b"a"],
        &bulk("ka"),
    );
    // Many keys and arguments (KEYS and ARGV are built from a table past 8 of them).
    eval(
        &mut c,
        "return {#KEYS, #ARGV, KEYS[3], ARGV[9]}",
        &[
            b"3", b"k1", b"k2", b"k3", b"a1", b"a2", b"a3", b"a4", b"a5", b"a6", b"a7", b"a8",
            b"a9",
        ],
        b"*4\r\n:3\r\n:9\r\n$2\r\nk3\r\n$2\r\na9\r\n",
    );
    // RESP to Lua: nil is false, a status is {ok=...}.
    eval(
        &mut c,
        "return {redis.call('get','nokey') == false, redis.call('set','t','1').ok}",
        &[b"0"],
        b"*2\r\n:1\r\n$2\r\nOK\r\n",
    );
    eval(
        &mut c,
        "return redis.call('get', KEYS[1])",
        &[b"1", b"s"],
        &bulk("abc"),
    );
    eval(
        &mut c,
        "return cjson.encode({1,2})",
        &[b"0"],
        &bulk("[1,2]"),
    );
    eval(
        &mut c,
        "return cjson.decode('{\"a\":[1,2]}').a[2]",
        &[b"0"],
        b":2\r\n",
    );
    eval(&mut c, "return bit.band(7,3)", &[b"0"], b":3\r\n");

    // Errors, each with the script and line, as Redis 7 writes them.
    let body = "return redis.call('incr','s')";
    let sha = sha_of(&mut c, body);
    eval(
        &mut c,
        body,
        &[b"0"],
        format!(
            "-ERR value is not an integer or out of range script: {sha}, on @user_script:1.\r\n"
        )
        .as_bytes(),
    );
    eval(
        &mut c,
        "return redis.pcall('incr','s')",
        &[b"0"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    for (body, text) in [
        (
            "x = 1",
            "ERR user_script:1: Attempt to modify a readonly table",
        ),
        (
            "return y",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'y'",
        ),
        (
            "return dofile",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'dofile'",
        ),
        ("error('boom')", "ERR user_script:1: boom"),
        (
            "return redis.call('nosuch')",
            "ERR Unknown Redis command called from script",
        ),
        (
            "return redis.call('get')",
            "ERR Wrong number of args calling Redis command from script",
        ),
        (
            "return redis.call('shutdown')",
            "ERR This Redis command is not allowed from script",
        ),
    ] {
        let sha = sha_of(&mut c, body);
        eval(
            &mut c,
            body,
            &[b"0"],
            format!("-{text} script: {sha}, on @user_script:1.\r\n").as_bytes(),
        );
    }
    let write = "return redis.call('set','a','b')";
    let sha = sha_of(&mut c, write);
    c.roundtrip(
        &resp(&[b"EVAL_RO", write.as_bytes(), b"0"]),
        format!("-ERR Write commands are not allowed from read-only scripts. script: {sha}, on @user_script:1.\r\n").as_bytes(),
    );
    eval(
        &mut c,
        "this is not lua",
        &[b"0"],
        b"-ERR Error compiling script (new function): user_script:1: '=' expected near 'is'\r\n",
    );
    eval(
        &mut c,
        "return 1",
        &[b"-1"],
        b"-ERR Number of keys can't be negative\r\n",
    );
    eval(
        &mut c,
        "return 1",
        &[b"2", b"a"],
        b"-ERR Number of keys can't be greater than number of args\r\n",
    );

    // The script cache.
    let sha = sha_of(&mut c, "return 1");
    assert_eq!(sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    c.roundtrip(
        &resp(&[b"SCRIPT", b"EXISTS", sha.as_bytes(), b"nope"]),
        b"*2\r\n:1\r\n:0\r\n",
    );
    c.roundtrip(&resp(&[b"EVALSHA", sha.as_bytes(), b"0"]), b":1\r\n");
    c.roundtrip(&resp(&[b"SCRIPT", b"FLUSH"]), b"+OK\r\n");
    c.roundtrip(
        &resp(&[b"EVALSHA", sha.as_bytes(), b"0"]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );
    c.roundtrip(
        &resp(&[b"SCRIPT", b"KILL"]),
        b"-NOTBUSY No scripts in execution right now.\r\n",
    );
    // Inside MULTI the script runs in the transaction.
    c.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    c.roundtrip(
        &resp(&[b"EVAL", b"return redis.call('incr', KEYS[1])", b"1", b"n"]),
        b"+QUEUED\r\n",
    );
    c.roundtrip(&resp(&[b"INCR", b"n"]), b"+QUEUED\r\n");
    c.roundtrip(&resp(&[b"EXEC"]), b"*2\r\n:1\r\n:2\r\n");
}

/// Redis's RESP3 rules (checked against redis-server 7.0.15): the `{map=}`, `{set=}`,
/// `{double=}`, `{big_number=}` and `{verbatim_string=}` tables, booleans after
/// `redis.setresp(3)`, and nil rather than false for a missing value, to RESP2 and RESP3
/// clients alike.
#[test]
fn resp3_conversions_follow_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let cases: [(&str, &[u8], &[u8]); 12] = [
        (
            "return {map={a=1}}",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"%1\r\n$1\r\na\r\n:1\r\n",
        ),
        ("return {double=3.5}", b"$3\r\n3.5\r\n", b",3.5\r\n"),
        (
            "return {set={a=true}}",
            b"*1\r\n$1\r\na\r\n",
            b"~1\r\n$1\r\na\r\n",
        ),
        (
            "return {big_number='123456789012345678901234567890'}",
            b"$30\r\n123456789012345678901234567890\r\n",
            b"(123456789012345678901234567890\r\n",
        ),
        (
            "return {verbatim_string={format='txt', string='hi'}}",
            b"$2\r\nhi\r\n",
            b"=6\r\ntxt:hi\r\n",
        ),
        ("redis.setresp(3) return true", b":1\r\n", b"#t\r\n"),
        ("redis.setresp(3) return false", b":0\r\n", b"#f\r\n"),
        ("return false", b"$-1\r\n", b"_\r\n"),
        (
            "redis.setresp(3) return type(redis.call('get','nokey'))",
            b"$3\r\nnil\r\n",
            b"$3\r\nnil\r\n",
        ),
        (
            "return type(redis.call('get','nokey'))",
            b"$7\r\nboolean\r\n",
            b"$7\r\nboolean\r\n",
        ),
        (
            "redis.setresp(3) local r = redis.call('set','a','1') return type(r)..tostring(r.ok)",
            b"$7\r\ntableOK\r\n",
            b"$7\r\ntableOK\r\n",
        ),
        (
            "return {map={a={set={x=true}}}}",
            b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nx\r\n",
            b"%1\r\n$1\r\na\r\n~1\r\n$1\r\nx\r\n",
        ),
    ];
    let mut resp2 = RawClient::connect(server.port);
    let mut resp3 = RawClient::connect(server.port);
    resp3.send(&resp(&[b"HELLO", b"3"]));
    resp3.read_until(b"modules\r\n*0\r\n");
    for (body, in_resp2, in_resp3) in cases {
        eval(&mut resp2, body, &[b"0"], in_resp2);
        eval(&mut resp3, body, &[b"0"], in_resp3);
    }
}

/// `cmsgpack` packs byte for byte as Redis 7.0.15 does, and unpacks what it packs.
#[test]
fn cmsgpack_matches_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut c = RawClient::connect(server.port);
    let cases: [(&str, &[u8]); 8] = [
        (
            "return cmsgpack.pack(1, -1, 127, 128, 255, 256, 65535, 65536, 4294967296, -32, -33, -128, -129, -32768, -32769, -2147483649)",
            b"$52\r\n\x01\xff\x7f\xcc\x80\xcc\xff\xcd\x01\x00\xcd\xff\xff\xce\x00\x01\x00\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xe0\xd0\xdf\xd0\x80\xd1\xff\x7f\xd1\x80\x00\xd2\xff\xff\x7f\xff\xd3\xff\xff\xff\xff\x7f\xff\xff\xff\r\n",
        ),
        (
            "return cmsgpack.pack(1.5, 0.1, 1e300, nil, true, false)",
            b"$26\r\n\xca?\xc0\x00\x00\xcb?\xb9\x99\x99\x99\x99\x99\x9a\xcb~7\xe4<\x88\x00u\x9c\xc0\xc3\xc2\r\n",
        ),
        (
            "return cmsgpack.pack({}, {1,2,3}, {a=1}, {1,nil,3}, {[2]=1})",
            b"$17\r\n\x90\x93\x01\x02\x03\x81\xa1a\x01\x82\x01\x01\x03\x03\x81\x02\x01\r\n",
        ),
        (
            "return cmsgpack.pack(string.rep('z', 70000)):sub(1,5)",
            b"$5\r\n\xdb\x00\x01\x11p\r\n",
        ),
        (
            "local t = {} local c = t for i=1,20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)",
            b"$17\r\n\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0\r\n",
        ),
        (
            "local t = {cmsgpack.unpack(cmsgpack.pack(1, 'a', {1,2}, {x='y'}, true, 2.5))} return {type(t[1]), type(t[2]), type(t[3]), t[4].x, tostring(t[5]), tostring(t[6])}",
            b"*6\r\n$6\r\nnumber\r\n$6\r\nstring\r\n$5\r\ntable\r\n$1\r\ny\r\n$4\r\ntrue\r\n$3\r\n2.5\r\n",
        ),
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2), 1)}",
            b"*2\r\n:-1\r\n:2\r\n",
        ),
        (
            "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
            b"*3\r\n:2\r\n:1\r\n:2\r\n",
        ),
    ];
    for (body, reply) in cases {
        eval(&mut c, body, &[b"0"], reply);
    }
    eval(
        &mut c,
        "return cmsgpack.unpack('\\193')",
        &[b"0"],
        b"-ERR user_script:1: Bad data format in input. script: dc135bd7bc2955014f03280e151acf74360378e7, on @user_script:1.\r\n",
    );
    eval(
        &mut c,
        "return cmsgpack.unpack('\\205')",
        &[b"0"],
        b"-ERR user_script:1: Missing bytes in input. script: 79144aeb216f1ca3fa978037eb658eedc72dc864, on @user_script:1.\r\n",
    );
    // A self-referencing table, and JSON nested 100,000 deep, are errors, not a crash.
    // A table that contains itself, returned: nested arrays ending in Redis's error element.
    c.send(&resp(&[b"EVAL", b"local t = {} t[1] = t return t", b"0"]));
    c.read_until(b"-ERR reached lua stack limit\r\n");
    c.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
    for body in [
        "local t = {} t[1] = t return tostring(pcall(cjson.encode, t))",
        "return tostring(pcall(cjson.decode, string.rep('[', 100000)))",
    ] {
        eval(&mut c, body, &[b"0"], b"$5\r\nfalse\r\n");
    }
    // Hostile input: 100,000 nested one-item arrays is refused, not recursed into (it
    // overflowed the stack before the bound); 60 levels still decode.
    eval(
        &mut c,
        "local t = cmsgpack.unpack(string.rep('\\145', 60) .. '\\1') for i = 1, 60 do t = t[1] end return t",
        &[b"0"],
        b":1\r\n",
    );
    eval(
        &mut c,
        "local ok, err = pcall(cmsgpack.unpack, string.rep('\\145', 100000)) return tostring(ok)",
        &[b"0"],
        b"$5\r\nfalse\r\n",
    );
}

/// `struct` packs and unpacks as Redis 7.0.15's lua_struct does (replies probed from it).
#[test]
fn struct_matches_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut c = RawClient::connect(server.port);
    let cases: [(&str, &[u8]); 19] = [
        ("return struct.pack('>i', 1)", b"$4\r\n\x00\x00\x00\x01\r\n"),
        ("return struct.pack('<i', 1)", b"$4\r\n\x01\x00\x00\x00\r\n"),
        (
            "return struct.pack('bBhHlLT', -1, 255, -2, 65535, -3, 4, 5)",
            b"$30\r\n\xff\xff\xfe\xff\xff\xff\xfd\xff\xff\xff\xff\xff\xff\xff\x04\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\r\n",
        ),
        ("return struct.pack('>I2', 258)", b"$2\r\n\x01\x02\r\n"),
        ("return struct.pack('d', 1.5)", b"$8\r\n\x00\x00\x00\x00\x00\x00\xf8?\r\n"),
        ("return struct.pack('f', 1.5)", b"$4\r\n\x00\x00\xc0?\r\n"),
        ("return struct.pack('s', 'ab')", b"$3\r\nab\x00\r\n"),
        ("return struct.pack('c3', 'abcdef')", b"$3\r\nabc\r\n"),
        ("return struct.pack('xBx', 7)", b"$3\r\n\x00\x07\x00\r\n"),
        (
            "return {struct.unpack('>iB', struct.pack('>iB', -5, 200))}",
            b"*3\r\n:-5\r\n:200\r\n:6\r\n",
        ),
        ("return {struct.unpack('s', 'ab\\0cd')}", b"*2\r\n$2\r\nab\r\n:4\r\n"),
        ("return {struct.unpack('c2', 'abcd')}", b"*2\r\n$2\r\nab\r\n:3\r\n"),
        ("return {struct.unpack('Bc0', '\\3abcdef')}", b"*2\r\n$3\r\nabc\r\n:5\r\n"),
        ("return struct.size('>iBd')", b":13\r\n"),
        ("return struct.pack('!4bi', 1, 2)", b"$8\r\n\x01\x00\x00\x00\x02\x00\x00\x00\r\n"),
        (
            "return struct.pack('i17', 1)",
            b"$17\r\n\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\r\n",
        ),
        ("return {struct.unpack('>I3', 'abc', 1)}", b"*2\r\n:6382179\r\n:4\r\n"),
        ("return {struct.unpack('B', 'abc', 2)}", b"*2\r\n:98\r\n:3\r\n"),
        ("return struct.pack('i', 2^40)", b"$4\r\n\x00\x00\x00\x00\r\n"),
    ];
    for (body, reply) in cases {
        eval(&mut c, body, &[b"0"], reply);
    }
    eval(
        &mut c,
        "return struct.pack('q', 1)",
        &[b"0"],
        b"-ERR user_script:1: bad argument #1 to 'pack' (invalid format option 'q') script: 49599a2466f241bd45a2bd4f631df3a1a1ec9790, on @user_script:1.\r\n",
    );
    eval(
        &mut c,
        "return {struct.unpack('>i', 'ab')}",
        &[b"0"],
        b"-ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: fa937a50443f15a24164535548b9cdcfafb0705b, on @user_script:1.\r\n",
    );
    // Hostile sizes are errors or bounded answers, never a crash.
    for body in [
        "return tostring(pcall(struct.unpack, 'c99999999999999999999', 'ab'))",
        "return tostring(pcall(struct.pack, 'c99999999999999999999', 'ab'))",
        "return tostring(pcall(struct.pack, 'i99999999999', 1))",
    ] {
        eval(&mut c, body, &[b"0"], b"$5\r\nfalse\r\n");
    }
    c.send(&resp(&[
        b"EVAL",
        b"return struct.size('c99999999999999999999')",
        b"0",
    ]));
    c.read_until(b"\r\n");
    c.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn scripts_are_atomic_and_a_busy_one_is_killed_while_others_get_busy() {
    // Scripts start on an async worker and leave it to block or run long: with one worker
    // the endless script must still leave PING, -BUSY and SCRIPT KILL served.
    for threads in ["1", "2"] {
        atomic_and_busy_scripts(threads);
    }
}

fn atomic_and_busy_scripts(threads: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start_with_env(
        dir.path(),
        &[],
        &[("HYPERCACHE_SERVER__THREADS", threads)],
        None,
    );
    let mut admin = RawClient::connect(server.port);
    admin.roundtrip(
        &resp(&[b"CONFIG", b"SET", b"busy-reply-threshold", b"100"]),
        b"+OK\r\n",
    );
    // 4 clients x 200 scripts that read, then write, a counter: no update is lost.
    let body = "local v = tonumber(redis.call('get', KEYS[1]) or '0') redis.call('set', KEYS[1], v + 1) return v + 1";
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut client = RawClient::connect(port);
                for _ in 0..200 {
                    client.send(&resp(&[b"EVAL", body.as_bytes(), b"1", b"counter"]));
                    let reply = client.read_until(b"\r\n");
                    assert!(reply.starts_with(b":"), "{reply:?}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    admin.roundtrip(&resp(&[b"GET", b"counter"]), &bulk("800"));

    // A script that never ends: others get -BUSY after the threshold, PING is answered,
    // SCRIPT KILL stops it.
    let mut looping = RawClient::connect(server.port);
    looping
        .stream
        .write_all(&resp(&[b"EVAL", b"while true do end", b"1", b"counter"]))
        .unwrap();
    let mut con = server.client();
    let mut running = false;
    for _ in 0..500 {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
        if list.contains("cmd=eval") {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(running, "the script never started");
    let busy = redis::cmd("GET")
        .arg("counter")
        .query::<Option<String>>(&mut con);
    assert_eq!(busy.unwrap_err().code(), Some("BUSY"));
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    admin.roundtrip(&resp(&[b"SCRIPT", b"KILL"]), b"+OK\r\n");
    let reply = looping.read_until(b"\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{text}"
    );
    admin.roundtrip(&resp(&[b"GET", b"counter"]), &bulk("800"));

    // A script that already wrote cannot be killed.
    looping
        .stream
        .write_all(&resp(&[
            b"EVAL",
            b"redis.call('set','w','1') local i = 0 while i < 300000000 do i = i + 1 end return i",
            b"0",
        ]))
        .unwrap();
    let mut unkillable = false;
    for _ in 0..500 {
        admin.send(&resp(&[b"SCRIPT", b"KILL"]));
        let reply = admin.read_until(b"\r\n");
        if reply.starts_with(b"-UNKILLABLE") {
            unkillable = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        unkillable,
        "SCRIPT KILL of a script that wrote was not refused"
    );
}

#[test]
fn redis_py_lock_and_register_script_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port}, decode_responses=True)
lock = r.lock("resource", timeout=10)
print(lock.acquire(blocking=False), r.lock("resource").acquire(blocking=False))
print(lock.extend(5), lock.release() is None, r.get("resource"))
add = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
print(add(keys=["n"], args=[5]), add(keys=["n"], args=[2]))
r.script_flush()
pipe = r.pipeline()
add(keys=["n"], args=[1], client=pipe)
pipe.get("n")
print(pipe.execute())
"#,
        port = server.port
    );
    common::assert_python_prints(&script, "True False\nTrue True None\n5 7\n[8, '8']\n");
}

#[test]
fn a_script_reads_cold_keys_after_writing_with_one_async_worker() {
    // Most keys are in the cold tier. A script starts on the one async worker, writes, then
    // reads cold keys: it must leave the worker to read them and still run as one whole.
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start_with_env(
        dir.path(),
        &["--maxmemory", "16mb"],
        &[("HYPERCACHE_SERVER__THREADS", "1")],
        None,
    );
    let mut con = server.client();
    let pad = "x".repeat(1000);
    const KEYS: usize = 40_000;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("key:{i}"))
                .arg(format!("key:{i}{pad}"))
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    let info: String = redis::cmd("INFO").arg("tiers").query(&mut con).unwrap();
    let hot_keys: usize = info
        .lines()
        .find_map(|line| line.strip_prefix("hot_keys:"))
        .map(|count| count.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no hot_keys in INFO: {info}"));
    assert!(hot_keys < KEYS / 2, "too few cold keys: {hot_keys} hot");

    let body = "redis.call('set', 'started', '1') \
        local right = 0 \
        for _, key in ipairs(KEYS) do \
            if redis.call('get', key) == key .. ARGV[1] then right = right + 1 end \
        end \
        redis.call('set', 'finished', right) \
        return right";
    let keys: Vec<String> = (0..KEYS).step_by(97).map(|i| format!("key:{i}")).collect();
    let right: usize = redis::cmd("EVAL")
        .arg(body)
        .arg(keys.len())
        .arg(&keys)
        .arg(&pad)
        .query(&mut con)
        .unwrap();
    assert_eq!(right, keys.len());
    let finished: usize = redis::cmd("GET").arg("finished").query(&mut con).unwrap();
    assert_eq!(finished, keys.len());
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn keys_a_script_did_not_declare_are_held_from_first_touch_to_the_end() {
    // Scripts lock the shards of their declared keys up front and of any other key when
    // they first touch it. Two kinds of scripts read-modify-write keys they do not declare
    // while plain INCRs hit the same keys: no update is lost, and commands over every shard
    // (KEYS, DBSIZE) work inside a script.
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let undeclared = "for _, key in ipairs({'a', 'b', 'other'}) do \
            local v = tonumber(redis.call('get', key) or '0') \
            redis.call('set', key, v + 1) \
        end \
        return #redis.call('keys', '*') + redis.call('dbsize')";
    let declared_one = "local v = tonumber(redis.call('get', KEYS[1]) or '0') \
        redis.call('set', KEYS[1], v + 1) \
        local w = tonumber(redis.call('get', 'other') or '0') \
        redis.call('set', 'other', w + 1) \
        return 1";
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut client = RawClient::connect(port);
                for _ in 0..150 {
                    let command = match worker {
                        0 => resp(&[b"EVAL", undeclared.as_bytes(), b"0"]),
                        1 => resp(&[b"EVAL", declared_one.as_bytes(), b"1", b"b"]),
                        _ => resp(&[b"INCR", b"other"]),
                    };
                    client.send(&command);
                    let reply = client.read_until(b"\r\n");
                    assert!(
                        reply.starts_with(b":"),
                        "{}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut admin = RawClient::connect(server.port);
    admin.roundtrip(&resp(&[b"GET", b"a"]), &bulk("150"));
    admin.roundtrip(&resp(&[b"GET", b"b"]), &bulk("300"));
    admin.roundtrip(&resp(&[b"GET", b"other"]), &bulk("600"));
}

#[test]
fn a_script_runs_at_one_time() {
    // Time stands still inside a script (as in Valkey 9.1 and Redis 7.2; Redis 7.0.15 agrees
    // on the key, but answers PTTL from the live clock): a key set to expire in 1 ms is still
    // there, with its whole TTL, after three million loop iterations; after the script it
    // expires.
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut c = RawClient::connect(server.port);
    eval(
        &mut c,
        "redis.call('set', 'k', 'v', 'px', 1) \
         local i = 0 while i < 3000000 do i = i + 1 end \
         return {redis.call('exists', 'k'), redis.call('pttl', 'k')}",
        &[b"0"],
        b"*2\r\n:1\r\n:1\r\n",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        c.send(&resp(&[b"EXISTS", b"k"]));
        if c.read_until(b"\r\n") == b":0\r\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key never expired after the script"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

//! The RESP server seen through raw bytes: exact replies, errors, pipelining, RESP3,
//! limits. A bad client gets an error and loses its connection at worst; others carry on.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};

use common::{resp, TestServer};

#[test]
fn inline_and_multibulk_commands_get_exact_replies() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.roundtrip(b"PING\r\n", b"+PONG\r\n");
    raw.roundtrip(b"ping hello\r\n", b"$5\r\nhello\r\n");
    raw.roundtrip(&resp(&[b"ECHO", b"a\r\nb"]), b"$4\r\na\r\nb\r\n");
    raw.roundtrip(b"\r\n\r\nPING\r\n", b"+PONG\r\n");
    raw.roundtrip(b"SET k \"two words\"\r\n", b"+OK\r\n");
    raw.roundtrip(b"GET k\r\n", b"$9\r\ntwo words\r\n");
    raw.roundtrip(b"GET missing\r\n", b"$-1\r\n");
}

#[test]
fn errors_use_redis_wording_and_keep_the_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.roundtrip(
        b"FOO a b\r\n",
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
    );
    raw.roundtrip(
        b"GET\r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    raw.roundtrip(
        b"CONFIG NOPE\r\n",
        b"-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n",
    );
    raw.roundtrip(
        b"CLIENT SETNAME\r\n",
        b"-ERR wrong number of arguments for 'client|setname' command\r\n",
    );
    raw.roundtrip(b"SET n abc\r\n", b"+OK\r\n");
    raw.roundtrip(
        b"INCR n\r\n",
        b"-ERR value is not an integer or out of range\r\n",
    );
    raw.roundtrip(b"SET k v XX NX\r\n", b"-ERR syntax error\r\n");
    raw.roundtrip(b"SELECT 99\r\n", b"-ERR DB index is out of range\r\n");
    raw.roundtrip(b"PING\r\n", b"+PONG\r\n");
}

#[test]
fn protocol_errors_close_only_that_connection() {
    let server = TestServer::start();
    let mut bystander = server.raw();
    bystander.roundtrip(b"SET stays 1\r\n", b"+OK\r\n");

    let mut bad = server.raw();
    bad.roundtrip(
        b"*1\r\n$-5\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    assert!(bad.is_closed());

    let mut too_big = server.raw();
    too_big.roundtrip(
        b"*1\r\n$536870913\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    assert!(too_big.is_closed());

    let mut bad_count = server.raw();
    bad_count.roundtrip(
        b"*abc\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert!(bad_count.is_closed());

    bystander.roundtrip(b"GET stays\r\n", b"$1\r\n1\r\n");
}

#[test]
fn a_gigabyte_of_garbage_is_refused_early_and_the_server_lives_on() {
    let server = TestServer::start();
    let mut garbage = server.raw();
    // No newline ever comes: the inline limit (64 KiB) stops it long before 1 GB.
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    while sent < (1 << 30) {
        if garbage.stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < (1 << 30), "the server kept reading garbage");
    let mut client = server.raw();
    client.roundtrip(b"PING\r\n", b"+PONG\r\n");
}

#[test]
fn pipeline_of_ten_thousand_commands_answers_in_order() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let value = format!("v{i}");
        request.extend(resp(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            value.as_bytes(),
        ]));
        request.extend(resp(&[b"GET", format!("key:{i}").as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        expected.extend_from_slice(format!("${}\r\n{value}\r\n", value.len()).as_bytes());
    }
    raw.send(&request);
    let got = raw.read_exact_reply(expected.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "pipelined replies differ");

    let mut client = server.client();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("INCR").arg("counter").ignore();
        if i % 1000 == 0 {
            pipe.cmd("GET").arg(format!("key:{i}"));
        }
    }
    let values: Vec<String> = pipe.query(&mut client).unwrap();
    assert_eq!(values.len(), 10);
    assert_eq!(values[3], "v3000");
    let counter: i64 = redis::cmd("GET").arg("counter").query(&mut client).unwrap();
    assert_eq!(counter, 10_000);
}

#[test]
fn resp3_replies_after_hello_3() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"HELLO 3\r\n");
    let hello = raw.read_until(b"$7\r\nmodules\r\n*0\r\n");
    assert!(hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    assert!(hello.windows(11).any(|w| w == b"proto\r\n:3\r\n"));
    raw.roundtrip(b"GET missing\r\n", b"_\r\n");
    raw.roundtrip(b"SET f 1.5\r\n", b"+OK\r\n");
    raw.roundtrip(b"INCRBYFLOAT f 1\r\n", b"$3\r\n2.5\r\n");
    raw.roundtrip(
        b"CONFIG GET maxclients\r\n",
        b"%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
    );
    raw.send(b"HELLO 2\r\n");
    let hello = raw.read_until(b"$7\r\nmodules\r\n*0\r\n");
    assert!(hello.starts_with(b"*14\r\n"));
    raw.roundtrip(b"GET missing\r\n", b"$-1\r\n");
}

#[test]
fn half_closed_clients_still_get_their_replies() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .write_all(b"SET half closed\r\nGET half\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut raw = common::RawClient { stream };
    let reply = raw.read_exact_reply(1024);
    assert_eq!(reply, b"+OK\r\n$6\r\nclosed\r\n");
}

#[test]
fn a_thousand_idle_connections_do_not_block_a_working_client() {
    let server = TestServer::start();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    let mut client = server.client();
    let _: () = redis::cmd("SET")
        .arg("busy")
        .arg("yes")
        .query(&mut client)
        .unwrap();
    let value: String = redis::cmd("GET").arg("busy").query(&mut client).unwrap();
    assert_eq!(value, "yes");
    // Connections are registered as the server accepts them: wait until all 1001 are in.
    let mut info = String::new();
    for _ in 0..100 {
        info = redis::cmd("INFO")
            .arg("clients")
            .query(&mut client)
            .unwrap();
        if info.contains("connected_clients:1001") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(info.contains("connected_clients:1001"), "{info}");
    drop(idle);
}

#[test]
fn maxclients_refuses_with_an_error_and_serves_the_rest() {
    let server = TestServer::start_with(|config| config.server.maxclients = 3);
    let held: Vec<_> = (0..3)
        .map(|_| {
            let mut client = server.raw();
            // A reply proves the server has registered this client.
            client.roundtrip(b"PING\r\n", b"+PONG\r\n");
            client
        })
        .collect();
    let mut extra = server.raw();
    let reply = extra.read_exact_reply(36);
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    drop(held);
    // Room again once the others left.
    let mut later = server.raw();
    let mut answered = false;
    for _ in 0..50 {
        later.send(b"PING\r\n");
        if later.read_exact_reply(7) == b"+PONG\r\n" {
            answered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        later = server.raw();
    }
    assert!(answered, "the server never had room again");
}

#[test]
fn query_buffer_limit_disconnects_the_offender_only() {
    let server = TestServer::start_with(|config| {
        config.limits.client_query_buffer_limit = hypercache::config::ByteSize(1 << 20);
    });
    let mut greedy = server.raw();
    // A 2 MB bulk announced and sent slowly: over the 1 MB query buffer limit.
    let _ = greedy.stream.write_all(b"*2\r\n$3\r\nGET\r\n$2097152\r\n");
    let chunk = vec![b'a'; 256 * 1024];
    for _ in 0..8 {
        if greedy.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(greedy.is_closed());
    let mut client = server.raw();
    client.roundtrip(b"PING\r\n", b"+PONG\r\n");
}

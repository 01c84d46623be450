//! Client buffers under hostile load (issue 19): slow readers of large replies must not
//! make the server buffer their whole pipelines, and many clients each sending part of a
//! large request must not make it buffer them all (`maxmemory-clients` closes the largest;
//! an argument longer than the bound is refused at its header). The server's peak RSS is
//! read from /proc (VmHWM) and compared with maxmemory plus the documented fixed overhead,
//! while a well-behaved client keeps getting answers. CLIENT NO-EVICT protects a client.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{peak_rss_bytes, resp, BinaryServer, RawClient};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;
use redis::Commands;

const MAXMEMORY: u64 = 64 << 20;

/// A connection that reads as little as the kernel lets it (a 4 KB receive buffer).
fn slow_reader(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let size: libc::c_int = 4096;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "setsockopt SO_RCVBUF");
    stream
}

#[test]
fn slow_readers_of_large_replies_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "64mb"]);
    let pid = server.child.id();
    let mut con = server.client();
    let big = vec![b'v'; 1 << 20];
    let _: () = con.set("big", &big[..]).unwrap();

    // 10 clients each pipeline 100 GETs of the 1 MB value (100 MB of replies each) and
    // never read: 1 GB of replies if the server made them all.
    let request: Vec<u8> = (0..100).flat_map(|_| resp(&[b"GET", b"big"])).collect();
    let readers: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut reader = slow_reader(server.port);
            reader.write_all(&request).unwrap();
            reader
        })
        .collect();

    // Meanwhile an ordinary client is served, and RSS is watched for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = 0;
    while Instant::now() < deadline {
        let _: () = con.set("small", answered).unwrap();
        let value: i64 = con.get("small").unwrap();
        assert_eq!(value, answered);
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    let clients_memory: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("mem_clients_normal:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO memory has mem_clients_normal");
    let peak = peak_rss_bytes(pid);
    let bound = MAXMEMORY + FIXED_OVERHEAD_BYTES;
    println!(
        "peak RSS {} MB with 10 slow readers (bound {} MB); {answered} commands answered meanwhile",
        peak >> 20,
        bound >> 20
    );
    println!("mem_clients_normal {clients_memory}");
    // Each slow reader holds at most the backpressure threshold plus one reply.
    assert!(
        clients_memory < 10 * (2 << 20),
        "client buffers hold {clients_memory} bytes"
    );
    assert!(
        peak <= bound,
        "peak RSS {peak} over maxmemory + fixed overhead {bound}"
    );
    assert!(answered > 10);
    drop(readers);
}

/// The header of `SET key <len bytes>`, the value still to come.
fn set_header(key: &str, len: usize) -> Vec<u8> {
    format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${len}\r\n", key.len()).into_bytes()
}

fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

#[test]
fn many_partial_large_requests_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "64mb"]);
    let pid = server.child.id();
    let mut con = server.client();
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-clients")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        shown,
        ["maxmemory-clients", "10%"],
        "the clients share by default"
    );

    // 50 clients announce a 100 MB value: more than all clients may buffer (6.4 MB), so
    // each is refused at the header, before a byte of the value is kept.
    let mut refused = 0;
    for _ in 0..50 {
        let mut client = RawClient::connect(server.port);
        client.send(&set_header("big", 100_000_000));
        let reply = client.read_exact_reply(1);
        let mut reply = reply;
        reply.extend(client.read_exact_reply(200));
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("-ERR Protocol error: bulk length larger than all clients may buffer"),
            "{text}"
        );
        refused += 1;
    }

    // 50 clients each send 4 MB of a 5 MB value and pause: 200 MB if all were kept. The
    // largest are closed as the total passes the bound.
    let chunk = vec![b'x'; 4 << 20];
    let mut partial = Vec::new();
    for i in 0..50 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let _ = stream.write_all(&set_header(&format!("part{i}"), 5 << 20));
        // Closed mid-send by the eviction: the write fails, as it should.
        let _ = stream.write_all(&chunk);
        partial.push(stream);
        let _: () = con.set("small", i).unwrap();
        let value: i64 = con.get("small").unwrap();
        assert_eq!(value, i);
    }
    let evicted = info_field(&mut con, "stats", "evicted_clients");
    // An evicted client's buffers leave the total when its connection task closes, a moment
    // after the eviction: the total is read once they have (bounded wait), while the peak
    // RSS below is the hard bound.
    let limit = (64 << 20) / 10 + (1 << 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut clients_memory = info_field(&mut con, "memory", "mem_clients_normal");
    while clients_memory > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        clients_memory = info_field(&mut con, "memory", "mem_clients_normal");
    }
    let peak = peak_rss_bytes(pid);
    let bound = MAXMEMORY + FIXED_OVERHEAD_BYTES;
    println!(
        "peak RSS {} MB (bound {} MB); {refused} refused at the header, {evicted} evicted, client buffers now {clients_memory} bytes",
        peak >> 20,
        bound >> 20
    );
    assert!(evicted >= 40, "only {evicted} clients evicted");
    assert!(
        clients_memory <= limit,
        "client buffers {clients_memory} bytes over {limit} after 5 s"
    );
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    drop(partial);
}

/// The query buffer (CLIENT LIST qbuf) of the client named `name`, if it is connected.
fn qbuf_of(con: &mut redis::Connection, name: &str) -> Option<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
    list.lines()
        .find(|line| line.contains(&format!(" name={name} ")))
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("qbuf="))
                .and_then(|value| value.parse().ok())
        })
}

/// A named client that has sent `sent` bytes of a `len`-byte SET, once the server holds them.
fn partial_sender(
    port: u16,
    con: &mut redis::Connection,
    name: &str,
    no_evict: bool,
    sent: usize,
) -> RawClient {
    let mut client = RawClient::connect(port);
    client.roundtrip(&resp(&[b"CLIENT", b"SETNAME", name.as_bytes()]), b"+OK\r\n");
    if no_evict {
        client.roundtrip(&resp(&[b"CLIENT", b"NO-EVICT", b"on"]), b"+OK\r\n");
    }
    client.send(&set_header(name, 9 << 20));
    client.send(&vec![b'x'; sent]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while qbuf_of(con, name).unwrap_or(0) < sent as u64 {
        assert!(Instant::now() < deadline, "{name}'s bytes never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    client
}

#[test]
fn the_largest_client_is_evicted_and_no_evict_protects_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "128mb"]);
    let mut con = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-clients")
        .arg("10mb")
        .query(&mut con)
        .unwrap();
    // A holds the most but may not be evicted; B then C push the total past 10 MB.
    let _protected = partial_sender(server.port, &mut con, "A", true, 6 << 20);
    let mut largest = partial_sender(server.port, &mut con, "B", false, 3 << 20);
    let mut smaller = RawClient::connect(server.port);
    smaller.roundtrip(&resp(&[b"CLIENT", b"SETNAME", b"C"]), b"+OK\r\n");
    smaller.send(&set_header("C", 9 << 20));
    smaller.send(&vec![b'x'; 2 << 20]);
    assert!(
        largest.is_closed(),
        "B, the largest evictable client, is still open"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while qbuf_of(&mut con, "C").unwrap_or(0) < 2 << 20 {
        assert!(Instant::now() < deadline, "C's bytes never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains(" name=A "), "{list}");
    assert!(list.contains(" name=C "), "{list}");
    assert!(!list.contains(" name=B "), "{list}");
    let a_line = list.lines().find(|line| line.contains(" name=A ")).unwrap();
    assert!(a_line.contains(" flags=e "), "{a_line}");
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
}

//! Client buffers under hostile load (issue 19): slow readers of large replies must not
//! make the server buffer their whole pipelines. The server's peak RSS is read from
//! /proc (VmHWM) and compared with maxmemory plus the documented fixed overhead, while a
//! well-behaved client keeps getting answers.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{peak_rss_bytes, resp, BinaryServer};
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

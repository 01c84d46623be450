//! TLS with real clients (issue 14): certificates made by the test (rcgen: a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate), the binary started with
//! a TLS port beside the plain one, and Debian's `redis-cli --tls` as the client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::BinaryServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// PEM files of a CA, a server and a client certificate it signed, and a second CA.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

fn make_leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    ca: &(rcgen::Certificate, KeyPair),
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn make_pki(dir: &Path) -> Pki {
    let ca = make_ca("hypercache test CA");
    let other_ca = make_ca("some other CA");
    let (server_cert, server_key) = make_leaf(
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client_cert, client_key) =
        make_leaf(&["client"], ExtendedKeyUsagePurpose::ClientAuth, &ca);
    let (other_cert, other_key) = make_leaf(
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &other_ca,
    );
    Pki {
        ca: write(dir, "ca.pem", &ca.0.pem()),
        server_cert: write(dir, "server.pem", &server_cert),
        server_key: write(dir, "server.key", &server_key),
        client_cert: write(dir, "client.pem", &client_cert),
        client_key: write(dir, "client.key", &client_key),
        other_client_cert: write(dir, "other.pem", &other_cert),
        other_client_key: write(dir, "other.key", &other_key),
    }
}

/// `redis-cli --tls` against `port`, with `extra` arguments (certificates) and `command`:
/// its stdout and stderr together, trimmed.
fn redis_cli_tls(port: u16, pki: &Pki, extra: &[&Path], command: &[&str]) -> String {
    let mut cli = Command::new("redis-cli");
    cli.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--tls",
        "--cacert",
    ])
    .arg(&pki.ca);
    match extra {
        [cert, key] => {
            cli.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        [] => {}
        _ => panic!("certificate and key, or nothing"),
    }
    let out = cli.args(command).output().expect("redis-cli runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string()
}

fn tls_env(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![
        ("HYPERCACHE_TLS__PORT", "{free_port}".to_string()),
        (
            "HYPERCACHE_TLS__CERT_FILE",
            pki.server_cert.display().to_string(),
        ),
        (
            "HYPERCACHE_TLS__KEY_FILE",
            pki.server_key.display().to_string(),
        ),
        ("HYPERCACHE_TLS__CA_CERT_FILE", pki.ca.display().to_string()),
    ]
}

#[test]
fn tls_port_beside_the_plain_one_with_client_certificates_and_live_reload() {
    let available = Command::new("redis-cli")
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("--tls"))
        .unwrap_or(false);
    assert!(
        available,
        "redis-cli with TLS is not installed: run tools/setup.sh"
    );
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path());
    let data = tempfile::tempdir().unwrap();
    let env = tls_env(&pki);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = BinaryServer::start_with_env(data.path(), &[], &env, None);
    let tls_port = server.extra_port.unwrap();
    let client = [pki.client_cert.as_path(), pki.client_key.as_path()];

    // A client with a certificate the CA signed: served, and the data is the plain port's.
    assert_eq!(
        redis_cli_tls(tls_port, &pki, &client, &["SET", "secret", "over tls"]),
        "OK"
    );
    let mut plain = server.client();
    let value: String = redis::cmd("GET").arg("secret").query(&mut plain).unwrap();
    assert_eq!(value, "over tls", "one keyspace behind both ports");
    assert_eq!(
        redis_cli_tls(tls_port, &pki, &client, &["GET", "secret"]),
        "over tls"
    );

    // redis-py with ssl=True and the client certificate, RESP3 too.
    let script = format!(
        "import redis\n\
         for protocol in (2, 3):\n\
         \x20   r = redis.Redis(host='127.0.0.1', port={tls_port}, ssl=True, protocol=protocol,\n\
         \x20       ssl_ca_certs='{ca}', ssl_certfile='{cert}', ssl_keyfile='{key}')\n\
         \x20   r.set('py', 'tls %d' % protocol)\n\
         \x20   print(r.get('py').decode())\n",
        ca = pki.ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
    );
    common::assert_python_prints(&script, "tls 2\ntls 3\n");

    // tls-auth-clients yes (the default): no certificate, or one another CA signed, is
    // refused in the handshake.
    let without = redis_cli_tls(tls_port, &pki, &[], &["PING"]);
    println!("without a certificate: {without}");
    assert_ne!(without, "PONG", "served without a client certificate");
    let other = [
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    ];
    let intruder = redis_cli_tls(tls_port, &pki, &other, &["PING"]);
    println!("another CA's certificate: {intruder}");
    assert_ne!(intruder, "PONG", "served a certificate another CA signed");

    // CONFIG SET reloads: auth optional lets a client without a certificate in.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-auth-clients")
        .arg("optional")
        .query(&mut plain)
        .unwrap();
    assert_eq!(redis_cli_tls(tls_port, &pki, &[], &["PING"]), "PONG");
    // A certificate file that does not load changes nothing.
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg("/nonexistent/cert.pem")
        .query::<()>(&mut plain)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Unable to update TLS configuration"),
        "{err}"
    );
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-cert-file")
        .query(&mut plain)
        .unwrap();
    assert_eq!(shown[1], pki.server_cert.display().to_string());
    assert_eq!(redis_cli_tls(tls_port, &pki, &client, &["PING"]), "PONG");

    // tls-ciphersuites (TLS 1.3) and tls-ciphers (TLS 1.2, OpenSSL's names; the test's key
    // is ECDSA): one protocol, one suite; a client offering only another is refused, and
    // an unknown name is refused by CONFIG SET naming the suites on offer.
    let cases = [
        (
            [
                ("tls-protocols", "TLSv1.3"),
                ("tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"),
            ],
            "--tls-ciphersuites",
            ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"],
            ("tls-ciphersuites", "TLS_NO_SUCH_SUITE"),
            "'TLS_NO_SUCH_SUITE' is not a TLS 1.3 suite",
        ),
        (
            [
                ("tls-protocols", "TLSv1.2"),
                ("tls-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"),
            ],
            "--tls-ciphers",
            [
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
            ("tls-ciphers", "HIGH:!aNULL"),
            "'HIGH' is not a TLS 1.2 suite this server offers (ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
    ];
    for (settings, option, [offered, other], (param, unknown), refusal) in cases {
        for (name, value) in settings {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query(&mut plain)
                .unwrap();
        }
        let served = [option, offered, "PING"];
        assert_eq!(redis_cli_tls(tls_port, &pki, &client, &served), "PONG");
        let refused = [option, other, "PING"];
        assert_ne!(redis_cli_tls(tls_port, &pki, &client, &refused), "PONG");
        let err = redis::cmd("CONFIG")
            .arg("SET")
            .arg(param)
            .arg(unknown)
            .query::<()>(&mut plain)
            .unwrap_err();
        assert!(err.to_string().contains(refusal), "{err}");
    }

    // Plain-text bytes on the TLS port are a failed handshake, not a crash.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let _ = raw.write_all(b"*1\r\n$4\r\nPING\r\n");
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(!String::from_utf8_lossy(&sink).contains("PONG"));
    let pong: String = redis::cmd("PING").query(&mut plain).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_tls_port_without_its_files_stops_startup_naming_them() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(common::binary_path())
        .args(["--port", "0", "--dir"])
        .arg(data.path())
        .env("HYPERCACHE_TLS__PORT", "16999")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.cert_file, key_file: both are needed for a TLS port"),
        "{stderr}"
    );
}

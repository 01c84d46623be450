//! ACL users against the binary (issue 14): users from the YAML configuration and from an
//! ACL file, what a user may run and touch (commands, categories, read and write key
//! patterns), checks at MULTI queueing and again at EXEC, ACL LOG, DELUSER closing the
//! user's connections, ACL SAVE / LOAD (all or nothing), and real clients (redis-cli
//! `--user`, redis-py `username=`). Exact replies are Redis 7's.

mod common;

use std::path::Path;
use std::process::Command;

use common::{resp, BinaryServer, RawClient};

/// Runs `command` as `user` with redis-cli; its output, trimmed.
fn cli_as(port: u16, user: &str, password: &str, command: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--user", user, "--pass", password])
        .arg("--no-auth-warning")
        .args(command)
        .output()
        .expect("redis-cli runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.trim().to_string()
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("hypercache.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

fn logged_in(port: u16, user: &str, password: &str) -> RawClient {
    let mut client = RawClient::connect(port);
    client.roundtrip(
        &resp(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
        b"+OK\r\n",
    );
    client
}

/// A RESP bulk string.
fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

const NO_KEY: &[u8] =
    b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";

#[test]
fn users_may_run_only_their_commands_on_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let audit = conf_dir.path().join("audit.jsonl");
    let config = write_config(
        conf_dir.path(),
        &format!(
            "security:\n  audit_log: {}\n  users:\n    - \"user alice on >alicepw ~app:* %R~shared:* +@read +@write -@dangerous +@transaction +acl|whoami\"\n    - \"user writer on >w %W~inbox:* +set +get\"\n",
            audit.display()
        ),
    );
    let server = BinaryServer::start(dir.path(), &["--config", &config]);
    let port = server.port;

    // The default user's password is requirepass, by AUTH with one argument or two. (Set
    // once the server is up: the harness's readiness probe does not authenticate.)
    let mut setup = RawClient::connect(port);
    setup.roundtrip(
        &resp(&[b"CONFIG", b"SET", b"requirepass", b"adminpw"]),
        b"+OK\r\n",
    );
    let mut admin = RawClient::connect(port);
    admin.roundtrip(
        &resp(&[b"GET", b"x"]),
        b"-NOAUTH Authentication required.\r\n",
    );
    admin.roundtrip(&resp(&[b"AUTH", b"default", b"adminpw"]), b"+OK\r\n");
    admin.roundtrip(&resp(&[b"SET", b"shared:1", b"s"]), b"+OK\r\n");
    admin.roundtrip(&resp(&[b"SET", b"other", b"o"]), b"+OK\r\n");

    // alice: read and write app:*, read shared:*, nothing else; no dangerous commands.
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["SET", "app:1", "v"]),
        "OK"
    );
    assert_eq!(cli_as(port, "alice", "alicepw", &["GET", "app:1"]), "v");
    assert_eq!(cli_as(port, "alice", "alicepw", &["GET", "shared:1"]), "s");
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["SET", "shared:1", "x"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["GET", "other"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["FLUSHALL"]),
        "NOPERM this user has no permissions to run the 'flushall' command"
    );
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["CONFIG", "GET", "maxmemory"]),
        "NOPERM this user has no permissions to run the 'config|get' command"
    );
    assert_eq!(
        cli_as(port, "alice", "alicepw", &["ACL", "WHOAMI"]),
        "alice"
    );
    let wrong = cli_as(port, "alice", "wrong", &["PING"]);
    assert!(
        wrong
            .contains("AUTH failed: WRONGPASS invalid username-password pair or user is disabled."),
        "{wrong}"
    );

    // writer: may write inbox:* but never read it back; SET ... GET reads.
    let mut writer = logged_in(port, "writer", "w");
    writer.roundtrip(&resp(&[b"SET", b"inbox:1", b"m"]), b"+OK\r\n");
    writer.roundtrip(&resp(&[b"GET", b"inbox:1"]), NO_KEY);
    writer.roundtrip(&resp(&[b"SET", b"inbox:1", b"n", b"GET"]), NO_KEY);
    writer.roundtrip(
        &resp(&[b"DEL", b"inbox:1"]),
        b"-NOPERM this user has no permissions to run the 'del' command\r\n",
    );

    // MULTI: a refused command dooms the transaction; EXEC checks again what was queued.
    let mut alice = logged_in(port, "alice", "alicepw");
    alice.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    alice.roundtrip(&resp(&[b"GET", b"other"]), NO_KEY);
    alice.roundtrip(
        &resp(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    alice.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    alice.roundtrip(&resp(&[b"SET", b"app:2", b"queued"]), b"+QUEUED\r\n");
    alice.roundtrip(&resp(&[b"GET", b"app:1"]), b"+QUEUED\r\n");
    admin.roundtrip(&resp(&[b"ACL", b"SETUSER", b"alice", b"-set"]), b"+OK\r\n");
    alice.roundtrip(
        &resp(&[b"EXEC"]),
        b"*2\r\n-NOPERM this user has no permissions to run the 'set' command\r\n$1\r\nv\r\n",
    );
    admin.roundtrip(&resp(&[b"EXISTS", b"app:2"]), b":0\r\n");

    // ACL LOG: newest first, repeats counted.
    let mut log_reader = server.client();
    redis::cmd("AUTH")
        .arg("adminpw")
        .exec(&mut log_reader)
        .unwrap();
    let entries: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("ACL").arg("LOG").query(&mut log_reader).unwrap();
    let text = |entry: &std::collections::HashMap<String, redis::Value>, field: &str| match &entry
        [field]
    {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    };
    let newest = &entries[0];
    assert_eq!(text(newest, "reason"), "command");
    assert_eq!(text(newest, "context"), "multi");
    assert_eq!(text(newest, "object"), "set");
    assert_eq!(text(newest, "username"), "alice");
    let auth = entries
        .iter()
        .find(|entry| text(entry, "reason") == "auth")
        .expect("the failed AUTH is logged");
    assert_eq!(text(auth, "object"), "AUTH");
    let mut contexts: Vec<String> = entries
        .iter()
        .filter(|entry| text(entry, "object") == "other")
        .map(|entry| format!("{} {}", text(entry, "reason"), text(entry, "context")))
        .collect();
    contexts.sort();
    assert_eq!(contexts, ["key multi", "key toplevel"]);
    let inbox = entries
        .iter()
        .find(|entry| text(entry, "object") == "inbox:1")
        .expect("writer's denials are logged");
    assert_eq!(text(inbox, "count"), "2", "GET and SET ... GET, folded");
    admin.roundtrip(&resp(&[b"ACL", b"LOG", b"RESET"]), b"+OK\r\n");
    admin.roundtrip(&resp(&[b"ACL", b"LOG"]), b"*0\r\n");

    // CLIENT LIST and CLIENT KILL know the users; DELUSER closes the user's connections.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut log_reader)
        .unwrap();
    assert!(list.contains("user=alice"), "{list}");
    assert!(list.contains("user=writer"), "{list}");
    admin.roundtrip(&resp(&[b"ACL", b"DELUSER", b"alice", b"nobody"]), b":1\r\n");
    assert!(alice.is_closed(), "alice's connection stays open");
    admin.roundtrip(
        &resp(&[b"ACL", b"DELUSER", b"default"]),
        b"-ERR The 'default' user cannot be removed\r\n",
    );
    admin.roundtrip(&resp(&[b"CLIENT", b"KILL", b"USER", b"writer"]), b":1\r\n");
    assert!(writer.is_closed());

    // CONFIG REWRITE keeps the users as they are now (alice deleted, writer as set).
    admin.roundtrip(&resp(&[b"CONFIG", b"REWRITE"]), b"+OK\r\n");
    let rewritten = std::fs::read_to_string(&config).unwrap();
    assert!(!rewritten.contains("user alice"), "{rewritten}");
    assert!(
        rewritten.contains("user writer on #") && rewritten.contains("%W~inbox:*"),
        "{rewritten}"
    );
    assert!(!rewritten.contains(">w"), "{rewritten}");

    // The audit log has the denials and the user changes, never a password.
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        audit_text.contains("\"event\":\"acl_denied\""),
        "{audit_text}"
    );
    assert!(
        audit_text.contains("\"event\":\"acl_setuser\""),
        "{audit_text}"
    );
    assert!(
        audit_text.contains("\"event\":\"acl_deluser\""),
        "{audit_text}"
    );
    for secret in ["alicepw", "adminpw"] {
        assert!(!audit_text.contains(secret), "{secret} in the audit log");
    }
}

#[test]
fn acl_setuser_rules_replies_and_errors_match_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut admin = RawClient::connect(server.port);
    admin.roundtrip(
        &resp(&[b"CONFIG", b"SET", b"slowlog-log-slower-than", b"0"]),
        b"+OK\r\n",
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"LIST"]),
        b"*1\r\n$34\r\nuser default on nopass ~* &* +@all\r\n",
    );
    admin.roundtrip(
        &resp(&[b"AUTH", b"pw"]),
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    );
    admin.roundtrip(
        &resp(&[
            b"ACL",
            b"SETUSER",
            b"bob",
            b"on",
            b">pw",
            b"~k:*",
            b"+@all",
            b"-config",
            b"+config|get",
        ]),
        b"+OK\r\n",
    );
    let line = "user bob on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k:* resetchannels +@all -config +config|get";
    admin.roundtrip(
        &resp(&[b"ACL", b"LIST"]),
        format!(
            "*2\r\n${}\r\n{line}\r\n$34\r\nuser default on nopass ~* &* +@all\r\n",
            line.len()
        )
        .as_bytes(),
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"SETUSER", b"bob", b"+nosuch"]),
        b"-ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL\r\n",
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"SETUSER", b"bad name"]),
        b"-ERR Usernames can't contain spaces or null characters\r\n",
    );
    admin.roundtrip(
        &resp(&[
            b"ACL",
            b"DRYRUN",
            b"bob",
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"1",
        ]),
        &bulk("This user has no permissions to run the 'config|set' command"),
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"DRYRUN", b"bob", b"GET", b"other"]),
        &bulk("This user has no permissions to access the 'other' key"),
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"DRYRUN", b"bob", b"GET", b"k:1"]),
        b"+OK\r\n",
    );
    admin.roundtrip(&resp(&[b"ACL", b"GETUSER", b"nobody"]), b"$-1\r\n");
    admin.roundtrip(
        &resp(&[b"ACL", b"USERS"]),
        b"*2\r\n$3\r\nbob\r\n$7\r\ndefault\r\n",
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"CAT", b"nosuch"]),
        b"-ERR Unknown category 'nosuch'\r\n",
    );
    admin.roundtrip(
        &resp(&[b"ACL", b"SAVE"]),
        b"-ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.\r\n",
    );
    let mut password = RawClient::connect(server.port);
    password.send(&resp(&[b"ACL", b"GENPASS", b"64"]));
    let reply = password.read_exact_reply(b"$16\r\n\r\n".len() + 16);
    assert!(reply.starts_with(b"$16\r\n"), "{reply:?}");
    // HELLO 3 AUTH logs in and switches protocol at once.
    let mut bob = RawClient::connect(server.port);
    bob.send(&resp(&[b"HELLO", b"3", b"AUTH", b"bob", b"pw"]));
    let hello = bob.read_until(b"modules\r\n*0\r\n");
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{:?}",
        String::from_utf8_lossy(&hello)
    );
    bob.roundtrip(&resp(&[b"ACL", b"WHOAMI"]), b"$3\r\nbob\r\n");
    // Setting a password for the default user makes new connections authenticate.
    admin.roundtrip(
        &resp(&[b"CONFIG", b"SET", b"requirepass", b"nowsecret"]),
        b"+OK\r\n",
    );
    let mut fresh = RawClient::connect(server.port);
    fresh.roundtrip(&resp(&[b"PING"]), b"-NOAUTH Authentication required.\r\n");
    fresh.roundtrip(&resp(&[b"AUTH", b"nowsecret"]), b"+OK\r\n");
    fresh.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");

    // No password reaches the slow log (every command above was logged: threshold 0).
    fresh.roundtrip(
        &resp(&[
            b"ACL",
            b"SETUSER",
            b"carol",
            b"on",
            b">carolsecret",
            b"+@all",
        ]),
        b"+OK\r\n",
    );
    fresh.roundtrip(&resp(&[b"AUTH", b"carol", b"carolsecret"]), b"+OK\r\n");
    let mut con = server.client();
    redis::cmd("AUTH").arg("nowsecret").exec(&mut con).unwrap();
    let log: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    let log = format!("{log:?}");
    assert!(log.contains("(redacted)"), "{log}");
    for secret in ["carolsecret", "nowsecret", ">pw"] {
        assert!(!log.contains(secret), "{secret} in the slow log: {log}");
    }
}

#[test]
fn the_acl_file_is_read_at_start_and_saved_and_loaded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let aclfile = conf_dir.path().join("users.acl");
    std::fs::write(
        &aclfile,
        "# the operators\nuser default on nopass ~* &* +@all\nuser reader on >r ~* +@read\n",
    )
    .unwrap();
    let server = BinaryServer::start(
        dir.path(),
        &[
            "--config",
            &write_config(
                conf_dir.path(),
                &format!("security:\n  aclfile: {}\n", aclfile.display()),
            ),
        ],
    );
    let port = server.port;
    assert_eq!(cli_as(port, "reader", "r", &["GET", "k"]), "");
    assert_eq!(
        cli_as(port, "reader", "r", &["SET", "k", "v"]),
        "NOPERM this user has no permissions to run the 'set' command"
    );
    let mut admin = RawClient::connect(port);
    admin.roundtrip(
        &resp(&[b"ACL", b"SETUSER", b"writer", b"on", b">w", b"~*", b"+set"]),
        b"+OK\r\n",
    );
    admin.roundtrip(&resp(&[b"ACL", b"SAVE"]), b"+OK\r\n");
    let saved = std::fs::read_to_string(&aclfile).unwrap();
    assert!(
        saved.contains("user writer on #") && saved.contains(" ~* resetchannels -@all +set"),
        "{saved}"
    );
    assert!(
        !saved.contains(">w"),
        "a clear password in the file: {saved}"
    );

    // A bad line: ACL LOAD refuses and changes nothing.
    std::fs::write(&aclfile, "user reader on >r ~* +@read +bogus\n").unwrap();
    let mut refused = RawClient::connect(port);
    refused.send(&resp(&[b"ACL", b"LOAD"]));
    let reply = refused.read_until(b"was performed\r\n");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-ERR "), "{reply}");
    assert!(
        reply.contains("users.acl:1: Error in ACL SETUSER modifier '+bogus'"),
        "{reply}"
    );
    assert_eq!(cli_as(port, "writer", "w", &["SET", "k", "v"]), "OK");

    // A good file replaces every user; writer is gone and its connections closed.
    let mut writer = RawClient::connect(port);
    writer.roundtrip(&resp(&[b"AUTH", b"writer", b"w"]), b"+OK\r\n");
    std::fs::write(&aclfile, "user reader on >r2 ~* +@read\n").unwrap();
    admin.roundtrip(&resp(&[b"ACL", b"LOAD"]), b"+OK\r\n");
    assert!(writer.is_closed());
    assert_eq!(cli_as(port, "reader", "r2", &["GET", "k"]), "v");
    admin.roundtrip(
        &resp(&[b"ACL", b"USERS"]),
        b"*2\r\n$7\r\ndefault\r\n$6\r\nreader\r\n",
    );
    drop(server);

    // A server whose ACL file does not parse does not start, and says why.
    std::fs::write(&aclfile, "user x on +bogus\n").unwrap();
    let out = Command::new(common::binary_path())
        .args(["--port", "0", "--dir"])
        .arg(dir.path())
        .args([
            "--config",
            &write_config(
                conf_dir.path(),
                &format!("security:\n  aclfile: {}\n", aclfile.display()),
            ),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("users.acl:1: Error in ACL SETUSER modifier '+bogus'"),
        "{stderr}"
    );
}

#[test]
fn redis_py_logs_in_as_a_user_and_sees_noperm() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let script = format!(
        r#"
import redis
admin = redis.Redis(port={port}, decode_responses=True)
admin.acl_setuser("py", enabled=True, passwords=["+pypw"], keys=["py:*"], commands=["+@read", "+@write", "-@dangerous", "+acl|whoami"])
user = redis.Redis(port={port}, username="py", password="pypw", decode_responses=True)
print(user.acl_whoami())
user.set("py:1", "v")
print(user.get("py:1"))
try:
    user.get("other")
except redis.exceptions.NoPermissionError as error:
    print("noperm", error)
try:
    user.flushall()
except redis.exceptions.NoPermissionError as error:
    print("noperm", error)
print(sorted(admin.acl_getuser("py")["flags"]))
try:
    redis.Redis(port={port}, username="py", password="wrong").ping()
except redis.exceptions.AuthenticationError as error:
    print("auth", error)
"#,
        port = server.port
    );
    common::assert_python_prints(&script, "py\nv\nnoperm this user has no permissions to access one of the keys used as arguments\nnoperm this user has no permissions to run the 'flushall' command\n['on']\nauth invalid username-password pair or user is disabled.\n");
}

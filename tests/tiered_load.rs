//! The real binary under `hypercache-loadgen` (tools/loadgen), as the benchmarks drive it,
//! with a hot tier far smaller than the data: every key comes back with its value through
//! the cold tier, absent keys do not reach the cold tier while the filter is on, and
//! `storage.filter: false` sends every one of them there (across clean restarts both ways).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{build_workspace_binary, BinaryServer};

/// 30 MB of values against a 16 MB process budget: most keys live only in the cold tier.
const KEYS: &str = "30000";
const VALUE_SIZE: &str = "1024";
const SMALL_BUDGET: [&str; 2] = ["--maxmemory", "16mb"];

/// The load generator, built once for this test run in the same profile.
fn loadgen_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_workspace_binary("hypercache-loadgen"))
}

/// Runs `hypercache-loadgen <args> --json` against `server`; returns its report, asserting
/// the exit status it should have.
fn loadgen(server: &BinaryServer, args: &[&str], expect_success: bool) -> serde_json::Value {
    let port = server.port.to_string();
    let output = Command::new(loadgen_binary())
        .args(args)
        .args(["--port", &port, "--keys", KEYS, "--value-size", VALUE_SIZE])
        .args(["--connections", "8", "--json"])
        .output()
        .expect("run hypercache-loadgen");
    assert_eq!(
        output.status.success(),
        expect_success,
        "hypercache-loadgen {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

fn tiers(server: &BinaryServer, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("tiers")
        .query(&mut server.client())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO tiers has no {field}"))
        .trim()
        .parse()
        .unwrap()
}

fn number(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("report field {field}: {report}"))
}

/// Half of the reads ask for absent keys; returns (absent reads, cold-tier misses they
/// caused).
fn miss_heavy_run(server: &BinaryServer) -> (u64, u64) {
    let cold_misses_before = tiers(server, "cold_misses");
    let report = loadgen(
        server,
        &[
            "run",
            "--duration",
            "2",
            "--read-ratio",
            "1",
            "--absent-ratio",
            "0.5",
        ],
        true,
    );
    assert_eq!(number(&report, "absent_hits"), 0, "{report}");
    assert_eq!(number(&report, "wrong_values"), 0, "{report}");
    let absent_reads = number(&report, "absent_reads");
    assert!(
        absent_reads > 100,
        "too few absent reads to judge: {report}"
    );
    (
        absent_reads,
        tiers(server, "cold_misses") - cold_misses_before,
    )
}

#[test]
fn data_thirty_times_the_hot_tier_reads_back_whole_under_skewed_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &SMALL_BUDGET);

    let load = loadgen(&server, &["load"], true);
    assert_eq!(number(&load, "errors"), 0, "{load}");
    assert!(tiers(&server, "demotions") > 20_000, "most keys are cold");

    let run = loadgen(
        &server,
        &[
            "run",
            "--duration",
            "3",
            "--distribution",
            "zipf",
            "--read-ratio",
            "0.9",
            "--absent-ratio",
            "0.1",
        ],
        true,
    );
    for field in ["errors", "wrong_values", "absent_hits", "misses"] {
        assert_eq!(number(&run, field), 0, "{field}: {run}");
    }
    assert!(number(&run, "hits") > 0, "{run}");
    assert!(
        tiers(&server, "cold_hits") > 0,
        "reads reached the cold tier"
    );
    // The connections' cold GETs went through the cold readers' multi_get batches.
    assert!(tiers(&server, "cold_read_batches") > 0);
    assert!(tiers(&server, "cold_batched_reads") >= tiers(&server, "cold_read_batches"));

    let verify = loadgen(&server, &["verify"], true);
    assert_eq!(number(&verify, "hits"), 30_000, "{verify}");

    // A wrong value must fail the check: the loadgen is not a test that cannot fail.
    let _: () = redis::cmd("SET")
        .arg("key:000000000007")
        .arg("not the derived value")
        .query(&mut server.client())
        .unwrap();
    let verify = loadgen(&server, &["verify"], false);
    assert_eq!(number(&verify, "wrong_values"), 1, "{verify}");
}

#[test]
fn the_filter_keeps_absent_keys_off_the_cold_tier_and_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &SMALL_BUDGET);
    loadgen(&server, &["load"], true);

    // With the filter only its false positives (about 0.02% at the default 16-bit
    // fingerprints) read the cold tier.
    let (absent, cold_reads) = miss_heavy_run(&server);
    assert!(cold_reads * 100 <= absent, "{cold_reads} of {absent}");
    assert_eq!(server.terminate().code(), Some(0));

    // Off: every absent read asks RocksDB. The clean stop saved a filter, which must not be
    // used now.
    let env = [("HYPERCACHE_STORAGE__FILTER", "false")];
    let server = BinaryServer::start_with_env(dir.path(), &SMALL_BUDGET, &env, None);
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hypercache-filter")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(shown, ["hypercache-filter", "no"]);
    let (absent, cold_reads) = miss_heavy_run(&server);
    assert_eq!(cold_reads, absent);
    assert_eq!(server.terminate().code(), Some(0));

    // On again: the saved filter is the bypassed one, so it is rebuilt from the cold tier,
    // and covers every key (verify finds them all).
    let server = BinaryServer::start(dir.path(), &SMALL_BUDGET);
    let (absent, cold_reads) = miss_heavy_run(&server);
    assert!(cold_reads * 100 <= absent, "{cold_reads} of {absent}");
    let verify = loadgen(&server, &["verify"], true);
    assert_eq!(number(&verify, "hits"), 30_000, "{verify}");
}

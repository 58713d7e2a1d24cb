//! One test per rung of the verification ladder that fails only if that rung works: each backup
//! is damaged so that every lower rung passes and exactly one rung can catch it, and the test
//! asserts that rung's finding (its check name, `failed`, the artifact or table named) besides
//! the exit code. Level 1 (a flipped byte, `sha256`) is in `failures.rs`, the schema fingerprint
//! of level 4 in `fidelity.rs`.
//!
//! | rung | damage | lower rungs |
//! |---|---|---|
//! | 2 `zstd-frames` | a flipped byte, the manifest's sha256 rewritten to match | `sha256` passes |
//! | 3 `pg-restore-read` | pg_dump's archive cut short, pg_dump exiting 0 | `sha256`, `zstd-frames` pass |
//! | 3 `pg-restore-toc` | pg_dump run with `--exclude-table-data` | the archive reads whole |
//! | 4 `row-counts` | a pg_restore that deletes a row after restoring | restore and schema pass |

use std::path::Path;

use backup_core::Digest;
use predeploy_tests::fakes::{
    CUT_SHORT_BYTES, FakePgDump, FakePgRestore, pg_restore_tool_dir, tool_dir,
};
use predeploy_tests::{Output, PgServer, dump_path, fixtures, pre_deploy, run};

/// The varied database plus `public.filler` (`rows` rows, no keys pointing at it).
fn database(server: &PgServer, prefix: &str, rows: u32) -> String {
    let db = server.create_database(prefix);
    fixtures::load_varied(server, &db);
    server.psql(
        &db,
        &format!(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {rows}) g"
        ),
    );
    db
}

/// `pre-deploy ARGS --store STORE --source db=URL`, with the client tools of `tools` when given.
fn cli(store: &Path, url: &str, tools: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = pre_deploy();
    cmd.args(args)
        .arg("--store")
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"));
    if let Some(tools) = tools {
        cmd.env("PREDEPLOY_PG_BINDIR", tools);
    }
    run(&mut cmd)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

/// The newest verification record of the newest backup in `store`.
fn last_record(store: &Path) -> serde_json::Value {
    let shown = run(pre_deploy()
        .args(["show", "last", "--json", "--store"])
        .arg(store));
    shown.assert_success();
    let v = json(&shown);
    v["verifications"]
        .as_array()
        .and_then(|records| records.last())
        .cloned()
        .unwrap_or_else(|| panic!("no verification record: {v:#}"))
}

/// The finding of `check` on the dump in a verification record.
fn finding<'a>(record: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    record["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| {
            f["check"] == check
                && f["artifact"]
                    .as_str()
                    .is_some_and(|a| a.ends_with("/db/dump.pgc.zst"))
        })
        .unwrap_or_else(|| panic!("no {check} finding for the dump in {record:#}"))
}

#[track_caller]
fn assert_status(record: &serde_json::Value, check: &str, status: &str) -> String {
    let f = finding(record, check);
    assert_eq!(f["status"], status, "{check}: {record:#}");
    f["message"].as_str().unwrap_or_default().to_owned()
}

/// Level 2 alone: the stored bytes are exactly what the manifest records (sha256 and size), but
/// they do not decompress. Only the zstd frame checks can tell.
#[test]
fn level_2_a_dump_whose_checksum_matches_but_does_not_decompress_fails_zstd_frames() {
    let server = PgServer::shared();
    let db = database(server, "rung2", 50_000);
    let store = tempfile::tempdir().expect("store");
    let out = cli(
        store.path(),
        &server.url(&db),
        None,
        &["backup", "--json", "--verify-level", "checksum"],
    );
    out.assert_success();
    let id = json(&out)["id"].as_str().expect("id").to_owned();

    // Damage the compressed stream, then make the manifest agree with the damaged bytes.
    let dump = dump_path(store.path(), &id);
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, &bytes).expect("write");
    let manifest_path = store.path().join(format!("backups/{id}/manifest.json"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    let artifact = manifest["sources"][0]["artifacts"]
        .as_array_mut()
        .expect("artifacts")
        .iter_mut()
        .find(|a| a["name"] == "dump.pgc.zst")
        .expect("the dump is recorded");
    artifact["sha256"] = Digest::of(&bytes).to_string().into();
    artifact["stored_size"] = bytes.len().into();
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");

    // Level 1 sees nothing wrong: the damage is invisible to it.
    let out = run(pre_deploy()
        .args(["verify", &id, "--level", "checksum", "--store"])
        .arg(store.path()));
    out.assert_success();
    assert_status(&last_record(store.path()), "sha256", "passed");

    let out = run(pre_deploy()
        .args(["verify", &id, "--level", "decompress", "--store"])
        .arg(store.path()));
    out.assert_code(4);
    out.assert_stderr_contains("db/dump.pgc.zst: zstd decompression failed");
    let record = last_record(store.path());
    assert_eq!(record["passed"], false, "{record:#}");
    assert_eq!(record["level_reached"], "checksum", "{record:#}");
    assert_status(&record, "sha256", "passed");
    let message = assert_status(&record, "zstd-frames", "failed");
    assert!(message.contains("zstd decompression failed"), "{message}");
}

/// Level 3, full read: pg_dump writes the first MiB of a real archive and exits 0. The stored
/// bytes are what was streamed (level 1) and decompress cleanly (level 2); only reading the
/// archive to its end shows it is cut short. `run` refuses with exit 4 and never starts the
/// deploy command.
#[test]
fn level_3_an_archive_cut_short_by_pg_dump_refuses_the_deploy() {
    let server = PgServer::shared();
    let db = database(server, "rung3read", 50_000);
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let marker = work.path().join("deployed");
    let tools = tool_dir(FakePgDump::CutShort);
    let mut cmd = pre_deploy();
    cmd.args(["run", "--verify-level", "archive", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .env("PREDEPLOY_PG_BINDIR", tools.path())
        .current_dir(work.path());
    let out = run(&mut cmd);
    out.assert_code(4);
    out.assert_stderr_contains("REFUSED (exit 4): the deploy command did not run");
    assert!(!marker.exists(), "the deploy command never ran");

    let record = last_record(store.path());
    assert_eq!(record["passed"], false, "{record:#}");
    assert_eq!(record["level_reached"], "decompress", "{record:#}");
    assert_status(&record, "sha256", "passed");
    let frames = assert_status(&record, "zstd-frames", "passed");
    assert!(
        frames.contains(&format!("decompresses to {CUT_SHORT_BYTES} bytes")),
        "level 2 saw exactly the bytes pg_dump wrote: {frames}"
    );
    let read = assert_status(&record, "pg-restore-read", "failed");
    assert!(
        read.contains("db/dump.pgc.zst: pg_restore could not read the whole archive"),
        "{read}"
    );
}

/// Level 3, table of contents: pg_dump leaves out the data of one table. The archive is whole
/// and readable; only comparing its table of contents with the tables counted at backup time
/// shows the table is missing, and the finding names it.
#[test]
fn level_3_an_archive_without_the_data_of_a_counted_table_fails_naming_it() {
    let server = PgServer::shared();
    let db = database(server, "rung3toc", 1_000);
    let store = tempfile::tempdir().expect("store");
    let tools = tool_dir(FakePgDump::WithoutDataOf("public.filler"));
    let out = cli(
        store.path(),
        &server.url(&db),
        Some(tools.path()),
        &["backup", "--verify-level", "archive"],
    );
    out.assert_code(4);
    out.assert_stderr_contains("REFUSED (exit 4)");
    out.assert_stderr_contains(
        "the table of contents has no data for 1 of the tables counted at backup time: public.filler",
    );
    let record = last_record(store.path());
    assert_eq!(record["level_reached"], "decompress", "{record:#}");
    assert_status(&record, "sha256", "passed");
    assert_status(&record, "zstd-frames", "passed");
    assert_status(&record, "pg-restore-read", "passed");
    let toc = assert_status(&record, "pg-restore-toc", "failed");
    assert!(
        toc.ends_with(": public.filler"),
        "only filler is named: {toc}"
    );
}

/// Level 4, row counts: a pg_restore that restores everything, then deletes one row of
/// `public.filler` in the scratch database. Levels 1–3 pass, the restore itself succeeds and
/// the schema is the recorded one; only counting the restored rows shows the loss.
#[test]
fn level_4_a_restore_that_loses_a_row_fails_row_counts_naming_the_table() {
    let server = PgServer::shared();
    let db = database(server, "rung4rows", 1_000);
    let store = tempfile::tempdir().expect("store");
    let tools = pg_restore_tool_dir(FakePgRestore::DeletesARowOf("public.filler"));
    let out = cli(
        store.path(),
        &server.url(&db),
        Some(tools.path()),
        &["backup", "--verify-level", "restore"],
    );
    out.assert_code(4);
    out.assert_stderr_contains(
        "table public.filler has 999 rows in the restored copy, the backup recorded 1000",
    );
    let record = last_record(store.path());
    assert_eq!(
        record["level_reached"], "archive",
        "levels 1-3 passed: {record:#}"
    );
    for check in ["sha256", "zstd-frames", "pg-restore-toc", "pg-restore"] {
        assert_status(&record, check, "passed");
    }
    assert_status(&record, "schema-fingerprint", "passed");
    let rows = assert_status(&record, "row-counts", "failed");
    assert!(
        rows.ends_with("the restored data differs from the backup's record: table public.filler has 999 rows in the restored copy, the backup recorded 1000"),
        "only filler differs: {rows}"
    );
}

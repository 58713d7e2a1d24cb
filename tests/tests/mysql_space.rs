//! A MySQL/MariaDB test restore never fills the scratch server's disk: when the server's data
//! directory has less than twice the dump's raw size free, level 4 is skipped with the reason
//! (and a required level 4 refuses), before any database is created there.

use std::path::Path;
use std::process::Command;

use predeploy_tests::mysql::MariaDbServer;
use predeploy_tests::{pre_deploy, run};

/// A small tmpfs mounted on a temp dir, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the test machines run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_scratch_server_without_room_for_the_copy_is_not_used() {
    let fs = SmallFs::mount("256m");
    let small = MariaDbServer::start_under(fs.path());
    let free = backup_core::disk::free_bytes(fs.path()).expect("free space");
    let source = MariaDbServer::shared();
    let db = source.create_database("big");
    // A dump whose raw size is more than half of what the small server has free.
    let rows = free / 2 / 1000 + 2000;
    source.sql(
        &db,
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(1000)); \
             INSERT INTO t SELECT seq, REPEAT('x', 990) FROM seq_1_to_{rows};"
        ),
    );
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work");
    let backup = |level: Option<&str>| {
        let mut cmd = pre_deploy();
        cmd.current_dir(work.path())
            .args(["backup", "--json", "--store"]);
        cmd.arg(store.path())
            .arg("--source")
            .arg(format!("db={}", source.url(&db)))
            .arg("--verify-restore-url")
            .arg(small.url("scratch"));
        if let Some(level) = level {
            cmd.args(["--verify-level", level]);
        }
        run(&mut cmd)
    };
    // The default attempts level 4 and requires level 3: the backup passes, saying why not 4.
    let out = backup(None);
    out.assert_success();
    let json = out.json();
    let restore = predeploy_tests::cli::finding(&json["verification"], "mysql-restore");
    assert_eq!(restore["status"], "skipped", "{restore:#}");
    let message = restore["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("needed for the work database") && message.contains("free under"),
        "{message}"
    );
    let scratch = small.sql(
        "",
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%predeploy%'",
    );
    assert_eq!(scratch.trim(), "0", "no work database was created");
    // Level 4 required: refused with exit 4 for the same reason.
    let out = backup(Some("restore"));
    out.assert_code(4);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("needed for the work database"), "{said}");
}

//! Integration tests of pre-deploy against real servers, and the harness that starts them.
//!
//! No mocks, and Docker only for the `via=docker://` tests ([`docker`]): [`pg::PgServer`] runs
//! `initdb` and `pg_ctl` from the installed PostgreSQL binaries (`scripts/setup.sh` installs
//! them) in a temp dir, on a free loopback port, as the `postgres` OS user when the tests run as
//! root. Each test takes its own database ([`PgServer::create_database`]) so tests run in
//! parallel; servers are stopped and removed on drop, also during a panic.
//!
//! - [`pg`]: servers, `psql`, URLs, free ports.
//! - [`compare`]: per-table checksums, sequence positions and schema dumps, to compare a
//!   restored database with its source by content.
//! - [`cli`]: the `pre-deploy` binary of this workspace, built once per test process.
//! - [`fixtures`]: the "varied" round-trip database and the benchmark dataset scripts.
//! - [`regress`]: PostgreSQL's own regression database, cached by `scripts/regress-db.sh`.
//! - [`mysql`]: a MariaDB server with password authentication, its client, content hashes.
//! - [`tls`]: a PostgreSQL server that accepts only TLS, with certificates made by the test.
//! - [`docker`]: PostgreSQL in a Docker container without a published port (`via=docker://`).
//! - [`docker_mariadb`]: MariaDB the same way, for MySQL/MariaDB sources.
//! - [`encrypted`]: age key pairs and working directories with `[encryption]`.
//! - [`leaks`]: every file under a directory, byte search, every process's argv.
//! - [`ssh`]: an OpenSSH server on loopback, the jump host of `via=ssh://` tests.
//! - [`procs`]: process groups started by a test, ended by their id.
//! - [`restoring`]: helpers for `restore` and rollback tests, and [`restoring::Paused`], a
//!   restore stopped at a named step.
//!
//! ```no_run
//! use predeploy_tests::{PgServer, fixtures, table_checksums};
//!
//! let server = PgServer::start();
//! let db = server.create_database("rt");
//! fixtures::load_varied(&server, &db);
//! let sums = table_checksums(&server, &db);
//! assert_eq!(sums["public.orders"].rows, 2000);
//! ```

pub mod cli;
pub mod compare;
pub mod docker;
pub mod docker_mariadb;
pub mod encrypted;
pub mod fakes;
pub mod fixtures;
pub mod leaks;
pub mod mysql;
pub mod pg;
pub mod procs;
pub mod regress;
pub mod restore;
pub mod restoring;
pub mod s3;
pub mod ssh;
pub mod tls;

pub use cli::{Output, finding, pre_deploy, run};
pub use compare::{
    SeqValue, TableSum, assert_same_database, schema_dump, sequence_values, table_checksums,
};
pub use pg::{PgServer, unused_port};
pub use restore::{dump_path, restore_artifact};
pub use s3::{GarageServer, MotoServer, S3Server};

//! Every URL a user types: sources, stores, buckets, test-restore servers. Any text gives a
//! value or an error, never a panic; a redacted form never shows a password.
#![no_main]

use libfuzzer_sys::fuzz_target;

struct NoEnv;

impl backup_postgres::Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fuzz_target!(|text: &str| {
    let _ = backup_postgres::PgSourceConfig::from_url(text, &NoEnv);
    let _ = backup_mysql::MysqlSourceConfig::from_url(text);
    let _ = backup_objectstore::StoreUrl::parse(text);
    let _ = backup_objectstore::bucket::BucketLocation::parse(text);
    let _ = backup_objectstore::S3Settings::from_query(text);
    let _ = backup_core::redact_url(text);
    // As `--source NAME=URL` and `--store` flags, through the whole settings resolution.
    let cli = deploy_gate::CliOverrides {
        sources: vec![text.to_owned()],
        store: Some(text.to_owned()),
        ..deploy_gate::CliOverrides::default()
    };
    let _ = deploy_gate::Settings::resolve(&cli, &|_| None, std::path::Path::new("/nonexistent"));
});

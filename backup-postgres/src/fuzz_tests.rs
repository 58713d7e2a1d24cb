//! Property tests over the parsers of user and stored input in this crate: whatever the text,
//! they return a value or an error, never panic, and never echo a password.

use proptest::prelude::*;

use crate::config::{Env, PgSourceConfig, redact_url};
use crate::restorer::failed_statements;
use crate::schema::SchemaListing;

struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_as_a_url_parses_or_errs_without_panicking(text in any::<String>()) {
        let _ = PgSourceConfig::from_url(&text, &NoEnv);
        let _ = redact_url(&text);
    }

    #[test]
    fn a_password_is_never_echoed(
        scheme in "(postgres|postgresql|db|s3|mysql|x)",
        sep in "(://|:|:///)",
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{12,20}",
        host in "[a-z]{1,8}(:[0-9]{1,5})?",
        path in "(/[a-z]{0,8})?",
        query in "(\\?[a-z_]{1,12}=[a-z0-9]{0,8})?",
        in_query in any::<bool>(),
    ) {
        let url = if in_query {
            format!("{scheme}{sep}{user}@{host}{path}?password={password}&sslpassword={password}")
        } else {
            format!("{scheme}{sep}{user}:{password}@{host}{path}{query}")
        };
        prop_assert!(!redact_url(&url).contains(&password), "{}", redact_url(&url));
        if let Err(e) = PgSourceConfig::from_url(&url, &NoEnv) {
            prop_assert!(!e.to_string().contains(&password), "{}", e);
        }
        if let Ok(c) = PgSourceConfig::from_url(&url, &NoEnv) {
            let debug = format!("{c:?}");
            prop_assert!(!debug.contains(&password));
            prop_assert!(!c.location().contains(&password));
        }
    }

    #[test]
    fn any_pg_restore_output_is_read_without_panicking(text in any::<String>()) {
        let _ = failed_statements(&text);
        let _ = failed_statements(&format!("pg_restore: error: could not execute query: {text}\nCommand was: {text}"));
    }

    #[test]
    fn any_stored_listing_parses_or_errs_without_panicking(text in any::<String>()) {
        let _ = SchemaListing::parse(&text);
        let _ = SchemaListing::parse(&format!("# pre-deploy schema listing v2\n{text}"));
    }
}

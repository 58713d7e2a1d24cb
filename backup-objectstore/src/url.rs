//! Store URLs: what `--store` accepts.

use std::path::PathBuf;

use backup_core::{Error, Result};

use crate::s3::S3Settings;

/// A parsed `--store` value.
// Made once per run and matched everywhere: boxing the S3 settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory on this machine (`./backups`, `/var/backups/app`, `file:///var/backups/app`).
    Local(PathBuf),
    /// An S3-compatible bucket and prefix (`s3://bucket/prefix`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (no leading or trailing slash; may be empty).
        prefix: String,
        /// Connection settings from the URL's query (`?endpoint=…&region=…`); they override
        /// the environment and the config file.
        settings: S3Settings,
    },
}

impl StoreUrl {
    /// Parses a store location.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for an unknown scheme or a malformed URL.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            what: "store",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(invalid("the store location is empty"));
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "a file:// URL needs an absolute path, e.g. file:///var/backups/app",
                ));
            }
            return Ok(StoreUrl::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let settings = S3Settings::from_query(query).map_err(|r| Error::Invalid {
                what: "store",
                // The query may hold what looked like a credential: show only the location.
                value: format!("s3://{rest}"),
                reason: r,
            })?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "an s3:// URL needs a bucket, e.g. s3://backups/app",
                ));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                settings,
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(invalid(&format!(
                "unknown scheme {scheme}://; use a path, file:///dir or s3://bucket/prefix"
            )));
        }
        Ok(StoreUrl::Local(PathBuf::from(s)))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Local(p) => write!(f, "file://{}", p.display()),
            StoreUrl::S3 {
                bucket,
                prefix,
                settings,
            } => crate::s3::fmt_url(f, bucket, prefix, settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_file_urls_and_s3() {
        assert_eq!(
            StoreUrl::parse("./backups").expect("ok"),
            StoreUrl::Local("./backups".into())
        );
        assert_eq!(
            StoreUrl::parse("file:///var/b").expect("ok"),
            StoreUrl::Local("/var/b".into())
        );
        assert_eq!(
            StoreUrl::parse("s3://bk/app/prod/").expect("ok"),
            StoreUrl::S3 {
                bucket: "bk".into(),
                prefix: "app/prod".into(),
                settings: S3Settings::default(),
            }
        );
        let garage =
            StoreUrl::parse("s3://bk/p?endpoint=http://127.0.0.1:3900&region=garage").expect("ok");
        assert_eq!(
            garage.to_string(),
            "s3://bk/p?endpoint=http%3A%2F%2F127.0.0.1%3A3900&region=garage"
        );
        assert_eq!(
            StoreUrl::parse(&garage.to_string()).expect("round trip"),
            garage
        );
        let err = StoreUrl::parse("s3://bk/p?secret_access_key=hunter2")
            .expect_err("refused")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        for bad in ["", "file://relative", "s3:///x", "ftp://host/x"] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

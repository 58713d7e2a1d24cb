//! [`BucketLocation`]: where a bucket source reads or a bucket restore writes.

use std::path::PathBuf;

use backup_core::{Error, Result};

use crate::s3::S3Settings;

/// A bucket prefix or a local directory, as given in `--source NAME=URL` or a restore target.
///
/// - `s3://bucket`, `s3://bucket/some/prefix?endpoint=…&region=…` (connection settings in the
///   query override the base settings; credentials are never accepted in a URL);
/// - `file:///var/lib/app/files` or an absolute path `/var/lib/app/files`.
// Made once per run and matched everywhere: boxing the S3 settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketLocation {
    /// An S3-compatible bucket, and a prefix inside it (no leading or trailing slash).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix (may be empty: the whole bucket).
        prefix: String,
        /// Settings from the URL's query.
        settings: S3Settings,
    },
    /// A directory on this machine.
    Directory(PathBuf),
}

impl BucketLocation {
    /// Parses a source or target URL.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for another scheme, a relative `file://` path, a missing bucket, or a
    /// query with unknown keys or credentials.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            what: "bucket location",
            value: s.split('?').next().unwrap_or_default().to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let settings = S3Settings::from_query(query).map_err(invalid)?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "an s3:// URL needs a bucket, e.g. s3://app-uploads".into(),
                ));
            }
            return Ok(BucketLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                settings,
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if s.contains("://") && !s.starts_with("file://") {
            return Err(invalid(
                "use s3://bucket/prefix, file:///absolute/dir or an absolute path".into(),
            ));
        }
        if !path.starts_with('/') {
            return Err(invalid(
                "a directory must be an absolute path, e.g. file:///var/lib/app/files".into(),
            ));
        }
        Ok(BucketLocation::Directory(PathBuf::from(path)))
    }

    /// The source kind recorded in manifests: `bucket` or `directory`.
    pub fn kind(&self) -> &'static str {
        match self {
            BucketLocation::S3 { .. } => "bucket",
            BucketLocation::Directory(_) => "directory",
        }
    }

    /// True when `url` looks like a bucket or directory location (`s3://`, `file://`, or an
    /// absolute path).
    pub fn is_bucket_url(url: &str) -> bool {
        url.starts_with("s3://") || url.starts_with("file://") || url.starts_with('/')
    }
}

impl std::fmt::Display for BucketLocation {
    /// The location without secrets: `s3://bucket/prefix?endpoint=…` or `file:///dir`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketLocation::S3 {
                bucket,
                prefix,
                settings,
            } => crate::s3::fmt_url(f, bucket, prefix, settings),
            BucketLocation::Directory(p) => write!(f, "file://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_and_directories() {
        let l = BucketLocation::parse("s3://uploads/a/b/?endpoint=http://h:1&allow_http=true")
            .expect("parses");
        assert_eq!(l.kind(), "bucket");
        assert_eq!(
            l.to_string(),
            "s3://uploads/a/b?endpoint=http%3A%2F%2Fh%3A1&allow_http=true"
        );
        assert_eq!(BucketLocation::parse(&l.to_string()).expect("again"), l);
        let d = BucketLocation::parse("file:///var/lib/files").expect("parses");
        assert_eq!(d, BucketLocation::Directory("/var/lib/files".into()));
        assert_eq!(d.kind(), "directory");
        assert_eq!(
            BucketLocation::parse("/srv/x").expect("parses"),
            BucketLocation::Directory("/srv/x".into())
        );
        for bad in [
            "s3://",
            "file://rel",
            "rel/dir",
            "ftp://x/y",
            "s3://b?secret_key=x",
        ] {
            let err = BucketLocation::parse(bad).expect_err(bad).to_string();
            assert!(!err.contains("secret_key=x"), "{err}");
        }
    }
}

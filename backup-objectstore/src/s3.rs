//! S3-compatible servers (AWS S3, MinIO, Garage, moto, …): connection settings and the
//! `object_store` client built from them.
//!
//! Settings come from three places, the later overriding the earlier: the config file's `[s3]`
//! section, the standard `AWS_*` environment variables, and the query of the URL itself
//! (`s3://bucket/prefix?endpoint=http://127.0.0.1:3900&region=garage`). Credentials are never
//! accepted in a URL, so they cannot leak into a manifest, a log line or `ps`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Error, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

/// Region used when none is configured (what AWS assumes; Garage needs its own, e.g. `garage`).
pub const DEFAULT_REGION: &str = "us-east-1";

const MIB: u64 = 1024 * 1024;

/// S3's smallest part of a multipart upload (all but the last part).
pub(crate) const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's most parts in one upload.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// The first parts of an upload: small enough for memory to stay low for common sizes.
pub(crate) const FIRST_PART_SIZE: u64 = 10 * MIB;
/// An upload of unknown size doubles its part size after this many parts.
pub(crate) const PARTS_PER_DOUBLING: u64 = 1_000;
const _: () = assert!(FIRST_PART_SIZE >= MIN_PART_SIZE && FIRST_PART_SIZE << 9 == MAX_PART_SIZE);

/// The size of part `number` (1-based) of an upload whose size is not known in advance (a
/// dump streaming from `pg_dump`): 10 MiB for the first 1,000 parts, then doubling every 1,000
/// parts up to S3's 5 GiB. 10,000 parts then hold 9.99 TiB, more than S3's largest object
/// (5 TiB), while an upload under 9.8 GiB keeps 10 MiB parts. Memory follows the part size
/// (a part being filled plus the parts in flight): 30 MiB up to 9.8 GiB, 60 MiB up to 29 GiB,
/// 120 MiB up to 68 GiB, …, about 1.5 GiB per part in flight for the largest S3 object.
pub(crate) fn growing_part_size(number: u64) -> u64 {
    let doublings = (number.max(1) - 1) / PARTS_PER_DOUBLING;
    // 10 MiB << 9 is 5 GiB: never more.
    (FIRST_PART_SIZE << doublings.min(9)).min(MAX_PART_SIZE)
}

/// The part size of an upload of `size` bytes known in advance (an object restored from a
/// bucket backup): 10 MiB, or the smallest whole number of MiB that fits `size` in 10,000
/// parts; at most 5 GiB (which holds S3's largest object, 5 TiB).
pub(crate) fn part_size_for(size: u64) -> u64 {
    size.div_ceil(MAX_PARTS)
        .next_multiple_of(MIB)
        .clamp(FIRST_PART_SIZE, MAX_PART_SIZE)
}

/// How to reach an S3-compatible server. Every field is optional; unset fields fall back to
/// the next source (URL query → `AWS_*` environment → config file → defaults). It is also the
/// config file's `[s3]` section.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL for non-AWS servers, e.g. `http://127.0.0.1:3900`.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Default: on when an endpoint is set
    /// (MinIO, Garage), off for AWS.
    pub path_style: Option<bool>,
    /// Allow plain HTTP. Off unless asked for: meant for loopback and trusted networks.
    pub allow_http: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never printed: `Debug` redacts it).
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials (never printed).
    pub session_token: Option<String>,
    /// Whether the server honours create-only writes; unset means "probe it" (see
    /// [`backup_core::Store::detect_create_only`]).
    pub create_only: Option<bool>,
    /// A named profile of the AWS shared files (`AWS_PROFILE`): its keys, region and
    /// endpoint fill what is not set otherwise (see [`crate::aws_profile`]).
    pub profile: Option<String>,
    /// Server-side encryption of stored objects: `AES256` (SSE-S3), `aws:kms` (SSE-KMS) or
    /// `aws:kms:dsse`.
    pub sse: Option<String>,
    /// The KMS key of `sse = "aws:kms"` (default: the account's `aws/s3` key).
    pub sse_kms_key_id: Option<String>,
    /// The storage class of backup objects (`STANDARD_IA`, `INTELLIGENT_TIERING`, …; never
    /// for lock leases). Classes whose objects cannot be read without a restore request
    /// (`GLACIER`, `DEEP_ARCHIVE`) are refused: no backup there could be verified.
    pub storage_class: Option<String>,
}

/// The variables of the AWS credential chain passed to the client when no keys are given, with
/// the client's name for each.
const CREDENTIAL_CHAIN_VARS: &[(&str, &str)] = &[
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "aws_web_identity_token_file"),
    ("AWS_ROLE_ARN", "aws_role_arn"),
    ("AWS_ROLE_SESSION_NAME", "aws_role_session_name"),
    ("AWS_ENDPOINT_URL_STS", "aws_endpoint_url_sts"),
    (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "aws_container_credentials_relative_uri",
    ),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "aws_container_credentials_full_uri",
    ),
    (
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "aws_container_authorization_token_file",
    ),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "aws_metadata_endpoint"),
];

/// Server-side encryption types S3 accepts.
const SSE_TYPES: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];

/// Storage classes whose objects can be read at once.
const READABLE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "EXPRESS_ONEZONE",
];

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("create_only", &self.create_only)
            .field("profile", &self.profile)
            .field("sse", &self.sse)
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .field("storage_class", &self.storage_class)
            .finish()
    }
}

impl S3Settings {
    /// The settings the standard `AWS_*` variables give (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`), read through `var`.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&str]| names.iter().find_map(|n| var(n).filter(|v| !v.is_empty()));
        S3Settings {
            endpoint: first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: first(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            path_style: first(&["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"]).map(|v| !truthy(&v)),
            allow_http: first(&["AWS_ALLOW_HTTP"]).map(|v| truthy(&v)),
            access_key_id: first(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: first(&["AWS_SESSION_TOKEN"]),
            create_only: None,
            profile: first(&["AWS_PROFILE"]),
            sse: None,
            sse_kms_key_id: None,
            storage_class: None,
        }
    }

    /// The settings of this process's environment.
    pub fn from_env() -> Self {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// `self`, with every field that `over` sets replaced by `over`'s value.
    pub fn overridden_by(&self, over: &S3Settings) -> S3Settings {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        S3Settings {
            endpoint: pick(&over.endpoint, &self.endpoint),
            region: pick(&over.region, &self.region),
            path_style: pick(&over.path_style, &self.path_style),
            allow_http: pick(&over.allow_http, &self.allow_http),
            access_key_id: pick(&over.access_key_id, &self.access_key_id),
            secret_access_key: pick(&over.secret_access_key, &self.secret_access_key),
            session_token: pick(&over.session_token, &self.session_token),
            create_only: pick(&over.create_only, &self.create_only),
            profile: pick(&over.profile, &self.profile),
            sse: pick(&over.sse, &self.sse),
            sse_kms_key_id: pick(&over.sse_kms_key_id, &self.sse_kms_key_id),
            storage_class: pick(&over.storage_class, &self.storage_class),
        }
    }

    /// Parses the query of an `s3://` URL: `endpoint`, `region`, `path_style`, `allow_http`,
    /// `create_only`, `profile`, `sse`, `sse_kms_key_id`, `storage_class`. Credentials in a URL are refused (they would end up in logs and `ps`).
    ///
    /// # Errors
    ///
    /// A human-readable reason for an unknown key, a credential, or a malformed boolean.
    pub fn from_query(query: &str) -> std::result::Result<Self, String> {
        let mut s = S3Settings::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let flag =
                || parse_bool(&value).ok_or_else(|| format!("{key}={value} is not true or false"));
            match key.as_ref() {
                "endpoint" => s.endpoint = Some(value.into_owned()),
                "region" => s.region = Some(value.into_owned()),
                "path_style" => s.path_style = Some(flag()?),
                "allow_http" => s.allow_http = Some(flag()?),
                "create_only" => s.create_only = Some(flag()?),
                "profile" => s.profile = Some(value.into_owned()),
                "sse" => s.sse = Some(value.into_owned()),
                "sse_kms_key_id" => s.sse_kms_key_id = Some(value.into_owned()),
                "storage_class" => s.storage_class = Some(value.into_owned()),
                k if k.contains("key") || k.contains("secret") || k.contains("token") => {
                    return Err(format!(
                        "credentials are not accepted in a URL ({k}); set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, or [s3] in the config file"
                    ));
                }
                k => {
                    return Err(format!(
                        "unknown option {k}; use endpoint, region, path_style, allow_http, create_only, profile, sse, sse_kms_key_id or storage_class"
                    ));
                }
            }
        }
        Ok(s)
    }

    /// The URL query that reproduces the non-secret settings (for display and manifests).
    pub fn to_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(e) = &self.endpoint {
            q.append_pair("endpoint", e);
        }
        if let Some(r) = &self.region {
            q.append_pair("region", r);
        }
        if let Some(p) = self.path_style {
            q.append_pair("path_style", if p { "true" } else { "false" });
        }
        if let Some(a) = self.allow_http {
            q.append_pair("allow_http", if a { "true" } else { "false" });
        }
        if let Some(c) = self.create_only {
            q.append_pair("create_only", if c { "true" } else { "false" });
        }
        for (key, value) in [
            ("profile", &self.profile),
            ("sse", &self.sse),
            ("sse_kms_key_id", &self.sse_kms_key_id),
            ("storage_class", &self.storage_class),
        ] {
            if let Some(v) = value {
                q.append_pair(key, v);
            }
        }
        q.finish()
    }

    /// Builds the client for `bucket`, scoped to `prefix` (empty: the whole bucket).
    ///
    /// Timeouts suit large parts: no limit on a whole request (a 10 MiB part on a slow link may
    /// take minutes), 10 s to connect, and 120 s without a byte read. Transient errors are retried
    /// with backoff.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a plain-HTTP endpoint without `allow_http`, or settings the client
    /// rejects.
    pub fn build(&self, bucket: &str, prefix: &str) -> Result<Arc<dyn ObjectStore>> {
        let s3 = self.amazon_s3(bucket)?;
        if prefix.is_empty() {
            Ok(Arc::new(s3))
        } else {
            Ok(Arc::new(PrefixStore::new(s3, prefix)))
        }
    }

    /// The `object_store` client of `bucket` (see [`S3Settings::build`]); bucket sources and
    /// targets take its credential chain.
    pub(crate) fn amazon_s3(&self, bucket: &str) -> Result<AmazonS3> {
        let display = format!("s3://{bucket}");
        let invalid = |reason: String| Error::Invalid {
            what: "S3 settings",
            value: display.clone(),
            reason,
        };
        let resolved = self
            .with_profile(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .map_err(invalid)?;
        resolved.check_storage_options().map_err(invalid)?;
        let this = &resolved;
        let allow_http = this.allow_http.unwrap_or(false);
        if let Some(ep) = &this.endpoint
            && ep.starts_with("http://")
            && !allow_http
        {
            return Err(invalid(format!(
                "the endpoint {ep} is plain HTTP; add allow_http=true (URL query, \
                 AWS_ALLOW_HTTP=true or [s3] allow_http) if that is intended"
            )));
        }
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(120))
            .with_pool_idle_timeout(Duration::from_secs(30));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: Duration::from_secs(180),
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(this.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_client_options(client)
            .with_retry(retry)
            .with_allow_http(allow_http)
            .with_disable_tagging(true)
            .with_virtual_hosted_style_request(!this.path_style.unwrap_or(this.endpoint.is_some()));
        if let Some(ep) = &this.endpoint {
            b = b.with_endpoint(ep);
        }
        if let Some(k) = &this.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &this.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(t) = &this.session_token {
            b = b.with_token(t);
        }
        // Without keys, the builder's own credential chain finds them: web identity (with a
        // custom STS endpoint), container credentials, then the instance's role.
        if this.access_key_id.is_none() {
            for (var, key) in CREDENTIAL_CHAIN_VARS {
                if let (Some(v), Ok(key)) = (
                    std::env::var(var).ok().filter(|v| !v.is_empty()),
                    key.parse::<AmazonS3ConfigKey>(),
                ) {
                    b = b.with_config(key, v);
                }
            }
        }
        for (key, value) in [
            ("aws_server_side_encryption", &this.sse),
            ("aws_sse_kms_key_id", &this.sse_kms_key_id),
        ] {
            if let (Some(v), Ok(key)) = (value, key.parse::<AmazonS3ConfigKey>()) {
                b = b.with_config(key, v);
            }
        }
        b.build().map_err(|e| invalid(e.to_string()))
    }

    /// `self` with what the AWS profile (named by `profile`, else `default` when it exists)
    /// gives, where `self` leaves it unset: keys only when `self` has none.
    ///
    /// # Errors
    ///
    /// A message for a named profile that does not exist or cannot be used.
    pub fn with_profile(
        &self,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<S3Settings, String> {
        let keys_given = self.access_key_id.is_some() || self.secret_access_key.is_some();
        // An explicit key in the environment wins over the default profile, as in the AWS CLI;
        // a named profile is still checked so a typo does not go unnoticed.
        if keys_given && self.profile.is_none() {
            return Ok(self.clone());
        }
        let Some(p) = crate::aws_profile::load(self.profile.as_deref(), var)? else {
            return Ok(self.clone());
        };
        let mut out = self.clone();
        if !keys_given {
            out.access_key_id = p.access_key_id;
            out.secret_access_key = p.secret_access_key;
            out.session_token = p.session_token;
        }
        out.region = out.region.or(p.region);
        out.endpoint = out.endpoint.or(p.endpoint);
        Ok(out)
    }

    /// Whether `sse`, `sse_kms_key_id` and `storage_class` make sense.
    fn check_storage_options(&self) -> std::result::Result<(), String> {
        if let Some(sse) = &self.sse
            && !SSE_TYPES.contains(&sse.as_str())
        {
            return Err(format!(
                "sse = {sse:?} is not a server-side encryption S3 knows: use AES256 (SSE-S3), aws:kms (SSE-KMS) or aws:kms:dsse"
            ));
        }
        if self.sse_kms_key_id.is_some()
            && !self
                .sse
                .as_deref()
                .is_some_and(|s| s.starts_with("aws:kms"))
        {
            return Err("sse_kms_key_id needs sse = \"aws:kms\"".into());
        }
        if let Some(class) = &self.storage_class
            && !READABLE_CLASSES.contains(&class.as_str())
        {
            return Err(if matches!(class.as_str(), "GLACIER" | "DEEP_ARCHIVE") {
                format!(
                    "storage_class = {class:?}: objects there cannot be read without a restore request, so no backup could be verified or restored on a bad day; use GLACIER_IR, or a lifecycle rule that moves old backups"
                )
            } else {
                format!(
                    "storage_class = {class:?} is not one S3 knows: use one of {}",
                    READABLE_CLASSES.join(", ")
                )
            });
        }
        Ok(())
    }

    /// A short description without secrets, e.g. `endpoint http://127.0.0.1:3900, region garage`.
    pub fn describe(&self) -> String {
        let mut parts = BTreeMap::new();
        parts.insert(
            "endpoint",
            self.endpoint.clone().unwrap_or_else(|| "AWS".into()),
        );
        parts.insert(
            "region",
            self.region.clone().unwrap_or_else(|| DEFAULT_REGION.into()),
        );
        parts.insert(
            "credentials",
            if self.access_key_id.is_some() {
                "access key"
            } else {
                "default chain"
            }
            .into(),
        );
        parts
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Writes `s3://bucket[/prefix][?query]`: the non-secret form of an S3 location.
pub(crate) fn fmt_url(
    f: &mut std::fmt::Formatter<'_>,
    bucket: &str,
    prefix: &str,
    settings: &S3Settings,
) -> std::fmt::Result {
    write!(f, "s3://{bucket}")?;
    if !prefix.is_empty() {
        write!(f, "/{prefix}")?;
    }
    let query = settings.to_query();
    if !query.is_empty() {
        write!(f, "?{query}")?;
    }
    Ok(())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn truthy(v: &str) -> bool {
    parse_bool(v).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_query_parses_and_refuses_credentials() {
        let s =
            S3Settings::from_query("endpoint=http://127.0.0.1:3900&region=garage&allow_http=true")
                .expect("parses");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert_eq!(s.allow_http, Some(true));
        let err = S3Settings::from_query("secret_access_key=abc").expect_err("refused");
        assert!(err.contains("not accepted in a URL"), "{err}");
        assert!(!err.contains("abc"), "the secret is not echoed: {err}");
        assert!(S3Settings::from_query("colour=blue").is_err());
        assert!(S3Settings::from_query("allow_http=maybe").is_err());
    }

    #[test]
    fn later_sources_override_earlier_ones_and_debug_hides_secrets() {
        let env = S3Settings::from_env_with(|k| match k {
            "AWS_REGION" => Some("eu-west-1".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t".into()),
            "AWS_ACCESS_KEY_ID" => Some("AKIA".into()),
            _ => None,
        });
        let url = S3Settings::from_query("region=garage").expect("parses");
        let merged = env.overridden_by(&url);
        assert_eq!(merged.region.as_deref(), Some("garage"));
        assert_eq!(merged.secret_access_key.as_deref(), Some("s3cr3t"));
        let shown = format!("{merged:?} {}", merged.describe());
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    /// Parts an upload of `size` bytes takes with [`growing_part_size`], and whether every part
    /// but the last is within S3's limits.
    fn growing_parts(size: u64) -> (u64, bool) {
        let (mut parts, mut sent, mut within) = (0u64, 0u64, true);
        while sent < size || parts == 0 {
            parts += 1;
            let part = growing_part_size(parts);
            within &= (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part);
            sent = sent.saturating_add(part);
        }
        (parts, within)
    }

    #[test]
    fn part_sizes_at_the_edges() {
        assert_eq!(growing_part_size(1), FIRST_PART_SIZE);
        assert_eq!(growing_part_size(1_000), FIRST_PART_SIZE);
        assert_eq!(growing_part_size(1_001), 2 * FIRST_PART_SIZE);
        assert_eq!(growing_part_size(9_001), MAX_PART_SIZE);
        assert_eq!(growing_part_size(u64::MAX), MAX_PART_SIZE);
        // What a fixed 10 MiB could not store (10,000 parts of 10 MiB: 97.7 GiB).
        let over = MAX_PARTS * FIRST_PART_SIZE + 1;
        assert!(growing_parts(over).0 <= MAX_PARTS);
        assert_eq!(growing_parts(MAX_OBJECT_SIZE).0, 9_026);
        assert_eq!(part_size_for(0), FIRST_PART_SIZE);
        assert_eq!(part_size_for(over), 11 * MIB);
        assert_eq!(part_size_for(MAX_OBJECT_SIZE), 525 * MIB);
        assert_eq!(part_size_for(u64::MAX), MAX_PART_SIZE);
    }

    proptest::proptest! {
        /// Any object S3 can hold fits in 10,000 parts, each within S3's limits, whether its
        /// size is known in advance or not.
        #[test]
        fn any_size_up_to_5_tib_fits_in_10000_parts(size in 0..=MAX_OBJECT_SIZE) {
            let (parts, within) = growing_parts(size);
            proptest::prop_assert!(parts <= MAX_PARTS, "{size}: {parts} parts");
            proptest::prop_assert!(within, "{size}");
            let part = part_size_for(size);
            proptest::prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part));
            proptest::prop_assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: parts of {part}");
        }

        /// Common sizes keep 10 MiB parts (memory stays low).
        #[test]
        fn small_uploads_keep_10_mib_parts(size in 0..=PARTS_PER_DOUBLING * FIRST_PART_SIZE) {
            proptest::prop_assert_eq!(part_size_for(size), FIRST_PART_SIZE);
            proptest::prop_assert!(growing_parts(size).0 <= PARTS_PER_DOUBLING);
        }
    }

    #[test]
    fn plain_http_needs_consent() {
        let s = S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let err = s.build("b", "").expect_err("refused").to_string();
        assert!(err.contains("allow_http"), "{err}");
        let ok = S3Settings {
            allow_http: Some(true),
            ..s
        };
        ok.build("b", "p").expect("builds");
    }
}

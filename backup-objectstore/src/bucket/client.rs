//! [`S3Bucket`]: an S3 bucket prefix as a bucket source or restore target, addressed by raw keys.
//!
//! S3 keys are any UTF-8 string of up to 1,024 bytes: a TAB or a newline, empty segments
//! (`a//b`), `.` and `..` segments, a leading or trailing `/`. `object_store`'s `Path` refuses
//! such keys (a listing that meets one fails whole), and clients that build URLs with the `url`
//! crate (reqwest, rusty-s3) resolve `.` and `..` segments, even percent-encoded, so they would
//! read or write *another* key. This module uses the AWS SDK's S3 client instead: it sends the
//! key percent-encoded as it is (`.` segments verbatim, as boto3 does), signs that exact path,
//! and lists with `encoding-type=url` so that keys with control characters survive the XML.
//!
//! Credentials come from `object_store`'s chain for the same settings (explicit keys, then web
//! identity, container and instance credentials), fetched for each request (the chain caches
//! and refreshes them), so bucket sources authenticate exactly as the store does.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, EncodingType};
use backup_core::{Error, Result};
use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use object_store::aws::AwsCredentialProvider;

use crate::bucket::source::{FetchedObject, ListedObject};
use crate::s3::{DEFAULT_REGION, MAX_PARTS, S3Settings};

/// Multipart parts uploaded at once per object.
const PARTS_IN_FLIGHT: usize = 2;

/// An S3 bucket and a key prefix inside it, read and written by raw keys. Cheap to clone.
#[derive(Clone)]
pub(crate) struct S3Bucket {
    client: aws_sdk_s3::Client,
    credentials: AwsCredentialProvider,
    bucket: String,
    /// Empty, or the prefix with its trailing `/`.
    prefix: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The headers stored with an object besides its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObjectHeaders<'a> {
    /// `Content-Type`.
    pub(crate) content_type: Option<&'a str>,
    /// `cache-control`, `content-disposition`, `content-encoding`, `content-language`.
    pub(crate) headers: &'a BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-*`).
    pub(crate) metadata: &'a BTreeMap<String, String>,
}

/// Sets the content type, standard headers and user metadata on a `PutObject` or
/// `CreateMultipartUpload` request (their builders share the setter names, not a trait).
macro_rules! with_headers {
    ($request:expr, $h:expr) => {{
        let h: &ObjectHeaders<'_> = $h;
        let mut r = $request.set_content_type(h.content_type.map(str::to_owned));
        for (name, value) in h.headers {
            r = match name.as_str() {
                "cache-control" => r.cache_control(value),
                "content-disposition" => r.content_disposition(value),
                "content-encoding" => r.content_encoding(value),
                "content-language" => r.content_language(value),
                _ => r,
            };
        }
        for (k, v) in h.metadata {
            r = r.metadata(k, v);
        }
        r
    }};
}

/// A failed request, with the SDK's error chain (its `Display` alone says only "service
/// error"; its `DisplayErrorContext` adds the whole raw response).
fn sdk_error(op: &'static str, key: &str, e: impl std::error::Error) -> Error {
    Error::store(op, key, crate::error_chain(&e))
}

/// Decodes a key of a listing made with `encoding-type=url` (`+` is a space, as AWS writes it;
/// a literal `+` comes as `%2B`).
fn decode_key(encoded: &str) -> String {
    // `&` and `=` would split a form value: keep them literal.
    let safe = encoded.replace('&', "%26").replace('=', "%3D");
    url::form_urlencoded::parse(safe.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

fn timestamp(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Timestamp {
    t.and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

impl S3Bucket {
    /// A client of `bucket`, scoped to `prefix` (no leading or trailing `/`; empty: the whole
    /// bucket), with the timeouts and retries of the store's client.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a plain-HTTP endpoint without `allow_http`, or settings the
    /// credential chain rejects.
    pub(crate) fn open(settings: &S3Settings, bucket: &str, prefix: &str) -> Result<S3Bucket> {
        // A profile's region and endpoint apply here too (its keys reach the credential chain).
        let settings = &settings
            .with_profile(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .map_err(|reason| Error::Invalid {
                what: "S3 settings",
                value: format!("s3://{bucket}"),
                reason,
            })?;
        let credentials = settings.amazon_s3(bucket)?.credentials().clone();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(
                settings
                    .region
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            ))
            .force_path_style(settings.path_style.unwrap_or(settings.endpoint.is_some()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            // No CRC trailers or checksum modes: what every S3-compatible server understands.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Bucket {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            credentials,
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// The bucket's key of `key` (relative to the prefix).
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A per-request configuration with current credentials from the chain.
    async fn signed(&self, op: &'static str, key: &str) -> Result<aws_sdk_s3::config::Builder> {
        let c = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::store(op, key, e))?;
        Ok(aws_sdk_s3::config::Builder::default()
            .credentials_provider(Credentials::new(
                c.key_id.clone(),
                c.secret_key.clone(),
                c.token.clone(),
                None,
                "object_store",
            ))
            // The chain caches them; a cache here would start a partition per request.
            .identity_cache(IdentityCache::no_cache()))
    }

    /// Every object under the prefix, in key (byte) order as S3 lists them, keys relative to
    /// the prefix and exactly as stored.
    pub(crate) fn list(&self) -> BoxStream<'static, Result<ListedObject>> {
        let start = (self.clone(), Some(None::<String>));
        futures::stream::try_unfold(start, |(this, token)| async move {
            let Some(token) = token else {
                return Ok(None);
            };
            let (objects, next) = this.list_page(token).await?;
            Ok(Some((objects, (this, next.map(Some)))))
        })
        .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// One page of the listing and the token of the next one.
    async fn list_page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<ListedObject>, Option<String>)> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix((!self.prefix.is_empty()).then(|| self.prefix.clone()))
            .encoding_type(EncodingType::Url)
            .set_continuation_token(token)
            .customize()
            .config_override(self.signed("list", &self.prefix).await?)
            .send()
            .await
            .map_err(|e| sdk_error("list", &self.prefix, e))?;
        let mut objects = Vec::with_capacity(page.contents().len());
        for o in page.contents() {
            let full = decode_key(o.key().unwrap_or_default());
            let Some(key) = full.strip_prefix(&self.prefix) else {
                return Err(Error::store(
                    "list",
                    &self.prefix,
                    format!("the server listed {full:?}, which is outside the prefix"),
                ));
            };
            objects.push(ListedObject {
                key: key.to_owned(),
                size: o.size().unwrap_or(0).max(0) as u64,
                last_modified: timestamp(o.last_modified()),
                etag: o.e_tag().map(str::to_owned),
            });
        }
        let next = page
            .is_truncated()
            .unwrap_or(false)
            .then(|| page.next_continuation_token().map(str::to_owned))
            .flatten();
        Ok((objects, next))
    }

    /// Starts reading `key`; `None` when it does not exist (deleted since the listing).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<FetchedObject>> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .customize()
            .config_override(self.signed("get", key).await?)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(sdk_error("get", key, e)),
        };
        let mut headers = BTreeMap::new();
        for (name, value) in [
            ("cache-control", out.cache_control()),
            ("content-disposition", out.content_disposition()),
            ("content-encoding", out.content_encoding()),
            ("content-language", out.content_language()),
        ] {
            if let Some(v) = value {
                headers.insert(name.to_owned(), v.to_owned());
            }
        }
        let metadata: BTreeMap<String, String> = out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let body = futures::stream::try_unfold(out.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, body))),
                Ok(None) => Ok(None),
                Err(e) => Err(std::io::Error::other(e)),
            }
        });
        Ok(Some(FetchedObject {
            size: out.content_length.unwrap_or(0).max(0) as u64,
            last_modified: timestamp(out.last_modified.as_ref()),
            etag: out.e_tag,
            content_type: out.content_type,
            headers,
            metadata,
            body: body.boxed(),
        }))
    }

    /// Size and user metadata of `key`; `None` when it does not exist.
    pub(crate) async fn head(&self, key: &str) -> Result<Option<(u64, BTreeMap<String, String>)>> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .customize()
            .config_override(self.signed("head", key).await?)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            ))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_error("head", key, e)),
        }
    }

    /// Writes `key` in one request.
    pub(crate) async fn put(&self, key: &str, body: Bytes, h: &ObjectHeaders<'_>) -> Result<()> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(SdkBody::from(body));
        with_headers!(request, h)
            .customize()
            .config_override(self.signed("put", key).await?)
            .send()
            .await
            .map_err(|e| sdk_error("put", key, e))?;
        Ok(())
    }

    /// Starts a multipart upload of `key`.
    pub(crate) async fn start_upload(&self, key: &str, h: &ObjectHeaders<'_>) -> Result<Upload> {
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        let out = with_headers!(request, h)
            .customize()
            .config_override(self.signed("put", key).await?)
            .send()
            .await
            .map_err(|e| sdk_error("put", key, e))?;
        let upload_id = out.upload_id.ok_or_else(|| {
            Error::store("put", key, "the server started an upload without an id")
        })?;
        Ok(Upload {
            bucket: self.clone(),
            key: key.to_owned(),
            upload_id: Some(upload_id),
            parts: Vec::new(),
            in_flight: FuturesUnordered::new(),
        })
    }
}

type PartFuture = futures::future::BoxFuture<'static, Result<CompletedPart>>;

/// A multipart upload in progress: parts go up [`PARTS_IN_FLIGHT`] at a time; it is aborted
/// when it fails, and on drop unless it was finished (a cancelled restore leaves no upload).
pub(crate) struct Upload {
    bucket: S3Bucket,
    key: String,
    /// `None` once finished or aborted.
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: FuturesUnordered<PartFuture>,
}

impl Upload {
    /// Uploads the next part (at least 5 MiB, except the last; at most 5 GiB; at most 10,000
    /// parts: size them with `part_size_for`), waiting while [`PARTS_IN_FLIGHT`] are on their
    /// way.
    pub(crate) async fn put_part(&mut self, data: Bytes) -> Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        let number = self.parts.len() + self.in_flight.len() + 1;
        if number as u64 > MAX_PARTS {
            return Err(Error::store(
                "put",
                &self.key,
                format!("an upload takes at most {MAX_PARTS} parts; the parts are too small"),
            ));
        }
        let number = i32::try_from(number).map_err(|e| Error::store("put", &self.key, e))?;
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.in_flight.push(Box::pin(async move {
            let out = bucket
                .client
                .upload_part()
                .bucket(&bucket.bucket)
                .key(bucket.full_key(&key))
                .upload_id(upload_id)
                .part_number(number)
                .body(SdkBody::from(data))
                .customize()
                .config_override(bucket.signed("put", &key).await?)
                .send()
                .await
                .map_err(|e| sdk_error("put", &key, e))?;
            Ok(CompletedPart::builder()
                .set_e_tag(out.e_tag)
                .part_number(number)
                .build())
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<()> {
        if let Some(part) = self.in_flight.next().await {
            self.parts.push(part?);
        }
        Ok(())
    }

    /// Waits for the parts on their way and completes the upload.
    pub(crate) async fn finish(mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        self.parts.sort_by_key(|p| p.part_number());
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(std::mem::take(&mut self.parts)))
            .build();
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.bucket
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket.bucket)
            .key(self.bucket.full_key(&self.key))
            .upload_id(upload_id)
            .multipart_upload(parts)
            .customize()
            .config_override(self.bucket.signed("put", &self.key).await?)
            .send()
            .await
            .map_err(|e| sdk_error("put", &self.key, e))?;
        self.upload_id = None;
        Ok(())
    }

    /// Aborts the upload and waits for it.
    pub(crate) async fn abort(mut self) {
        if let Some(id) = self.upload_id.take() {
            self.in_flight = FuturesUnordered::new();
            abort_upload(self.bucket.clone(), self.key.clone(), id).await;
        }
    }
}

async fn abort_upload(bucket: S3Bucket, key: String, upload_id: String) {
    let result = async {
        bucket
            .client
            .abort_multipart_upload()
            .bucket(&bucket.bucket)
            .key(bucket.full_key(&key))
            .upload_id(upload_id)
            .customize()
            .config_override(bucket.signed("abort", &key).await?)
            .send()
            .await
            .map_err(|e| sdk_error("abort", &key, e))
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(key, error = %e, "aborting the failed upload also failed");
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        // Cancelled (or failed without an explicit abort): the abort cannot be awaited here,
        // so it runs as a task of its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(abort_upload(
                self.bucket.clone(),
                std::mem::take(&mut self.key),
                id,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_decode_exactly() {
        for (encoded, key) in [
            ("tab%09here", "tab\there"),
            ("a//b", "a//b"),
            ("../y", "../y"),
            ("p%252Fq", "p%2Fq"),
            ("sp+ace%20%2B", "sp ace +"),
            ("q%3Fx%23y%26z%3D1", "q?x#y&z=1"),
            ("raw&and=equals", "raw&and=equals"),
            ("%C3%BCn%C3%AF%20%F0%9F%8E%89", "ünï 🎉"),
            ("new%0Aline%0D", "new\nline\r"),
        ] {
            assert_eq!(decode_key(encoded), key, "{encoded}");
        }
    }

    #[test]
    fn plain_http_needs_consent() {
        let s = S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let err = S3Bucket::open(&s, "b", "p")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("allow_http"), "{err}");
    }
}

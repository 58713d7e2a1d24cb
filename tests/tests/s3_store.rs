//! The S3 store against real S3 servers: moto (honours create-only writes, like AWS and MinIO)
//! and Garage (silently overwrites). The store contract must hold on both.

use backup_core::testkit::store_conformance;
use backup_core::{ByteStream, Digest, Store, StoreExt, WriteMode};
use backup_objectstore::{ObjectStoreStore, SHA256_METADATA, StoreUrl};
use bytes::Bytes;
use object_store::{Attribute, GetOptions, ObjectStore, path::Path};
use predeploy_tests::{GarageServer, MotoServer, S3Server};

fn store_on(server: &dyn S3Server, test: &str) -> ObjectStoreStore {
    let bucket = server.create_bucket(test);
    ObjectStoreStore::s3(&bucket, "team/app", &server.settings()).expect("S3 store builds")
}

async fn conforms(server: &dyn S3Server, honours_create_only: bool) {
    let store = store_on(server, "conformance");
    assert!(
        !store.capabilities().create_only_writes,
        "{}: before probing, an S3 store must not promise create-only writes",
        server.kind()
    );
    let honoured = store.detect_create_only().await.expect("probe");
    assert_eq!(
        honoured,
        honours_create_only,
        "{}: create-only detection",
        server.kind()
    );
    assert_eq!(store.capabilities().create_only_writes, honours_create_only);
    store_conformance(&store, "t/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_store_conforms_and_honours_create_only() {
    conforms(MotoServer::shared(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_store_conforms_and_is_detected_as_overwriting() {
    conforms(GarageServer::shared(), false).await;
}

/// On a server that would silently overwrite, a create-only write still refuses an existing
/// key (checked before writing), so a manifest is never replaced by a sequential writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_refuses_an_existing_key_on_both_servers() {
    for server in predeploy_tests::s3::all_servers() {
        let store = store_on(server, "create-only");
        store.detect_create_only().await.expect("probe");
        store
            .put_bytes(
                "m.json",
                Bytes::from_static(b"first"),
                WriteMode::CreateOnly,
            )
            .await
            .expect("first write");
        let second = store
            .put_bytes(
                "m.json",
                Bytes::from_static(b"second"),
                WriteMode::CreateOnly,
            )
            .await;
        assert!(
            matches!(second, Err(backup_core::Error::AlreadyExists { .. })),
            "{}: {second:?}",
            server.kind()
        );
        assert_eq!(store.get_all("m.json").await.expect("get"), b"first");
    }
}

fn chunks(total_mib: usize, fail_at_end: bool) -> (ByteStream, Vec<u8>) {
    let parts: Vec<Bytes> = (0..total_mib)
        .map(|i| Bytes::from(vec![(i * 7 % 251) as u8; 1024 * 1024]))
        .collect();
    let all = parts.concat();
    let mut items: Vec<std::io::Result<Bytes>> = parts.into_iter().map(Ok).collect();
    if fail_at_end {
        items.push(Err(std::io::Error::other("the dump tool died")));
    }
    (Box::pin(futures::stream::iter(items)), all)
}

/// Objects larger than a part go up as multipart uploads, read back equal, and carry our own
/// sha256 as metadata (the ETag of a multipart upload is not a content hash). A stream that
/// fails after several parts leaves no object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_carry_sha256_metadata_and_failed_ones_leave_nothing() {
    for server in predeploy_tests::s3::all_servers() {
        let store = store_on(server, "multipart");
        let (stream, expected) = chunks(23, false);
        let digest = Digest::of(&expected);
        let n = store
            .put_stream_known("blobs/big", stream, &digest)
            .await
            .expect("multipart upload");
        assert_eq!(n, expected.len() as u64);
        assert!(
            store.get_all("blobs/big").await.expect("get") == expected,
            "{}",
            server.kind()
        );
        let head = store
            .object_store()
            .get_opts(
                &Path::from("blobs/big"),
                GetOptions {
                    head: true,
                    ..GetOptions::default()
                },
            )
            .await
            .expect("head with attributes");
        let meta = head
            .attributes
            .get(&Attribute::Metadata(SHA256_METADATA.into()))
            .map(|v| v.to_string());
        assert_eq!(
            meta,
            Some(digest.hex()),
            "{}: sha256 metadata",
            server.kind()
        );
        assert!(
            head.meta.e_tag.as_deref().is_some_and(|e| e.contains('-')),
            "{}: a multipart ETag ends in -N, which is why it is never used as a hash: {:?}",
            server.kind(),
            head.meta.e_tag
        );

        let (failing, _) = chunks(25, true);
        let err = store
            .put_stream("backups/x/data/db/dump.pgc.zst", failing)
            .await
            .expect_err("a failed stream fails the upload");
        let chain = backup_objectstore::error_chain(&err);
        assert!(chain.contains("dump tool died"), "{chain}");
        assert!(
            store
                .head("backups/x/data/db/dump.pgc.zst")
                .await
                .expect("head")
                .is_none(),
            "{}: a failed multipart upload leaves no object",
            server.kind()
        );
    }
}

/// Wrong credentials and a server that is down are reported as an unusable store with the
/// reason, and the secret never appears in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_a_dead_endpoint_are_reported_without_secrets() {
    let garage = GarageServer::shared();
    let bucket = garage.create_bucket("badcreds");
    let mut settings = garage.settings();
    settings.secret_access_key = Some("not-the-right-secret-0123456789".into());
    let store = ObjectStoreStore::s3(&bucket, "", &settings).expect("builds");
    let err = backup_objectstore::probe_store(&store)
        .await
        .expect_err("wrong secret is refused")
        .to_string();
    assert!(err.contains("unusable"), "{err}");
    assert!(!err.contains("not-the-right-secret"), "{err}");

    let port = predeploy_tests::unused_port();
    let url = StoreUrl::parse(&format!(
        "s3://b/p?endpoint=http://127.0.0.1:{port}&region=garage&allow_http=true"
    ))
    .expect("parses");
    let dead = ObjectStoreStore::open_with(&url, true, &garage.settings()).expect("builds");
    let err = backup_objectstore::probe_store(&dead)
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(err.contains("unusable"), "{err}");
}

/// Multipart uploads in progress on a moto bucket (moto answers ListMultipartUploads without
/// checking the signature, so curl can ask).
fn uploads_in_progress(moto: &MotoServer, bucket: &str) -> usize {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f"])
        .arg(format!("{}/{bucket}?uploads", moto.endpoint()))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .matches("<UploadId>")
        .count()
}

/// A stream that fails and a stream that is cancelled mid-upload (an interrupted backup) both
/// leave no multipart upload behind on the server; an upload dropped without an abort would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_uploads_leave_no_multipart_upload_on_the_server() {
    use futures::StreamExt as _;
    use object_store::{PutMultipartOptions, PutPayload};

    let moto = MotoServer::shared();
    let bucket = moto.create_bucket("abort");
    let store = ObjectStoreStore::s3(&bucket, "team/app", &moto.settings()).expect("builds");

    // The check can fail: an upload dropped without an abort stays listed.
    let mut leaked = store
        .object_store()
        .put_multipart_opts(
            &Path::from("team/app/leaked"),
            PutMultipartOptions::default(),
        )
        .await
        .expect("start an upload");
    leaked
        .put_part(PutPayload::from(vec![1u8; 5 * 1024 * 1024]))
        .await
        .expect("one part");
    drop(leaked);
    assert_eq!(
        uploads_in_progress(moto, &bucket),
        1,
        "the leaked upload is listed"
    );

    let bucket = moto.create_bucket("abort");
    let store_b = ObjectStoreStore::s3(&bucket, "team/app", &moto.settings()).expect("builds");
    let (failing, _) = chunks(25, true);
    store_b
        .put_stream("backups/x/data/db/dump.pgc.zst", failing)
        .await
        .expect_err("a failed stream fails the upload");
    assert_eq!(
        uploads_in_progress(moto, &bucket),
        0,
        "the failed upload was aborted"
    );

    // Two parts go up, then the stream stalls and the upload is cancelled.
    let (parts, _) = chunks(21, false);
    let stalled: ByteStream = Box::pin(parts.chain(futures::stream::pending()));
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store_b.put_stream("backups/y/data/db/dump.pgc.zst", stalled),
    )
    .await;
    assert!(cancelled.is_err(), "the upload was still waiting for data");
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = uploads_in_progress(moto, &bucket);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(left, 0, "the cancelled upload was aborted");
    assert!(
        store_b
            .head("backups/y/data/db/dump.pgc.zst")
            .await
            .expect("head")
            .is_none(),
        "and left no object"
    );
}

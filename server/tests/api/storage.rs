//! The artifact storage contract, run against every implementation: the local disk and an
//! S3-compatible server (the test command starts one and exports `FLIGHTDECK_TEST_S3_ENDPOINT`).

use bytes::Bytes;
use domain::run::artifacts::{
    ArtifactStorage, ArtifactStore, ByteStream, LocalDisk, PART_BYTES, S3Builder, S3Store,
};
use futures::StreamExt;
use std::io;

/// A new, empty bucket on the test S3 server; None (said loudly) when there is none outside
/// CI. In CI (`CI=true`) a missing server fails the test.
pub async fn test_bucket() -> Option<S3Store> {
    let Ok(endpoint) = std::env::var("FLIGHTDECK_TEST_S3_ENDPOINT") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("FLIGHTDECK_TEST_S3_ENDPOINT is not set: .ci/test starts the S3 server");
        }
        eprintln!(
            "\n*** SKIPPED: no S3-compatible server (set FLIGHTDECK_TEST_S3_ENDPOINT, as .ci/test does) ***\n"
        );
        return None;
    };
    let bucket = format!("flightdeck-test-{}", uuid::Uuid::new_v4().simple());
    // The test server takes unsigned requests; creating buckets is not part of the store.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("the S3 test server answers");
    assert!(
        created.status().is_success(),
        "cannot create bucket {bucket}: {}",
        created.status()
    );
    let builder = S3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test");
    Some(S3Store::with_builder(&format!("s3://{bucket}/artifacts"), builder).unwrap())
}

fn chunks(parts: Vec<Bytes>) -> ByteStream {
    futures::stream::iter(parts.into_iter().map(Ok::<_, io::Error>)).boxed()
}

async fn read<S: ArtifactStorage>(store: &S, key: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut body = store.get(key).await?;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// What every store must do.
async fn contract<S: ArtifactStorage>(store: &S) {
    let key = "sha256/ab/abc";
    let staged = store
        .stage(chunks(vec![
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"world"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        read(store, key).await.unwrap_err().kind(),
        io::ErrorKind::NotFound,
        "staged bytes are under no key yet"
    );
    store.promote(staged, key).await.unwrap();
    assert_eq!(read(store, key).await.unwrap(), b"hello world");

    // The same content again: promoting over an existing key keeps the same bytes.
    let again = store
        .stage(chunks(vec![Bytes::from_static(b"hello world")]))
        .await
        .unwrap();
    store.promote(again, key).await.unwrap();
    assert_eq!(read(store, key).await.unwrap(), b"hello world");

    // Larger than one part: the S3 store switches to a multipart upload.
    let big: Vec<Bytes> = (0..3)
        .map(|i| Bytes::from(vec![b'a' + i as u8; PART_BYTES / 2 + 7]))
        .collect();
    let expected: Vec<u8> = big.iter().flat_map(|b| b.iter().copied()).collect();
    let staged = store.stage(chunks(big)).await.unwrap();
    store.promote(staged, "sha256/cd/big").await.unwrap();
    assert_eq!(read(store, "sha256/cd/big").await.unwrap(), expected);

    let discarded = store
        .stage(chunks(vec![Bytes::from_static(b"gone")]))
        .await
        .unwrap();
    store.discard(discarded).await.unwrap();

    store.delete(key).await.unwrap();
    store.delete(key).await.unwrap();
    assert_eq!(
        read(store, key).await.unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(
        store.get("../etc/passwd").await.is_err(),
        "keys stay inside"
    );

    // A body that breaks off, small or after a part went up, fails and is not stored.
    for head in [4usize, PART_BYTES + 1] {
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from(vec![b'x'; head])),
            Err(io::Error::other("the upload broke off")),
        ])
        .boxed();
        assert!(store.stage(broken).await.is_err());
    }
}

#[tokio::test]
async fn the_local_disk_keeps_the_storage_contract() {
    let dir = std::env::temp_dir().join(format!("flightdeck-contract-{}", uuid::Uuid::new_v4()));
    let store: ArtifactStore = LocalDisk::new(&dir).unwrap().into();
    contract(&store).await;
    assert_eq!(
        std::fs::read_dir(dir.join("staging")).unwrap().count(),
        0,
        "nothing is left staged"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_s3_bucket_keeps_the_storage_contract() {
    let Some(s3) = test_bucket().await else {
        return;
    };
    let store: ArtifactStore = s3.clone().into();
    contract(&store).await;
    assert_eq!(
        staged_objects(&s3).await,
        0,
        "nothing is left staged, not even parts of a broken multipart upload"
    );
}

/// Objects and unfinished multipart uploads under the bucket's `staging/`.
async fn staged_objects(s3: &S3Store) -> usize {
    let endpoint = std::env::var("FLIGHTDECK_TEST_S3_ENDPOINT").unwrap();
    let bucket = s3
        .url()
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let objects = client
        .get(format!(
            "{endpoint}/{bucket}?list-type=2&prefix=artifacts/staging/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let uploads = client
        .get(format!(
            "{endpoint}/{bucket}?uploads&prefix=artifacts/staging/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    objects.matches("<Key>").count() + uploads.matches("<UploadId>").count()
}

//! The COPY engine: a directory uploaded (small files and a multipart one) and downloaded
//! back by parallel ranged reads, on each store; transient failures mid-download are retried.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use sky_storage::copy::{CopyOptions, download_prefix, upload_dir};
use sky_storage::{
    ByteRange, CompletedPart, ListPage, LocalDirStore, ObjectMeta, ObjectReader, ObjectStore,
    ObjectStoreError, ObjectStoreErrorKind as K, RetryPolicy, StoreType, delete_bucket_and_objects,
};
use tokio::io::{AsyncRead, ReadBuf};

use crate::conformance::unique;

/// Every file under `root` as (relative path, bytes), sorted.
pub(crate) fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn make_tree(root: &Path, big: usize) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for i in 0..40 {
        std::fs::write(
            root.join(format!("f{i:02}.txt")),
            format!("file {i}\n").repeat(i * 7),
        )
        .unwrap();
    }
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    let data: Vec<u8> = (0..big).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("sub/big.bin"), data).unwrap();
}

/// Upload a tree under a prefix, download the prefix elsewhere, compare.
async fn round_trip(store: Arc<dyn ObjectStore>) {
    let b = unique("copy");
    store.create_bucket(&b).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let min = store.min_part_size() as usize;
    make_tree(src.path(), min * 2 + 12345);
    let opts = CopyOptions {
        concurrency: 8,
        chunk_size: min as u64,
        multipart_threshold: min as u64 + 1,
        ..CopyOptions::default()
    };
    let up = upload_dir(store.clone(), src.path(), &b, "data/", &opts)
        .await
        .unwrap();
    assert_eq!(up.files, 42);
    store
        .put(&b, "elsewhere/x", b"not copied".to_vec())
        .await
        .unwrap();
    store
        .put(&b, "database/y", b"not copied either".to_vec())
        .await
        .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let down = download_prefix(
        store.clone(),
        &b,
        "data", // a directory: not `database/`
        dst.path(),
        &CopyOptions {
            chunk_size: 1024 * 1024,
            ..opts
        },
    )
    .await
    .unwrap();
    assert_eq!((down.files, down.bytes), (up.files, up.bytes));
    assert!(
        tree(src.path()) == tree(dst.path()),
        "{}: the downloaded tree differs",
        store.store_type()
    );
    delete_bucket_and_objects(store.as_ref(), &b).await.unwrap();
}

every_store!(copy_round_trip, super::round_trip);

/// A store whose every other `get` fails: half of them at once (a 503), half after some bytes
/// (a connection reset mid-stream). With `once_per_range`, a range fails at most once (its
/// retry succeeds), so a download's outcome does not depend on how concurrent reads interleave.
#[derive(Debug)]
struct Flaky {
    inner: LocalDirStore,
    gets: AtomicUsize,
    once_per_range: Option<std::sync::Mutex<std::collections::HashSet<(String, u64)>>>,
    injected: AtomicUsize,
}

impl Flaky {
    fn new(inner: LocalDirStore, once_per_range: bool) -> Self {
        Flaky {
            inner,
            gets: AtomicUsize::new(0),
            once_per_range: once_per_range.then(Default::default),
            injected: AtomicUsize::new(0),
        }
    }

    /// Whether this call may fail: always, or only a range's first failure.
    fn may_fail(&self, k: &str, r: Option<ByteRange>) -> bool {
        let ok = match &self.once_per_range {
            None => true,
            Some(seen) => seen
                .lock()
                .unwrap()
                .insert((k.to_string(), r.map_or(0, |r| r.start))),
        };
        if ok {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

struct BreaksAfter {
    inner: ObjectReader,
    left: usize,
}

impl AsyncRead for BreaksAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            )));
        }
        let mut small = vec![0u8; self.left.min(buf.remaining())];
        let mut rb = ReadBuf::new(&mut small);
        match self.inner.as_mut().poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                buf.put_slice(rb.filled());
                self.left -= n;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    fn store_type(&self) -> StoreType {
        StoreType::Local
    }
    async fn create_bucket(&self, b: &str) -> Result<(), ObjectStoreError> {
        self.inner.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &str) -> Result<(), ObjectStoreError> {
        self.inner.delete_bucket(b).await
    }
    async fn bucket_exists(&self, b: &str) -> Result<bool, ObjectStoreError> {
        self.inner.bucket_exists(b).await
    }
    async fn put(&self, b: &str, k: &str, d: Vec<u8>) -> Result<(), ObjectStoreError> {
        self.inner.put(b, k, d).await
    }
    async fn put_file(&self, b: &str, k: &str, p: &Path) -> Result<(), ObjectStoreError> {
        self.inner.put_file(b, k, p).await
    }
    async fn get(
        &self,
        b: &str,
        k: &str,
        r: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        match n % 4 {
            1 if self.may_fail(k, r) => Err(ObjectStoreError::new(K::Transient, "injected 503")),
            3 if self.may_fail(k, r) => Ok(Box::pin(BreaksAfter {
                inner: self.inner.get(b, k, r).await?,
                left: 100,
            })),
            _ => self.inner.get(b, k, r).await,
        }
    }
    async fn head(&self, b: &str, k: &str) -> Result<ObjectMeta, ObjectStoreError> {
        self.inner.head(b, k).await
    }
    async fn list_page(
        &self,
        b: &str,
        p: &str,
        t: Option<&str>,
        m: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        self.inner.list_page(b, p, t, m).await
    }
    async fn delete(&self, b: &str, k: &str) -> Result<(), ObjectStoreError> {
        self.inner.delete(b, k).await
    }
    async fn create_multipart(&self, b: &str, k: &str) -> Result<String, ObjectStoreError> {
        self.inner.create_multipart(b, k).await
    }
    async fn upload_part(
        &self,
        b: &str,
        k: &str,
        u: &str,
        n: u32,
        d: Vec<u8>,
    ) -> Result<CompletedPart, ObjectStoreError> {
        self.inner.upload_part(b, k, u, n, d).await
    }
    async fn complete_multipart(
        &self,
        b: &str,
        k: &str,
        u: &str,
        p: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError> {
        self.inner.complete_multipart(b, k, u, p).await
    }
    async fn abort_multipart(&self, b: &str, k: &str, u: &str) -> Result<(), ObjectStoreError> {
        self.inner.abort_multipart(b, k, u).await
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 8,
        min_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(5),
    }
}

#[tokio::test]
async fn transient_errors_mid_download_are_retried() {
    let d = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky::new(LocalDirStore::new(d.path().join("b")), true));
    flaky.create_bucket("bkt").await.unwrap();
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 3 * 1024 * 1024 + 7);
    let opts = CopyOptions {
        concurrency: 4,
        chunk_size: 256 * 1024,
        multipart_threshold: u64::MAX,
        max_ranges_per_object: 64,
        retry: fast_retry(),
    };
    upload_dir(flaky.clone(), src.path(), "bkt", "", &opts)
        .await
        .unwrap();
    let dst = tempfile::tempdir().unwrap();
    download_prefix(flaky.clone(), "bkt", "", dst.path(), &opts)
        .await
        .unwrap();
    assert!(
        tree(src.path()) == tree(dst.path()),
        "retried ranges restart cleanly"
    );
    assert!(
        flaky.injected.load(Ordering::SeqCst) >= 2,
        "failures were injected"
    );
}

#[tokio::test]
async fn a_store_that_keeps_failing_stops_the_download_with_the_cause() {
    let d = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky::new(LocalDirStore::new(d.path().join("b")), false));
    flaky.create_bucket("bkt").await.unwrap();
    flaky.put("bkt", "k", vec![7; 1000]).await.unwrap();
    let opts = CopyOptions {
        retry: RetryPolicy {
            max_retries: 0,
            ..fast_retry()
        },
        ..CopyOptions::default()
    };
    // Call 0 succeeds; call 1 fails with no retries left.
    flaky.gets.store(1, Ordering::SeqCst);
    let dst = tempfile::tempdir().unwrap();
    let e = download_prefix(flaky.clone(), "bkt", "", dst.path(), &opts)
        .await
        .unwrap_err();
    assert_eq!(e.kind, K::Transient);
    assert!(e.message.contains("injected 503"), "{e}");
}

//! Bucket sub-paths: a COPY of a URI that names one object downloads that object as a file (a
//! prefix stays a directory), on every store; a local listing reads only the directory its
//! prefix names; GCS multipart parts never show in listings and are gone after complete/abort.

use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use sky_storage::copy::{CopyOptions, download_prefix};
use sky_storage::{
    GCS_MULTIPART_PREFIX, GcsStore, LocalDirStore, ObjectStore, ObjectStoreErrorKind as K,
    delete_bucket_and_objects, list_pages,
};

use crate::conformance::{read_all, unique};
use crate::emulators;

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

use crate::copy::tree as files;

/// `data/file.bin` (an object) downloads as one file; `data` (a prefix) as a directory without
/// `database/`; `x.csv` into an existing directory lands inside it; `data/fil` (neither an
/// object nor a directory) copies nothing.
async fn one_object_or_a_prefix(store: Arc<dyn ObjectStore>) {
    let kind = store.store_type();
    let b = unique("subpath");
    store.create_bucket(&b).await.unwrap();
    let big = pattern(300_001, 1);
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("data/file.bin", big.clone()),
        ("data/other.txt", b"other".to_vec()),
        ("data/sub/deep.txt", b"deep".to_vec()),
        ("database/y", b"not data".to_vec()),
        ("x.csv", b"a,b\n1,2\n".to_vec()),
    ];
    for (k, v) in &objects {
        store.put(&b, k, v.clone()).await.unwrap();
    }
    let opts = CopyOptions {
        concurrency: 4,
        chunk_size: 64 * 1024,
        max_ranges_per_object: 64,
        ..CopyOptions::default()
    };

    // One object, to a path that does not exist yet: that file, in ranges.
    let dst = tempfile::tempdir().unwrap();
    let to = dst.path().join("nested/out.bin");
    let st = download_prefix(store.clone(), &b, "data/file.bin", &to, &opts)
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert_eq!((st.files, st.bytes), (1, big.len() as u64), "{kind}");
    assert!(
        files(dst.path()) == vec![("nested/out.bin".to_string(), big.clone())],
        "{kind}: the object is the file at the destination, nothing else: {:?}",
        files(dst.path())
            .iter()
            .map(|(p, d)| (p, d.len()))
            .collect::<Vec<_>>()
    );

    // One object, to an existing directory: inside it, under the key's last segment.
    let dir = tempfile::tempdir().unwrap();
    let st = download_prefix(store.clone(), &b, "x.csv", dir.path(), &opts)
        .await
        .unwrap();
    assert_eq!((st.files, st.bytes), (1, 8), "{kind}");
    assert_eq!(
        files(dir.path()),
        vec![("x.csv".to_string(), b"a,b\n1,2\n".to_vec())],
        "{kind}"
    );

    // A prefix: a directory, `data` does not match `database/`.
    for prefix in ["data", "data/"] {
        let dst = tempfile::tempdir().unwrap();
        let st = download_prefix(store.clone(), &b, prefix, dst.path(), &opts)
            .await
            .unwrap();
        assert_eq!(st.files, 3, "{kind}: {prefix}");
        assert_eq!(
            files(dst.path()),
            vec![
                ("file.bin".to_string(), big.clone()),
                ("other.txt".to_string(), b"other".to_vec()),
                ("sub/deep.txt".to_string(), b"deep".to_vec()),
            ],
            "{kind}: {prefix}"
        );
    }

    // Neither an object nor a directory (a prefix of a name is not a directory).
    let dst = tempfile::tempdir().unwrap();
    let st = download_prefix(store.clone(), &b, "data/fil", &dst.path().join("o"), &opts)
        .await
        .unwrap();
    assert_eq!((st.files, st.bytes), (0, 0), "{kind}");
    assert!(files(dst.path()).is_empty(), "{kind}");

    // A missing bucket is still an error, not an empty copy.
    let e = download_prefix(
        store.clone(),
        &unique("nobucket"),
        "x.csv",
        dst.path(),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, K::NotFound, "{kind}: {e}");

    delete_bucket_and_objects(store.as_ref(), &b).await.unwrap();
}

every_store!(one_object_or_a_prefix, super::one_object_or_a_prefix);

/// Restores a directory's mode when dropped (also when the test panics).
struct Restore(std::path::PathBuf);

impl Drop for Restore {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

async fn keys(store: &Arc<dyn ObjectStore>, b: &str, prefix: &str, page: u32) -> Vec<String> {
    try_keys(store, b, prefix, page)
        .await
        .unwrap_or_else(|e| panic!("listing {prefix:?}: {e}"))
}

async fn try_keys(
    store: &Arc<dyn ObjectStore>,
    b: &str,
    prefix: &str,
    page: u32,
) -> Result<Vec<String>, sky_storage::ObjectStoreError> {
    let pages: Vec<_> = list_pages(store.clone(), b.to_string(), prefix.to_string(), page)
        .try_collect()
        .await?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.objects.into_iter().map(|o| o.key))
        .collect())
}

/// Whether reading `dir` (its entries) happened during `f`: its access time is set far in the
/// past first, so a `readdir` moves it (relatime updates an access time older than the
/// modification time); a `stat` does not.
async fn reads_dir<T>(dir: &Path, f: impl std::future::Future<Output = T>) -> (T, bool) {
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(978_307_200);
    std::fs::File::open(dir)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(past))
        .unwrap();
    let out = f.await;
    let at = std::fs::metadata(dir).unwrap().accessed().unwrap();
    (out, at != past)
}

#[tokio::test]
async fn local_listing_reads_only_the_prefix_directory() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let local = LocalDirStore::new(d.path());
    let store: Arc<dyn ObjectStore> = Arc::new(local.clone());
    let b = "bkt";
    store.create_bucket(b).await.unwrap();
    let mut all = vec![
        "a/x", "a/y/z", "a/y/w", "a/c1", "a/c2/k", "a/cz", "a/d", "ab", "a.txt", "a-b", "a0",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    // A big sibling tree...
    for i in 0..200 {
        all.push(format!("sibling/t{:02}/f{i:03}", i % 10));
    }
    for k in &all {
        store.put(b, k, k.as_bytes().to_vec()).await.unwrap();
    }
    all.sort();
    // ...that no listing outside it may read. Two witnesses: an unreadable directory in it
    // (a read fails, for a user other than root) and the sibling's access time (a read moves
    // it, for root too).
    let sib = local.root().join(b).join("sibling");
    let locked = sib.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("secret"), b"s").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let restore = Restore(locked.clone());

    // The witnesses work: listing the sibling (or the whole bucket) reads it.
    for prefix in ["sibling/", "", "s"] {
        let (_, read) = reads_dir(&sib, try_keys(&store, b, prefix, 1000)).await;
        assert!(read, "listing {prefix:?} reads the sibling tree");
    }

    // Listings elsewhere succeed without reading it, in key order, page by page, exactly the
    // keys with the prefix.
    for prefix in [
        "a/", "a", "a/y/", "a/y", "a/c", "a/c2/", "a/x", "a/q", "ab", "a.", "zz/", "a/y/z",
    ] {
        let want: Vec<String> = all
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for page in [1, 2, 3, 1000] {
            let (got, read) = reads_dir(&sib, try_keys(&store, b, prefix, page)).await;
            let got = got.unwrap_or_else(|e| panic!("listing {prefix:?}: {e}"));
            assert!(!read, "listing {prefix:?} read the sibling tree");
            assert_eq!(got, want, "prefix {prefix:?}, pages of {page}");
        }
    }
    // Prefixes no key can have match nothing.
    for prefix in ["a//x", "./a", "a/../a/x", "a/x/", "a/x/y"] {
        let (got, read) = reads_dir(&sib, try_keys(&store, b, prefix, 10)).await;
        assert!(got.unwrap().is_empty() && !read, "{prefix:?}");
    }
    // A COPY next to the sibling reads only what it copies.
    let dst = tempfile::tempdir().unwrap();
    let (st, read) = reads_dir(
        &sib,
        download_prefix(store.clone(), b, "a/y", dst.path(), &CopyOptions::default()),
    )
    .await;
    assert_eq!(st.unwrap().files, 2);
    assert!(!read, "copying a/y read the sibling tree");

    drop(restore);
    assert_eq!(keys(&store, b, "", 7).await.len(), all.len() + 1);
}

/// Every object of a GCS bucket, reserved ones included, straight from the JSON API.
async fn raw_gcs_names(url: &str, b: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::get(format!("{url}/storage/v1/b/{b}/o?maxResults=1000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn gcs_multipart_parts_are_hidden_and_removed() {
    let Some(g) = emulators::fake_gcs() else {
        return;
    };
    let url = g.url();
    let gcs = GcsStore::with_endpoint(&url, "test-project");
    let store: Arc<dyn ObjectStore> = Arc::new(gcs);
    let s = store.as_ref();
    let b = unique("gcsmp");
    s.create_bucket(&b).await.unwrap();
    s.put(&b, "big/visible", b"v".to_vec()).await.unwrap();

    // In flight: parts exist in the bucket but no listing shows them.
    let min = s.min_part_size() as usize;
    let body = pattern(min + 4096, 3);
    let id = s.create_multipart(&b, "big/object").await.unwrap();
    let p2 = s
        .upload_part(&b, "big/object", &id, 2, body[min..].to_vec())
        .await
        .unwrap();
    let p1 = s
        .upload_part(&b, "big/object", &id, 1, body[..min].to_vec())
        .await
        .unwrap();
    let raw = raw_gcs_names(&url, &b).await;
    assert_eq!(raw.len(), 3, "the parts are stored: {raw:?}");
    assert!(
        raw.iter()
            .filter(|n| *n != "big/visible")
            .all(|n| n.starts_with(GCS_MULTIPART_PREFIX)),
        "parts live under the reserved prefix: {raw:?}"
    );
    for prefix in ["", "big/", "big", "b"] {
        for page in [1, 2, 1000] {
            assert_eq!(
                keys(&store, &b, prefix, page).await,
                vec!["big/visible".to_string()],
                "listing {prefix:?} in pages of {page} while an upload is in flight"
            );
        }
    }
    // A page of nothing but parts is skipped: the first page already has the visible key.
    let first = s.list_page(&b, "", None, 1).await.unwrap();
    assert_eq!(
        first
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        vec!["big/visible"]
    );
    assert_eq!(first.next, None);
    assert!(
        keys(&store, &b, GCS_MULTIPART_PREFIX, 10).await.is_empty(),
        "the reserved prefix itself lists nothing"
    );

    // Completed: the object, and nothing of the upload left.
    s.complete_multipart(&b, "big/object", &id, vec![p1, p2])
        .await
        .unwrap();
    assert!(read_all(s, &b, "big/object", None).await == body);
    assert_eq!(
        raw_gcs_names(&url, &b).await,
        vec!["big/object".to_string(), "big/visible".to_string()],
        "no part left after complete"
    );

    // More parts than one compose takes (32): rounds of intermediates, all removed after.
    let id = s.create_multipart(&b, "big/many").await.unwrap();
    let mut parts = Vec::new();
    let mut want = Vec::new();
    for n in 1..=40u32 {
        let chunk = pattern(1000 + n as usize, n as usize);
        want.extend_from_slice(&chunk);
        parts.push(s.upload_part(&b, "big/many", &id, n, chunk).await.unwrap());
    }
    assert_eq!(
        keys(&store, &b, "", 1000).await,
        vec!["big/object".to_string(), "big/visible".to_string()]
    );
    s.complete_multipart(&b, "big/many", &id, parts)
        .await
        .unwrap();
    assert!(read_all(s, &b, "big/many", None).await == want);
    assert_eq!(
        raw_gcs_names(&url, &b).await,
        vec![
            "big/many".to_string(),
            "big/object".to_string(),
            "big/visible".to_string()
        ],
        "no part or intermediate left after a composed-in-rounds complete"
    );

    // Aborted: nothing of the upload remains.
    let id = s.create_multipart(&b, "big/aborted").await.unwrap();
    for n in 1..=3 {
        s.upload_part(&b, "big/aborted", &id, n, vec![n as u8; 100])
            .await
            .unwrap();
    }
    assert_eq!(raw_gcs_names(&url, &b).await.len(), 6);
    s.abort_multipart(&b, "big/aborted", &id).await.unwrap();
    assert_eq!(
        raw_gcs_names(&url, &b).await,
        vec![
            "big/many".to_string(),
            "big/object".to_string(),
            "big/visible".to_string()
        ],
        "nothing of an aborted upload remains"
    );
    assert_eq!(
        s.head(&b, "big/aborted").await.unwrap_err().kind,
        K::NotFound
    );
    // An upload id that create_multipart did not give is refused, not a stray object.
    let e = s
        .upload_part(&b, "big/x", "../big", 1, vec![1])
        .await
        .unwrap_err();
    assert_eq!(e.kind, K::NotFound, "{e}");

    // A bucket whose only objects are parts of an abandoned upload counts as empty.
    let id = s.create_multipart(&b, "big/abandoned").await.unwrap();
    s.upload_part(&b, "big/abandoned", &id, 1, vec![9; 10])
        .await
        .unwrap();
    assert_eq!(
        s.delete_bucket(&b).await.unwrap_err().kind,
        K::Conflict,
        "visible objects still make it non-empty"
    );
    delete_bucket_and_objects(s, &b)
        .await
        .unwrap_or_else(|e| panic!("a bucket with only an abandoned upload's parts: {e}"));
    assert!(!s.bucket_exists(&b).await.unwrap());
}

/// Keys in byte order across pages, where a directory's name is a prefix of a file's
/// (`a/x` sorts after `a-b` and `a.txt`): a page's token is its last key, so a listing in any
/// other order loses keys.
#[tokio::test]
async fn local_listing_pages_in_key_order() {
    let d = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(d.path()));
    store.create_bucket("bkt").await.unwrap();
    let mut all: Vec<String> = ["a/x", "a/y/z", "a.txt", "a-b", "a0", "b", "a/y.txt", "a/y-"]
        .into_iter()
        .map(String::from)
        .collect();
    for k in &all {
        store.put("bkt", k, vec![1]).await.unwrap();
    }
    all.sort();
    for prefix in ["", "a", "a/", "a/y"] {
        let want: Vec<String> = all
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for page in [1, 2, 1000] {
            assert_eq!(
                keys(&store, "bkt", prefix, page).await,
                want,
                "prefix {prefix:?}, pages of {page}"
            );
        }
    }
}

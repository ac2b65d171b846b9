//! sky-storage's integration tests: one conformance function run against every store
//! (LocalDirStore, and S3 / GCS / Azure against moto, fake-gcs-server and Azurite started by
//! the harness in `emulators.rs`), and the COPY engine (uploads, parallel ranged downloads,
//! transient errors mid-download), and bucket sub-paths (`subpath.rs`: one object or a prefix,
//! local listings that read only the prefix's directory, GCS multipart parts). Heavy: run under `flock /tmp/sky-heavy-tests.lock`.

/// One `#[tokio::test]` per store for `$check(store: Arc<dyn ObjectStore>)`, in a module
/// `$name`: `local` (a temp dir), `s3` (moto), `gcs` (fake-gcs-server), `azure` (Azurite). An
/// emulator that is missing skips its test, except under `SKY_REQUIRE_EMULATORS=1` (CI), where
/// the harness fails it.
macro_rules! every_store {
    ($name:ident, $check:path) => {
        mod $name {
            use std::sync::Arc;

            use sky_storage::{AzureBlobStore, GcsStore, LocalDirStore, S3Store, StoreType};

            use crate::emulators;

            #[tokio::test]
            async fn local() {
                let d = tempfile::tempdir().unwrap();
                $check(Arc::new(LocalDirStore::new(d.path()))).await;
            }

            #[tokio::test]
            async fn s3() {
                let Some(m) = emulators::moto() else { return };
                let s = S3Store::with_endpoint(
                    StoreType::S3,
                    &m.url(),
                    "us-east-1",
                    "testing",
                    "testing",
                )
                .await;
                $check(Arc::new(s)).await;
            }

            #[tokio::test]
            async fn gcs() {
                let Some(g) = emulators::fake_gcs() else {
                    return;
                };
                $check(Arc::new(GcsStore::with_endpoint(&g.url(), "test-project"))).await;
            }

            #[tokio::test]
            async fn azure() {
                let Some(a) = emulators::azurite() else {
                    return;
                };
                $check(Arc::new(AzureBlobStore::azurite(&a.url()))).await;
            }
        }
    };
}

mod conformance;
mod copy;
mod emulators;
mod subpath;

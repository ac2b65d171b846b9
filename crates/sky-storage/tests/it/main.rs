//! sky-storage's integration tests: one conformance function run against every store
//! (LocalDirStore, and S3 / GCS / Azure against moto, fake-gcs-server and Azurite started by
//! the harness in `emulators.rs`), and the COPY engine (uploads, parallel ranged downloads,
//! transient errors mid-download), and bucket sub-paths (`subpath.rs`: one object or a prefix,
//! local listings that read only the prefix's directory, GCS multipart parts). Heavy: run under `flock /tmp/sky-heavy-tests.lock`.

mod conformance;
mod copy;
mod emulators;
mod subpath;

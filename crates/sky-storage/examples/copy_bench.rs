//! The COPY engine against an S3 endpoint, for `scripts/bench-storage-copy.sh`:
//!
//!   copy_bench upload   ENDPOINT BUCKET PREFIX SRC_DIR
//!   copy_bench download ENDPOINT BUCKET PREFIX DEST_DIR [CONCURRENCY]
//!
//! Static test credentials (`testing`), region us-east-1, path-style. Prints files, bytes,
//! seconds and MB/s on one line.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sky_storage::copy::{CopyOptions, download_prefix, upload_dir};
use sky_storage::{ObjectStore, S3Store, StoreType};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: copy_bench upload|download ENDPOINT BUCKET PREFIX DIR [CONCURRENCY]");
        std::process::exit(2);
    }
    let store: Arc<dyn ObjectStore> = Arc::new(
        S3Store::with_endpoint(StoreType::S3, &a[2], "us-east-1", "testing", "testing").await,
    );
    let mut opts = CopyOptions::default();
    if let Some(c) = a.get(6) {
        opts.concurrency = c.parse().expect("CONCURRENCY is a number");
    }
    let t = Instant::now();
    let stats = match a[1].as_str() {
        "upload" => {
            if !store.bucket_exists(&a[3]).await.unwrap() {
                store.create_bucket(&a[3]).await.unwrap();
            }
            upload_dir(store, Path::new(&a[5]), &a[3], &a[4], &opts).await
        }
        "download" => download_prefix(store, &a[3], &a[4], Path::new(&a[5]), &opts).await,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let stats = stats.unwrap_or_else(|e| {
        eprintln!("copy_bench: {e}");
        std::process::exit(1);
    });
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} files={} bytes={} seconds={s:.2} MB/s={:.1}",
        a[1],
        stats.files,
        stats.bytes,
        stats.bytes as f64 / s / 1e6
    );
}

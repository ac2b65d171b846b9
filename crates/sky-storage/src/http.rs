//! Shared pieces of the REST stores (GCS, Azure): status to error kind, response bodies as
//! readers, files as request bodies.

use std::path::Path;

use futures_util::TryStreamExt;
use sky_provider::objstore::{ObjectReader, ObjectStoreError, ObjectStoreErrorKind as K};

/// The error kind of an HTTP status.
pub(crate) fn kind_of_status(status: u16) -> K {
    match status {
        404 => K::NotFound,
        401 | 403 => K::AccessDenied,
        409 | 412 => K::Conflict,
        408 | 429 | 500..=599 => K::Transient,
        _ => K::Other,
    }
}

/// A failed send (connect, timeout, reset) is transient.
pub(crate) fn send_error(what: &str, e: reqwest::Error) -> ObjectStoreError {
    ObjectStoreError::new(K::Transient, format!("{what}: request failed: {e}"))
}

/// The body of a response as an async reader; a broken stream surfaces as an IO error.
pub(crate) fn body_reader(resp: reqwest::Response) -> ObjectReader {
    let s = resp
        .bytes_stream()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionReset, e));
    Box::pin(tokio_util::io::StreamReader::new(s))
}

/// A local file as a streamed request body, with its length.
pub(crate) async fn file_body(
    what: &str,
    path: &Path,
) -> Result<(reqwest::Body, u64), ObjectStoreError> {
    let f = tokio::fs::File::open(path).await.map_err(|e| {
        ObjectStoreError::new(
            K::Other,
            format!("{what}: cannot open {}: {e}", path.display()),
        )
    })?;
    let len = f
        .metadata()
        .await
        .map_err(|e| ObjectStoreError::new(K::Other, format!("{what}: {}: {e}", path.display())))?
        .len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
    Ok((body, len))
}

/// Percent-encodes one path segment or query value (everything but unreserved characters).
pub(crate) fn enc(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Like [`enc`] but keeps `/` (object keys in a URL path).
pub(crate) fn enc_path(s: &str) -> String {
    s.split('/').map(enc).collect::<Vec<_>>().join("/")
}

/// A random hex id (multipart upload ids, temporary names).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("the OS random source is available");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

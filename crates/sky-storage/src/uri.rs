//! Bucket URIs (`s3://b/p`, `gs://b/p`, `https://<account>.blob.core.windows.net/<ctr>/p`,
//! `az://<ctr>/p`, `r2://b/p`, `local://b/p`) and the store each one needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use sky_provider::objstore::{ObjectStore, ObjectStoreError, ObjectStoreErrorKind as K, StoreType};

use crate::{AzureBlobStore, GcsStore, LocalDirStore, S3Store};

/// A parsed bucket URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketUri {
    pub store: StoreType,
    pub bucket: String,
    /// The key prefix inside the bucket (no leading `/`; may be empty).
    pub prefix: String,
    /// The Azure storage account a `https://<account>.blob.core.windows.net` URI names.
    pub account: Option<String>,
}

fn bad(uri: &str, why: &str) -> ObjectStoreError {
    ObjectStoreError::new(
        K::BadName,
        format!(
            "bucket uri {uri:?} is invalid: {why}; expected s3://BUCKET[/PREFIX], gs://..., r2://..., az://CONTAINER[/PREFIX], https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX] or local://BUCKET[/PREFIX]"
        ),
    )
}

/// Parses a bucket URI (pure; no store is built).
pub fn parse_bucket_uri(uri: &str) -> Result<BucketUri, ObjectStoreError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad(uri, "it has no scheme"));
    };
    let (store, account, rest) = match scheme {
        "s3" => (StoreType::S3, None, rest),
        "gs" => (StoreType::Gcs, None, rest),
        "r2" => (StoreType::R2, None, rest),
        "az" => (StoreType::Azure, None, rest),
        "local" => (StoreType::Local, None, rest),
        "https" => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(acct) = host.strip_suffix(".blob.core.windows.net") else {
                return Err(bad(uri, "an https uri must be an azure blob endpoint"));
            };
            if acct.is_empty() || acct.contains('.') {
                return Err(bad(uri, "the storage account name is missing"));
            }
            (StoreType::Azure, Some(acct.to_string()), path)
        }
        other => {
            return Err(bad(
                uri,
                &format!("the scheme `{other}` is not a bucket store"),
            ));
        }
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(uri, "the bucket name is missing"));
    }
    sky_spec::buckets::check_bucket_name(store, bucket)
        .map_err(|e| ObjectStoreError::new(K::BadName, format!("bucket uri {uri:?}: {e}")))?;
    Ok(BucketUri {
        store,
        bucket: bucket.to_string(),
        prefix: prefix.trim_start_matches('/').to_string(),
        account,
    })
}

/// The environment a store is built from (a snapshot, so tests can pass their own).
#[derive(Clone, Debug, Default)]
pub struct StoreEnv {
    pub vars: BTreeMap<String, String>,
}

impl StoreEnv {
    pub fn from_process() -> Self {
        StoreEnv {
            vars: std::env::vars().collect(),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.vars
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The store a URI needs, built from the process environment.
pub async fn store_for_uri(
    uri: &str,
) -> Result<(Arc<dyn ObjectStore>, BucketUri), ObjectStoreError> {
    store_for_uri_with(uri, &StoreEnv::from_process()).await
}

/// The store a URI needs, built from `env`:
/// - `s3://`: the AWS chain (`AWS_ENDPOINT_URL` selects another endpoint, path-style);
/// - `r2://`: `R2_ENDPOINT_URL` (or `CLOUDFLARE_ACCOUNT_ID`: `https://<id>.r2.cloudflarestorage.com`)
///   with the AWS chain's credentials;
/// - `gs://`: `STORAGE_EMULATOR_HOST`, else gcp_auth;
/// - Azure: `AZURE_STORAGE_CONNECTION_STRING` or `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`;
/// - `local://`: buckets under `SKY_STORAGE_LOCAL_ROOT` (required).
pub async fn store_for_uri_with(
    uri: &str,
    env: &StoreEnv,
) -> Result<(Arc<dyn ObjectStore>, BucketUri), ObjectStoreError> {
    let u = parse_bucket_uri(uri)?;
    let store: Arc<dyn ObjectStore> = match u.store {
        StoreType::S3 => match env
            .get("AWS_ENDPOINT_URL_S3")
            .or(env.get("AWS_ENDPOINT_URL"))
        {
            Some(ep) => Arc::new(S3Store::from_env_with_endpoint(StoreType::S3, ep).await),
            None => Arc::new(S3Store::from_env().await),
        },
        StoreType::R2 => {
            let ep = match (env.get("R2_ENDPOINT_URL"), env.get("CLOUDFLARE_ACCOUNT_ID")) {
                (Some(ep), _) => ep.to_string(),
                (None, Some(id)) => format!("https://{id}.r2.cloudflarestorage.com"),
                (None, None) => {
                    return Err(ObjectStoreError::new(
                        K::AccessDenied,
                        format!(
                            "{uri}: r2 needs an endpoint; set R2_ENDPOINT_URL (or CLOUDFLARE_ACCOUNT_ID)"
                        ),
                    ));
                }
            };
            Arc::new(S3Store::from_env_with_endpoint(StoreType::R2, &ep).await)
        }
        StoreType::Gcs => match env.get("STORAGE_EMULATOR_HOST") {
            Some(h) => Arc::new(GcsStore::with_endpoint(
                h,
                env.get("GOOGLE_CLOUD_PROJECT").unwrap_or("test-project"),
            )),
            None => Arc::new(GcsStore::from_env().await?),
        },
        StoreType::Azure => {
            let acct = u.account.as_deref();
            let s = if let Some(cs) = env.get("AZURE_STORAGE_CONNECTION_STRING") {
                AzureBlobStore::from_connection_string(cs)?
            } else {
                let a = acct.or(env.get("AZURE_STORAGE_ACCOUNT")).ok_or_else(|| {
                    ObjectStoreError::new(K::AccessDenied, format!("{uri}: no azure storage account; set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY"))
                })?;
                let k = env.get("AZURE_STORAGE_KEY").ok_or_else(|| {
                    ObjectStoreError::new(K::AccessDenied, format!("{uri}: no key for azure storage account `{a}`; set AZURE_STORAGE_KEY (or AZURE_STORAGE_CONNECTION_STRING)"))
                })?;
                AzureBlobStore::new(a, k, None)?
            };
            if let Some(a) = acct
                && a != s.account()
            {
                return Err(ObjectStoreError::new(
                    K::AccessDenied,
                    format!(
                        "{uri}: the credentials are for azure storage account `{}`, not `{a}`; set AZURE_STORAGE_CONNECTION_STRING for `{a}`",
                        s.account()
                    ),
                ));
            }
            Arc::new(s)
        }
        StoreType::Local => {
            let root = env.get("SKY_STORAGE_LOCAL_ROOT").ok_or_else(|| {
                ObjectStoreError::new(K::Other, format!("{uri}: local buckets need SKY_STORAGE_LOCAL_ROOT (the directory that holds them)"))
            })?;
            Arc::new(LocalDirStore::new(root))
        }
    };
    Ok((store, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let p = |u: &str| parse_bucket_uri(u).unwrap();
        assert_eq!(
            p("s3://my-bucket/a/b"),
            BucketUri {
                store: StoreType::S3,
                bucket: "my-bucket".into(),
                prefix: "a/b".into(),
                account: None
            }
        );
        assert_eq!(p("gs://my_bkt").prefix, "");
        assert_eq!(p("gs://my_bkt").store, StoreType::Gcs);
        assert_eq!(p("r2://bkt/x/").store, StoreType::R2);
        let az = p("https://acct1.blob.core.windows.net/ctr/dir/f");
        assert_eq!(
            (
                az.store,
                az.bucket.as_str(),
                az.prefix.as_str(),
                az.account.as_deref()
            ),
            (StoreType::Azure, "ctr", "dir/f", Some("acct1"))
        );
        assert_eq!(p("az://ctr/p").account, None);
        assert_eq!(p("local://bkt/p").store, StoreType::Local);
    }

    #[test]
    fn refuses_bad_uris_with_the_reason() {
        for (u, why) in [
            ("/data", "no scheme"),
            ("ftp://x/y", "`ftp`"),
            ("s3:///p", "bucket name is missing"),
            ("https://example.com/c", "azure blob endpoint"),
            ("s3://My_Bucket", "invalid for store s3"),
            ("az://a.b", "invalid for store azure"),
        ] {
            let e = parse_bucket_uri(u).unwrap_err();
            assert_eq!(e.kind, K::BadName, "{u}");
            assert!(e.message.contains(why), "{u}: {e}");
        }
    }

    #[tokio::test]
    async fn missing_configuration_is_named() {
        let env = StoreEnv::default();
        let e = store_for_uri_with("r2://bkt", &env).await.unwrap_err();
        assert!(e.message.contains("R2_ENDPOINT_URL"), "{e}");
        let e = store_for_uri_with("az://ctr", &env).await.unwrap_err();
        assert!(e.message.contains("AZURE_STORAGE_CONNECTION_STRING"), "{e}");
        let e = store_for_uri_with("local://bkt", &env).await.unwrap_err();
        assert!(e.message.contains("SKY_STORAGE_LOCAL_ROOT"), "{e}");
        let mut env = StoreEnv::default();
        env.vars.insert(
            "AZURE_STORAGE_CONNECTION_STRING".into(),
            format!(
                "AccountName=other;AccountKey={};BlobEndpoint=http://127.0.0.1:1/other",
                crate::azure::AZURITE_KEY
            ),
        );
        let e = store_for_uri_with("https://acct1.blob.core.windows.net/ctr", &env)
            .await
            .unwrap_err();
        assert!(e.message.contains("not `acct1`"), "{e}");
    }
}

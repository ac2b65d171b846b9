//! Bucket name rules per store, as SkyPilot applies them when it constructs a storage object
//! (`data/storage.py`: `S3Store`, `GcsStore`, `AzureBlobStore` name validation). Pure: the check
//! runs at validation time with the YAML path of the offending `name:`.

use std::fmt;

/// The stores sky-rs speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreType {
    S3,
    Gcs,
    Azure,
    /// Cloudflare R2 (S3-compatible, its own endpoint).
    R2,
    /// A directory on the local disk (tests, the `local` cloud).
    Local,
}

impl StoreType {
    /// The lower-case id used in YAML (`store: s3`) and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::S3 => "s3",
            StoreType::Gcs => "gcs",
            StoreType::Azure => "azure",
            StoreType::R2 => "r2",
            StoreType::Local => "local",
        }
    }

    /// Parses a YAML `store:` value (case-insensitive); `None` for stores sky-rs cannot reach.
    pub fn from_id(id: &str) -> Option<StoreType> {
        Some(match id.to_ascii_lowercase().as_str() {
            "s3" => StoreType::S3,
            "gcs" => StoreType::Gcs,
            "azure" => StoreType::Azure,
            "r2" => StoreType::R2,
            "local" => StoreType::Local,
            _ => return None,
        })
    }
}

impl fmt::Display for StoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks `name` against `store`'s bucket (container) name rules. The error is a lowercase
/// fragment naming the bucket, the rule it breaks and the store's rule in full.
pub fn check_bucket_name(store: StoreType, name: &str) -> Result<(), String> {
    let (min, max, extra, rule) = match store {
        StoreType::S3 | StoreType::R2 | StoreType::Local => (
            3,
            63,
            &['-', '.'][..],
            "3 to 63 characters of lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, without `..`, not an IP address, not starting with `xn--` and not ending with `-s3alias` or `--ol-s3`",
        ),
        StoreType::Gcs => (
            3,
            222,
            &['-', '.', '_'][..],
            "3 to 222 characters of lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, not starting with `goog` and not containing `google`",
        ),
        StoreType::Azure => (
            3,
            63,
            &['-'][..],
            "3 to 63 characters of lowercase letters, digits and `-`, starting and ending with a letter or digit",
        ),
    };
    let bad = |why: String| {
        Err(format!(
            "bucket name `{name}` is invalid for store {store}: {why}; it must be {rule}"
        ))
    };
    let len = name.chars().count();
    if len < min || len > max {
        return bad(format!("it has {len} characters"));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if let Some(c) = name.chars().find(|&c| !alnum(c) && !extra.contains(&c)) {
        return bad(format!("it contains `{c}`"));
    }
    let (first, last) = (name.chars().next(), name.chars().last());
    if !first.is_some_and(alnum) || !last.is_some_and(alnum) {
        return bad("it must start and end with a letter or digit".to_string());
    }
    match store {
        StoreType::S3 | StoreType::R2 | StoreType::Local => {
            if name.contains("..") {
                return bad("it contains `..`".to_string());
            }
            if name.parse::<std::net::Ipv4Addr>().is_ok() {
                return bad("it is formatted as an IP address".to_string());
            }
            if name.starts_with("xn--") {
                return bad("it starts with `xn--`".to_string());
            }
            if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
                return bad("it ends with a reserved suffix".to_string());
            }
        }
        StoreType::Gcs => {
            if name.starts_with("goog") {
                return bad("it starts with `goog`".to_string());
            }
            if name.contains("google") {
                return bad("it contains `google`".to_string());
            }
            // GCS: names with dots may be up to 222 characters, each dot-separated part at
            // most 63; without dots at most 63.
            if name.split('.').any(|p| p.len() > 63) {
                return bad("a dot-separated part is longer than 63 characters".to_string());
            }
        }
        StoreType::Azure => {
            if name.contains("--") {
                return bad("it contains `--`".to_string());
            }
        }
    }
    Ok(())
}

/// The launch-time check of a storage object's `name:` with its `store:` (a YAML store id).
/// Without a store (the cloud picks one at launch) the name must suit at least one of S3, GCS
/// and Azure; the error then gives S3's rule. Stores sky-rs has no rules for pass.
pub fn check_name_for(store: Option<&str>, name: &str) -> Result<(), String> {
    match store {
        Some(id) => match StoreType::from_id(id) {
            Some(st) => check_bucket_name(st, name),
            None => Ok(()),
        },
        None => {
            let s3 = check_bucket_name(StoreType::S3, name);
            if s3.is_ok()
                || check_bucket_name(StoreType::Gcs, name).is_ok()
                || check_bucket_name(StoreType::Azure, name).is_ok()
            {
                Ok(())
            } else {
                s3
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_rules() {
        for ok in ["abc", "my-bucket", "my.bucket.1", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(StoreType::S3, ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("ab", "2 characters"),
            (&"a".repeat(64) as &str, "64 characters"),
            ("My-bucket", "contains `M`"),
            ("my_bucket", "contains `_`"),
            ("-abc", "start and end"),
            ("abc-", "start and end"),
            ("a..b", "`..`"),
            ("192.168.5.4", "IP address"),
            ("xn--abc", "`xn--`"),
            ("abc-s3alias", "reserved suffix"),
            ("abc--ol-s3", "reserved suffix"),
        ] {
            let e = check_bucket_name(StoreType::S3, bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                e.starts_with(&format!("bucket name `{bad}` is invalid for store s3")),
                "{e}"
            );
        }
    }

    #[test]
    fn gcs_rules() {
        for ok in [
            "my_bucket",
            "a.b_c-d",
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert_eq!(check_bucket_name(StoreType::Gcs, ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("googbucket", "`goog`"),
            ("my-google-data", "`google`"),
            ("_abc", "start and end"),
            (&"a".repeat(64) as &str, "longer than 63"),
            (&"a".repeat(223) as &str, "223 characters"),
        ] {
            let e = check_bucket_name(StoreType::Gcs, bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn azure_rules() {
        assert_eq!(check_bucket_name(StoreType::Azure, "my-container1"), Ok(()));
        for (bad, why) in [("my.container", "`.`"), ("my_c", "`_`"), ("a--b", "`--`")] {
            let e = check_bucket_name(StoreType::Azure, bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn launch_check_uses_the_store() {
        assert!(check_name_for(Some("azure"), "a.b.c").is_err());
        assert_eq!(check_name_for(Some("gcs"), "a_b"), Ok(()));
        assert_eq!(check_name_for(None, "a_b"), Ok(()), "valid on gcs");
        assert!(
            check_name_for(None, "A_B")
                .unwrap_err()
                .contains("store s3")
        );
        assert_eq!(check_name_for(Some("ibm"), "X"), Ok(()));
    }

    #[test]
    fn store_ids_round_trip() {
        for s in [
            StoreType::S3,
            StoreType::Gcs,
            StoreType::Azure,
            StoreType::R2,
            StoreType::Local,
        ] {
            assert_eq!(StoreType::from_id(s.as_str()), Some(s));
        }
        assert_eq!(StoreType::from_id("S3"), Some(StoreType::S3));
        assert_eq!(StoreType::from_id("ibm"), None);
    }
}

//! Names the user gives to clusters, managed jobs, services and storage buckets.
//!
//! Clusters, managed jobs and services follow SkyPilot's cluster name rule: a full match of
//! `[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?`, at most [`MAX_NAME_LEN`] characters. These names
//! become directory names, file names and cloud tags, so anything else (a path, a shell
//! expression, a space) is refused before it is used. Storage (bucket) names follow the
//! rules common to the clouds' buckets: 3 to 63 lowercase letters, digits, `-` and `.`,
//! starting and ending with a letter or digit, no `..`.

use std::fmt;

/// The longest cluster, job, service or storage name, in characters.
pub const MAX_NAME_LEN: usize = 63;

/// The shortest storage (bucket) name.
pub const MIN_STORAGE_NAME_LEN: usize = 3;

/// What a name names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Cluster,
    Job,
    Service,
    Storage,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Cluster => "cluster",
            NameKind::Job => "job",
            NameKind::Service => "service",
            NameKind::Storage => "storage",
        }
    }

    fn example(self) -> &'static str {
        match self {
            NameKind::Cluster => "my-cluster",
            NameKind::Job => "my-job",
            NameKind::Service => "my-service",
            NameKind::Storage => "my-bucket",
        }
    }
}

/// Which rule a name breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    /// Longer than [`MAX_NAME_LEN`] characters.
    TooLong {
        len: usize,
    },
    /// Shorter than [`MIN_STORAGE_NAME_LEN`] characters (storage names).
    TooShort {
        len: usize,
    },
    BadFirst(char),
    /// A character not allowed anywhere (first occurrence; `index` in characters).
    BadChar {
        ch: char,
        index: usize,
    },
    BadLast(char),
    /// `..` in a storage name.
    ConsecutiveDots,
}

/// A name that breaks the rules, with the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub problem: NameProblem,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.kind;
        write!(f, "{} name `{}` is invalid: ", k.noun(), shown(&self.name))?;
        match &self.problem {
            NameProblem::Empty => write!(f, "it is empty")?,
            NameProblem::TooLong { len } => write!(f, "it is {len} characters long")?,
            NameProblem::TooShort { len } => write!(f, "it is {len} characters long")?,
            NameProblem::BadFirst(c) => write!(f, "it starts with `{}`", c.escape_debug())?,
            NameProblem::BadChar { ch, .. } => write!(f, "it contains `{}`", ch.escape_debug())?,
            NameProblem::BadLast(c) => write!(f, "it ends with `{}`", c.escape_debug())?,
            NameProblem::ConsecutiveDots => write!(f, "it contains `..`")?,
        }
        let ex = k.example();
        if k == NameKind::Storage {
            write!(
                f,
                "; it must be {MIN_STORAGE_NAME_LEN} to {MAX_NAME_LEN} characters of lowercase letters, digits, `-` and `.`, start and end with a letter or digit, and not contain `..` (e.g. `{ex}`)"
            )
        } else {
            write!(
                f,
                "; it must start with a letter, contain only letters, digits, `-`, `_` and `.`, end with a letter or digit, and be at most {MAX_NAME_LEN} characters (e.g. `{ex}`)"
            )
        }
    }
}

/// The name as shown in a message: escaped, and cut after 64 characters.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        s.push_str("...");
    }
    s
}

/// SkyPilot's cluster name rule, shared by clusters, managed jobs and services.
fn check_skypilot_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let err = |problem| {
        Err(NameError {
            kind,
            name: name.to_string(),
            problem,
        })
    };
    let len = name.chars().count();
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return err(NameProblem::Empty);
    };
    if len > MAX_NAME_LEN {
        return err(NameProblem::TooLong { len });
    }
    if !first.is_ascii_alphabetic() {
        return err(NameProblem::BadFirst(first));
    }
    if let Some((index, ch)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return err(NameProblem::BadChar { ch, index });
    }
    if !last.is_ascii_alphanumeric() {
        return err(NameProblem::BadLast(last));
    }
    Ok(())
}

/// Checks a cluster name (`sky launch -c NAME`): SkyPilot's
/// `[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?`, at most [`MAX_NAME_LEN`] characters.
pub fn check_cluster_name(name: &str) -> Result<(), NameError> {
    check_skypilot_name(NameKind::Cluster, name)
}

/// Checks a managed job name (`sky jobs launch -n NAME`): the cluster name rule.
pub fn check_job_name(name: &str) -> Result<(), NameError> {
    check_skypilot_name(NameKind::Job, name)
}

/// Checks a service name (`sky serve up -n NAME`): the cluster name rule.
pub fn check_service_name(name: &str) -> Result<(), NameError> {
    check_skypilot_name(NameKind::Service, name)
}

/// Checks a storage (bucket) name: 3 to 63 characters of lowercase letters, digits, `-` and
/// `.`, starting and ending with a letter or digit, without `..`.
pub fn check_storage_name(name: &str) -> Result<(), NameError> {
    let err = |problem| {
        Err(NameError {
            kind: NameKind::Storage,
            name: name.to_string(),
            problem,
        })
    };
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let len = name.chars().count();
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return err(NameProblem::Empty);
    };
    if len > MAX_NAME_LEN {
        return err(NameProblem::TooLong { len });
    }
    if len < MIN_STORAGE_NAME_LEN {
        return err(NameProblem::TooShort { len });
    }
    if !ok(first) {
        return err(NameProblem::BadFirst(first));
    }
    if let Some((index, ch)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !(ok(c) || matches!(c, '-' | '.')))
    {
        return err(NameProblem::BadChar { ch, index });
    }
    if !ok(last) {
        return err(NameProblem::BadLast(last));
    }
    if name.contains("..") {
        return err(NameProblem::ConsecutiveDots);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(r: Result<(), NameError>) -> Option<NameProblem> {
        r.err().map(|e| e.problem)
    }

    #[test]
    fn cluster_names() {
        assert_eq!(check_cluster_name("a.b_c-d9"), Ok(()));
        assert_eq!(check_cluster_name("A"), Ok(()));
        assert_eq!(check_cluster_name(&"a".repeat(63)), Ok(()));
        let cases: &[(&str, NameProblem)] = &[
            ("", NameProblem::Empty),
            ("../../../../tmp/outside/X", NameProblem::BadFirst('.')),
            ("a;b", NameProblem::BadChar { ch: ';', index: 1 }),
            ("a b", NameProblem::BadChar { ch: ' ', index: 1 }),
            ("$(id)", NameProblem::BadFirst('$')),
            ("a/b", NameProblem::BadChar { ch: '/', index: 1 }),
            ("-a", NameProblem::BadFirst('-')),
            ("1a", NameProblem::BadFirst('1')),
            ("a-", NameProblem::BadLast('-')),
            ("a.", NameProblem::BadLast('.')),
            ("aé", NameProblem::BadChar { ch: 'é', index: 1 }),
            ("a\nb", NameProblem::BadChar { ch: '\n', index: 1 }),
        ];
        for (name, want) in cases {
            assert_eq!(
                problem(check_cluster_name(name)).as_ref(),
                Some(want),
                "{name:?}"
            );
        }
        let long = "a".repeat(300);
        assert_eq!(
            problem(check_cluster_name(&long)),
            Some(NameProblem::TooLong { len: 300 })
        );
        assert_eq!(
            problem(check_cluster_name(&"a".repeat(64))),
            Some(NameProblem::TooLong { len: 64 })
        );
    }

    #[test]
    fn messages_say_which_rule() {
        let m = |r: Result<(), NameError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            m(check_cluster_name("a;b")),
            "cluster name `a;b` is invalid: it contains `;`; it must start with a letter, contain only letters, digits, `-`, `_` and `.`, end with a letter or digit, and be at most 63 characters (e.g. `my-cluster`)"
        );
        assert!(m(check_cluster_name("")).contains("it is empty"));
        let long = m(check_job_name(&"a".repeat(300)));
        assert!(long.starts_with("job name `aaaa"), "{long}");
        assert!(
            long.contains("...` is invalid: it is 300 characters long"),
            "{long}"
        );
        assert!(
            m(check_service_name("-a"))
                .contains("service name `-a` is invalid: it starts with `-`")
        );
        assert!(m(check_cluster_name("a-")).contains("it ends with `-`"));
        assert!(m(check_cluster_name("a\nb")).contains("`a\\nb`"));
        assert!(m(check_cluster_name("a\nb")).contains("it contains `\\n`"));
    }

    #[test]
    fn jobs_and_services_share_the_rule() {
        for name in ["", "a;b", "-a", "a-", "$(id)"] {
            assert!(check_job_name(name).is_err(), "{name:?}");
            assert!(check_service_name(name).is_err(), "{name:?}");
        }
        for name in ["A", "a.b_c-d9", "train-llama"] {
            assert_eq!(check_job_name(name), Ok(()));
            assert_eq!(check_service_name(name), Ok(()));
        }
    }

    #[test]
    fn storage_names() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "0ab", &"a".repeat(63)] {
            assert_eq!(check_storage_name(ok), Ok(()), "{ok}");
        }
        let cases: &[(&str, NameProblem)] = &[
            ("", NameProblem::Empty),
            ("ab", NameProblem::TooShort { len: 2 }),
            ("My-bucket", NameProblem::BadFirst('M')),
            ("my_bucket", NameProblem::BadChar { ch: '_', index: 2 }),
            ("myBucket", NameProblem::BadChar { ch: 'B', index: 2 }),
            ("-abc", NameProblem::BadFirst('-')),
            ("abc-", NameProblem::BadLast('-')),
            ("a..b", NameProblem::ConsecutiveDots),
            ("../../x", NameProblem::BadFirst('.')),
        ];
        for (name, want) in cases {
            assert_eq!(
                problem(check_storage_name(name)).as_ref(),
                Some(want),
                "{name:?}"
            );
        }
        assert_eq!(
            problem(check_storage_name(&"a".repeat(64))),
            Some(NameProblem::TooLong { len: 64 })
        );
        let msg = check_storage_name("a_b")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with(
                "storage name `a_b` is invalid: it contains `_`; it must be 3 to 63 characters"
            ),
            "{msg}"
        );
    }
}

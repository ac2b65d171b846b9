//! The cluster token: a shared secret every request to an agent must carry.
//!
//! Agents listen on the nodes' addresses so the head can reach its workers, and a request can
//! run any command as the node's user; so each cluster gets a fresh random token when its
//! agents start (`sky launch`, `sky start`). The launcher uploads it to every node as
//! `~/.sky/agent.token` (mode 0600; never on a command line, where `ps` would show it) and
//! keeps it in the client's state; the agents refuse any request without it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::AgentError;

/// Where a node's token lives, relative to the node's home.
pub const TOKEN_FILE: &str = ".sky/agent.token";

/// A cluster token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// 32 random bytes from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Token, AgentError> {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b)
            .map_err(|e| AgentError::Config(format!("no randomness for the cluster token: {e}")))?;
        Ok(Token(b.iter().map(|x| format!("{x:02x}")).collect()))
    }

    /// A token from its text (surrounding whitespace trimmed); empty text is refused.
    pub fn parse(text: &str) -> Result<Token, AgentError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(AgentError::Config("the cluster token is empty".into()));
        }
        Ok(Token(t.to_string()))
    }

    /// The secret itself (for the wire and the state database).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this token, in time independent of where they differ.
    pub fn matches(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// `node_home/.sky/agent.token`.
    pub fn path_in(node_home: &Path) -> PathBuf {
        node_home.join(TOKEN_FILE)
    }

    /// Reads a node's token file.
    pub fn load(path: &Path) -> Result<Token, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AgentError::io(
                format!(
                    "read the cluster token {} (agents are started by `sky launch` or `sky start`, which write it)",
                    path.display()
                ),
                e,
            )
        })?;
        Token::parse(&text).map_err(|_| {
            AgentError::Config(format!(
                "the cluster token file {} is empty",
                path.display()
            ))
        })
    }

    /// Writes the token to `path`, readable by its owner only (a directory it creates too).
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        use std::os::unix::fs::OpenOptionsExt;
        let ctx = || format!("write the cluster token {}", path.display());
        if let Some(dir) = path.parent() {
            crate::store::create_private_dir_all(dir).map_err(|e| AgentError::io(ctx(), e))?;
        }
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AgentError::io(ctx(), e))?;
        f.write_all(self.0.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| AgentError::io(ctx(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_hex_and_compare_exactly() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(&a.expose()[..63]));
        assert!(!a.matches(""));
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
        assert!(Token::parse("  \n").is_err());
    }

    #[test]
    fn saved_tokens_are_private_and_load_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = Token::path_in(dir.path());
        let t = Token::generate().unwrap();
        t.save(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Token::load(&p).unwrap(), t);
        std::fs::write(&p, "\n").unwrap();
        let e = Token::load(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = Token::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sky launch"), "{e}");
    }
}

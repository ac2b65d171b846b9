//! A lost or damaged state database through the `sky` binary: local clusters are found again
//! from their own records (deleted or emptied `state.db`), a damaged file gets a message that
//! says what to do, and `sky down` cleans up either way.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use crate::{Home, code, text};

const FOUND: &str = "Found cluster `lost` from its own records (the state database had lost it)";

fn ok(o: &Output, what: &str) -> (String, String) {
    let (out, err) = text(o);
    assert_eq!(code(o), 0, "{what} failed:\n{out}\n{err}");
    (out, err)
}

fn state_db(home: &Home) -> PathBuf {
    home.dir.path().join(".sky-rs/state.db")
}

/// Removes the database's -wal and -shm files (no `sky` process has it open now).
fn remove_wal(home: &Home) {
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(state_db(home).with_extension(ext));
    }
}

/// The parent of a process, from `/proc/<pid>/stat` (the field after the name's `)`).
fn parent(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)
        .map(String::from)
}

/// The head agents (`sky agent serve --head`) running for this HOME, as `pid: cmdline`; a
/// child an agent has forked but not yet replaced (it starts a job) is not another agent.
pub(crate) fn head_agents(home: &Home) -> Vec<String> {
    let all: Vec<String> = home
        .processes()
        .into_iter()
        .filter(|p| p.contains("agent serve") && p.contains("--head"))
        .collect();
    let pid = |p: &String| p.split(':').next().unwrap_or_default().to_string();
    let pids: Vec<String> = all.iter().map(pid).collect();
    all.into_iter()
        // A process gone since the listing (a forked child that has already exec'd a job and
        // ended, say) is no agent: only live processes whose parent is not an agent count.
        .filter(|p| parent(&pid(p)).is_some_and(|pp| !pids.contains(&pp)))
        .collect()
}

/// Launches cluster `lost` with a long detached job; returns its head agent.
fn launch_lost(home: &Home) -> String {
    ok(
        &home.sky(&["launch", "-y", "-d", "-c", "lost", "sleep", "600"]),
        "launch",
    );
    let agents = head_agents(home);
    assert_eq!(agents.len(), 1, "{agents:?}");
    agents[0].clone()
}

/// After the database lost it: `sky status` finds `lost` UP (once), its job still runs,
/// relaunching reuses it (the same single head agent), and `sky down` leaves nothing.
fn finds_reuses_and_downs(home: &Home, agent: &str) {
    let (out, err) = ok(&home.sky(&["status"]), "status");
    assert!(err.contains(FOUND), "{err}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("lost "))
        .unwrap_or_else(|| panic!("no row for lost:\n{out}"));
    assert!(row.contains("UP"), "{row}");
    // Recorded now: found once, not again.
    let (out, err) = ok(&home.sky(&["status", "-r"]), "status -r");
    assert!(!err.contains("Found cluster"), "{err}");
    assert!(out.contains("lost") && out.contains("UP"), "{out}");

    let (out, _) = ok(&home.sky(&["queue", "lost"]), "queue");
    assert!(out.contains("RUNNING"), "{out}");

    ok(
        &home.sky(&["launch", "-y", "-d", "-c", "lost", "echo", "again"]),
        "relaunch",
    );
    assert_eq!(head_agents(home), vec![agent.to_string()], "one head agent");

    ok(&home.sky(&["down", "lost"]), "down");
    home.assert_clean();
    let (out, _) = ok(&home.sky(&["status"]), "status after down");
    assert!(out.contains("No existing clusters"), "{out}");
}

#[test]
fn a_deleted_state_database_finds_its_clusters_again() {
    let home = Home::new(&[]);
    let agent = launch_lost(&home);
    std::fs::remove_file(state_db(&home)).unwrap();
    remove_wal(&home);
    finds_reuses_and_downs(&home, &agent);
}

#[test]
fn an_emptied_state_database_finds_its_clusters_again() {
    let home = Home::new(&[]);
    let agent = launch_lost(&home);
    std::fs::write(state_db(&home), b"").unwrap();
    remove_wal(&home);
    finds_reuses_and_downs(&home, &agent);
}

#[test]
fn a_damaged_state_database_says_what_to_do_and_down_still_cleans_up() {
    let home = Home::new(&[]);
    launch_lost(&home);
    let db = state_db(&home);
    let garbage: Vec<u8> = (0..16384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    remove_wal(&home);
    let p = db.display().to_string();
    let says_what_to_do = |o: &Output, what: &str| {
        let (out, err) = text(o);
        assert_eq!(code(o), 1, "{what}:\n{out}\n{err}");
        assert!(
            err.contains(&format!("the state database {p} is damaged"))
                && err.contains(&format!("`mv {p} {p}.damaged"))
                && !err.contains("(code:"),
            "{what}: {err}"
        );
    };
    says_what_to_do(&home.sky(&["status"]), "status");
    says_what_to_do(&home.sky(&["status", "-r"]), "status -r");
    says_what_to_do(&home.sky(&["queue", "lost"]), "queue");
    says_what_to_do(
        &home.sky(&["launch", "-y", "-d", "-c", "lost", "echo", "hi"]),
        "launch",
    );
    says_what_to_do(&home.sky(&["stop", "lost"]), "stop");
    // The cluster kept running through all of that.
    assert_eq!(head_agents(&home).len(), 1);

    let o = home.sky(&["down", "lost"]);
    let (out, err) = ok(&o, "down");
    assert!(
        err.contains(&format!("the state database {p} is damaged"))
            && err.contains("goes on without it")
            && err.contains(FOUND),
        "{out}\n{err}"
    );
    home.assert_clean();
    // The damaged file is the user's to deal with: left as it was.
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    // Moved aside as the message says, sky starts afresh.
    std::fs::rename(&db, Path::new(&format!("{p}.damaged"))).unwrap();
    let (out, _) = ok(&home.sky(&["status"]), "status after mv");
    assert!(out.contains("No existing clusters"), "{out}");
}

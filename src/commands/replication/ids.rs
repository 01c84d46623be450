//! Replication ids (Redis's PSYNC2), kept in `<dir>/replication.ids` so they survive restarts:
//! a history is named by an id, and offsets within it are WAL LSNs.
//!
//! - `replid`: the history this node's log follows (a primary's own id; a replica's primary's).
//! - `replid2` / `second_offset`: the history it followed before, valid up to that offset (a
//!   promoted replica's old primary; a primary restarted after a crash, whose log may have
//!   lost records its replicas hold, so only its recovered records are shared history).
//! - `synced`: false while a full sync is replacing the data (a crash midway leaves a log
//!   that belongs to no history; the next link asks for a full sync).

use std::io::Write;
use std::path::Path;

use crate::engine::wal::Lsn;

/// Redis's id for "no second history".
const NO_ID: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplIds {
    pub replid: String,
    pub replid2: String,
    /// -1: no second history.
    pub second_offset: i64,
    pub synced: bool,
    /// The node was a replica when the ids were saved.
    pub replica: bool,
}

/// 40 random hex digits, as Redis's ids.
pub fn new_id() -> String {
    (0..40)
        .map(|_| char::from_digit(rand::random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

impl ReplIds {
    fn fresh() -> ReplIds {
        ReplIds {
            replid: new_id(),
            replid2: NO_ID.into(),
            second_offset: -1,
            synced: true,
            replica: false,
        }
    }

    /// The saved ids, or new ones. After an unclean stop of a primary, its log may lack
    /// records it had streamed: it takes a new id, and its recovered log (up to `last_lsn`)
    /// stays shared history under the old one.
    pub fn load_or_create(path: &Path, clean_start: bool, last_lsn: Lsn) -> ReplIds {
        let Some(saved) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| Self::parse(&text))
        else {
            let ids = Self::fresh();
            if let Err(err) = ids.save(path) {
                tracing::warn!(%err, "cannot save the replication ids");
            }
            return ids;
        };
        if clean_start || saved.replica {
            return saved;
        }
        let ids = ReplIds {
            replid: new_id(),
            replid2: saved.replid,
            second_offset: last_lsn as i64,
            synced: true,
            replica: false,
        };
        if let Err(err) = ids.save(path) {
            tracing::warn!(%err, "cannot save the replication ids");
        }
        ids
    }

    fn parse(text: &str) -> Option<ReplIds> {
        let mut ids = ReplIds::fresh();
        for line in text.lines() {
            let (name, value) = line.split_once(' ')?;
            match name {
                "replid" => ids.replid = value.to_string(),
                "replid2" => ids.replid2 = value.to_string(),
                "second_offset" => ids.second_offset = value.parse().ok()?,
                "synced" => ids.synced = value == "1",
                "replica" => ids.replica = value == "1",
                _ => {}
            }
        }
        (ids.replid.len() == 40).then_some(ids)
    }

    /// Writes the ids durably (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "replid {}\nreplid2 {}\nsecond_offset {}\nsynced {}\nreplica {}\n",
            self.replid,
            self.replid2,
            self.second_offset,
            u8::from(self.synced),
            u8::from(self.replica)
        );
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// REPLICAOF NO ONE at `offset`: a new history, the old one resumable up to `offset`.
    pub fn promoted(&self, offset: Lsn) -> ReplIds {
        ReplIds {
            replid: new_id(),
            replid2: self.replid.clone(),
            second_offset: offset as i64,
            synced: true,
            replica: false,
        }
    }

    /// A full sync from the primary whose history is `replid` began (`synced` false) or ended.
    pub fn following(replid: &str, synced: bool) -> ReplIds {
        ReplIds {
            replid: replid.to_string(),
            replid2: NO_ID.into(),
            second_offset: -1,
            synced,
            replica: true,
        }
    }

    /// `+CONTINUE <replid>` from a primary whose history has a new id (it was promoted): the
    /// old one stays valid up to `offset`.
    pub fn switched(&self, replid: &str, offset: Lsn) -> ReplIds {
        ReplIds {
            replid: replid.to_string(),
            replid2: self.replid.clone(),
            second_offset: offset as i64,
            synced: true,
            replica: true,
        }
    }

    /// What this node asks its primary for: `(id, offset)`, or None for a full sync. A node
    /// that wrote nothing under its current id since it took it (a primary restarted after a
    /// crash, now joining as a replica) asks under its previous id.
    pub fn psync_request(&self, last_lsn: Lsn) -> Option<(String, Lsn)> {
        if !self.synced {
            return None;
        }
        if self.second_offset >= 0 && last_lsn as i64 == self.second_offset {
            return Some((self.replid2.clone(), last_lsn));
        }
        Some((self.replid.clone(), last_lsn))
    }

    /// Whether a replica holding `offset` of history `replid` shares this node's history up
    /// to there (this node's log ends at `last_lsn`).
    pub fn shares_history(&self, replid: &str, offset: Lsn, last_lsn: Lsn) -> bool {
        (replid == self.replid && offset <= last_lsn)
            || (replid == self.replid2
                && self.second_offset >= 0
                && offset as i64 <= self.second_offset)
    }

    pub fn no_id() -> &'static str {
        NO_ID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_a_clean_restart_and_fork_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replication.ids");
        let first = ReplIds::load_or_create(&path, false, 0);
        assert_eq!(ReplIds::load_or_create(&path, true, 10), first);
        let after_crash = ReplIds::load_or_create(&path, false, 42);
        assert_ne!(after_crash.replid, first.replid);
        assert_eq!(after_crash.replid2, first.replid);
        assert_eq!(after_crash.second_offset, 42);
        // Nothing written since: it asks under the history it shares.
        assert_eq!(
            after_crash.psync_request(42),
            Some((first.replid.clone(), 42))
        );
        assert_eq!(
            after_crash.psync_request(43),
            Some((after_crash.replid.clone(), 43))
        );
    }

    #[test]
    fn a_promoted_replica_continues_its_old_primarys_history() {
        let replica = ReplIds::following("a".repeat(40).as_str(), true);
        let promoted = replica.promoted(100);
        assert!(promoted.shares_history(&replica.replid, 100, 150));
        assert!(!promoted.shares_history(&replica.replid, 101, 150));
        assert!(promoted.shares_history(&promoted.replid, 150, 150));
        assert!(!promoted.shares_history(&promoted.replid, 151, 150));
        assert_eq!(ReplIds::following("b", false).psync_request(7), None);
    }

    #[test]
    fn a_replica_keeps_its_primarys_id_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replication.ids");
        let following = ReplIds::following(&"c".repeat(40), true);
        following.save(&path).unwrap();
        assert_eq!(ReplIds::load_or_create(&path, false, 5), following);
    }
}

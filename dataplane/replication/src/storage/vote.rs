//! The durable vote: the term a replica is in and whom it voted for.
//!
//! Raft's safety needs the vote on disk before any reply that depends on it; [`VoteFile::save`]
//! returns only after the new vote is durable (see `durable_file` for how).

use std::path::{Path, PathBuf};

use crate::storage::{StoreError, durable_file};
use crate::types::{NodeId, Vote};

const VOTE_FILE: &str = "vote";
/// Body: term u64 | node id u64 | committed u8.
const BODY_LEN: usize = 17;

/// The vote file of one replica's data directory.
#[derive(Debug, Clone)]
pub struct VoteFile {
    dir: PathBuf,
}

impl VoteFile {
    /// The vote file in `dir` (which must exist).
    pub fn new(dir: &Path) -> Self {
        VoteFile {
            dir: dir.to_path_buf(),
        }
    }

    /// Durably replaces the stored vote.
    pub fn save(&self, vote: &Vote) -> Result<(), StoreError> {
        let mut body = Vec::with_capacity(BODY_LEN);
        body.extend_from_slice(&vote.leader_id.term.to_le_bytes());
        body.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
        body.push(u8::from(vote.committed));
        durable_file::write(&self.dir, VOTE_FILE, &body)
    }

    /// The last saved vote, `None` if none was ever saved. A damaged file is an error: a
    /// replica that forgot its vote could vote twice in one term.
    pub fn load(&self) -> Result<Option<Vote>, StoreError> {
        let Some(body) = durable_file::read(&self.dir, VOTE_FILE)? else {
            return Ok(None);
        };
        let path = self.dir.join(VOTE_FILE);
        if body.len() != BODY_LEN || body[16] > 1 {
            return Err(StoreError::corrupt(&path, 0, "bad vote record"));
        }
        let term = u64_at(&body, 0);
        let node: NodeId = u64_at(&body, 8);
        Ok(Some(if body[16] == 1 {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }))
    }
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_survives_reopen_and_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let votes = VoteFile::new(dir.path());
        assert_eq!(votes.load().expect("load"), None);
        votes.save(&Vote::new(3, 2)).expect("save");
        assert_eq!(
            VoteFile::new(dir.path()).load().expect("load"),
            Some(Vote::new(3, 2))
        );
        votes.save(&Vote::new_committed(4, 1)).expect("save");
        assert_eq!(
            VoteFile::new(dir.path()).load().expect("load"),
            Some(Vote::new_committed(4, 1))
        );
    }

    #[test]
    fn a_damaged_vote_is_an_error_not_a_blank() {
        let dir = tempfile::tempdir().expect("tempdir");
        let votes = VoteFile::new(dir.path());
        votes.save(&Vote::new(7, 1)).expect("save");
        let path = dir.path().join(VOTE_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[14] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(votes.load().is_err());
    }
}

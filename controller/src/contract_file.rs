//! Publishing the contract as a file the data plane follows: written
//! atomically (a temporary file renamed over it) and only when it changed,
//! with a generation that grows with every change, across restarts too.

use std::path::{Path, PathBuf};

use ferry_proto::{Contract, Resource};

pub struct ContractFile {
    path: PathBuf,
    current: Contract,
}

impl ContractFile {
    /// Continues from the contract already at `path`, if any.
    pub fn open(path: &Path) -> Self {
        let current = ferry_common::contract::read(path).unwrap_or_default();
        ContractFile {
            path: path.to_owned(),
            current,
        }
    }

    pub fn generation(&self) -> u64 {
        self.current.generation
    }

    /// Writes the contract when its resources changed; returns the new
    /// generation then.
    pub fn publish(&mut self, resources: Vec<Resource>) -> std::io::Result<Option<u64>> {
        if resources == self.current.resources && self.path.exists() {
            return Ok(None);
        }
        let next = Contract {
            generation: self.current.generation + 1,
            resources,
            ..Default::default()
        };
        let json = serde_json::to_vec_pretty(&next).expect("contracts serialise");
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &self.path)?;
        tracing::info!(path = %self.path.display(), generation = next.generation, resources = next.resources.len(), "contract published");
        self.current = next;
        Ok(Some(self.current.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_grow_only_with_changes_and_survive_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contract.json");
        let r = |uid: &str| {
            vec![Resource {
                uid: uid.into(),
                ..Default::default()
            }]
        };
        let mut file = ContractFile::open(&path);
        assert_eq!(file.publish(r("a")).unwrap(), Some(1));
        assert_eq!(file.publish(r("a")).unwrap(), None);
        assert_eq!(file.publish(r("b")).unwrap(), Some(2));
        let mut again = ContractFile::open(&path);
        assert_eq!(again.generation(), 2);
        assert_eq!(
            again.publish(r("b")).unwrap(),
            None,
            "a restart with the same resources writes nothing"
        );
        assert_eq!(again.publish(vec![]).unwrap(), Some(3));
        assert_eq!(ferry_common::contract::read(&path).unwrap().generation, 3);
    }
}

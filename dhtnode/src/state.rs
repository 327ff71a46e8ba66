//! The node's state file, `<data_dir>/dht-state.toml`: its current hash range and, while one is
//! unfinished, its redistribution (new range, targets, and whose credentials to use towards
//! them), so that both survive a restart.
//!
//! Why a file of its own: the reference rewrote the operator's config in place (and failed
//! unless the old values had exactly 16 hex digits). The node never writes its config; a range
//! set by Redistribute lives here instead, and this file takes precedence over the config's
//! `dht.range_min` / `dht.range_max` at start (the command line's `--range` takes precedence
//! over both, and is then written here). See docs/operations.md, "Growing a dht".
//!
//! Writing: `dht-state.toml.tmp` is written and fsynced, renamed over `dht-state.toml`, and
//! the directory fsynced, so a crash leaves the old file or the new one, never a mix.

use node_core::protocol::dht::{HashRange, RedistributeTarget};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file names, with every other name of the data directory in [`dht_persist::layout`].
pub use dht_persist::layout::{STATE_FILE, STATE_TMP_FILE};

/// A redistribution that was started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRedistribution {
    /// The client name the node authenticates as towards the targets (the admin who asked for
    /// the redistribution; empty for anonymous, when authentication is off).
    pub admin: String,
    pub targets: Vec<RedistributeTarget>,
}

/// What the state file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub range: HashRange,
    pub redistribution: Option<PendingRedistribution>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{path} is damaged: {problem} (fix or delete it; the config's range is used without it)"
    )]
    Invalid { path: PathBuf, problem: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    range_min: String,
    range_max: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redistribution: Option<RedistributionFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedistributionFile {
    admin: String,
    targets: Vec<TargetFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    address: String,
    range_min: String,
    range_max: String,
}

fn hex(value: u64) -> String {
    format!("0x{value:016x}")
}

fn parse_range(min: &str, max: &str) -> Result<HashRange, String> {
    HashRange::parse(&format!("{min}:{max}"))
}

impl NodeState {
    fn to_file(&self) -> StateFile {
        StateFile {
            range_min: hex(self.range.min),
            range_max: hex(self.range.max),
            redistribution: self.redistribution.as_ref().map(|r| RedistributionFile {
                admin: r.admin.clone(),
                targets: r
                    .targets
                    .iter()
                    .map(|t| TargetFile {
                        address: t.address.to_string(),
                        range_min: hex(t.range.min),
                        range_max: hex(t.range.max),
                    })
                    .collect(),
            }),
        }
    }

    fn from_file(file: StateFile) -> Result<NodeState, String> {
        let range = parse_range(&file.range_min, &file.range_max)?.normalized();
        let redistribution = match file.redistribution {
            None => None,
            Some(r) => {
                let targets = r
                    .targets
                    .into_iter()
                    .map(|t| {
                        let address: SocketAddr = t.address.parse().map_err(|_| {
                            format!("target address {:?} is not ip:port", t.address)
                        })?;
                        let range = parse_range(&t.range_min, &t.range_max)?;
                        Ok(RedistributeTarget { address, range })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Some(PendingRedistribution {
                    admin: r.admin,
                    targets,
                })
            }
        };
        Ok(NodeState {
            range,
            redistribution,
        })
    }
}

/// The longest state file read: one the node writes holds a range and at most
/// `MAX_REDISTRIBUTE_TARGETS` (1024) redistribution targets, well under this. A longer one is
/// damaged, refused before it is read whole.
pub const MAX_STATE_FILE_BYTES: u64 = 1 << 20;

/// Reads the state file of `data_dir`; `Ok(None)` when there is none.
pub fn load(data_dir: &Path) -> Result<Option<NodeState>, StateError> {
    let path = data_dir.join(STATE_FILE);
    // Refused, not passed over: without it the node would serve the config's range, which
    // the state file exists to override.
    if let Err(source) = node_core::data_dir::refuse_not_regular(&path, "the node's hash range") {
        return Err(StateError::Read { path, source });
    }
    let mut bytes = Vec::new();
    let read = fs::File::open(&path)
        .and_then(|file| file.take(MAX_STATE_FILE_BYTES + 1).read_to_end(&mut bytes));
    match read {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    }
    let invalid = |problem: String| StateError::Invalid {
        path: path.clone(),
        problem,
    };
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(invalid(format!(
            "longer than {MAX_STATE_FILE_BYTES} bytes, which no state file the node writes is"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|error| invalid(error.to_string()))?;
    let file: StateFile = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    NodeState::from_file(file).map(Some).map_err(invalid)
}

/// Writes the state file of `data_dir` durably (see the module doc).
pub fn save(data_dir: &Path, state: &NodeState) -> Result<(), StateError> {
    let path = data_dir.join(STATE_FILE);
    let tmp = data_dir.join(STATE_TMP_FILE);
    let write_error = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let body = toml::to_string(&state.to_file())
        .map_err(|error| write_error(io::Error::other(error.to_string())))?;
    let text = format!(
        "# Written by dhtnode: the node's hash range (and an unfinished redistribution).\n\
         # It takes precedence over the config's dht.range_min/range_max; do not edit it while\n\
         # the node runs.\n{body}"
    );
    fs::create_dir_all(data_dir).map_err(write_error)?;
    node_core::data_dir::replace_file(&tmp, &path, text.as_bytes()).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_file_and_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let state = NodeState {
            range: HashRange::new(0, 0x7fff_ffff_ffff_ffff),
            redistribution: Some(PendingRedistribution {
                admin: "ops".into(),
                targets: vec![RedistributeTarget {
                    address: "127.0.0.1:10001".parse().unwrap(),
                    range: HashRange::new(0x8000_0000_0000_0000, u64::MAX),
                }],
            }),
        };
        save(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state));
        let done = NodeState {
            range: HashRange::EMPTY,
            redistribution: None,
        };
        save(dir.path(), &done).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(done));
        assert!(!dir.path().join(STATE_TMP_FILE).exists());
    }

    #[test]
    fn a_damaged_state_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(STATE_FILE),
            "range_min = \"zz\"\nrange_max = \"0\"\n",
        )
        .unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(STATE_FILE), "{error}");
        assert!(error.contains("damaged"), "{error}");
    }

    /// A state file past [`MAX_STATE_FILE_BYTES`] (here a valid one padded with a comment) is
    /// refused as damaged, naming the bound, without being read whole.
    #[test]
    fn an_oversized_state_file_is_refused_naming_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("range_min = \"0x0\"\nrange_max = \"0xffffffffffffffff\"\n#");
        text.push_str(&"x".repeat(MAX_STATE_FILE_BYTES as usize));
        fs::write(dir.path().join(STATE_FILE), &text).unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(STATE_FILE), "{error}");
        assert!(
            error.contains(&format!("longer than {MAX_STATE_FILE_BYTES} bytes")),
            "{error}"
        );
        text.truncate(60);
        fs::write(
            dir.path().join(STATE_FILE),
            text.trim_end_matches(['#', 'x']),
        )
        .unwrap();
        assert!(
            load(dir.path()).unwrap().is_some(),
            "the same file without the padding loads"
        );
    }
}

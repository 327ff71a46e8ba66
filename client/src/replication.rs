//! The replication settings of a dht client: how many members of a replica set must store a
//! write before it is acknowledged ([`WriteQuorum`]), which member reads go to ([`ReadFrom`]),
//! and how many members each set should have (`replication_factor`, reported only).
//!
//! A replica set is the dht nodes whose ranges are exactly equal (`dht::RangeTable`); the
//! rules for using the sets are in `dht` (writes to every live member, reads from the first live
//! one) and in `docs/replication.md`. The settings come from [`crate::ClientOptions`] or, where
//! those leave them unset, from the topology file's `[dht]` section:
//!
//! ```toml
//! [dht]
//! nodes = ["127.0.0.1:10000", "127.0.0.1:10001"]  # two nodes of one range: one set of two
//! replication_factor = 2   # members every set should have; fewer (or fewer live) is reported
//! write_quorum = "all"     # "all" live members (default), or a number of members
//! read_from = "first"      # "first" live member (default), or "spread" over live members
//! ```

use std::fmt;

/// The most members a set may be asked to store a write (and the largest
/// `replication_factor`): far beyond any real set, it only bounds what a file may say.
pub const MAX_REPLICAS: u32 = 64;

/// How many members of a key's replica set must store a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteQuorum {
    /// Every member that is live (at least one): a member known to be down, or lost while the
    /// write was in flight, is not waited for. The default.
    #[default]
    AllLive,
    /// At least this many members (1 to [`MAX_REPLICAS`]). With fewer live members the write
    /// fails before it is sent (`ClientError::QuorumNotMet`, naming the set and how many are
    /// live); it is still sent to every live member.
    Members(u32),
}

impl WriteQuorum {
    /// Reads the topology's form: `"all"` or a number of members.
    pub fn parse(value: &toml::Value) -> Result<WriteQuorum, String> {
        match value {
            toml::Value::String(text) if text == "all" => Ok(WriteQuorum::AllLive),
            toml::Value::Integer(n) if (1..=i64::from(MAX_REPLICAS)).contains(n) => {
                Ok(WriteQuorum::Members(*n as u32))
            }
            other => Err(format!(
                "write_quorum = {other}: expected \"all\" or a number of members from 1 to \
                 {MAX_REPLICAS}"
            )),
        }
    }

    /// How many members must store a write when `live` of the set's members are live.
    pub fn required(self, live: usize) -> usize {
        match self {
            WriteQuorum::AllLive => live.max(1),
            WriteQuorum::Members(n) => n as usize,
        }
    }
}

impl fmt::Display for WriteQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteQuorum::AllLive => write!(f, "all live members"),
            WriteQuorum::Members(n) => write!(f, "{n} member(s)"),
        }
    }
}

/// Which live member of a key's replica set a read goes to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// The first live member in topology order: a client reads what it wrote (the default).
    #[default]
    First,
    /// Each read starts at the next live member in turn, spreading reads over the set. A
    /// client may then read from a member its last write has not reached yet only if that
    /// write was acknowledged without it (a member down, or a `write_quorum` below the set).
    Spread,
}

impl ReadFrom {
    /// Reads the topology's form: `"first"` or `"spread"`.
    pub fn parse(value: &toml::Value) -> Result<ReadFrom, String> {
        match value.as_str() {
            Some("first") => Ok(ReadFrom::First),
            Some("spread") => Ok(ReadFrom::Spread),
            _ => Err(format!(
                "read_from = {value}: expected \"first\" or \"spread\""
            )),
        }
    }
}

/// The `[dht]` replication settings of a topology file, each `None` where the file is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicationSettings {
    pub replication_factor: Option<u32>,
    pub write_quorum: Option<WriteQuorum>,
    pub read_from: Option<ReadFrom>,
}

impl ReplicationSettings {
    /// Reads `replication_factor`, `write_quorum` and `read_from` of a `[dht]` section.
    pub fn parse(
        replication_factor: Option<&toml::Value>,
        write_quorum: Option<&toml::Value>,
        read_from: Option<&toml::Value>,
    ) -> Result<ReplicationSettings, String> {
        let replication_factor = match replication_factor {
            None => None,
            Some(toml::Value::Integer(n)) if (1..=i64::from(MAX_REPLICAS)).contains(n) => {
                Some(*n as u32)
            }
            Some(other) => {
                return Err(format!(
                    "replication_factor = {other}: expected a number of members from 1 to \
                     {MAX_REPLICAS}"
                ))
            }
        };
        Ok(ReplicationSettings {
            replication_factor,
            write_quorum: write_quorum.map(WriteQuorum::parse).transpose()?,
            read_from: read_from.map(ReadFrom::parse).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_values_are_named() {
        let parse = |text: &str| -> toml::Value {
            toml::from_str::<toml::Table>(&format!("v = {text}")).expect("toml")["v"].clone()
        };
        assert_eq!(
            WriteQuorum::parse(&parse("\"all\"")),
            Ok(WriteQuorum::AllLive)
        );
        assert_eq!(WriteQuorum::parse(&parse("2")), Ok(WriteQuorum::Members(2)));
        for bad in ["0", "65", "\"most\"", "1.5"] {
            let error = WriteQuorum::parse(&parse(bad)).expect_err(bad);
            assert!(error.starts_with("write_quorum = "), "{error}");
        }
        assert_eq!(ReadFrom::parse(&parse("\"spread\"")), Ok(ReadFrom::Spread));
        assert!(ReadFrom::parse(&parse("\"last\"")).is_err());
        let settings = ReplicationSettings::parse(Some(&parse("3")), None, None).expect("good");
        assert_eq!(settings.replication_factor, Some(3));
        assert!(ReplicationSettings::parse(Some(&parse("0")), None, None).is_err());
    }

    #[test]
    fn all_live_needs_every_live_member_and_at_least_one() {
        assert_eq!(WriteQuorum::AllLive.required(3), 3);
        assert_eq!(WriteQuorum::AllLive.required(0), 1);
        assert_eq!(WriteQuorum::Members(2).required(3), 2);
    }
}

//! File names every node's data directory shares, built without the `server` feature: a crate
//! that only reads and writes a data directory (`dht-persist`, used by `dhtdump` and `dumptool`
//! too) must recognise these files when it scans one, without building the server parts that
//! create them.

/// The lock file that keeps one process per data directory (`data_lock`, with the `server`
/// feature): `<data_dir>/.lock`, holding the holder's `<pid> <program>`.
pub const LOCK_FILE_NAME: &str = ".lock";

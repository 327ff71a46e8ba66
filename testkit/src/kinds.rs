//! The three node kinds as tests name them ([`Kind`]): each one's binary and request table, so
//! a test runs the same checks on every kind; and a credentials file with one admin and one
//! ordinary client ([`TestCredentials`]) for tests of authentication and administration.

use super::{workspace_binary, TempNode};
use node_core::auth::Key;
use node_core::protocol::{dht, logfiles, queue, RequestCode};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A node kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dht,
    Logfiles,
    Queue,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Dht, Kind::Logfiles, Kind::Queue];

    /// Its node binary, built if needed.
    pub fn binary(self) -> PathBuf {
        match self {
            Kind::Dht => workspace_binary("dhtnode", "dhtnode"),
            Kind::Logfiles => workspace_binary("logfilesnode", "logfilesnode"),
            Kind::Queue => workspace_binary("queuenode", "queuenode"),
        }
    }

    /// Starts a node of this kind in a directory of its own; a non-empty `config` (TOML) is its
    /// config file.
    pub fn start(self, config: &str) -> TempNode {
        let binary = self.binary();
        TempNode::start(binary.to_str().expect("utf-8 path"), config, &[])
    }

    /// The name of one of its request codes (`None`: not one of this kind's).
    pub fn request_name(self, code: RequestCode) -> Option<&'static str> {
        match self {
            Kind::Dht => dht::request_name(code),
            Kind::Logfiles => logfiles::request_name(code),
            Kind::Queue => queue::request_name(code),
        }
    }

    pub fn is_admin_request(self, code: RequestCode) -> bool {
        match self {
            Kind::Dht => dht::is_admin_request(code),
            Kind::Logfiles => logfiles::is_admin_request(code),
            Kind::Queue => queue::is_admin_request(code),
        }
    }

    pub fn get_channels(self) -> RequestCode {
        match self {
            Kind::Dht => dht::GET_CHANNELS,
            Kind::Logfiles => logfiles::GET_CHANNELS,
            Kind::Queue => queue::GET_CHANNELS,
        }
    }
}

/// A credentials file (mode 0600, in a directory removed on drop) listing `ops`, an admin, and
/// `app`, an ordinary client, and the `[auth]` section of a node config that uses it.
pub struct TestCredentials {
    /// `[auth]` with `credentials_file` and `admins = ["ops"]`.
    pub config: String,
    pub ops: Key,
    pub app: Key,
    /// The credentials file ([`TestCredentials::rewrite`] replaces it).
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCredentials {
    pub const OPS_KEY: &'static str =
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    pub const APP_KEY: &'static str =
        "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    pub fn new() -> TestCredentials {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("credentials");
        let text = format!("ops:{}\napp:{}\n", Self::OPS_KEY, Self::APP_KEY);
        write_private(&path, &text, 0o600);
        TestCredentials {
            config: format!(
                "[auth]\ncredentials_file = \"{}\"\nadmins = [\"ops\"]\n",
                path.display()
            ),
            ops: Key::from_hex(Self::OPS_KEY).expect("ops key"),
            app: Key::from_hex(Self::APP_KEY).expect("app key"),
            path,
            _dir: dir,
        }
    }

    /// Replaces the credentials file with `text` (mode `mode`) the way an operator should: a
    /// new file renamed over the old, so a node reloading never reads it half-written.
    pub fn rewrite(&self, text: &str, mode: u32) {
        let fresh = self.path.with_extension("new");
        write_private(&fresh, text, mode);
        std::fs::rename(&fresh, &self.path).expect("rename the new credentials file");
    }
}

fn write_private(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write the credentials file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Default for TestCredentials {
    fn default() -> TestCredentials {
        TestCredentials::new()
    }
}

//! TLS on the client's connections (docs/security.md, "TLS"): the `[tls]` settings (the
//! topology file's section, dhtdump's, swarmctl's flags), the rustls `ClientConfig` that
//! verifies the node's certificate against the given CA ([`client_config`]: the one place it is
//! built, for the blocking client and any other), and [`ClientTls`], what a connect needs.
//!
//! The node's certificate must be valid now, chain to a CA of `ca_file`, and name the node: its
//! IP address (the address the client connects to) unless `server_name` gives the name to
//! expect instead. With `cert_file` and `key_file` the client presents its own certificate, for
//! nodes that require one (mutual TLS).

use node_core::tls::{load_certs, load_key, load_roots, provider, TlsError};
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[tls]` section of a topology file (and of dhtdump's config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The CA certificates (PEM) a node's certificate must chain to.
    pub ca_file: PathBuf,
    /// The client's own certificate chain (PEM), for mutual TLS; needs `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name every node's certificate must carry, instead of the node's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// The settings with relative paths taken as relative to `base`.
    pub fn relative_to(&self, base: &Path) -> TlsSettings {
        let join = |path: &PathBuf| base.join(path);
        TlsSettings {
            ca_file: join(&self.ca_file),
            cert_file: self.cert_file.as_ref().map(join),
            key_file: self.key_file.as_ref().map(join),
            server_name: self.server_name.clone(),
        }
    }
}

/// What connecting over TLS takes: the config (trusted CAs, the client's certificate) and the
/// name to check the nodes' certificates against.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Loads the files of `settings`; the error names the file, or the setting, and the problem.
    pub fn load(settings: &TlsSettings) -> Result<ClientTls, TlsError> {
        let server_name = match &settings.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|err| TlsError {
                setting: "[tls] server_name".into(),
                path: PathBuf::from(name),
                problem: format!("not a DNS name or IP address: {err}"),
            })?),
            None => None,
        };
        Ok(ClientTls {
            config: client_config(settings)?,
            server_name,
        })
    }

    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The name `node`'s certificate must carry: the override, else the node's IP address.
    pub fn server_name(&self, node: SocketAddr) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(node.ip().into()),
        }
    }
}

/// The rustls config of a client: the CAs of `ca_file`, and the client's certificate when
/// `cert_file` and `key_file` are given.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = load_roots("[tls] ca_file", &settings.ca_file)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError {
            setting: "[tls] ca_file".into(),
            path: settings.ca_file.clone(),
            problem: err.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let certs = load_certs("[tls] cert_file", cert_file)?;
            let key = load_key("[tls] key_file", key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|err| TlsError {
                    setting: "[tls] cert_file".into(),
                    path: cert_file.clone(),
                    problem: format!("does not go with [tls] key_file: {err}"),
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(path), None) | (None, Some(path)) => {
            return Err(TlsError {
                setting: "[tls] cert_file and key_file".into(),
                path: path.clone(),
                problem: "a client certificate needs both cert_file and key_file".into(),
            })
        }
    };
    Ok(Arc::new(config))
}

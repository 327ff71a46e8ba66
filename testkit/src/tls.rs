//! Certificates for the TLS tests, made fresh by each test with rcgen ([`TestPki`]): a CA and a
//! node certificate it signed (for 127.0.0.1 and `localhost`), a client certificate for mutual
//! TLS, and the ones a client must refuse: signed by another CA, naming another host, expired.
//! Also the `[tls]` sections of node configs and topology files that use them.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway PKI in a directory removed on drop.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA the good certificates chain to.
    pub ca: PathBuf,
    /// Another CA, which signed nothing a node uses: a client trusting only it refuses the nodes.
    pub other_ca: PathBuf,
    /// Signed by `ca`, for 127.0.0.1 and localhost.
    pub node: CertFiles,
    /// Signed by `ca`, for 127.0.0.1 and localhost too: the certificate a rotation installs.
    pub node_rotated: CertFiles,
    /// Signed by `other_ca`, for 127.0.0.1: what a node that is not ours would show.
    pub node_other_ca: CertFiles,
    /// Signed by `ca`, for `elsewhere.example` only.
    pub node_wrong_name: CertFiles,
    /// Signed by `ca`, for 127.0.0.1, expired a year ago.
    pub node_expired: CertFiles,
    /// Signed by `ca`: the client's certificate for mutual TLS.
    pub client: CertFiles,
    /// Signed by `other_ca`: a client certificate a node trusting `ca` refuses.
    pub client_other_ca: CertFiles,
}

struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> (Authority, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem = cert.pem();
        (
            Authority {
                issuer: Issuer::new(params, key),
            },
            pem,
        )
    }

    /// A leaf certificate for `names` (IP addresses or DNS names), valid from a year ago for
    /// `valid_days` days (negative: expired).
    fn issue(&self, names: &[&str], client: bool, valid_days: i64) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            if client { "swarm client" } else { "swarm node" },
        );
        // A node's certificate serves clients, and is a dht node's client certificate towards
        // the other nodes in a redistribution.
        params.extended_key_usages = if client {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        };
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(valid_days);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_pem) = Authority::new("swarm test CA");
        let (other, other_pem) = Authority::new("some other CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        let pair = |name: &str, (cert, key): (String, String)| CertFiles {
            cert: write(&format!("{name}.pem"), &cert),
            key: write(&format!("{name}-key.pem"), &key),
        };
        let here = ["127.0.0.1", "localhost"];
        TestPki {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            node: pair("node", ca.issue(&here, false, 365)),
            node_rotated: pair("node-rotated", ca.issue(&here, false, 365)),
            node_other_ca: pair("node-other-ca", other.issue(&here, false, 365)),
            node_wrong_name: pair(
                "node-wrong-name",
                ca.issue(&["elsewhere.example"], false, 365),
            ),
            node_expired: pair("node-expired", ca.issue(&here, false, -30)),
            client: pair("client", ca.issue(&["swarm-client"], true, 365)),
            client_other_ca: pair("client-other-ca", other.issue(&["swarm-client"], true, 365)),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A node config's `[tls]` section serving `cert`, trusting the test CA for its peers
    /// (dht redistribution); with `mutual`, clients need a certificate signed by the test CA.
    pub fn node_section(&self, cert: &CertFiles, mutual: bool) -> String {
        let mut section = format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\npeer_ca_file = \"{}\"\n",
            cert.cert.display(),
            cert.key.display(),
            self.ca.display()
        );
        if mutual {
            section.push_str(&format!("client_ca_file = \"{}\"\n", self.ca.display()));
        }
        section
    }

    /// A topology's (or dhtdump's) `[tls]` section trusting `ca`, presenting `client` if given.
    pub fn client_section(&self, ca: &Path, client: Option<&CertFiles>) -> String {
        let mut section = format!("[tls]\nca_file = \"{}\"\n", ca.display());
        if let Some(client) = client {
            section.push_str(&format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                client.cert.display(),
                client.key.display()
            ));
        }
        section
    }
}

impl Default for TestPki {
    fn default() -> TestPki {
        TestPki::new()
    }
}

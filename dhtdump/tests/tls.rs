//! dhtdump against a dht node serving TLS: with its `[tls]` section it dumps the node's
//! channels; trusting another CA it refuses the node at start, saying why.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;
use testkit::tls::TestPki;
use testkit::Kind;

/// A dht node serving TLS (mutual), holding 100 records of channel `secret`, and a directory
/// for dhtdump's config, data and logs.
struct Setup {
    pki: TestPki,
    node: testkit::TempNode,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let pki = TestPki::new();
        let node = Kind::Dht.start(&pki.node_section(&pki.node, true));
        let options = client::ClientOptions {
            tls: Some(
                client::tls::ClientTls::load(&client::tls::TlsSettings {
                    ca_file: pki.ca.clone(),
                    cert_file: Some(pki.client.cert.clone()),
                    key_file: Some(pki.client.key.clone()),
                    server_name: None,
                })
                .expect("client TLS"),
            ),
            ..client::ClientOptions::default()
        };
        let dht = client::DhtClient::connect(&[node.addr], options).expect("connect over TLS");
        for key in 0..100u64 {
            dht.put("secret", key, &value_for(key, 50)).expect("put");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        Setup { pki, node, dir }
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("dhtdump.toml")
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// A oneshot dhtdump of the node, with the config file.
    fn args(&self) -> Vec<String> {
        vec![
            "-c".into(),
            self.config().to_string_lossy().into_owned(),
            "--oneshot".into(),
            "--node".into(),
            self.node.addr.to_string(),
            "--data-dir".into(),
            self.data_dir().to_string_lossy().into_owned(),
        ]
    }
}

#[test]
fn dhtdump_dumps_a_tls_node() {
    let setup = Setup::new();
    let pki = &setup.pki;
    std::fs::write(
        setup.config(),
        pki.client_section(&pki.ca, Some(&pki.client)),
    )
    .expect("config");
    let args = setup.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut dump = Dump::spawn(&args, &setup.dir.path().join("log"));
    let status = wait_exit(&mut dump.child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", dump.root_log());
    assert!(
        dump.root_log()
            .contains("dumped channel secret: 100 records"),
        "{}",
        dump.root_log()
    );
    assert!(setup.data_dir().join("secret.dump").exists());
}

#[test]
fn dhtdump_refuses_a_tls_node_it_does_not_trust_and_a_ca_file_that_does_not_load() {
    let setup = Setup::new();
    let pki = &setup.pki;
    let node_addr = setup.node.addr.to_string();
    // Trusting another CA: refused at start (exit 1), naming the node and the TLS reason.
    std::fs::write(
        setup.config(),
        pki.client_section(&pki.other_ca, Some(&pki.client)),
    )
    .expect("config");
    let output = Command::new(dhtdump_binary())
        .args(setup.args())
        .arg("--log-dir")
        .arg(setup.dir.path().join("log2"))
        .output()
        .expect("run dhtdump");
    let log = read_text(&setup.dir.path().join("log2/root.log"));
    assert_eq!(output.status.code(), Some(1), "{log}");
    let line = log
        .lines()
        .find(|line| line.contains("cannot reach dht node"))
        .unwrap_or_else(|| panic!("no error line in {log}"));
    assert!(
        line.contains("ERROR") && line.contains(&node_addr) && line.contains("UnknownIssuer"),
        "{line}"
    );

    // A CA file that does not load is a config error naming the file.
    std::fs::write(setup.config(), "[tls]\nca_file = \"/nonexistent/ca.pem\"\n").expect("config");
    let output = Command::new(dhtdump_binary())
        .args(setup.args())
        .arg("--check-config")
        .output()
        .expect("run dhtdump");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
}

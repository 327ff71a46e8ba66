//! `--check-config` on every daemon, as an operator runs it before a restart: a valid config
//! prints the effective configuration (defaults filled in, command-line overrides applied) and
//! exits 0 without starting anything; a bad one exits 1 naming the key at fault.

use std::path::Path;
use std::process::{Command, Output};
use testkit::workspace_binary;

const DAEMONS: [(&str, &str); 4] = [
    ("dhtnode", "dhtnode"),
    ("logfilesnode", "logfilesnode"),
    ("queuenode", "queuenode"),
    ("dhtdump", "dhtdump"),
];

fn check(package: &str, binary: &str, dir: &Path, config: &str, extra: &[&str]) -> Output {
    let path = dir.join(format!("{binary}.toml"));
    std::fs::write(&path, config).expect("write config");
    Command::new(workspace_binary(package, binary))
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .args(extra)
        .current_dir(dir)
        .output()
        .expect("run --check-config")
}

#[test]
fn a_valid_config_prints_the_effective_configuration_and_starts_nothing() {
    for (package, binary) in DAEMONS {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = check(
            package,
            binary,
            dir.path(),
            "[log]\nlevel = \"debug\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
            &["--log-dir", "elsewhere"],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{binary}: {stdout} {output:?}"
        );
        assert!(stdout.contains("configuration OK"), "{binary}: {stdout}");
        assert!(stdout.contains("level = \"debug\""), "{binary}: {stdout}");
        assert!(
            stdout.contains("dir = \"elsewhere\""),
            "{binary}: the override: {stdout}"
        );
        assert!(
            stdout.contains("listen = \"127.0.0.1:9999\""),
            "{binary}: {stdout}"
        );
        assert!(
            stdout.contains("stats_interval_s = 30"),
            "{binary}: a default: {stdout}"
        );
        // The printed configuration is one the daemon accepts, and it means the same.
        let again = check(package, binary, dir.path(), &stdout, &[]);
        assert_eq!(again.status.code(), Some(0), "{binary}: {again:?}");
        let reprinted = String::from_utf8_lossy(&again.stdout);
        assert_eq!(reprinted, stdout, "{binary}");
        std::fs::remove_file(dir.path().join(format!("{binary}.toml"))).expect("remove");
        let created: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert!(created.is_empty(), "{binary} created {created:?}");
    }
}

#[test]
fn a_bad_config_exits_1_naming_the_key() {
    for (package, binary) in DAEMONS {
        for (config, key) in [
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            ("[metrics]\nlisten = \"0.0.0.0:9100\"\n", "metrics.listen"),
            (
                "[metrics]\nlisten = \"127.0.0.1:9100\"\nbearer_token_file = \"/nonexistent/t\"\n",
                "metrics.bearer_token_file",
            ),
            ("[metrics]\nlistne = \"127.0.0.1:9100\"\n", "listne"),
            ("data_dir = \"\"\n", "data_dir"),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let output = check(package, binary, dir.path(), config, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{binary} {config}: {stderr}");
            assert!(
                stderr.contains(key),
                "{binary} {config}: {key} not in {stderr}"
            );
            assert!(
                output.stdout.is_empty(),
                "{binary}: printed a config for a bad one"
            );
        }
    }
}

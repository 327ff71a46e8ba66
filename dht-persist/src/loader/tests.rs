use super::*;
use crate::dump::format::DumpFileWriter;
use crate::layout::TMP_SUFFIX;
use node_core::protocol::batch::append_record;
use std::sync::{Arc, Mutex};

type Records = Vec<(u64, Vec<u8>)>;

#[derive(Default)]
struct MapTarget {
    channels: BTreeMap<String, Records>,
    created: Vec<String>,
}

impl LoadTarget for MapTarget {
    type Channel = Records;
    fn new_channel(&mut self, name: &str) -> Records {
        self.created.push(name.to_owned());
        Vec::new()
    }
    fn insert(&mut self, channel: &mut Records, key: u64, _version: u64, value: &[u8]) {
        channel.push((key, value.to_vec()));
    }
    fn insert_tombstone(&mut self, _: &mut Records, _: u64, _: u64, _: u64) {}
    fn commit(&mut self, name: &str, channel: Records) {
        assert!(self.channels.insert(name.to_owned(), channel).is_none());
    }
}

fn options(policy: OutOfRangePolicy) -> LoadOptions {
    LoadOptions {
        policy,
        range: HashRange::FULL,
        max_value_bytes: 1000,
    }
}

fn write_dump(path: &Path, channel: &str, records: &[(u64, &[u8])]) {
    write_dump_covering(path, channel, records, None);
}

fn write_dump_covering(
    path: &Path,
    channel: &str,
    records: &[(u64, &[u8])],
    log_position: Option<u64>,
) {
    let mut writer =
        DumpFileWriter::with_header(Vec::new(), channel, 1_700_000_000, log_position).unwrap();
    let mut raw = Vec::new();
    for (key, value) in records {
        append_record(&mut raw, *key, value);
    }
    writer.write_chunk(&raw, records.len() as u32).unwrap();
    let (bytes, _) = writer.finish().unwrap();
    fs::write(path, bytes).unwrap();
}

fn owned(records: &[(u64, &[u8])]) -> Records {
    records.iter().map(|(k, v)| (*k, v.to_vec())).collect()
}

const NEW: &[(u64, &[u8])] = &[(1, b"new one"), (2, b"new two")];
const OLD: &[(u64, &[u8])] = &[(1, b"old one")];

/// The events of one test: each event's level and message.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

thread_local! {
    /// Where [`Router`] puts the events of this thread (a test's [`load_logged`]).
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// The process-wide subscriber of this test binary: every event goes to its thread's
/// [`SINK`], if any. Why global and not `tracing::subscriber::with_default` per test: tracing
/// caches whether a callsite is wanted when it is first hit, and a callsite first hit by a
/// parallel test while no scoped subscriber was alive stayed unwanted, so a test's own ERROR
/// line went missing (this file's `a_flipped_byte_falls_back_to_the_backup_loudly` failed under
/// `cargo test -p dht-persist --lib loader`). A global subscriber that wants every callsite
/// cannot be raced that way.
struct Router;

impl tracing::Subscriber for Router {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!("{value:?}");
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        SINK.with(|sink| {
            if let Some(captured) = sink.borrow().as_ref() {
                captured
                    .0
                    .lock()
                    .unwrap()
                    .push((*event.metadata().level(), message.0));
            }
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Captured {
    fn lines(&self, level: tracing::Level) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

fn load_logged(
    dir: &Path,
    options: &LoadOptions,
) -> (Result<LoadReport, LoadError>, MapTarget, Captured) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Router).expect("the only global subscriber");
    });
    let logs = Captured::default();
    SINK.with(|sink| *sink.borrow_mut() = Some(logs.clone()));
    let mut target = MapTarget::default();
    let result = load_data_dir(dir, options, &mut target);
    SINK.with(|sink| *sink.borrow_mut() = None);
    (result, target, logs)
}

#[test]
fn creates_a_missing_directory_and_loads_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut target = MapTarget::default();
    let report = load_data_dir(&data, &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert!(data.is_dir() && report.channels.is_empty());

    write_dump(&data.join("a.dump"), "a", NEW);
    write_dump(&data.join("b.dump"), "b", OLD);
    let report = load_data_dir(&data, &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert_eq!(target.channels["a"], owned(NEW));
    assert_eq!(target.channels["b"], owned(OLD));
    assert_eq!(report.total_loaded(), 3);
    let a = report.channel("a").unwrap();
    assert_eq!(a.source, LoadSource::Dump);
    assert_eq!((a.loaded, a.value_bytes), (2, 14));
}

#[test]
fn every_channel_reports_the_log_position_its_loaded_file_covers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    write_dump_covering(&data.join("a.dump"), "a", NEW, Some(500));
    write_dump_covering(&data.join("a.dump.backup"), "a", OLD, Some(300));
    write_dump(&data.join("b.dump"), "b", OLD); // written without a position
    write_dump_covering(&data.join("c.dump"), "c", NEW, Some(900));
    write_dump_covering(&data.join("c.dump.backup"), "c", OLD, Some(700));
    let mut damaged = fs::read(data.join("c.dump")).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    fs::write(data.join("c.dump"), damaged).unwrap();
    fs::write(data.join("d.tcm"), sample("example.tcm")).unwrap();

    let (report, target, logs) = load_logged(data, &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    let position = |name: &str| report.channel(name).unwrap().log_position;
    assert_eq!(position("a"), 500);
    assert_eq!(position("b"), 0, "a dump without a position covers nothing");
    assert_eq!(
        position("c"),
        700,
        "the backup's position, since the backup loaded"
    );
    assert_eq!(report.channel("c").unwrap().source, LoadSource::Backup);
    assert_eq!(target.channels["c"], owned(OLD));
    assert_eq!(position("d"), 0, "a .tcm import covers nothing");
    assert!(logs
        .lines(tracing::Level::INFO)
        .iter()
        .any(|line| line.starts_with("channel a: loaded 2 records")
            && line.contains("(covering the change log up to position 500)")));
}

#[test]
fn a_flipped_byte_falls_back_to_the_backup_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("ch.dump");
    write_dump(&dump, "ch", NEW);
    write_dump(&dir.path().join("ch.dump.backup"), "ch", OLD);
    let mut bytes = fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&dump, &bytes).unwrap();

    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    assert_eq!(target.channels["ch"], owned(OLD));
    let ch = report.channel("ch").unwrap();
    assert_eq!(ch.source, LoadSource::Backup);
    assert_eq!(ch.loaded, 1);
    assert_eq!(ch.failures.len(), 1);
    assert!(ch.failures[0].contains("ch.dump"), "{:?}", ch.failures);
    let errors = logs.lines(tracing::Level::ERROR);
    assert!(
        errors.iter().any(|line| line.contains("ch.dump")
            && line.contains("falling back to the backup")
            && line.contains("ago")),
        "{errors:?}"
    );
    // The bad dump is kept for inspection, out of the way of the next dump's rotation.
    assert!(!dump.exists());
    let corrupt: Vec<_> = fs::read_dir(dir.path().join(CORRUPT_DIR))
        .unwrap()
        .collect();
    assert_eq!(corrupt.len(), 1);
    // And a second start loads the backup without complaint (the .dump-missing window).
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    assert_eq!(
        report.unwrap().channel("ch").unwrap().source,
        LoadSource::Backup
    );
    assert_eq!(target.channels["ch"], owned(OLD));
    assert!(logs.lines(tracing::Level::ERROR).is_empty());
}

#[test]
fn both_files_bad_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ch.dump"), b"garbage").unwrap();
    fs::write(dir.path().join("ch.dump.backup"), b"").unwrap();
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    let ch = report.channel("ch").unwrap();
    assert_eq!(ch.source, LoadSource::Nothing);
    assert_eq!(ch.failures.len(), 2);
    assert_eq!(ch.loaded, 0);
    assert!(target.channels.is_empty());
    // Neither header passed, so no channel was even started.
    assert!(target.created.is_empty());
    assert_eq!(logs.lines(tracing::Level::ERROR).len(), 2);
    assert_eq!(
        fs::read_dir(dir.path().join(CORRUPT_DIR)).unwrap().count(),
        2
    );
}

#[test]
fn a_dump_failing_half_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("ch.dump");
    write_dump(&dump, "ch", NEW);
    let bytes = fs::read(&dump).unwrap();
    fs::write(&dump, &bytes[..bytes.len() - 3]).unwrap(); // blocks fine, trailer torn
    let mut target = MapTarget::default();
    let report = load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert!(target.channels.is_empty());
    let ch = report.channel("ch").unwrap();
    assert_eq!((ch.source, ch.loaded), (LoadSource::Nothing, 0));
    assert!(ch.failures[0].contains("truncated"), "{:?}", ch.failures);
}

#[test]
fn tmp_leftovers_and_unknown_entries_are_ignored_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write_dump(&dir.path().join("ch.dump"), "ch", OLD);
    write_dump(&dir.path().join("ch.dump.tmp"), "ch", NEW);
    fs::write(dir.path().join("other.dump.tmp"), b"half a dump").unwrap();
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    fs::write(dir.path().join("bad.name.dump"), b"x").unwrap();
    fs::create_dir(dir.path().join("stuff")).unwrap();
    fs::create_dir(dir.path().join(REMOVED_DIR)).unwrap();
    // The change log's directory is the log's: skipped without a word.
    fs::create_dir(dir.path().join(WAL_DIR)).unwrap();
    fs::write(dir.path().join(WAL_DIR).join("00000001.log"), b"x").unwrap();
    write_dump(
        &dir.path().join(REMOVED_DIR).join("gone.1.dump"),
        "gone",
        NEW,
    );
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    assert_eq!(target.channels.len(), 1);
    assert_eq!(target.channels["ch"], owned(OLD));
    assert_eq!(report.ignored.len(), 3, "{:?}", report.ignored);
    assert_eq!(report.removed_unfinished.len(), 2);
    let warnings = logs.lines(tracing::Level::WARN);
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    let ch_dump = dir.path().join("ch.dump");
    assert!(warnings.iter().any(|w| w.contains("ch.dump.tmp")
        && w.contains(&format!(
            "its previous dump {} is loaded",
            ch_dump.display()
        ))));
    assert!(logs.lines(tracing::Level::ERROR).is_empty());
}

/// Issue #15, defect 9: a channel's first dump killed mid-way left `<ch>.dump.tmp`, which
/// every start reported again as "the previous dump is used" although there was none. It is
/// removed once, with a warning that tells which file is loaded instead, or that none is.
#[test]
fn an_unfinished_dump_is_removed_once_and_reported_truthfully() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = |ch: &str| dir.path().join(format!("{ch}{TMP_SUFFIX}"));
    write_dump(&tmp("first"), "first", NEW);
    let bytes = fs::read(tmp("first")).unwrap();
    fs::write(tmp("first"), &bytes[..bytes.len() / 2]).unwrap();
    write_dump(&dir.path().join("old.dump.backup"), "old", OLD);
    fs::write(tmp("old"), b"half a dump").unwrap();
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    assert_eq!(target.channels.len(), 1, "only `old` has a dump");
    assert!(report.channel("first").is_none(), "no channel `first`");
    assert_eq!(report.removed_unfinished.len(), 2);
    assert!(!tmp("first").exists() && !tmp("old").exists());
    let warnings = logs.lines(tracing::Level::WARN);
    let about = |ch: &str| {
        let name = tmp(ch).display().to_string();
        let found = warnings.iter().find(|w| w.contains(&name));
        found
            .cloned()
            .unwrap_or_else(|| panic!("no warning on {name}: {warnings:?}"))
    };
    let first = about("first");
    assert!(
        first.starts_with("removed ") && first.contains("no complete dump (this was its first)"),
        "{first}"
    );
    assert!(!first.contains("previous dump"), "{first}");
    let backup = dir.path().join("old.dump.backup");
    let old = about("old");
    assert!(
        old.contains(&format!("its backup {} is loaded", backup.display())),
        "{old}"
    );

    let (report, _, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    assert!(report.unwrap().removed_unfinished.is_empty());
    let again: Vec<String> = logs
        .lines(tracing::Level::WARN)
        .into_iter()
        .filter(|w| w.contains(".dump.tmp"))
        .collect();
    assert!(again.is_empty(), "reported again: {again:?}");
}

/// The crash windows of a dump: after the temporary file is written but before any rename
/// (`.dump` old + `.tmp`), and after the first rename (`.backup` old + `.tmp`).
#[test]
fn crash_windows_load_the_previous_dump() {
    let dir = tempfile::tempdir().unwrap();
    write_dump(&dir.path().join("ch.dump"), "ch", OLD);
    write_dump(&dir.path().join("ch.dump.tmp"), "ch", NEW);
    let (report, target, _) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    assert_eq!(
        report.unwrap().channel("ch").unwrap().source,
        LoadSource::Dump
    );
    assert_eq!(target.channels["ch"], owned(OLD));

    fs::rename(
        dir.path().join("ch.dump"),
        dir.path().join("ch.dump.backup"),
    )
    .unwrap();
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    assert_eq!(
        report.unwrap().channel("ch").unwrap().source,
        LoadSource::Backup
    );
    assert_eq!(target.channels["ch"], owned(OLD));
    assert!(logs
        .lines(tracing::Level::WARN)
        .iter()
        .any(|w| w.contains("missing but its backup")));
}

/// With the real writer: a crash that leaves only the backup and a temporary file.
#[test]
fn writer_then_crash_after_first_rename() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = crate::dump::writer::DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    for records in [OLD, NEW] {
        let mut raw = Vec::new();
        for (key, value) in records {
            append_record(&mut raw, *key, value);
        }
        thread.begin("ch").unwrap();
        thread.send_chunk(raw, records.len() as u32).unwrap();
        thread.finish().unwrap();
        thread.wait_idle().unwrap();
    }
    assert!(thread.poll_outcomes().iter().all(|o| o.result.is_ok()));
    drop(thread);
    let mut target = MapTarget::default();
    load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert_eq!(target.channels["ch"], owned(NEW));
    // Crash after `.dump` → `.backup` but before `.tmp` → `.dump`.
    fs::rename(
        dir.path().join("ch.dump"),
        dir.path().join("ch.dump.backup"),
    )
    .unwrap();
    fs::write(
        dir.path().join("ch.dump.tmp"),
        b"complete or not, never read",
    )
    .unwrap();
    let mut target = MapTarget::default();
    load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert_eq!(target.channels["ch"], owned(NEW));
}

/// Range (0x0000000100000000, max) in hash space; position = bit-reversed key. Key 1 sits
/// at 0x8000000000000000 (in range), key 0x8000000000000000 at 1 (out), key 0x10 at
/// 0x0800000000000000 (in), key 0x0000000080000000 at 0x0000000100000000 (in, the lower
/// bound), key 0x0000000100000000 at 0x0000000080000000 (out), key 0 at 0 (out).
const IN_RANGE: [u64; 3] = [1, 0x10, 0x0000_0000_8000_0000];
const OUT_OF_RANGE: [u64; 3] = [0x8000_0000_0000_0000, 0x0000_0001_0000_0000, 0];

fn range_options(policy: OutOfRangePolicy) -> LoadOptions {
    LoadOptions {
        policy,
        range: HashRange::new(0x0000_0001_0000_0000, u64::MAX),
        max_value_bytes: 1000,
    }
}

fn mixed_dir() -> tempfile::TempDir {
    let options = range_options(OutOfRangePolicy::Load);
    for key in IN_RANGE {
        assert!(options.range.is_responsible_for(key), "{key:#x}");
    }
    for key in OUT_OF_RANGE {
        assert!(!options.range.is_responsible_for(key), "{key:#x}");
    }
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(u64, &[u8])> = IN_RANGE
        .iter()
        .zip(OUT_OF_RANGE.iter())
        .flat_map(|(&a, &b)| [(a, &b"in"[..]), (b, &b"out"[..])])
        .collect();
    write_dump(&dir.path().join("ch.dump"), "ch", &records);
    dir
}

#[test]
fn out_of_range_load_keeps_and_counts() {
    let dir = mixed_dir();
    let mut target = MapTarget::default();
    let report = load_data_dir(
        dir.path(),
        &range_options(OutOfRangePolicy::Load),
        &mut target,
    )
    .unwrap();
    assert_eq!(target.channels["ch"].len(), 6);
    let ch = report.channel("ch").unwrap();
    assert_eq!((ch.loaded, ch.out_of_range), (6, 3));
}

#[test]
fn out_of_range_ignore_skips_and_counts() {
    let dir = mixed_dir();
    let (report, target, logs) = load_logged(dir.path(), &range_options(OutOfRangePolicy::Ignore));
    let keys: Vec<u64> = target.channels["ch"].iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, IN_RANGE.to_vec());
    let report = report.unwrap();
    let ch = report.channel("ch").unwrap();
    assert_eq!((ch.loaded, ch.out_of_range), (3, 3));
    assert!(logs
        .lines(tracing::Level::WARN)
        .iter()
        .any(|w| w.contains("skipped 3 records outside")));
}

#[test]
fn out_of_range_fatal_aborts_naming_file_and_key() {
    let dir = mixed_dir();
    let mut target = MapTarget::default();
    let err = load_data_dir(
        dir.path(),
        &range_options(OutOfRangePolicy::Fatal),
        &mut target,
    )
    .unwrap_err();
    match &err {
        LoadError::OutOfRange { file, key, .. } => {
            assert_eq!(file, &dir.path().join("ch.dump"));
            assert_eq!(*key, OUT_OF_RANGE[0]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("0x8000000000000000"), "{err}");
    assert!(target.channels.is_empty());
    // The dump is not treated as damaged.
    assert!(dir.path().join("ch.dump").exists());

    // Fatal with everything in range loads normally.
    let only_in = tempfile::tempdir().unwrap();
    let records: Vec<(u64, &[u8])> = IN_RANGE.iter().map(|&k| (k, &b"v"[..])).collect();
    write_dump(&only_in.path().join("ch.dump"), "ch", &records);
    let mut target = MapTarget::default();
    load_data_dir(
        only_in.path(),
        &range_options(OutOfRangePolicy::Fatal),
        &mut target,
    )
    .unwrap();
    assert_eq!(target.channels["ch"].len(), 3);
}

#[test]
fn range_zero_to_one_owns_only_keys_zero_and_high_bit() {
    // The reference's other test range: positions 0 and 1, i.e. keys 0 and 1 << 63.
    let dir = tempfile::tempdir().unwrap();
    let records: [(u64, &[u8]); 3] = [(0, b"a"), (1 << 63, b"b"), (1, b"c")];
    write_dump(&dir.path().join("ch.dump"), "ch", &records);
    let options = LoadOptions {
        policy: OutOfRangePolicy::Ignore,
        range: HashRange::new(0, 1),
        max_value_bytes: 10,
    };
    let mut target = MapTarget::default();
    load_data_dir(dir.path(), &options, &mut target).unwrap();
    let keys: Vec<u64> = target.channels["ch"].iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![0, 1 << 63]);
}

#[test]
fn empty_and_oversized_values_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let exact = vec![b'x'; 1000];
    let over = vec![b'y'; 1001];
    let records: [(u64, &[u8]); 4] = [(1, b""), (2, &exact), (3, &over), (4, b"ok")];
    write_dump(&dir.path().join("ch.dump"), "ch", &records);
    let mut target = MapTarget::default();
    let report = load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
    assert_eq!(
        target.channels["ch"],
        vec![(2, exact.clone()), (4, b"ok".to_vec())]
    );
    let ch = report.channel("ch").unwrap();
    assert_eq!((ch.loaded, ch.empty_values, ch.too_large), (2, 1, 1));
}

fn sample(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/dht-tcm")
            .join(name),
    )
    .unwrap()
}

#[test]
fn tcm_files_are_imported_when_there_is_no_dump() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("example.tcm"), sample("example.tcm")).unwrap();
    fs::write(dir.path().join("cut.tcm"), sample("truncated.tcm")).unwrap();
    fs::write(dir.path().join("shadowed.tcm"), sample("example.tcm")).unwrap();
    write_dump(&dir.path().join("shadowed.dump"), "shadowed", OLD);
    let mut v1 = sample("example.tcm");
    v1[0] = 1;
    fs::write(dir.path().join("future.tcm"), v1).unwrap();
    let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
    let report = report.unwrap();
    let expected = owned(&[
        (0xa, b"value a"),
        (0xb, b"value b"),
        (0xdead_beef, b"hello world"),
    ]);
    assert_eq!(target.channels["example"], expected);
    assert_eq!(target.channels["cut"], expected);
    assert_eq!(target.channels["shadowed"], owned(OLD));
    assert!(!target.channels.contains_key("future"));
    let example = report.channel("example").unwrap();
    assert_eq!(example.source, LoadSource::Tcm);
    assert_eq!(
        (
            example.loaded,
            example.invalid_keys,
            example.empty_values,
            example.truncated
        ),
        (3, 1, 1, false)
    );
    let cut = report.channel("cut").unwrap();
    assert!(cut.truncated && cut.loaded == 3);
    let future = report.channel("future").unwrap();
    assert_eq!(future.source, LoadSource::Nothing);
    assert!(future.failures[0].contains("unsupported .tcm version 1"));
    let errors = logs.lines(tracing::Level::ERROR);
    assert!(errors
        .iter()
        .any(|e| e.contains("cut.tcm") && e.contains("TRUNCATED")));
    assert!(errors.iter().any(|e| e.contains("future.tcm")));
}

#[test]
fn policy_parses() {
    assert_eq!("load".parse(), Ok(OutOfRangePolicy::Load));
    assert_eq!("ignore".parse(), Ok(OutOfRangePolicy::Ignore));
    assert_eq!("fatal".parse(), Ok(OutOfRangePolicy::Fatal));
    assert!("Fatal".parse::<OutOfRangePolicy>().is_err());
    assert_eq!(OutOfRangePolicy::Ignore.to_string(), "ignore");
}

/// A FIFO named like a dump (or any file that is not a regular one) is skipped with a warning,
/// as a directory is: opening a FIFO to read would block the start until something writes to
/// it (for ever, and SIGTERM cannot stop it).
#[test]
fn a_fifo_named_like_a_dump_is_skipped_and_does_not_block_the_start() {
    let dir = tempfile::tempdir().unwrap();
    write_dump(&dir.path().join("good.dump"), "good", NEW);
    let fifo = dir.path().join("ch.dump");
    testkit::mkfifo(&fifo);
    let data = dir.path().to_path_buf();
    let (ignored, channels, warnings) = testkit::returns_in_time("loading", move || {
        let (report, target, logs) = load_logged(&data, &options(OutOfRangePolicy::Load));
        let ignored = report.map(|report| report.ignored);
        (
            ignored,
            target.channels.len(),
            logs.lines(tracing::Level::WARN),
        )
    });
    assert_eq!(ignored.unwrap(), vec![fifo.clone()]);
    assert_eq!(channels, 1, "the good dump loads");
    let name = fifo.display().to_string();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&name) && w.contains("not a regular file")),
        "{warnings:?}"
    );
}

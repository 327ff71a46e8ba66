//! The `Queues` registry over a real data directory, and import of the reference's `.rq` dumps
//! (copied into `testdata/dmq-loadfiles/`).

use node_core::protocol::Status;
use queuenode::engine::{rq, QueueError, Queues, QueuesConfig, RingError, SyncMode};
use std::path::{Path, PathBuf};

fn config(dir: &Path, memory_limit_bytes: u64) -> QueuesConfig {
    QueuesConfig {
        data_dir: dir.to_path_buf(),
        memory_limit_bytes,
        sync: SyncMode::OnClose,
    }
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dmq-loadfiles")
}

#[test]
fn create_on_first_use_list_sizes_remove_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, report) = Queues::open(config(dir.path(), 0)).expect("open");
    assert_eq!(report.rings, 0);
    queues
        .get_or_create("ch", 8192)
        .expect("create")
        .push(b"hello")
        .expect("push");
    queues
        .get_or_create("sub1@ch", 4096)
        .expect("create")
        .push(b"x")
        .expect("push");
    queues.get_or_create("@other", 4096).expect("create");
    assert_eq!(
        queues.names().collect::<Vec<_>>(),
        ["@other", "ch", "sub1@ch"]
    );
    let size = queues.size("ch").expect("size");
    assert_eq!(
        (size.records, size.value_bytes, size.capacity_bytes),
        (1, 5, 8192)
    );
    assert_eq!(size.used_bytes, 24);
    assert_eq!(size.fill_percent(), 0);
    assert_eq!(queues.total_capacity_bytes(), 16384);
    assert!(dir.path().join("sub1@ch.ring").exists());

    assert!(queues.remove("sub1@ch").expect("remove"));
    assert!(!queues.remove("sub1@ch").expect("remove again"));
    assert!(!dir.path().join("sub1@ch.ring").exists());
    assert_eq!(queues.total_capacity_bytes(), 12288);
    queues.close().expect("close");

    let (mut queues, report) = Queues::open(config(dir.path(), 0)).expect("reopen");
    assert_eq!(report.rings, 2);
    assert_eq!(queues.names().collect::<Vec<_>>(), ["@other", "ch"]);
    let ring = queues.get_mut("ch").expect("ch");
    assert_eq!(ring.pop().expect("pop"), Some(b"hello".to_vec()));
}

#[test]
fn bad_names_are_refused_with_bad_channel_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, _) = Queues::open(config(dir.path(), 0)).expect("open");
    for bad in ["", "a.b", "../x", "a@b@c", "x@", "a b"] {
        let err = queues.get_or_create(bad, 4096).err().expect("refused");
        assert!(matches!(err, QueueError::BadName(_)), "{bad}");
        assert_eq!(err.status(), Status::BadChannelName);
    }
    assert_eq!(queues.names().count(), 0);
}

#[test]
fn memory_limit_is_checked_at_creation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, _) = Queues::open(config(dir.path(), 10_000)).expect("open");
    queues.get_or_create("a", 4096).expect("a");
    queues.get_or_create("b", 4096).expect("b");
    let err = queues
        .get_or_create("c", 4096)
        .err()
        .expect("over the limit");
    assert!(matches!(err, QueueError::MemoryLimit { .. }));
    assert_eq!(err.status(), Status::OutOfMemory);
    assert!(queues.check_create("c", 4096).is_err());
    assert!(
        queues.check_create("a", 4096).is_ok(),
        "existing rings pass"
    );
    queues.remove("a").expect("remove");
    queues.get_or_create("c", 4096).expect("room again");
}

#[test]
fn full_ring_maps_to_channel_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, _) = Queues::open(config(dir.path(), 0)).expect("open");
    let ring = queues.get_or_create("ch", 4096).expect("create");
    let err = loop {
        if let Err(err) = ring.push(&[1u8; 500]) {
            break err;
        }
    };
    assert!(matches!(err, RingError::Full { .. }));
    assert_eq!(QueueError::from(err).status(), Status::ChannelFull);
}

#[test]
fn corrupt_ring_file_is_moved_aside_and_others_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, _) = Queues::open(config(dir.path(), 0)).expect("open");
    queues
        .get_or_create("good", 4096)
        .expect("create")
        .push(b"kept")
        .expect("push");
    queues.get_or_create("bad", 4096).expect("create");
    queues.close().expect("close");
    std::fs::write(dir.path().join("bad.ring"), vec![0xffu8; 8192]).expect("damage");
    std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");

    let (mut queues, report) = Queues::open(config(dir.path(), 0)).expect("reopen");
    assert_eq!(report.rings, 1);
    assert_eq!(report.corrupt.len(), 1);
    assert!(
        report.corrupt[0].1.contains("bad magic"),
        "{:?}",
        report.corrupt
    );
    assert!(!dir.path().join("bad.ring").exists());
    let moved: Vec<_> = std::fs::read_dir(dir.path().join("corrupt"))
        .expect("corrupt dir")
        .collect();
    assert_eq!(moved.len(), 1);
    let ring = queues.get_mut("good").expect("good");
    assert_eq!(ring.pop().expect("pop"), Some(b"kept".to_vec()));
    // The storage can be created again, empty.
    assert!(queues
        .get_or_create("bad", 4096)
        .expect("recreate")
        .is_empty());
}

#[test]
fn reference_rq_files_decode_to_the_documented_content() {
    let expected = [
        ("@ch1.rq", "Hello ch1!"),
        ("sub1@ch1.rq", "Hello ch1!"),
        ("sub2@ch1.rq", "Hello ch1!"),
        ("@ch3.rq", "Hello ch3!"),
        ("ch2.rq", "Hello ch2!"),
    ];
    for (file, value) in expected {
        let bytes = std::fs::read(reference_dir().join(file)).expect("reference file");
        assert_eq!(bytes.len(), 30, "{file}");
        assert_eq!(
            rq::decode(&bytes).expect(file),
            vec![value.as_bytes().to_vec()],
            "{file}"
        );
    }
}

#[test]
fn reference_rq_files_import_into_rings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut queues, _) = Queues::open(config(dir.path(), 0)).expect("open");
    for file in ["@ch1.rq", "sub1@ch1.rq", "sub2@ch1.rq", "@ch3.rq", "ch2.rq"] {
        let n = queues
            .import_rq(&reference_dir().join(file), 100_000)
            .expect(file);
        assert_eq!(n, 1, "{file}");
    }
    assert_eq!(
        queues.names().collect::<Vec<_>>(),
        ["@ch1", "@ch3", "ch2", "sub1@ch1", "sub2@ch1"]
    );
    let ring = queues.get_mut("ch2").expect("ch2");
    assert_eq!(ring.pop().expect("pop"), Some(b"Hello ch2!".to_vec()));
    assert_eq!(ring.pop().expect("pop"), None);
    let err = queues
        .import_rq(&reference_dir().join("overflow.dat"), 100_000)
        .expect_err("not an .rq name");
    assert!(matches!(err, QueueError::BadName(_)));
}

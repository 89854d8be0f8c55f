//! A writer killed mid-blob (SIGKILL, no destructors) leaves nothing under the final name.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use cache::{ContentStore, Digest};

const CHILD_ENV: &str = "CAS_KILLED_WRITER_ROOT";

fn blob_data() -> Vec<u8> {
    (0..8_000_000u32).map(|i| (i % 253) as u8).collect()
}

/// In the child: write half the blob, flush, report, then hang until killed.
#[test]
fn child_writer_helper() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return; // only does something when run as the child
    };
    let cas = ContentStore::open(&root).unwrap();
    let data = blob_data();
    let mut w = cas.writer().unwrap();
    w.write_all(&data[..data.len() / 2]).unwrap();
    w.flush().unwrap();
    std::fs::write(std::path::Path::new(&root).join("child-ready"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(60));
    // Never reached in the test: the parent kills us first.
    w.write_all(&data[data.len() / 2..]).unwrap();
    w.commit(None).unwrap();
}

#[test]
fn killed_writer_leaves_no_blob() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_writer_helper", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .spawn()
        .unwrap();
    let ready = dir.path().join("child-ready");
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let cas = ContentStore::open(dir.path()).unwrap();
    let data = blob_data();
    let full = Digest::of_bytes(&data);
    let half = Digest::of_bytes(&data[..data.len() / 2]);
    assert!(!cas.has(&full));
    assert!(!cas.has(&half));
    assert_eq!(
        cas.iter().unwrap().count(),
        0,
        "no blob under any final name"
    );
    // The partial temp file is all that remains, and a later writer still succeeds.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        1
    );
    assert_eq!(cas.put_bytes(&data).unwrap(), full);
    assert_eq!(cas.read(&full).unwrap(), data);
}

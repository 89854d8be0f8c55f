//! `ADD <url>`: downloaded into a one-file layer, keyed by the body (an edited file on the server
//! misses, an unchanged one hits), `--checksum` verified.

mod common;

use common::{step, Fixture};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A tiny HTTP server answering every GET with the current body.
fn serve(body: Arc<Mutex<Vec<u8>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = body.lock().unwrap().clone();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    port
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn add_url_is_keyed_by_its_body_and_checksums_are_verified() {
    common::require_build();
    let body = Arc::new(Mutex::new(b"version 1\n".to_vec()));
    let port = serve(body.clone());
    let f = Fixture::new();
    let dockerfile = format!(
        "FROM busybox:local\nADD http://127.0.0.1:{port}/files/data.txt /data/\nRUN cat /data/data.txt > /copy.txt\n"
    );
    let ctx = f.context("url", &[("Dockerfile", &dockerfile)]);
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    assert_eq!(
        std::fs::read(out_dir.join("copy.txt")).unwrap(),
        b"version 1\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out_dir.join("data/data.txt"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "downloaded files are 0600, as Docker makes them"
    );

    let meta = f.build_ok(&ctx, &[]);
    assert_eq!(step(&meta, "ADD http")["cached"], true, "same body: cached");

    *body.lock().unwrap() = b"version 2\n".to_vec();
    let meta = f.build_ok(&ctx, &[]);
    assert_eq!(
        step(&meta, "ADD http")["cached"],
        false,
        "new body: rebuilt"
    );
    assert_eq!(step(&meta, "RUN cat")["cached"], false);

    let bad = format!(
        "FROM busybox:local\nADD --checksum=sha256:{} http://127.0.0.1:{port}/files/data.txt /x\n",
        "0".repeat(64)
    );
    std::fs::write(ctx.join("Dockerfile"), bad).unwrap();
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("checksum"), "{stderr}");
}

//! `builder login` / `logout` / `pull` / `push` against a real `docker-registry`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a registry; with `credentials`, basic auth from an htpasswd file.
fn start_registry(credentials: Option<(&str, &str)>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let htpasswd = dir.path().join("htpasswd");
    let auth = match credentials {
        Some((user, password)) => {
            let line = format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap());
            std::fs::write(&htpasswd, line).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            )
        }
        None => String::new(),
    };
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display(),
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let registry = Registry {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 401") || response.starts_with("HTTP/1.1 200") {
                return registry;
            }
        }
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn builder(config_dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_builder"))
        .args(args)
        .env("DOCKER_CONFIG", config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_checks_credentials_and_logout_removes_them() {
    let registry = start_registry(Some(("bob", "hunter2")));
    let server = format!("127.0.0.1:{}", registry.port);
    let config_dir = tempfile::tempdir().unwrap();
    let config_file = config_dir.path().join("config.json");

    let wrong = builder(
        config_dir.path(),
        &["login", "-u", "bob", "--password-stdin", &server],
        "nope\n",
    );
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains(&server),
        "{stderr}"
    );
    assert!(!config_file.exists());

    let ok = builder(
        config_dir.path(),
        &["login", "-u", "bob", "--password-stdin", &server],
        "hunter2\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Login Succeeded"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    assert!(config["auths"][&server]["auth"].is_string(), "{config}");

    let out = builder(config_dir.path(), &["logout", &server], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removing login credentials"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    assert!(config["auths"].get(&server).is_none(), "{config}");
}

/// Pushes a one-layer OCI image to `reference` with the registry client; returns its manifest
/// digest.
fn seed_image(reference: &str) -> String {
    use registry::{manifest, BlobStore, Descriptor, Digest, DirBlobStore, Manifest};
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let data = b"hello from a pulled layer\n";
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", &data[..])
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of_bytes(&layer).to_string()]},
        "history": [{"created_by": "seed"}],
    }))
    .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::of_bytes(manifest::OCI_CONFIG, &config),
        layers: vec![Descriptor::of_bytes(
            "application/vnd.oci.image.layer.v1.tar",
            &layer,
        )],
        subject: None,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    for bytes in [&layer, &config, &manifest_bytes] {
        store
            .ingest(&Digest::of_bytes(bytes), &mut bytes.as_slice())
            .unwrap();
    }
    let descriptor = Descriptor::of_bytes(manifest::OCI_MANIFEST, &manifest_bytes);
    let home = tempfile::tempdir().unwrap();
    let options = registry::ClientOptions {
        docker_config_dir: Some(home.path().to_path_buf()),
        ..registry::ClientOptions::default()
    };
    let client = registry::Client::new(options).unwrap();
    let reference = registry::parse_reference(reference).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.push(&reference, &descriptor, &store, &registry::no_progress))
        .unwrap();
    descriptor.digest.to_string()
}

fn run_ok(config_dir: &std::path::Path, args: &[&str]) -> String {
    let out = builder(config_dir, args, "");
    assert!(
        out.status.success(),
        "builder {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn pull_then_push_moves_only_missing_blobs() {
    let registry = start_registry(None);
    let host = format!("127.0.0.1:{}", registry.port);
    let source = format!("{host}/src/img:1");
    let manifest_digest = seed_image(&source);
    let config_dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();

    let out = run_ok(config_dir.path(), &["--root", root_arg, "pull", &source]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let out = run_ok(config_dir.path(), &["--root", root_arg, "pull", &source]);
    assert!(
        out.contains("Already exists") && !out.contains("Pull complete"),
        "{out}"
    );
    assert!(out.contains("Status: Image is up to date"), "{out}");
    let out = run_ok(config_dir.path(), &["--root", root_arg, "images"]);
    assert!(out.contains(&format!("{host}/src/img")), "{out}");

    // Pushing under another repository mounts the blobs instead of uploading them.
    let target = format!("{host}/dst/img:2");
    run_ok(
        config_dir.path(),
        &["--root", root_arg, "tag", &source, &target],
    );
    let out = run_ok(config_dir.path(), &["--root", root_arg, "push", &target]);
    assert!(out.contains("Mounted from src/img"), "{out}");
    assert!(
        out.contains(&format!("2: digest: {manifest_digest}")),
        "{out}"
    );
    let out = run_ok(config_dir.path(), &["--root", root_arg, "push", &target]);
    assert!(
        out.contains("Layer already exists") && !out.contains("Pushed"),
        "{out}"
    );

    let fresh = tempfile::tempdir().unwrap();
    let out = run_ok(
        config_dir.path(),
        &["--root", fresh.path().to_str().unwrap(), "pull", &target],
    );
    assert!(out.contains(&format!("Digest: {manifest_digest}")), "{out}");
}

//! A real `docker-registry` on a free loopback port with filesystem storage in a temp dir, and a
//! counting HTTP proxy in front of it, so transfers are counted from outside the client and
//! faults can be injected. Needs [`crate::Need::Registry`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `docker-registry serve`, killed on drop.
pub struct RegistryProcess {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RegistryProcess {
    /// Starts a registry; `htpasswd` enables basic auth with that file content.
    pub fn start(htpasswd: Option<&str>) -> RegistryProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = match htpasswd {
            Some(content) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, content).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: builder-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        RegistryProcess::start_in(dir, &auth)
    }

    /// Starts a registry in `dir` with a raw `auth:` config section (may be empty).
    pub fn start_in(dir: tempfile::TempDir, auth: &str) -> RegistryProcess {
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        let mut process = RegistryProcess {
            port,
            dir,
            child: None,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(
                    b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.1 401") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (storage stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request seen by the proxy.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    /// The `Range` header, if the request had one.
    pub range: Option<String>,
}

type Hook = Box<dyn FnMut(&SeenRequest) + Send>;

/// A counting HTTP/1.1 proxy in front of the registry: one request per connection (it forwards
/// with `Connection: close`), every request logged; it can corrupt one blob's body, answer 503 a
/// number of times, cut blob downloads short, and run a hook before forwarding.
#[derive(Clone)]
pub struct CountingProxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    /// The digest (`sha256:...`) of the one blob whose body is corrupted on the way, if any.
    pub corrupt_blob: Arc<Mutex<Option<String>>>,
    pub fail_blob_gets: Arc<Mutex<u32>>,
    /// Blob downloads to cut off halfway through the body.
    pub truncate_blob_gets: Arc<Mutex<u32>>,
    pub hook: Arc<Mutex<Option<Hook>>>,
}

impl CountingProxy {
    pub fn start(upstream_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = CountingProxy {
            port,
            seen: Arc::default(),
            corrupt_blob: Arc::default(),
            fail_blob_gets: Arc::default(),
            truncate_blob_gets: Arc::default(),
            hook: Arc::default(),
        };
        let shared = proxy.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = shared.clone();
                thread::spawn(move || {
                    let _ = handle(client, upstream_port, &shared);
                });
            }
        });
        proxy
    }

    pub fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Completed blob uploads: `PUT .../blobs/uploads/<id>?digest=...`.
    pub fn blob_uploads(&self) -> usize {
        self.count(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
    }

    /// Upload sessions started (plain `POST .../blobs/uploads/`, mounts excluded).
    pub fn upload_starts(&self) -> usize {
        self.count(|r| {
            r.method == "POST"
                && r.target.contains("/blobs/uploads/")
                && !r.target.contains("mount=")
        })
    }

    /// Mount requests.
    pub fn mount_requests(&self) -> usize {
        self.count(|r| r.method == "POST" && r.target.contains("mount="))
    }

    /// Blob downloads: `GET .../blobs/sha256:...`.
    pub fn blob_downloads(&self) -> usize {
        self.count(|r| r.method == "GET" && r.target.contains("/blobs/sha256:"))
    }

    pub fn blob_heads(&self) -> usize {
        self.count(|r| r.method == "HEAD" && r.target.contains("/blobs/sha256:"))
    }

    pub fn manifest_puts(&self) -> usize {
        self.count(|r| r.method == "PUT" && r.target.contains("/manifests/"))
    }

    fn count(&self, f: impl Fn(&SeenRequest) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|r| f(r)).count()
    }
}

fn handle(client: TcpStream, upstream_port: u16, proxy: &CountingProxy) -> std::io::Result<()> {
    let (seen, corrupt, fail, hook) = (
        &proxy.seen,
        &proxy.corrupt_blob,
        &proxy.fail_blob_gets,
        &proxy.hook,
    );
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let mut request = SeenRequest {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        range: None,
    };
    head.extend_from_slice(line.as_bytes());
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(());
        }
        if header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok();
        }
        if lower.starts_with("range:") {
            request.range = Some(header[6..].trim().to_string());
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        head.extend_from_slice(header.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    seen.lock().unwrap().push(request.clone());
    if let Some(hook) = hook.lock().unwrap().as_mut() {
        hook(&request);
    }
    let is_blob_get = request.method == "GET" && request.target.contains("/blobs/sha256:");
    if is_blob_get {
        let mut remaining = fail.lock().unwrap();
        if *remaining > 0 {
            *remaining -= 1;
            let mut client = client;
            client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        // Registry gone: drop the client's connection, as a dead server would.
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    };
    upstream.write_all(&head)?;
    if let Some(n) = content_length {
        let mut body = (&mut reader).take(n as u64);
        std::io::copy(&mut body, &mut upstream)?;
    } else if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            upstream.write_all(size_line.as_bytes())?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                loop {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer)?;
                    upstream.write_all(trailer.as_bytes())?;
                    if trailer == "\r\n" || trailer.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            upstream.write_all(&chunk)?;
        }
    }
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let corrupt_this = corrupt
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|d| is_blob_get && request.target.ends_with(d.as_str()));
    if corrupt_this && response.starts_with(b"HTTP/1.1 200") {
        if let Some(last) = response.last_mut() {
            *last ^= 0xff;
        }
    }
    let truncate_this = is_blob_get && response.starts_with(b"HTTP/1.1 200") && {
        let mut remaining = proxy.truncate_blob_gets.lock().unwrap();
        let hit = *remaining > 0;
        *remaining = remaining.saturating_sub(1);
        hit
    };
    if truncate_this {
        // Head plus half the body, then the connection drops.
        let body_start = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        let cut = body_start + (response.len() - body_start) / 2;
        response.truncate(cut);
    }
    let mut client = client;
    client.write_all(&response)?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

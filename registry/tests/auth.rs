//! Authentication against a real registry: basic auth from an htpasswd file, login and logout
//! through the Docker config.

mod common;

use common::*;
use registry::{parse_reference, DirBlobStore, RegistryError};

fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap())
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn basic_auth_login_push_pull_logout() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(Some(&htpasswd_line("alice", "s3cret")));
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[60, 61], 8 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/private/app:1", registry.address())).unwrap();

    // Anonymous: refused with a hint to log in.
    let err = client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("builder login"), "{err}");

    // Wrong password: refused, nothing written.
    let err = client
        .login(&registry.address(), "alice", "wrong")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(!home.path().join("config.json").exists());

    // Right password: stored in `auths`, then used for push and pull.
    client
        .login(&registry.address(), "alice", "s3cret")
        .await
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert!(
        config["auths"][registry.address()]["auth"].is_string(),
        "{config}"
    );
    client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let pulled = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.descriptor.digest, image.manifest.digest);

    // Logout removes the entry; access is refused again.
    assert!(client.logout(&registry.address()).unwrap());
    assert!(!client.logout(&registry.address()).unwrap());
    let fresh = test_client(home.path());
    let err = fresh
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

/// A token server in the style of Docker Hub's `auth.docker.io/token`: checks basic credentials
/// and issues an RS256 JWT (signed with `openssl`, certificate chain in `x5c`) granting the
/// requested repository actions to `alice`, nothing to anyone else.
struct TokenServer {
    port: u16,
    queries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn start_token_server(dir: &std::path::Path) -> TokenServer {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=builder-test-token",
        ],
    );
    let cert_pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let cert_der_b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key_path = dir.join("key.pem");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = queries.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut user = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(value) = header
                    .strip_prefix("authorization: Basic ")
                    .or(header.strip_prefix("Authorization: Basic "))
                {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(value.trim())
                        .unwrap_or_default();
                    user = Some(String::from_utf8_lossy(&decoded).to_string());
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            seen.lock().unwrap().push(target.clone());
            let url = url::Url::parse(&format!("http://x{target}")).unwrap();
            let mut stream = stream;
            let authorized = match user.as_deref() {
                Some("alice:s3cret") => true,
                Some(_) => {
                    let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                None => false,
            };
            let service = url
                .query_pairs()
                .find(|(k, _)| k == "service")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let access: Vec<serde_json::Value> = url
                .query_pairs()
                .filter(|(k, _)| k == "scope")
                .filter(|_| authorized)
                .flat_map(|(_, scope)| {
                    scope
                        .split(' ')
                        .filter_map(|one| {
                            let mut parts = one.splitn(3, ':');
                            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [cert_der_b64]});
            let claims = serde_json::json!({
                "iss": "builder-test-issuer", "sub": if authorized { "alice" } else { "" }, "aud": service,
                "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", seen.lock().unwrap().len()),
                "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                b64url(&serde_json::to_vec(&header).unwrap()),
                b64url(&serde_json::to_vec(&claims).unwrap())
            );
            let mut child = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key_path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(signing_input.as_bytes())
                .unwrap();
            let signature = child.wait_with_output().unwrap().stdout;
            let body = serde_json::json!({"token": format!("{signing_input}.{}", b64url(&signature)), "expires_in": 600}).to_string();
            let _ = stream.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    .as_bytes(),
            );
        }
    });
    TokenServer { port, queries }
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn bearer_token_auth_with_scoped_tokens() {
    test_support::require(&[test_support::Need::Registry]);
    let dir = tempfile::tempdir().unwrap();
    let tokens = start_token_server(dir.path());
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: builder-test-registry\n    issuer: builder-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        dir.path().join("cert.pem").display()
    );
    let registry = RegistryProcess::start_in(dir, &auth);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[70, 71], 8 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/tok/app:1", registry.address())).unwrap();

    let err = client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("builder login"), "{err}");

    let err = client
        .login(&registry.address(), "alice", "wrong")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    client
        .login(&registry.address(), "alice", "s3cret")
        .await
        .unwrap();

    tokens.queries.lock().unwrap().clear();
    client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();
    let queries = tokens.queries.lock().unwrap().clone();
    println!("token requests for one push: {}", queries.len());
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains("scope=repository%3Atok%2Fapp%3Apull%2Cpush"),
        "{queries:?}"
    );
    assert!(
        queries[0].contains("service=builder-test-registry"),
        "{queries:?}"
    );

    let store_dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(store_dir.path());
    let pulled = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.descriptor.digest, image.manifest.digest);
}

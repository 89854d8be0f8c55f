//! `build --load`: hands the built image to the local Docker engine as `docker build` does, by
//! streaming a docker-archive to the engine API's `POST /images/load` over its socket
//! (`DOCKER_HOST` honoured: `unix://PATH` or `tcp://HOST:PORT`; default
//! `unix:///var/run/docker.sock`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};

/// The socket `docker` uses when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Why the image could not be loaded into Docker.
#[derive(Debug, thiserror::Error)]
pub enum DockerLoadError {
    /// Nothing listens where the engine should be.
    #[error(
        "cannot load into Docker: no engine answers at {host} (is dockerd running? set DOCKER_HOST)"
    )]
    NoEngine {
        /// The engine address as given (`unix:///var/run/docker.sock`).
        host: String,
        /// What connecting said.
        #[source]
        source: std::io::Error,
    },
    /// `DOCKER_HOST` names a transport this client does not speak.
    #[error(
        "cannot load into Docker: DOCKER_HOST={0} is not supported (use unix:///PATH or \
         tcp://HOST:PORT)"
    )]
    UnsupportedHost(String),
    /// The HTTP exchange with the engine failed.
    #[error("cannot load into Docker at {host}: {message}")]
    Http {
        /// The engine address.
        host: String,
        /// What failed.
        message: String,
    },
    /// Something answers there, but not as a Docker engine does.
    #[error("cannot load into Docker: {host} is not a Docker engine (GET /_ping: {answer})")]
    NotAnEngine {
        /// The address.
        host: String,
        /// What it answered.
        answer: String,
    },
    /// The engine answered with an error.
    #[error("Docker at {host} refused the image: {message}")]
    Engine {
        /// The engine address.
        host: String,
        /// The engine's message.
        message: String,
    },
    /// Writing the archive to stream.
    #[error("cannot load into Docker: writing the image archive: {0}")]
    Archive(String),
}

/// Where the Docker engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket.
    Unix(PathBuf),
    /// A plain TCP address (`HOST:PORT`).
    Tcp(String),
}

impl DockerHost {
    /// From `DOCKER_HOST` (set and not empty), else the default socket.
    pub fn from_env() -> Result<DockerHost, DockerLoadError> {
        match std::env::var("DOCKER_HOST") {
            Ok(v) if !v.is_empty() => DockerHost::parse(&v),
            _ => DockerHost::parse(DEFAULT_DOCKER_HOST),
        }
    }

    /// Parses a `DOCKER_HOST` value.
    pub fn parse(value: &str) -> Result<DockerHost, DockerLoadError> {
        if let Some(path) = value.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(DockerHost::Unix(PathBuf::from(path)));
            }
        } else if let Some(address) = value.strip_prefix("tcp://") {
            let address = address.trim_end_matches('/');
            if !address.is_empty() {
                return Ok(DockerHost::Tcp(address.to_string()));
            }
        }
        Err(DockerLoadError::UnsupportedHost(value.to_string()))
    }

    /// The address as `DOCKER_HOST` spells it.
    pub fn shown(&self) -> String {
        match self {
            DockerHost::Unix(p) => format!("unix://{}", p.display()),
            DockerHost::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// Any connection the engine can be reached over.
trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

async fn connect(host: &DockerHost) -> Result<Box<dyn Connection>, DockerLoadError> {
    let no_engine = |source| DockerLoadError::NoEngine {
        host: host.shown(),
        source,
    };
    Ok(match host {
        DockerHost::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(no_engine)?,
        ),
        DockerHost::Tcp(address) => Box::new(
            tokio::net::TcpStream::connect(address.as_str())
                .await
                .map_err(no_engine)?,
        ),
    })
}

/// One request to the engine; returns the status and the whole body.
async fn request<B>(
    host: &DockerHost,
    request: hyper::Request<B>,
) -> Result<(hyper::StatusCode, Bytes), DockerLoadError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = |e: &dyn std::fmt::Display| DockerLoadError::Http {
        host: host.shown(),
        message: e.to_string(),
    };
    let stream = connect(host).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| http(&e))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// Checks that an engine answers at `host` (`GET /_ping`), before a build spends its time.
pub async fn ping(host: &DockerHost) -> Result<(), DockerLoadError> {
    let req = hyper::Request::get("/_ping")
        .header(hyper::header::HOST, "docker")
        .body(Full::new(Bytes::new()))
        .map_err(|e| DockerLoadError::Http {
            host: host.shown(),
            message: e.to_string(),
        })?;
    let (status, body) = request(host, req).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        return Err(DockerLoadError::NotAnEngine {
            host: host.shown(),
            answer: if text.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {}", text.chars().take(200).collect::<String>())
            },
        });
    }
    Ok(())
}

/// Bytes per chunk of the request body.
const CHUNK: usize = 256 * 1024;

/// A `Write` that hands what is written, in chunks, to the request body being sent.
struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Frame<Bytes>>>,
    buf: Vec<u8>,
}

impl BodyWriter {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(Frame::data(chunk)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

/// Streams the docker-archive that `write` produces (on a blocking thread, as it is written, with
/// no copy on disk) to the engine; returns what the engine reported (`Loaded image: NAME`, one
/// line per image or name).
pub async fn load<F>(host: &DockerHost, write: F) -> Result<Vec<String>, DockerLoadError>
where
    F: FnOnce(&mut dyn std::io::Write) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Frame<Bytes>>>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut body = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write(&mut body)
            .and_then(|()| std::io::Write::flush(&mut body).map_err(|e| e.to_string()));
        if let Err(message) = &result {
            // The engine must not take a truncated archive for a whole one.
            let _ = tx.blocking_send(Err(std::io::Error::other(message.clone())));
        }
        result
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let req = hyper::Request::post("/images/load")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(StreamBody::new(chunks))
        .map_err(|e| DockerLoadError::Http {
            host: host.shown(),
            message: e.to_string(),
        })?;
    let answer = request(host, req).await;
    let written = match writer.await {
        Ok(result) => result,
        Err(e) => Err(e.to_string()),
    };
    let (status, body) = match answer {
        Ok(answer) => answer,
        // A failed write explains a broken exchange better than the exchange does.
        Err(e) => return Err(written.err().map_or(e, DockerLoadError::Archive)),
    };
    // What the engine says first: it may have refused the archive before reading it all.
    let (messages, error) = read_progress(&body);
    if let Some(message) = error {
        return Err(DockerLoadError::Engine {
            host: host.shown(),
            message,
        });
    }
    if !status.is_success() {
        return Err(DockerLoadError::Engine {
            host: host.shown(),
            message: format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
        });
    }
    written.map_err(DockerLoadError::Archive)?;
    Ok(messages)
}

/// The engine's answer to a load: a JSON message per line, `{"stream": "Loaded image: x\n"}`,
/// or an error (`{"error": "...", "errorDetail": {...}}`), or (older engines) one JSON error
/// object. Returns the stream lines and the first error.
fn read_progress(body: &[u8]) -> (Vec<String>, Option<String>) {
    let mut messages = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for value in stream {
        let Ok(value) = value else {
            break;
        };
        if let Some(error) = value["error"].as_str().or(value["message"].as_str()) {
            return (messages, Some(error.to_string()));
        }
        if let Some(text) = value["stream"].as_str() {
            messages.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
    }
    (messages, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            DockerHost::parse("unix:///run/d.sock").unwrap(),
            DockerHost::Unix("/run/d.sock".into())
        );
        assert_eq!(
            DockerHost::parse("tcp://127.0.0.1:2375").unwrap(),
            DockerHost::Tcp("127.0.0.1:2375".into())
        );
        for bad in [
            "ssh://me@host",
            "unix://relative",
            "tcp://",
            "/var/run/docker.sock",
        ] {
            assert!(
                matches!(
                    DockerHost::parse(bad),
                    Err(DockerLoadError::UnsupportedHost(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn engine_messages_and_errors() {
        let ok = br#"{"stream":"Loaded image: app:1\n"}
{"stream":"Loaded image ID: sha256:abc\n"}"#;
        assert_eq!(
            read_progress(ok),
            (
                vec![
                    "Loaded image: app:1".to_string(),
                    "Loaded image ID: sha256:abc".to_string()
                ],
                None
            )
        );
        let bad = br#"{"errorDetail":{"message":"bad archive"},"error":"bad archive"}"#;
        assert_eq!(read_progress(bad).1.as_deref(), Some("bad archive"));
    }

    #[test]
    fn a_server_that_is_no_engine_is_named_as_such() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found")
                .unwrap();
        });
        let host = DockerHost::Tcp(address.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime.block_on(ping(&host)).unwrap_err();
        server.join().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot load into Docker: tcp://{address} is not a Docker engine (GET /_ping: \
                 404 Not Found: not found)"
            )
        );
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = DockerHost::Unix(dir.path().join("none.sock"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime.block_on(ping(&host)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot load into Docker: no engine answers at unix://{}/none.sock (is dockerd \
                 running? set DOCKER_HOST)",
                dir.path().display()
            )
        );
    }
}

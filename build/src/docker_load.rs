//! `build --load`: hands the built image to the local Docker engine as `docker build` does, by
//! streaming a docker-archive to the engine API's `POST /images/load` over its socket
//! (`DOCKER_HOST` honoured: `unix://PATH` or `tcp://HOST:PORT`; default
//! `unix:///var/run/docker.sock`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
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
        return Err(DockerLoadError::Engine {
            host: host.shown(),
            message: format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
        });
    }
    Ok(())
}

/// Streams the docker-archive at `archive` to the engine; returns what the engine reported
/// (`Loaded image: NAME`, one line per image or name).
pub async fn load(host: &DockerHost, archive: &Path) -> Result<Vec<String>, DockerLoadError> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| DockerLoadError::Archive(format!("{}: {e}", archive.display())))?;
    let chunks = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let req = hyper::Request::post("/images/load")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(StreamBody::new(chunks))
        .map_err(|e| DockerLoadError::Http {
            host: host.shown(),
            message: e.to_string(),
        })?;
    let (status, body) = request(host, req).await?;
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

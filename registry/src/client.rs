//! The registry client: options (insecure registries, Docker config location, retry policy,
//! platform), the shared HTTP connection pool and token cache, and `login`/`logout`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use url::Url;

use crate::auth::{self, Credentials};
use crate::error::RegistryError;
use crate::manifest::Platform;
use crate::progress::no_progress;
use crate::reference::{registry_api_host, DOCKER_HUB_DOMAIN};
use crate::session::{error_message, Session};

/// Environment variable listing registries reached over plain HTTP (comma separated).
pub const INSECURE_REGISTRIES_ENV: &str = "BUILDER_INSECURE_REGISTRIES";

/// How the client talks to registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback hosts always are.
    pub insecure_registries: Vec<String>,
    /// Where `config.json` lives; `None` means `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// Attempts per request before giving up on connection errors and 5xx answers.
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// The platform chosen from multi-platform images.
    pub platform: Platform,
    /// Blobs transferred at the same time.
    pub max_concurrent_transfers: usize,
    /// Give up on a connection attempt after this long.
    pub connect_timeout: Duration,
    /// Give up on a transfer when no byte arrives for this long.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            docker_config_dir: None,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            platform: Platform::host(),
            max_concurrent_transfers: 3,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

impl ClientOptions {
    /// Defaults plus the registries listed in `BUILDER_INSECURE_REGISTRIES`.
    pub fn from_env() -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Ok(list) = std::env::var(INSECURE_REGISTRIES_ENV) {
            options
                .insecure_registries
                .extend(parse_insecure_registries(&list));
        }
        options
    }
}

/// Parses a comma-separated list of insecure registries (`host`, `host:port`, or with an
/// `http://` prefix and trailing slash, which are dropped).
pub fn parse_insecure_registries(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .map(|entry| {
            entry
                .strip_prefix("http://")
                .or_else(|| entry.strip_prefix("https://"))
                .unwrap_or(entry)
                .trim_end_matches('/')
        })
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

/// A registry client. Cheap to share by reference; holds the connection pool and bearer tokens.
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
    tokens: Mutex<HashMap<(String, String), HeaderValue>>,
}

/// Whether `registry` (`host[:port]`) is a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The registry domain a user typed for `login`/`logout` (`https://index.docker.io/v1/` and
/// `index.docker.io` mean `docker.io`).
pub fn normalize_registry(input: &str) -> String {
    let stripped = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .unwrap_or(input);
    let host = stripped.split('/').next().unwrap_or(stripped);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
            DOCKER_HUB_DOMAIN.to_string()
        }
        other => other.to_string(),
    }
}

impl Client {
    /// A client with `options` (TLS through rustls with the Mozilla roots).
    pub fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("builder/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()
            .map_err(RegistryError::ClientSetup)?;
        Ok(Client {
            http,
            options,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether `registry` is reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        if is_loopback(registry) {
            return true;
        }
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        self.options
            .insecure_registries
            .iter()
            .any(|entry| entry == registry || entry == host)
    }

    /// `scheme://api-host/` for a registry domain.
    pub fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        let text = format!("{scheme}://{}/", registry_api_host(registry));
        Url::parse(&text).map_err(|e| RegistryError::Protocol {
            registry: registry.to_string(),
            what: "registry address".to_string(),
            message: e.to_string(),
        })
    }

    /// Credentials for `registry` from the Docker config (helpers run off the async threads).
    pub(crate) async fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let dir = auth::config_dir(self.options.docker_config_dir.as_deref());
        let dir = match dir {
            Ok(dir) => dir,
            // No home directory: anonymous access, as Docker does.
            Err(auth::AuthError::NoConfigDir) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let registry = registry.to_string();
        tokio::task::spawn_blocking(move || auth::lookup_credentials(&dir, &registry))
            .await
            .map_err(|e| {
                RegistryError::Auth(auth::AuthError::Helper {
                    helper: "lookup".into(),
                    server: "registry".into(),
                    message: e.to_string(),
                })
            })?
            .map_err(RegistryError::from)
    }

    pub(crate) fn cached_token(&self, registry: &str, scope: &str) -> Option<HeaderValue> {
        self.tokens
            .lock()
            .ok()?
            .get(&(registry.to_string(), scope.to_string()))
            .cloned()
    }

    pub(crate) fn store_token(&self, registry: &str, scope: &str, value: HeaderValue) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert((registry.to_string(), scope.to_string()), value);
        }
    }

    /// Checks `username`/`password` against `registry` (`GET /v2/`, answering its basic or bearer
    /// challenge) and, when accepted, stores them in the `auths` section of the Docker config.
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let registry = normalize_registry(registry);
        let credentials = Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        let session = Session::bare(self, &registry, Some(credentials), &no_progress)?;
        let ping = session.url("/v2/")?;
        let what = "logging in";
        let response = session.send(what, || self.http.get(ping.clone())).await?;
        if !response.status().is_success() {
            if response.status() == StatusCode::UNAUTHORIZED {
                return Err(RegistryError::Unauthorized {
                    registry: registry.clone(),
                    what: what.to_string(),
                    message: format!(
                        "credentials for `{username}` were refused: {}",
                        error_message(response).await
                    ),
                });
            }
            return Err(session.fail(response, what).await);
        }
        let dir = auth::config_dir(self.options.docker_config_dir.as_deref())?;
        auth::store_credentials(&dir, &registry, username, password)?;
        Ok(())
    }

    /// Removes the stored credentials for `registry`. Returns whether there were any.
    pub fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let registry = normalize_registry(registry);
        let dir = auth::config_dir(self.options.docker_config_dir.as_deref())?;
        Ok(auth::remove_credentials(&dir, &registry)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_http_for_loopback_and_insecure_registries() {
        let client = Client::new(ClientOptions {
            insecure_registries: vec!["reg.internal".into(), "other:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        for (registry, expected) in [
            ("localhost:5000", "http://localhost:5000/"),
            ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
            ("[::1]:5000", "http://[::1]:5000/"),
            ("reg.internal:443", "http://reg.internal:443/"),
            ("other:5000", "http://other:5000/"),
            ("other:6000", "https://other:6000/"),
            ("ghcr.io", "https://ghcr.io/"),
            ("docker.io", "https://registry-1.docker.io/"),
        ] {
            assert_eq!(
                client.base_url(registry).unwrap().as_str(),
                expected,
                "{registry}"
            );
        }
    }

    #[test]
    fn parses_insecure_registry_lists() {
        assert_eq!(
            parse_insecure_registries(" a.example:5000, ,http://b.internal/,c "),
            vec!["a.example:5000", "b.internal", "c"]
        );
    }

    #[test]
    fn transfer_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let client = Client::new(ClientOptions::default()).unwrap();
        let store = crate::store::DirBlobStore::new("/nonexistent");
        let reference = crate::reference::parse_reference("localhost:1/x").unwrap();
        let pull = client.pull(&reference, &store, &no_progress);
        assert_send(&pull);
        let descriptor =
            crate::manifest::Descriptor::of_bytes(crate::manifest::OCI_MANIFEST, b"{}");
        let push = client.push(&reference, &descriptor, &store, &no_progress);
        assert_send(&push);
        let artifact = client.pull_artifact(&reference, &store, &no_progress);
        assert_send(&artifact);
    }

    #[test]
    fn normalises_login_registry_names() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("localhost:5000"), "localhost:5000");
        assert_eq!(
            normalize_registry("http://localhost:5000/v2/"),
            "localhost:5000"
        );
    }
}

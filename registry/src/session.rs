//! One authenticated conversation with one repository on one registry: picks the scheme, answers
//! the registry's authentication challenge (basic, or bearer token for
//! `repository:<name>:<actions>`), and sends requests with bounded exponential-backoff retries on
//! connection errors and 5xx answers.

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::auth::{self, parse_challenges, Challenge, Credentials};
use crate::client::Client;
use crate::error::RegistryError;
use crate::progress::{Progress, ProgressEvent};
use crate::reference::Reference;

/// An authenticated channel to one repository.
pub(crate) struct Session<'a> {
    pub(crate) client: &'a Client,
    /// Registry domain as in references (`docker.io`, `localhost:5000`).
    pub(crate) registry: String,
    /// `scheme://api-host` of the registry.
    pub(crate) base: Url,
    /// Repository path (`library/alpine`).
    pub(crate) repository: String,
    scopes: Vec<String>,
    credentials: Option<Credentials>,
    authorization: std::sync::Mutex<Option<HeaderValue>>,
    pub(crate) progress: Progress<'a>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Whether a transport error may go away on retry (connection refused/reset, timeouts, a body
/// cut short). Request-building and redirect-loop errors will not.
pub(crate) fn is_retryable(error: &reqwest::Error) -> bool {
    !(error.is_builder() || error.is_redirect() || error.is_decode())
}

impl<'a> Session<'a> {
    /// A session that may read `reference`'s repository.
    pub(crate) async fn for_pull(
        client: &'a Client,
        reference: &Reference,
        progress: Progress<'a>,
    ) -> Result<Session<'a>, RegistryError> {
        Session::open(
            client,
            reference.domain(),
            reference.path(),
            "pull",
            Vec::new(),
            progress,
        )
        .await
    }

    /// Opens a session for `repository` with `actions` (`pull`, `pull,push`), plus any extra
    /// scopes (pull access to a mount source). Pings `/v2/` and authenticates if challenged.
    pub(crate) async fn open(
        client: &'a Client,
        registry: &str,
        repository: &str,
        actions: &str,
        extra_scopes: Vec<String>,
        progress: Progress<'a>,
    ) -> Result<Session<'a>, RegistryError> {
        let base = client.base_url(registry)?;
        let credentials = client.credentials_for(registry).await?;
        let mut scopes = vec![format!("repository:{repository}:{actions}")];
        scopes.extend(extra_scopes);
        let session = Session {
            client,
            registry: registry.to_string(),
            base,
            repository: repository.to_string(),
            scopes,
            credentials,
            authorization: std::sync::Mutex::new(None),
            progress,
        };
        if let Some(cached) = client.cached_token(registry, &session.scope_key()) {
            session.set_authorization(Some(cached));
            return Ok(session);
        }
        let ping = session.url("/v2/")?;
        let response = session
            .send_unauthenticated("checking the registry API", || {
                client.http().get(ping.clone())
            })
            .await?;
        match response.status() {
            StatusCode::UNAUTHORIZED => {
                session
                    .authenticate(&response, "checking the registry API")
                    .await?
            }
            status if status.is_success() => {}
            status => {
                return Err(RegistryError::Status {
                    registry: registry.to_string(),
                    what: "checking the registry API (GET /v2/)".to_string(),
                    status: status.as_u16(),
                    message: error_message(response).await,
                })
            }
        }
        Ok(session)
    }

    /// A session that only pings and authenticates without a repository scope (for login).
    pub(crate) fn bare(
        client: &'a Client,
        registry: &str,
        credentials: Option<Credentials>,
        progress: Progress<'a>,
    ) -> Result<Session<'a>, RegistryError> {
        Ok(Session {
            client,
            registry: registry.to_string(),
            base: client.base_url(registry)?,
            repository: String::new(),
            scopes: Vec::new(),
            credentials,
            authorization: std::sync::Mutex::new(None),
            progress,
        })
    }

    /// Token cache key: the scopes and who asked (an anonymous token must not serve a
    /// logged-in user, nor one user's token another).
    fn scope_key(&self) -> String {
        let who = match &self.credentials {
            None => "",
            Some(Credentials::Basic { username, .. }) => username.as_str(),
            Some(Credentials::IdentityToken(_)) => "<token>",
        };
        format!("{who}@{}", self.scopes.join(" "))
    }

    /// An absolute URL on this registry.
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            what: format!("URL path `{path}`"),
            message: e.to_string(),
        })
    }

    /// `/v2/<repository>/<rest>` on this registry.
    pub(crate) fn repo_url(&self, rest: &str) -> Result<Url, RegistryError> {
        self.url(&format!("/v2/{}/{rest}", self.repository))
    }

    /// Whether `url` is on this registry (same scheme, host and port as the API base).
    fn is_registry_url(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    fn set_authorization(&self, value: Option<HeaderValue>) {
        if let Ok(mut guard) = self.authorization.lock() {
            *guard = value;
        }
    }

    fn authorization(&self) -> Option<HeaderValue> {
        self.authorization
            .lock()
            .ok()
            .and_then(|guard| guard.clone())
    }

    /// Answers the challenge in a 401 response.
    pub(crate) async fn authenticate(
        &self,
        response: &Response,
        what: &str,
    ) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let unauthorized = |message: String| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            what: what.to_string(),
            message,
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(bearer, what).await?;
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                unauthorized("the token endpoint returned an unusable token".into())
            })?;
            self.client
                .store_token(&self.registry, &self.scope_key(), value.clone());
            self.set_authorization(Some(value));
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(Credentials::Basic { username, password }) = &self.credentials else {
                return Err(unauthorized(format!(
                    "the registry requires a user name and password; run `builder login {}`",
                    self.registry
                )));
            };
            self.set_authorization(Some(basic_header(username, password)?));
            return Ok(());
        }
        Err(unauthorized(
            "401 Unauthorized without a supported WWW-Authenticate challenge".to_string(),
        ))
    }

    /// Gets a bearer token from the challenge's realm for this session's scopes.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        what: &str,
    ) -> Result<String, RegistryError> {
        let unauthorized = |message: String| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            what: what.to_string(),
            message,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| unauthorized("bearer challenge without a realm".to_string()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| unauthorized(format!("bearer realm `{realm}` is not a URL: {e}")))?;
        let service = challenge.params.get("service").cloned();
        let http = self.client.http();
        let request = match &self.credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "builder".to_string()),
                ];
                if let Some(service) = &service {
                    form.push(("service", service.clone()));
                }
                if !self.scopes.is_empty() {
                    form.push(("scope", self.scopes.join(" ")));
                }
                http.post(url).form(&form)
            }
            credentials => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = &service {
                        query.append_pair("service", service);
                    }
                    for scope in &self.scopes {
                        query.append_pair("scope", scope);
                    }
                    if self.scopes.is_empty() {
                        query.append_pair("offline_token", "true");
                        query.append_pair("client_id", "builder");
                    }
                }
                let request = http.get(url);
                match credentials {
                    Some(Credentials::Basic { username, password }) => {
                        request.basic_auth(username, Some(password))
                    }
                    _ => request,
                }
            }
        };
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                registry: self.registry.clone(),
                what: format!("requesting a token from {realm}"),
                attempts: 1,
                message: error_chain(&source),
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(unauthorized(format!(
                "the token endpoint {realm} refused the credentials ({status})"
            )));
        }
        if !status.is_success() {
            return Err(unauthorized(format!(
                "the token endpoint {realm} answered {status}: {}",
                error_message(response).await
            )));
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| unauthorized(format!("unreadable token response from {realm}: {e}")))?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized(format!("the token endpoint {realm} returned no token")))
    }

    async fn send_unauthenticated(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_inner(what, make, self.client.options().max_attempts, false)
            .await
    }

    /// Sends a request built by `make` (called again for each attempt), retrying connection
    /// errors and 5xx answers with exponential backoff, and answering one 401 challenge.
    pub(crate) async fn send(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_inner(what, make, self.client.options().max_attempts, true)
            .await
    }

    /// Sends once (no retry of transport errors or 5xx), still answering one 401 challenge. For
    /// requests that cannot simply be repeated, such as the PUT that completes an upload.
    pub(crate) async fn send_once(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_inner(what, make, 1, true).await
    }

    async fn send_inner(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
        max_attempts: u32,
        authenticated: bool,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let (http, request) = make().build_split();
            let outcome = match request {
                Ok(mut request) => {
                    // Credentials go only to the registry itself, never to another host an
                    // upload `Location` may point at (object stores, CDNs).
                    if authenticated && self.is_registry_url(request.url()) {
                        if let Some(value) = self.authorization() {
                            request.headers_mut().insert(AUTHORIZATION, value);
                        }
                    }
                    http.execute(request).await
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(response) if response.status().is_server_error() && attempt < max_attempts => {
                    let error = format!("{} {}", response.status(), error_message(response).await);
                    self.back_off(what, attempt, error).await;
                }
                Ok(response)
                    if authenticated
                        && response.status() == StatusCode::UNAUTHORIZED
                        && !reauthenticated =>
                {
                    reauthenticated = true;
                    attempt -= 1;
                    self.authenticate(&response, what).await?;
                }
                Ok(response) => return Ok(response),
                Err(error) if is_retryable(&error) && attempt < max_attempts => {
                    self.back_off(what, attempt, error_chain(&error)).await;
                }
                Err(source) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.registry.clone(),
                        what: what.to_string(),
                        attempts: attempt,
                        message: error_chain(&source),
                    })
                }
            }
        }
    }

    /// Waits before retry number `attempt + 1`, announcing it.
    pub(crate) async fn back_off(&self, what: &str, attempt: u32, error: String) {
        let options = self.client.options();
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let delay = options
            .initial_backoff
            .saturating_mul(factor)
            .min(options.max_backoff);
        (self.progress)(ProgressEvent::Retrying {
            what: what.to_string(),
            attempt: attempt + 1,
            delay,
            error,
        });
        tokio::time::sleep(delay).await;
    }

    /// Turns a non-success response into the matching error.
    pub(crate) async fn fail(&self, response: Response, what: &str) -> RegistryError {
        let status = response.status();
        let message = error_message(response).await;
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let mut text = status.to_string();
                if !message.is_empty() {
                    text.push_str(": ");
                    text.push_str(&message);
                }
                if self.credentials.is_none() {
                    text.push_str(&format!(
                        " (no credentials for {}; run `builder login {}`)",
                        self.registry, self.registry
                    ));
                }
                RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    message: text,
                }
            }
            _ => RegistryError::Status {
                registry: self.registry.clone(),
                what: what.to_string(),
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// An `Authorization: Basic` header value.
pub(crate) fn basic_header(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
        RegistryError::Auth(auth::AuthError::InvalidConfig {
            path: "credentials".into(),
            message: "credentials contain characters not allowed in a header".into(),
        })
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The registry's error message from a response body (`{"errors":[{"code","message"}]}`), or the
/// start of the body as text.
pub(crate) async fn error_message(response: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(body) = response.text().await else {
        return String::new();
    };
    if let Ok(parsed) = serde_json::from_str::<Errors>(&body) {
        return parsed
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; ");
    }
    body.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The error and its causes in one line (reqwest's top-level message alone is vague).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientOptions;
    use crate::progress::no_progress;

    #[test]
    fn credentials_stay_on_the_registry_host() {
        let client = Client::new(ClientOptions::default()).unwrap();
        let session = Session::bare(&client, "localhost:5000", None, &no_progress).unwrap();
        let on = |u: &str| session.is_registry_url(&Url::parse(u).unwrap());
        assert!(on("http://localhost:5000/v2/x/blobs/uploads/abc?_state=1"));
        assert!(!on("http://localhost:5001/v2/x/blobs/uploads/abc"));
        assert!(!on("https://localhost:5000/v2/"));
        assert!(!on("http://storage.example/bucket/blob"));
        let hub = Session::bare(&client, "docker.io", None, &no_progress).unwrap();
        assert!(hub.is_registry_url(&Url::parse("https://registry-1.docker.io:443/v2/").unwrap()));
    }

    #[test]
    fn error_chain_includes_causes() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert!(error_chain(&outer).contains("refused"));
    }
}

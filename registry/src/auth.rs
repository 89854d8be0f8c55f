//! Registry credentials and authentication challenges.
//!
//! Credentials come from Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): a per-registry credential helper (`credHelpers`), else the default
//! helper (`credsStore`), else the base64 `user:password` in `auths` (or an `identitytoken`).
//! Helpers are run as `docker-credential-<name> get` with the server URL on stdin, as Docker does.
//! Challenges are parsed from `WWW-Authenticate` headers (RFC 7235 auth-params).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::{DOCKER_HUB_CONFIG_KEY, DOCKER_HUB_DOMAIN};

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Neither `$DOCKER_CONFIG` nor `$HOME` is set.
    #[error("cannot locate the Docker config directory: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
    /// The config file exists but could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("invalid Docker config {path}: {message}")]
    InvalidConfig { path: PathBuf, message: String },
    /// A credential helper could not be run or failed.
    #[error("credential helper `docker-credential-{helper}` failed for {server}: {message}")]
    Helper {
        helper: String,
        server: String,
        message: String,
    },
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// User name and password (or personal access token), sent as basic auth or to the token
    /// endpoint.
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// The directory holding `config.json`: the override, else `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(override_dir: Option<&Path>) -> Result<PathBuf, AuthError> {
    if let Some(dir) = override_dir {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(AuthError::NoConfigDir)?;
    Ok(PathBuf::from(home).join(".docker"))
}

/// The key Docker uses for a registry in `config.json` and the URL passed to helpers.
pub fn server_key(registry: &str) -> String {
    if registry == DOCKER_HUB_DOMAIN {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Docker's `ConvertToHostname`: strips a scheme and any path from a config key.
fn key_hostname(key: &str) -> &str {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    stripped.split('/').next().unwrap_or(stripped)
}

/// Whether a config key names `registry` (Docker Hub has several spellings).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key_hostname(key);
    if registry == DOCKER_HUB_DOMAIN {
        matches!(
            host,
            "index.docker.io" | "docker.io" | "registry-1.docker.io"
        )
    } else {
        host == registry
    }
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn read_config_value(path: &Path) -> Result<Option<serde_json::Value>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Io {
                action: "reading",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| AuthError::InvalidConfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Finds credentials for `registry` in the Docker config under `dir` (see the module doc for the
/// order). `Ok(None)` means anonymous access.
pub fn lookup_credentials(dir: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    lookup_credentials_in(dir, registry, None)
}

/// [`lookup_credentials`] with helpers searched in `helper_path` instead of `$PATH`.
fn lookup_credentials_in(
    dir: &Path,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, AuthError> {
    let path = dir.join("config.json");
    let Some(value) = read_config_value(&path)? else {
        return Ok(None);
    };
    let config: ConfigFile =
        serde_json::from_value(value).map_err(|e| AuthError::InvalidConfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| key_matches(key, registry))
        .map(|(_, helper)| helper.clone())
        .or(config.creds_store.clone().filter(|s| !s.is_empty()));
    if let Some(helper) = helper {
        if let Some(credentials) = run_helper_get(&helper, &server_key(registry), helper_path)? {
            return Ok(Some(credentials));
        }
    }
    // Prefer the exact canonical key, then any spelling of the same host.
    let canonical = server_key(registry);
    let entry = config.auths.get(&canonical).or_else(|| {
        config
            .auths
            .iter()
            .find(|(key, _)| key_matches(key, registry))
            .map(|(_, entry)| entry)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(token.clone())));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| AuthError::InvalidConfig {
                path: path.clone(),
                message: format!("`auths.{canonical}.auth` is not base64: {e}"),
            })?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::InvalidConfig {
            path: path.clone(),
            message: format!("`auths.{canonical}.auth` is not UTF-8"),
        })?;
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(AuthError::InvalidConfig {
                path,
                message: format!("`auths.{canonical}.auth` is not `user:password`"),
            });
        };
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get`. A helper reporting "credentials not found" means none.
fn run_helper_get(
    helper: &str,
    server: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, AuthError> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| AuthError::Helper {
        helper: helper.to_string(),
        server: server.to_string(),
        message,
    };
    let mut command = Command::new(&program);
    if let Some(search_path) = helper_path {
        command.env("PATH", search_path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run `{program}`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("writing to `{program}`: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for `{program}`: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!(
            "exited with {}: {}",
            output.status,
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        )));
    }
    let parsed: HelperOutput =
        serde_json::from_str(stdout.trim()).map_err(|e| fail(format!("unreadable output: {e}")))?;
    if parsed.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(parsed.secret)));
    }
    if parsed.username.is_empty() && parsed.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::Basic {
        username: parsed.username,
        password: parsed.secret,
    }))
}

/// Writes `auths.<key>.auth = base64(user:password)` into `config.json` under `dir`, keeping every
/// other field. The file is replaced atomically and is readable by its owner only.
pub fn store_credentials(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), AuthError> {
    let path = dir.join("config.json");
    let mut value = read_config_value(&path)?.unwrap_or_else(|| serde_json::json!({}));
    let Some(root) = value.as_object_mut() else {
        return Err(AuthError::InvalidConfig {
            path,
            message: "top level is not an object".to_string(),
        });
    };
    let auths = root.entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(AuthError::InvalidConfig {
            path,
            message: "`auths` is not an object".to_string(),
        });
    };
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(server_key(registry), serde_json::json!({ "auth": encoded }));
    write_config_value(dir, &path, &value)
}

/// Removes every `auths` entry naming `registry`. Returns whether one was removed.
pub fn remove_credentials(dir: &Path, registry: &str) -> Result<bool, AuthError> {
    let path = dir.join("config.json");
    let Some(mut value) = read_config_value(&path)? else {
        return Ok(false);
    };
    let Some(auths) = value.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|key, _| !key_matches(key, registry));
    if auths.len() == before {
        return Ok(false);
    }
    write_config_value(dir, &path, &value)?;
    Ok(true)
}

fn write_config_value(dir: &Path, path: &Path, value: &serde_json::Value) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| AuthError::Io {
            action,
            path: p,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(io_err("creating temp file in", dir))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("setting permissions on", temp.path()))?;
    let mut text = serde_json::to_string_pretty(value).map_err(|e| AuthError::InvalidConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    temp.write_all(text.as_bytes())
        .map_err(io_err("writing", path))?;
    temp.as_file().sync_all().map_err(io_err("syncing", path))?;
    temp.persist(path).map_err(|e| AuthError::Io {
        action: "replacing",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// The auth-params (`realm`, `service`, `scope`), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value into its challenges.
///
/// Hand-written because the grammar is small (scheme, then comma-separated `key=value` or
/// `key="quoted \"value\""` params, possibly several challenges) and no maintained crate parses
/// the bearer form used by registries.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && !chars[*i].is_whitespace() && chars[*i] != '=' && chars[*i] != ','
        {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    skip_ws(&mut i);
    while i < chars.len() {
        let scheme = read_token(&mut i).to_ascii_lowercase();
        if scheme.is_empty() {
            break;
        }
        let mut challenge = Challenge {
            scheme,
            params: BTreeMap::new(),
        };
        loop {
            skip_ws(&mut i);
            let save = i;
            let key = read_token(&mut i);
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            if key.is_empty() || i >= chars.len() || chars[i] != '=' {
                // Not a param: the start of the next challenge.
                i = save;
                break;
            }
            i += 1;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && chars[i] != ',' && !chars[i].is_whitespace() {
                    value.push(chars[i]);
                    i += 1;
                }
            }
            challenge.params.insert(key.to_ascii_lowercase(), value);
        }
        challenges.push(challenge);
        skip_ws(&mut i);
    }
    challenges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["scope"], "repository:library/alpine:pull");
        let c = parse_challenges(r#"Basic realm="Registry Realm", Bearer realm="x\"y""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");
        assert_eq!(c[1].params["realm"], "x\"y");
    }

    #[test]
    fn reads_and_writes_auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"other.example":{"auth":"YTpi"}},"psFormat":"keep"}"#,
        )
        .unwrap();
        assert_eq!(
            lookup_credentials(dir.path(), "localhost:5000").unwrap(),
            None
        );
        store_credentials(dir.path(), "localhost:5000", "user", "p:ss").unwrap();
        store_credentials(dir.path(), "docker.io", "hub", "secret").unwrap();
        assert_eq!(
            lookup_credentials(dir.path(), "localhost:5000").unwrap(),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "p:ss".into()
            })
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"));
        assert!(text.contains("psFormat"));
        assert_eq!(
            lookup_credentials(dir.path(), "other.example").unwrap(),
            Some(Credentials::Basic {
                username: "a".into(),
                password: "b".into()
            })
        );
        assert!(remove_credentials(dir.path(), "localhost:5000").unwrap());
        assert!(!remove_credentials(dir.path(), "localhost:5000").unwrap());
        assert_eq!(
            lookup_credentials(dir.path(), "localhost:5000").unwrap(),
            None
        );
        assert!(lookup_credentials(dir.path(), "docker.io")
            .unwrap()
            .is_some());
    }

    #[test]
    fn uses_credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-testhelper");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$server\" = \"reg.example\" ]; then echo '{\"ServerURL\":\"reg.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::ffi::OsString::from(bin.as_os_str());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"reg.example":"testhelper"}}"#,
        )
        .unwrap();
        assert_eq!(
            lookup_credentials_in(dir.path(), "reg.example", Some(&path)).unwrap(),
            Some(Credentials::Basic {
                username: "hu".into(),
                password: "hs".into()
            })
        );
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credsStore":"testhelper"}"#,
        )
        .unwrap();
        assert_eq!(
            lookup_credentials_in(dir.path(), "unknown.example", Some(&path)).unwrap(),
            None
        );
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credsStore":"absent-helper"}"#,
        )
        .unwrap();
        let err = lookup_credentials_in(dir.path(), "unknown.example", Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("docker-credential-absent-helper"),
            "{err}"
        );
    }
}

//! `builder build`'s flags, and their conversion into a typed [`BuildRequest`] (every value is
//! parsed and checked here, once, before any work).

use crate::progress::ProgressMode;
use anyhow::{bail, Context, Result};
use build::{BuildContext, BuildRequest, DockerfileInput, Output};
use clap::Args;
use engine::compression::Compression;
use engine::graph::{ExtraHost, NetworkMode, Ulimit};
use engine::layer::LayerOptions;
use engine::worker::Secret;
use frontend_dockerfile::lower;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

/// Arguments of `builder build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name (and optionally tag) of the image, `name:tag`; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache: run every step.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for the steps of these stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Outputs: `type=oci|docker|tar|local,dest=PATH` (dest `-` is stdout), a directory, or
    /// `type=registry,name=NAME` (push).
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Grants an entitlement: `security.insecure` lets `RUN --security=insecure` steps run
    /// without the seccomp filter and with every capability; `network.host` lets steps use the
    /// host's network (`--network host`, `RUN --network=host`).
    #[arg(
        long = "allow",
        value_name = "ENTITLEMENT",
        value_delimiter = ',',
        value_parser = ["security.insecure", "network.host"]
    )]
    pub allow: Vec<String>,
    /// The platform to build for (`linux/amd64`; default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image id to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (digests, names, the steps with cache results) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Layer compression: gzip (default), zstd or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Compression level (gzip 0-9, zstd 1-22). gzip defaults to 1: local builds compress every
    /// new layer, and level 1 is about 2.4x faster than 6 for about 9% more bytes; use 6 or 9
    /// for images meant for distribution.
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,
    /// Always check the registry for a newer version of each base image.
    #[arg(long)]
    pub pull: bool,
    /// Push the image to the registry each `-t` name points at.
    #[arg(long)]
    pub push: bool,
    /// Load the image into the local Docker engine (`DOCKER_HOST`, else
    /// unix:///var/run/docker.sock) under its `-t` names.
    #[arg(long)]
    pub load: bool,
    /// Import build cache: `type=local,src=DIR[,mounts=true]` or `type=registry,ref=NAME`.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export build cache: `type=local,dest=DIR[,mode=min|max][,mounts=true]` or
    /// `type=registry,ref=NAME[,mode=min|max]`.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// After the build, collect cache down to this size if the root is bigger (`0`: never).
    #[arg(
        long,
        env = "BUILDER_CACHE_MAX_SIZE",
        default_value = "10GB",
        value_name = "SIZE"
    )]
    pub cache_max_size: String,
    /// What the build does: `build` (the default), or `check`: run the build checks only, print
    /// them as `docker build --check` does, exit 1 when one warns.
    #[arg(long, value_name = "METHOD", default_value = "build", value_parser = ["build", "check"])]
    pub call: String,
    /// Short for `--call check`.
    #[arg(long)]
    pub check: bool,
    /// The network of `RUN` steps: `default` (their own, behind NAT), `none` or `host` (needs
    /// `--allow network.host`). A `RUN --network=` of a step wins.
    #[arg(long, value_name = "MODE", value_parser = ["default", "none", "host"])]
    pub network: Option<String>,
    /// An entry for the `/etc/hosts` of every `RUN` step, `NAME:IP` (or `NAME=IP`); the
    /// image's own `/etc/hosts` is not changed.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Size of `/dev/shm` in `RUN` steps (`128m`, `1g`, bytes; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A resource limit of `RUN` steps, `NAME=SOFT[:HARD]` (`nofile=1024:2048`; -1 unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// A named context, `NAME=DIR` or `NAME=docker-image://REF`: `FROM NAME`,
    /// `COPY --from=NAME` and `RUN --mount=from=NAME` use it instead of an image named NAME.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent of `$SSH_AUTH_SOCK`) or
    /// `ID=SOCKET`. The agent's socket is forwarded into the step; keys stay in the agent.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    pub ssh: Vec<String>,
    /// A label for the image, `KEY=VALUE` (over the Dockerfile's `LABEL` of the same key).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The build context directory.
    pub context: PathBuf,
}

fn parse_secret(spec: &str) -> Result<(String, Secret)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(v.to_string()),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", _)) => {}
            _ => bail!("--secret {spec:?}: expected id=NAME,src=FILE or id=NAME,env=VAR"),
        }
    }
    let id = id.with_context(|| format!("--secret {spec:?}: missing id="))?;
    let bytes = match (src, env) {
        (Some(path), _) => {
            std::fs::read(&path).with_context(|| format!("--secret {id}: reading {path}"))?
        }
        (None, Some(var)) => std::env::var(&var)
            .with_context(|| format!("--secret {id}: environment variable {var} is not set"))?
            .into_bytes(),
        // Docker's default: an environment variable named like the id.
        (None, None) => std::env::var(&id)
            .with_context(|| format!("--secret {id}: give src=FILE or env=VAR"))?
            .into_bytes(),
    };
    Ok((id, Secret { bytes }))
}

/// `--add-host NAME:IP` or `NAME=IP` (Docker's two spellings; an IPv6 address may be
/// bracketed).
fn parse_add_host(text: &str) -> Result<ExtraHost> {
    let (name, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .with_context(|| format!("--add-host {text:?}: expected NAME:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        bail!("--add-host {text:?}: {name:?} is not a host name");
    }
    if ip == "host-gateway" {
        bail!("--add-host {text:?}: host-gateway is Docker's daemon setting; give the address");
    }
    let ip: std::net::IpAddr = ip
        .parse()
        .with_context(|| format!("--add-host {text:?}: {ip:?} is not an IP address"))?;
    Ok(ExtraHost {
        name: name.to_string(),
        ip: ip.to_string(),
    })
}

/// `--ssh ID[=SOCKET]`: the socket defaults to `$SSH_AUTH_SOCK`, as Docker's. Key files
/// (Docker's other form) are refused: the agent holds the keys.
fn parse_ssh(text: &str) -> Result<(String, PathBuf)> {
    use std::os::unix::fs::FileTypeExt;
    let (id, path) = match text.split_once('=') {
        Some((id, path)) => (id, PathBuf::from(path)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").with_context(|| {
                format!("--ssh {text}: SSH_AUTH_SOCK is not set (start ssh-agent, or give {text}=SOCKET)")
            })?;
            (text, PathBuf::from(sock))
        }
    };
    if id.is_empty() || path.as_os_str().is_empty() {
        bail!("--ssh {text:?}: expected default or ID=SOCKET");
    }
    if path.to_string_lossy().contains(',') {
        bail!("--ssh {text:?}: one agent socket per id");
    }
    let meta =
        std::fs::metadata(&path).with_context(|| format!("--ssh {text}: {}", path.display()))?;
    if !meta.file_type().is_socket() {
        bail!(
            "--ssh {text}: {} is not an agent socket (load the key into ssh-agent with ssh-add \
             and give its socket)",
            path.display()
        );
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok((id.to_string(), path))
}

/// `--shm-size`: bytes, or a number with a binary unit as Docker takes it (`64m`, `1g`, `512k`,
/// `2GB`).
fn parse_shm_size(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let shift = match &lower[digits.len()..] {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => bail!("--shm-size {text:?}: expected a size like 128m or 1g"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--shm-size {text:?}: expected a size like 128m or 1g"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .with_context(|| format!("--shm-size {text:?}: too large"))?;
    if bytes == 0 {
        bail!("--shm-size {text:?}: must be more than 0");
    }
    Ok(bytes)
}

/// `--ulimit NAME=SOFT[:HARD]`, as Docker: the hard limit defaults to the soft one, -1 is
/// unlimited, and the soft limit may not exceed the hard one.
fn parse_ulimit(text: &str) -> Result<Ulimit> {
    let bad = || format!("--ulimit {text:?}: expected NAME=SOFT[:HARD], like nofile=1024:2048");
    let (name, limits) = text.split_once('=').with_context(bad)?;
    if !engine::executor::RLIMIT_NAMES.contains(&name) {
        bail!(
            "--ulimit {text:?}: unknown resource {name:?} (one of {})",
            engine::executor::RLIMIT_NAMES.join(", ")
        );
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let parse = |v: &str| -> Result<i64> {
        let n: i64 = v.trim().parse().with_context(bad)?;
        if n < -1 {
            bail!("{}", bad());
        }
        Ok(n)
    };
    let (soft, hard) = (parse(soft)?, parse(hard)?);
    let unlimited = |n: i64| n == -1;
    if !unlimited(hard) && (unlimited(soft) || soft > hard) {
        bail!("--ulimit {text:?}: the soft limit {soft} is above the hard limit {hard}");
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// How layers are written: `--compression`/`--compression-level`, overridden by an output's
/// `compression=`/`compression-level=` (layers are compressed once, when made), and
/// `SOURCE_DATE_EPOCH`.
fn layer_options(args: &BuildArgs, outputs: &[Output]) -> Result<LayerOptions> {
    let mut name = args.compression.as_str();
    let mut level = args.compression_level;
    for output in outputs {
        if let Output::Export(spec) = output {
            if let Some(c) = spec.attrs.get("compression") {
                name = c;
            }
            if let Some(l) = spec.attrs.get("compression-level") {
                level = Some(
                    l.parse()
                        .with_context(|| format!("compression-level={l:?} is not a number"))?,
                );
            }
        }
    }
    let compression = match name {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "uncompressed" | "none" => Compression::None,
        other => bail!("--compression {other:?}: expected gzip, zstd or uncompressed"),
    };
    Ok(LayerOptions {
        compression,
        level: level.or(match compression {
            Compression::Gzip => Some(1),
            _ => None,
        }),
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok()),
        ..Default::default()
    })
}

/// The flags as a typed request, every value checked before any work.
pub fn request(args: &BuildArgs) -> Result<BuildRequest> {
    let mut req = BuildRequest::new(args.context.clone());
    req.dockerfile = match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from stdin")?;
            DockerfileInput::Text(text)
        }
        Some(f) => DockerfileInput::File(f.clone()),
        None => DockerfileInput::Default,
    };
    for tag in &args.tags {
        req.tags
            .push(cache::Reference::parse(tag).with_context(|| format!("invalid tag {tag:?}"))?);
    }
    for text in &args.build_args {
        match lower::parse_build_arg(text) {
            Ok(Some((k, v))) => {
                req.build_args.insert(k, v);
            }
            Ok(None) => {}
            Err(d) => bail!("{d}"),
        }
    }
    req.target = args.target.clone();
    if let Some(p) = &args.platform {
        req.platform = Some(p.parse().with_context(|| format!("--platform {p}"))?);
    }
    req.no_cache = args.no_cache;
    req.no_cache_filter = args.no_cache_filter.iter().cloned().collect();
    req.pull = args.pull;
    req.push = args.push;
    req.load = args.load;
    req.outputs = args
        .outputs
        .iter()
        .map(|o| Output::parse(o).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<_>>()?;
    let mut secrets = HashMap::new();
    for spec in &args.secrets {
        let (id, secret) = parse_secret(spec)?;
        secrets.insert(id, secret);
    }
    req.secrets = secrets;
    req.allow_insecure = args.allow.iter().any(|a| a == "security.insecure");
    req.allow_network_host = args.allow.iter().any(|a| a == "network.host");
    req.network = match args.network.as_deref() {
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        _ => NetworkMode::Default,
    };
    req.extra_hosts = args
        .add_hosts
        .iter()
        .map(|h| parse_add_host(h))
        .collect::<Result<_>>()?;
    if let Some(text) = &args.shm_size {
        req.shm_size = parse_shm_size(text)?;
    }
    req.ulimits = args
        .ulimits
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<_>>()?;
    for text in &args.ssh {
        let (id, socket) = parse_ssh(text)?;
        req.ssh.insert(id, socket);
    }
    for text in &args.build_contexts {
        let (name, value) = text
            .split_once('=')
            .with_context(|| format!("--build-context {text:?}: expected NAME=DIR"))?;
        if name.is_empty() || name == "context" {
            bail!("--build-context {text:?}: {name:?} cannot name a build context");
        }
        let context = BuildContext::parse(value).map_err(|e| anyhow::anyhow!("{e}"))?;
        req.named_contexts.insert(name.to_string(), context);
    }
    for text in &args.labels {
        // Docker takes `KEY` alone as an empty value.
        let (k, v) = text.split_once('=').unwrap_or((text.as_str(), ""));
        if k.is_empty() {
            bail!("--label {text:?}: expected KEY=VALUE");
        }
        req.labels.insert(k.to_string(), v.to_string());
    }
    req.layer = layer_options(args, &req.outputs)?;
    req.cache_from = build::parse_cache_specs(&args.cache_from, false)?;
    req.cache_to = build::parse_cache_specs(&args.cache_to, true)?;
    req.cache_max_size = super::cache::parse_max_size(&args.cache_max_size)?;
    req.validate()?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_spellings_of_run_flags() {
        let h = parse_add_host("db:10.0.0.2").unwrap();
        assert_eq!((h.name.as_str(), h.ip.as_str()), ("db", "10.0.0.2"));
        let h = parse_add_host("v6=[::1]").unwrap();
        assert_eq!((h.name.as_str(), h.ip.as_str()), ("v6", "::1"));
        assert!(parse_add_host("db:not-an-ip").is_err());
        assert!(parse_add_host("db").is_err());
        assert_eq!(parse_shm_size("128m").unwrap(), 128 << 20);
        assert_eq!(parse_shm_size("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_shm_size("4096").unwrap(), 4096);
        assert!(parse_shm_size("12q").is_err());
        assert!(parse_shm_size("0").is_err());
        let u = parse_ulimit("nofile=100:200").unwrap();
        assert_eq!((u.soft, u.hard), (100, 200));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (-1, -1));
        assert!(parse_ulimit("nofile=300:200").is_err());
        assert!(parse_ulimit("files=1").is_err());
    }
}

//! `builder run`: flags in, [`engine::container::run`] called, its exit status returned.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use engine::container::{RunOptions, Volume};
use engine::executor::{Network, StepIo};

/// `builder run`
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits (always the case: its writable layer never outlives
    /// the run; accepted for `docker run` compatibility).
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass this process's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Bind a host path into the container (`HOST:CONTAINER[:ro|rw]`; HOST absolute).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Network: `bridge` (a network of its own behind user-mode NAT, the default), `host` or
    /// `none`.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "default", "host", "none"])]
    pub network: String,
    /// Replace the image's ENTRYPOINT (an empty string clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Host name inside the container (default: the container id's first 12 digits).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Pull the image before running: `missing` (when the store lacks it), `always` or `never`.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Keep standard input open and pass it to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal of its own.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The image (name, id or short id), then the command and its arguments (default: the
    /// image's CMD). Everything after the image is the command's, `--help` included.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    pub image_and_command: Vec<String>,
}

/// Parses `-v HOST:CONTAINER[:ro|rw]`.
fn parse_volume(spec: &str) -> anyhow::Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, read_only) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        [_, _, mode] => bail!("invalid volume {spec:?}: unknown mode {mode:?} (use ro or rw)"),
        _ => bail!("invalid volume {spec:?}: expected HOST:CONTAINER[:ro|rw]"),
    };
    if host.is_empty() || target.is_empty() {
        bail!("invalid volume {spec:?}: expected HOST:CONTAINER[:ro|rw]");
    }
    let source = if host.starts_with('/') || host.starts_with('.') {
        std::path::absolute(host).with_context(|| format!("volume {spec:?}"))?
    } else {
        bail!(
            "invalid volume {spec:?}: named volumes are not supported; give an absolute host path"
        )
    };
    Ok(Volume {
        source,
        target: target.to_string(),
        read_only,
    })
}

/// Parses `-e KEY=VALUE` or `-e KEY` (this process's value, skipped when unset).
fn parse_env(spec: &str) -> anyhow::Result<Option<(String, String)>> {
    match spec.split_once('=') {
        Some(("", _)) => bail!("invalid environment variable {spec:?}: empty name"),
        Some((k, v)) => Ok(Some((k.to_string(), v.to_string()))),
        None if spec.is_empty() => bail!("invalid environment variable: empty name"),
        None => Ok(std::env::var(spec).ok().map(|v| (spec.to_string(), v))),
    }
}

/// `builder run`: returns the container's exit code (125, 126 or 127 when it could not run, as
/// `docker run` does).
pub fn run(root: Option<&Path>, args: RunArgs) -> anyhow::Result<i32> {
    let mut words = args.image_and_command.into_iter();
    let image = words.next().context("no image given")?;
    let command: Vec<String> = words.collect();
    let mut env = Vec::new();
    for e in &args.env {
        env.extend(parse_env(e)?);
    }
    let volumes = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let network = match args.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        _ => Network::Nat,
    };
    let io = if args.tty {
        StepIo::Terminal {
            stdin: args.interactive,
        }
    } else {
        StepIo::Inherit {
            stdin: args.interactive,
        }
    };
    let options = RunOptions {
        command,
        entrypoint: args.entrypoint,
        env,
        volumes,
        workdir: args.workdir,
        user: args.user,
        network,
        io,
        hostname: args.hostname,
    };
    let missing = || -> anyhow::Result<bool> {
        let images = super::images::LocalImages::open(root)?;
        Ok(matches!(
            images.store.resolve(&image),
            Err(cache::ImageStoreError::NotFound(_))
        ))
    };
    let pull = match args.pull.as_str() {
        "always" => true,
        "never" => false,
        _ => missing()?,
    };
    if pull {
        if args.pull == "missing" {
            eprintln!("Unable to find image '{image}' locally");
        }
        let pull_args = super::registry::PullArgs {
            platform: None,
            quiet: false,
            name: image.clone(),
        };
        if let Err(e) =
            super::registry::pull_reporting(root, &pull_args, super::registry::Report::Stderr)
        {
            eprintln!("Error: {e:#}");
            return Ok(125);
        }
    }
    let root = cache::RootDir::open_or_default(root.map(PathBuf::from).as_deref())
        .context("opening the builder root directory")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match runtime.block_on(engine::container::run(root, &image, options)) {
        Ok(exit) => Ok(exit.code),
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_env_parse_as_docker_reads_them() {
        let v = parse_volume("/srv:/data:ro").unwrap();
        assert_eq!(
            (v.source, v.target.as_str(), v.read_only),
            (PathBuf::from("/srv"), "/data", true)
        );
        assert!(!parse_volume("/srv:/data").unwrap().read_only);
        assert!(parse_volume("name:/data").is_err());
        assert!(parse_volume("/srv:/data:xx").is_err());
        assert!(parse_volume("/srv").is_err());
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            Some(("A".to_string(), "b=c".to_string()))
        );
        assert!(parse_env("=x").is_err());
        assert_eq!(parse_env("BUILDER_SURELY_UNSET_VARIABLE").unwrap(), None);
    }
}

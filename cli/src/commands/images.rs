//! `builder images`, `rmi`, `tag`, `inspect`, `history`, `save` and `load`: the local image
//! store seen the way `docker` shows it.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use cache::{ContentStore, ImageEntry, ImageStore, Platform, Reference, RootDir, RootLock};
use chrono::{DateTime, Utc};
use engine::export::{self, Destination, NamedImage};
use engine::image::{read_image, Image};
use engine::solver::reason::MissReason;
use serde::Serialize;

use super::template::{tabwrite, GoTemplate};

/// The stores of one root, opened under the shared root lock.
pub struct LocalImages {
    /// Its blobs.
    pub cas: ContentStore,
    /// Its names.
    pub store: ImageStore,
    /// Layer content sizes, computed once per layer.
    sizes: Option<cache::layer_sizes::LayerSizes>,
    /// The build records: how the steps of a locally built image went.
    records: Option<cache::records::RecordStore>,
    /// The root itself (for the leases of running containers).
    root: RootDir,
    _lock: RootLock,
}

impl LocalImages {
    /// Opens the root at `root` (or the default) and takes the shared lock.
    pub fn open(root: Option<&Path>) -> anyhow::Result<LocalImages> {
        let root = RootDir::open_or_default(root)?;
        let lock = root.lock_shared()?;
        let cas = root.content_store()?;
        let store = ImageStore::open(root.images_dir())?;
        Ok(LocalImages {
            cas,
            store,
            sizes: cache::layer_sizes::LayerSizes::open(root.path()).ok(),
            records: cache::records::RecordStore::open(root.path()).ok(),
            root,
            _lock: lock,
        })
    }

    /// A layer's size as Docker shows it (its files' bytes), computed once and remembered; the
    /// blob's own (compressed) size when the layer cannot be read.
    fn layer_size(&self, layer: &engine::image::LayerInfo) -> u64 {
        if let Some(size) = self.sizes.as_ref().and_then(|m| m.get(&layer.diff_id)) {
            return size;
        }
        match engine::image::layer_content_size(&self.cas, &layer.descriptor.digest) {
            Ok(size) => {
                if let Some(memo) = &self.sizes {
                    let _ = memo.put(&layer.diff_id, size);
                }
                size
            }
            Err(_) => layer.descriptor.size,
        }
    }

    /// An image's size as `docker images` shows it: the sum of its layers' content sizes.
    fn image_size(&self, image: &Image) -> u64 {
        image.layers().iter().map(|l| self.layer_size(l)).sum()
    }

    fn image(&self, entry: &ImageEntry) -> anyhow::Result<Image> {
        read_image(&self.cas, &entry.record.target.digest, &Platform::host())
            .with_context(|| format!("reading image {}", entry.record.config))
    }
}

/// `builder images`
#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output with a Go template (`table` prefix prints a header).
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output (`dangling=true|false`, `reference=PATTERN`, `label=KEY[=VALUE]`).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show all images (accepted for compatibility; intermediate images are never listed).
    #[arg(short, long)]
    pub all: bool,
    /// Only images of this repository (`REPOSITORY[:TAG]`).
    pub repository: Option<String>,
}

/// `builder rmi`
#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Remove the image even if several names point at it.
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove (name, id or short id).
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `builder tag`
#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// Existing image (name, id or short id).
    pub source: String,
    /// New name.
    pub target: String,
}

/// `builder inspect`
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Format output with a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    /// Images to inspect.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `builder history`
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output with a Go template.
    #[arg(long)]
    pub format: Option<String>,
    /// The image.
    pub image: String,
}

/// Archive formats for `builder save`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// docker-archive, for `docker load`.
    Docker,
    /// OCI image layout in a tar.
    Oci,
}

/// `builder save`
#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    pub format: SaveFormat,
    /// Images to save.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `builder load`
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read from this file (a tar, optionally compressed, or an OCI layout directory) instead of
    /// standard input.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Don't print the loaded names.
    #[arg(short, long)]
    pub quiet: bool,
}

// ---------------------------------------------------------------------------------------------
// Docker-style rendering helpers.

/// Go's `%.3g`.
fn fmt_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{v:.2e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        trim(&format!("{:.*}", (2 - exp).max(0) as usize, v))
    }
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", fmt_g3(s), UNITS[i])
}

/// go-units `HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    let hours = ((d.num_milliseconds() as f64) / 3_600_000.0 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", d.num_hours() / 24 / 365)
    }
}

fn created_since(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration(Utc::now() - t)),
        None => "N/A".into(),
    }
}

/// Go's `time.Time.String()` in UTC.
fn created_at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// Go's RFC3339Nano: fractional seconds with trailing zeros removed.
fn rfc3339_nano(t: DateTime<Utc>) -> String {
    format!("{}{}Z", t.format("%Y-%m-%dT%H:%M:%S"), go_fraction(t))
}

/// Go's `time.Time.String()` in UTC, fractional seconds trimmed.
fn go_time_string(t: DateTime<Utc>) -> String {
    format!(
        "{}{} +0000 UTC",
        t.format("%Y-%m-%d %H:%M:%S"),
        go_fraction(t)
    )
}

/// The fractional seconds as Go prints them: `.12` for 120 ms, nothing for whole seconds.
fn go_fraction(t: DateTime<Utc>) -> String {
    match t.timestamp_subsec_nanos() {
        0 => String::new(),
        nanos => format!(".{}", format!("{nanos:09}").trim_end_matches('0')),
    }
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The bytes of an image's layer blobs as stored (compressed).
fn compressed_size(image: &Image) -> u64 {
    image.manifest.layers.iter().map(|l| l.size).sum()
}

fn print_rows(
    format: Option<&str>,
    header: serde_json::Value,
    rows: &[serde_json::Value],
    default: &str,
) -> anyhow::Result<()> {
    let (template, table) = match format {
        None | Some("") | Some("table") => (GoTemplate::parse(default)?, true),
        Some(f) => {
            let t = GoTemplate::parse(f)?;
            let table = t.table;
            (t, table)
        }
    };
    let mut text = String::new();
    if table {
        text.push_str(&template.render(&header)?);
        text.push('\n');
    }
    for r in rows {
        text.push_str(&template.render(r)?);
        text.push('\n');
    }
    io::stdout().write_all(tabwrite(&text).as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// images

fn matches_filters(
    entry: &ImageEntry,
    name: Option<&Reference>,
    image: &Image,
    filters: &[(String, String)],
) -> anyhow::Result<bool> {
    for (k, v) in filters {
        let ok = match k.as_str() {
            "dangling" => match v.as_str() {
                "true" | "1" => entry.names.is_empty(),
                "false" | "0" => !entry.names.is_empty(),
                other => bail!("invalid filter 'dangling={other}': expected true or false"),
            },
            "reference" => name.is_some_and(|n| {
                let pattern = glob::Pattern::new(v);
                let candidates = [
                    n.familiar(),
                    n.familiar_repository(),
                    n.to_string(),
                    n.repository(),
                ];
                pattern.is_ok_and(|p| candidates.iter().any(|c| p.matches(c)))
            }),
            "label" => {
                let labels = image.config.config.as_ref().and_then(|c| c.labels.as_ref());
                match v.split_once('=') {
                    Some((lk, lv)) => labels.and_then(|l| l.get(lk)).is_some_and(|x| x == lv),
                    None => labels.is_some_and(|l| l.contains_key(v.as_str())),
                }
            }
            other => bail!("invalid filter '{other}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `builder images`
pub fn images(root: Option<&Path>, args: ImagesArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let filters: Vec<(String, String)> = args
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("bad format of filter (expected name=value): {f}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let wanted = args
        .repository
        .as_deref()
        .map(Reference::parse_exact)
        .transpose()?;
    let mut rows: Vec<(Option<DateTime<Utc>>, serde_json::Value)> = Vec::new();
    for entry in local.store.list()? {
        let image = local.image(&entry)?;
        let names: Vec<Option<&Reference>> = if entry.names.is_empty() {
            vec![None]
        } else {
            entry.names.iter().map(Some).collect()
        };
        for name in names {
            if let Some(w) = &wanted {
                let Some(n) = name else { continue };
                if n.repository() != w.repository() || w.tag().is_some_and(|t| Some(t) != n.tag()) {
                    continue;
                }
            }
            if !matches_filters(&entry, name, &image, &filters)? {
                continue;
            }
            let id = if args.no_trunc {
                entry.record.config.to_string()
            } else {
                entry.record.config.short().to_string()
            };
            let created = image.config.created;
            let size = human_size(local.image_size(&image));
            let compressed = human_size(compressed_size(&image));
            rows.push((
                created,
                serde_json::json!({
                    "Repository": name.map(|n| n.familiar_repository()).unwrap_or_else(|| "<none>".into()),
                    "Tag": name.and_then(|n| n.tag()).unwrap_or("<none>"),
                    "ID": id,
                    "Digest": entry.record.target.digest.to_string(),
                    "CreatedSince": created_since(created),
                    "CreatedAt": created_at(created),
                    "Size": size,
                    "VirtualSize": size,
                    "CompressedSize": compressed,
                    "SharedSize": "N/A",
                    "UniqueSize": "N/A",
                    "Containers": "N/A",
                }),
            ));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rows: Vec<serde_json::Value> = rows.into_iter().map(|r| r.1).collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let header = serde_json::json!({
        "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "VirtualSize": "VIRTUAL SIZE", "CompressedSize": "COMPRESSED SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
        "Containers": "CONTAINERS",
    });
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_rows(args.format.as_deref(), header, &rows, default)
}

// ---------------------------------------------------------------------------------------------
// rmi, tag

/// `builder rmi`
pub fn rmi(root: Option<&Path>, args: RmiArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let mut failed = false;
    for arg in &args.images {
        if let Err(e) = rmi_one(&local, arg, args.force) {
            eprintln!("Error: {e:#}");
            failed = true;
        }
    }
    if failed {
        bail!("some images could not be removed");
    }
    Ok(())
}

fn rmi_one(local: &LocalImages, arg: &str, force: bool) -> anyhow::Result<()> {
    let state = local.store.state()?;
    let manifest = state.resolve(arg)?;
    let by_name = Reference::parse(arg)
        .ok()
        .filter(|r| state.names.contains_key(&r.to_string()));
    let names = state.names_of(&manifest);
    let config = state.images.get(&manifest).map(|r| r.config.clone());
    let short = config
        .as_ref()
        .map(|c| c.short().to_string())
        .unwrap_or_default();
    // Removing the last name removes the image: not from under a running container.
    let removes_image = by_name.is_none() || names.len() <= 1;
    if removes_image && !force {
        let running = cache::containers::running(&local.root)?;
        if let Some(user) = running.iter().find(|c| c.image == manifest) {
            let container = &user.id[..12];
            match &by_name {
                Some(name) => bail!(
                    "conflict: unable to remove repository reference \"{}\" (must force) - \
                     container {container} is using its referenced image {short}",
                    name.familiar()
                ),
                None => bail!(
                    "conflict: unable to delete {short} (must be forced) - image is being used \
                     by running container {container}"
                ),
            }
        }
    }
    let mut out = io::stdout().lock();
    if let Some(name) = by_name {
        local.store.untag(&name)?;
        writeln!(out, "Untagged: {}", name.familiar())?;
        if names.len() > 1 {
            return Ok(());
        }
    } else if names.len() > 1 && !force {
        bail!("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories");
    } else {
        for n in &names {
            writeln!(out, "Untagged: {}", n.familiar())?;
        }
    }
    local.store.remove(&manifest)?;
    if let Some(c) = config {
        writeln!(out, "Deleted: {c}")?;
    }
    Ok(())
}

/// `builder tag`
pub fn tag(root: Option<&Path>, args: TagArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let entry = local.store.resolve(&args.source)?;
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    local.store.tag(&target, &entry.record.target.digest)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

/// Docker's `Config` of `docker image inspect`, in Docker's field order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<engine::image::HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_escaped: Option<bool>,
    image: String,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    working_dir: String,
    entrypoint: Option<Vec<String>>,
    on_build: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shell: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectRootFs {
    #[serde(rename = "Type")]
    kind: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
struct InspectMetadata {
    #[serde(rename = "LastTagTime")]
    last_tag_time: String,
}

/// `docker image inspect` output for one image.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectImage {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    docker_version: String,
    author: String,
    config: InspectConfig,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    size: u64,
    #[serde(rename = "RootFS")]
    root_fs: InspectRootFs,
    metadata: InspectMetadata,
}

fn inspect_value(entry: &ImageEntry, image: &Image, size: u64) -> InspectImage {
    let c = image.config.config.clone().unwrap_or_default();
    let extra_str = |k: &str| {
        image
            .config
            .extra
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    InspectImage {
        id: entry.record.config.to_string(),
        repo_tags: entry
            .names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| n.familiar())
            .collect(),
        repo_digests: entry.record.repo_digests.clone(),
        parent: String::new(),
        comment: extra_str("comment"),
        created: image.config.created.map(rfc3339_nano).unwrap_or_default(),
        docker_version: extra_str("docker_version"),
        author: image.config.author.clone().unwrap_or_default(),
        config: InspectConfig {
            hostname: String::new(),
            domainname: String::new(),
            user: c.user.unwrap_or_default(),
            attach_stdin: false,
            attach_stdout: false,
            attach_stderr: false,
            exposed_ports: c.exposed_ports,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            env: c.env,
            cmd: c.cmd,
            healthcheck: c.healthcheck,
            args_escaped: c.args_escaped,
            image: String::new(),
            volumes: c.volumes,
            working_dir: c.working_dir.unwrap_or_default(),
            entrypoint: c.entrypoint,
            on_build: c.on_build,
            labels: c.labels,
            stop_signal: c.stop_signal,
            shell: c.shell,
        },
        architecture: image.config.architecture.clone(),
        variant: image.config.variant.clone(),
        os: image.config.os.clone(),
        size,
        root_fs: InspectRootFs {
            kind: image.config.rootfs.kind.clone(),
            layers: image
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.to_string())
                .collect(),
        },
        metadata: InspectMetadata {
            last_tag_time: entry
                .record
                .last_tagged
                .map(rfc3339_nano)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
    }
}

/// The inspect JSON as a template sees it: Go prints a nil slice as `[]` and a nil map as
/// `map[]`, so those nulls become empty values (the JSON output keeps them `null`).
fn template_view(mut v: serde_json::Value) -> serde_json::Value {
    // `LastTagTime` is a Go time.Time: a template prints it with Time.String().
    if let Some(t) = v.pointer_mut("/Metadata/LastTagTime") {
        if let Some(parsed) = t
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        {
            *t = serde_json::Value::String(go_time_string(parsed.to_utc()));
        }
    }
    if let Some(cfg) = v.get_mut("Config").and_then(|c| c.as_object_mut()) {
        for k in ["Env", "Cmd", "Entrypoint", "OnBuild", "Shell"] {
            if cfg.get(k).is_none_or(|x| x.is_null()) {
                cfg.insert(k.into(), serde_json::json!([]));
            }
        }
        for k in ["Volumes", "Labels", "ExposedPorts"] {
            if cfg.get(k).is_none_or(|x| x.is_null()) {
                cfg.insert(k.into(), serde_json::json!({}));
            }
        }
        // Fields the JSON omits when empty still exist on Docker's struct.
        for (k, empty) in [
            ("Healthcheck", serde_json::Value::Null),
            ("StopSignal", serde_json::json!("")),
            ("ArgsEscaped", serde_json::json!(false)),
        ] {
            cfg.entry(k).or_insert(empty);
        }
    }
    if let Some(top) = v.as_object_mut() {
        top.entry("Variant").or_insert(serde_json::json!(""));
    }
    v
}

/// `builder inspect`
pub fn inspect(root: Option<&Path>, args: InspectArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let template = args.format.as_deref().map(GoTemplate::parse).transpose()?;
    let mut values = Vec::new();
    let mut failed = false;
    for arg in &args.images {
        match local.store.resolve(arg) {
            Ok(entry) => {
                let image = local.image(&entry)?;
                values.push(serde_json::to_value(inspect_value(
                    &entry,
                    &image,
                    local.image_size(&image),
                ))?);
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    let mut out = io::stdout().lock();
    match template {
        Some(t) => {
            for v in values {
                writeln!(out, "{}", t.render(&template_view(v))?)?;
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            values.serialize(&mut ser)?;
            out.write_all(&buf)?;
            writeln!(out)?;
        }
    }
    if failed {
        bail!("some images were not found");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// history

/// `builder history`
pub fn history(root: Option<&Path>, args: HistoryArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let entry = local.store.resolve(&args.image)?;
    let image = local.image(&entry)?;
    let mut history = image.config.history.clone();
    if history.is_empty() {
        history = image
            .manifest
            .layers
            .iter()
            .map(|_| engine::image::History {
                created: image.config.created,
                ..Default::default()
            })
            .collect();
    }
    let layers = image.layers();
    let mut layer_sizes = layers.iter().map(|l| local.layer_size(l));
    // The build that stored this image, when it was built here: each step's cache decision and
    // time, by the history entry it wrote.
    let build = local
        .records
        .as_ref()
        .and_then(|r| r.for_image(&entry.record.config.to_string()));
    let steps: BTreeMap<usize, &cache::records::StepReport> = build
        .iter()
        .flat_map(|b| &b.steps)
        .filter_map(|s| Some((s.history?, s)))
        .collect();
    let mut rows: Vec<serde_json::Value> = history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let size = if h.is_empty_layer() {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            };
            let created_by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
            serde_json::json!({
                "ID": "<missing>",
                "CreatedSince": created_since(h.created),
                "CreatedAt": h.created.map(rfc3339_nano).unwrap_or_default(),
                "CreatedBy": if args.no_trunc { created_by } else { ellipsis(&created_by, 45) },
                "Size": human_size(size),
                "Comment": h.comment.clone().unwrap_or_default(),
                "Cache": steps.get(&i).map(|s| cache_decision(s, args.no_trunc)).unwrap_or_default(),
                "Duration": steps.get(&i).map(|s| step_duration(s)).unwrap_or_default(),
            })
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = serde_json::Value::String(if args.no_trunc {
            entry.record.config.to_string()
        } else {
            entry.record.config.short().to_string()
        });
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let header = serde_json::json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
        "Cache": "CACHE", "Duration": "DURATION",
    });
    // Docker's columns, and how the steps went when this root built the image.
    let table = if steps.is_empty() {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    } else {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Cache}}\t{{.Duration}}\t{{.Comment}}"
    };
    print_rows(args.format.as_deref(), header, &rows, table)
}

/// `CACHED`, or why the step ran (`ARG VERSION changed (1 → 2)`), as the build's progress said.
fn cache_decision(step: &cache::records::StepReport, no_trunc: bool) -> String {
    if step.cached {
        return "CACHED".to_string();
    }
    let reason = serde_json::from_value::<MissReason>(step.reason.clone())
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "ran".to_string());
    if no_trunc {
        reason
    } else {
        ellipsis(&reason, 40)
    }
}

/// How long the step ran (`1.2s`), or `-` when it came from the cache.
fn step_duration(step: &cache::records::StepReport) -> String {
    if step.cached {
        "-".to_string()
    } else {
        format!("{:.1}s", step.duration_ms as f64 / 1000.0)
    }
}

// ---------------------------------------------------------------------------------------------
// save, load

/// `builder save`
pub fn save(root: Option<&Path>, args: SaveArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let state = local.store.state()?;
    let mut images: Vec<NamedImage> = Vec::new();
    for arg in &args.images {
        let manifest = state.resolve(arg)?;
        let entry = state
            .entry(&manifest)
            .ok_or_else(|| anyhow!("No such image: {arg}"))?;
        // Saved by name: that name only; by id: no names (as `docker save`).
        let name = Reference::parse(arg)
            .ok()
            .filter(|r| state.names.contains_key(&r.to_string()));
        match images
            .iter_mut()
            .find(|n| n.image.manifest_descriptor.digest == manifest)
        {
            Some(existing) => existing.names.extend(name),
            None => images.push(NamedImage {
                image: local.image(&entry)?,
                names: name.into_iter().collect(),
            }),
        }
    }
    let dest = match &args.output {
        Some(p) => Destination::Path(p.clone()),
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Destination::Stdout
        }
    };
    let cas = &local.cas;
    export::write_to(&dest, |w| match args.format {
        SaveFormat::Docker => export::write_docker_archive(cas, &images, w).map(drop),
        SaveFormat::Oci => export::write_oci_archive(cas, &images, w).map(drop),
    })?;
    Ok(())
}

/// `builder load`
pub fn load(root: Option<&Path>, args: LoadArgs) -> anyhow::Result<()> {
    let local = LocalImages::open(root)?;
    let loaded = match &args.input {
        Some(p) if p.is_dir() => export::load_oci_layout_dir(&local.cas, &local.store, p)?,
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            export::load_archive(&local.cas, &local.store, io::BufReader::new(f))?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            let stdin = io::stdin().lock();
            export::load_archive(&local.cas, &local.store, stdin.take(u64::MAX))?
        }
    };
    if !args.quiet {
        for l in &loaded {
            if l.names.is_empty() {
                println!("Loaded image ID: {}", l.config);
            }
            for n in &l.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(784), "784B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(5_588_341), "5.59MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(999_999), "1e+03kB");
    }

    #[test]
    fn durations_like_go_units() {
        let s = chrono::Duration::seconds;
        assert_eq!(human_duration(s(0)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(45 * 60)), "45 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(3 * 365 * 86400)), "3 years");
    }

    #[test]
    fn time_formats() {
        let t = DateTime::parse_from_rfc3339("2024-05-06T07:08:09.120Z")
            .unwrap()
            .to_utc();
        assert_eq!(rfc3339_nano(t), "2024-05-06T07:08:09.12Z");
        assert_eq!(created_at(Some(t)), "2024-05-06 07:08:09 +0000 UTC");
        assert_eq!(go_time_string(t), "2024-05-06 07:08:09.12 +0000 UTC");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}

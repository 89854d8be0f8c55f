//! `builder pull` / `builder push`: move images between the local store and a registry, moving
//! only the blobs the other side lacks, with `docker pull`/`docker push`-style output.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cache::{CasError, ContentStore, ImageRecord, Reference as LocalName};
use clap::Args;
use registry::{
    BlobIngest, BlobReader, BlobStore, Client, ClientOptions, Descriptor, Digest, Platform,
    ProgressEvent, PushOptions, StoreError,
};

use super::images::LocalImages;

/// Arguments of `builder pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to choose from a multi-platform image (`linux/arm64`); this machine's by default.
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image name at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to pull (`alpine`, `localhost:5000/app:1`, `name@sha256:...`).
    pub name: String,
}

/// Arguments of `builder push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Local image name to push; it names the registry and repository too.
    pub name: String,
}

/// The local content store seen through the registry client's blob-store seam.
struct CasBlobs<'a>(&'a ContentStore);

fn to_cas(digest: &Digest) -> Result<cache::Digest, StoreError> {
    cache::Digest::from_hex(digest.hex()).map_err(|e| StoreError::Io {
        action: "converting digest",
        path: PathBuf::from(digest.to_string()),
        source: io::Error::other(e.to_string()),
    })
}

fn from_cas(digest: &cache::Digest) -> Option<Digest> {
    digest.to_string().parse().ok()
}

fn store_error(error: CasError, digest: &Digest, root: &Path) -> StoreError {
    match error {
        CasError::NotFound(_) => StoreError::NotFound(digest.clone()),
        CasError::DigestMismatch { actual, .. } => StoreError::DigestMismatch {
            expected: digest.clone(),
            actual: from_cas(&actual).unwrap_or_else(|| digest.clone()),
        },
        other => StoreError::Io {
            action: "content store",
            path: root.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    }
}

struct CasIngest<'a> {
    writer: cache::BlobWriter,
    expected: Digest,
    root: &'a Path,
}

impl Write for CasIngest<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl BlobIngest for CasIngest<'_> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let expected = to_cas(&self.expected)?;
        self.writer
            .commit(Some(&expected))
            .map(|_| ())
            .map_err(|e| store_error(e, &self.expected, self.root))
    }
}

impl BlobStore for CasBlobs<'_> {
    fn has(&self, digest: &Digest) -> bool {
        to_cas(digest).is_ok_and(|d| self.0.has(&d))
    }

    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let d = to_cas(digest)?;
        let file = self
            .0
            .open_blob(&d)
            .map_err(|e| store_error(e, digest, self.0.root()))?;
        let len = self
            .0
            .size(&d)
            .map_err(|e| store_error(e, digest, self.0.root()))?;
        Ok(BlobReader {
            reader: Box::new(file),
            len,
        })
    }

    fn begin_ingest(&self, expected: &Digest) -> Result<Box<dyn BlobIngest + '_>, StoreError> {
        let writer = self
            .0
            .writer()
            .map_err(|e| store_error(e, expected, self.0.root()))?;
        Ok(Box::new(CasIngest {
            writer,
            expected: expected.clone(),
            root: self.0.root(),
        }))
    }
}

/// Prints the per-layer lines `docker pull`/`docker push` print (byte counts are left out).
fn printer(quiet: bool) -> impl Fn(ProgressEvent) + Send + Sync {
    move |event| match &event {
        ProgressEvent::Downloading { .. }
        | ProgressEvent::Pushing { .. }
        | ProgressEvent::Resolved { .. }
        | ProgressEvent::ManifestPushed { .. } => {}
        ProgressEvent::Retrying { .. } => eprintln!("{}", event.docker_line()),
        _ if quiet => {}
        _ => println!("{}", event.docker_line()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `builder pull NAME`: fetches the image (only missing blobs) and names it in the local store.
pub fn pull(root: Option<&Path>, args: &PullArgs) -> Result<()> {
    let reference = registry::parse_reference(&args.name)?;
    let mut options = ClientOptions::from_env();
    if let Some(platform) = &args.platform {
        options.platform = Platform::parse(platform).with_context(|| {
            format!("invalid platform `{platform}` (expected os/arch[/variant])")
        })?;
    }
    let client = Client::new(options)?;
    let local = LocalImages::open(root)?;
    let blobs = CasBlobs(&local.cas);
    if !args.quiet {
        println!(
            "{}: Pulling from {}",
            reference.tag.as_deref().unwrap_or("latest"),
            reference.repository
        );
    }
    let progress = printer(args.quiet);
    let pulled = runtime()?.block_on(client.pull(&reference, &blobs, &progress))?;
    let manifest = &pulled.manifest.descriptor;
    let target = cache::Descriptor::new(
        manifest.media_type.clone(),
        to_cas(&manifest.digest)?,
        manifest.size,
    );
    let mut record = ImageRecord::new(target, to_cas(&pulled.parsed_manifest.config.digest)?);
    record.repo_digests = vec![format!(
        "{}@{}",
        LocalName::parse(&reference.name())?.familiar_repository(),
        pulled.resolved_digest
    )];
    let mut names = Vec::new();
    if reference.tag.is_some() {
        let tagged = reference.with_tag(reference.tag.as_deref().unwrap_or("latest"))?;
        names.push(LocalName::parse(&tagged.to_string())?);
    }
    let existed = local.store.get(&record.target.digest)?.is_some();
    local.store.put_and_tag(record, &names)?;
    let shown = LocalName::parse(&reference.to_string())?.familiar();
    if args.quiet {
        println!("{shown}");
    } else {
        println!("Digest: {}", pulled.resolved_digest);
        if existed {
            println!("Status: Image is up to date for {shown}");
        } else {
            println!("Status: Downloaded newer image for {shown}");
        }
        println!("{}", reference);
    }
    Ok(())
}

/// `builder push NAME`: sends the image's missing blobs, then its manifest, to the registry the
/// name points at; blobs are mounted from repositories the image was pulled from when possible.
pub fn push(root: Option<&Path>, args: &PushArgs) -> Result<()> {
    let reference = registry::parse_reference(&args.name)?;
    let local = LocalImages::open(root)?;
    let entry = local
        .store
        .resolve(&args.name)
        .with_context(|| format!("no such image: {}", args.name))?;
    let target = &entry.record.target;
    let manifest = Descriptor::new(
        target.media_type.clone(),
        from_cas(&target.digest).context("image digest")?,
        target.size,
    );
    // Repositories on the same registry that already hold this image's blobs.
    let mount_from = entry
        .record
        .repo_digests
        .iter()
        .filter_map(|rd| rd.split('@').next())
        .filter_map(|name| registry::parse_reference(name).ok())
        .filter(|r| r.registry == reference.registry && r.repository != reference.repository)
        .map(|r| r.repository)
        .collect();
    let client = Client::new(ClientOptions::from_env())?;
    let blobs = CasBlobs(&local.cas);
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let progress = printer(args.quiet);
    let options = PushOptions { mount_from };
    let pushed = runtime()?
        .block_on(client.push_with(&reference, &manifest, &blobs, &options, &progress))?;
    let repo_digest = format!(
        "{}@{}",
        LocalName::parse(&reference.name())?.familiar_repository(),
        pushed.digest
    );
    let key = target.digest.clone();
    local.store.update(|state| {
        if let Some(record) = state.images.get_mut(&key) {
            if !record.repo_digests.contains(&repo_digest) {
                record.repo_digests.push(repo_digest);
            }
        }
        Ok(())
    })?;
    if !args.quiet {
        println!(
            "{}: digest: {} size: {}",
            reference.tag.as_deref().unwrap_or("latest"),
            pushed.digest,
            pushed.size
        );
    }
    Ok(())
}

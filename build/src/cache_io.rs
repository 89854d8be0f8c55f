//! The build cache beyond this root: `--cache-from` imports before solving, `--cache-to` exports
//! after, and the collection that keeps the root under `--cache-max-size`.

use crate::BuildError;
use cache::export::{records_for, select_min, CacheBackend, CacheMode, CacheSpec};
use cache::gc::{self, GcOptions, GcReport};
use cache::keys::CacheKey;
use cache::RootDir;
use engine::solver::SolveResult;

/// One `--cache-from` source that was read.
#[derive(Debug, Clone)]
pub struct CacheImportReport {
    /// The spec as given.
    pub spec: CacheSpec,
    /// What the import did.
    pub report: cache::export::ImportReport,
}

/// One `--cache-to` destination that was written.
#[derive(Debug, Clone)]
pub struct CacheExportReport {
    /// The spec as given.
    pub spec: CacheSpec,
    /// What the export did.
    pub report: cache::export::ExportReport,
}

/// The collection that followed a build.
#[derive(Debug)]
pub struct CollectReport {
    /// The limit the root was over.
    pub limit: u64,
    /// What was removed.
    pub report: GcReport,
}

/// The backend a spec names; registry caches go through the registry client.
pub fn backend(spec: &CacheSpec) -> Result<Box<dyn CacheBackend>, BuildError> {
    match spec {
        CacheSpec::Registry { reference, .. } => {
            if reference.is_empty() {
                return Err(BuildError::Request(
                    "type=registry needs ref=REGISTRY/REPOSITORY[:TAG]".to_string(),
                ));
            }
            let cache =
                registry::RegistryCache::new(reference, registry::ClientOptions::from_env())
                    .map_err(|source| BuildError::CacheBackend {
                        spec: reference.clone(),
                        source: Box::new(source),
                    })?;
            Ok(Box::new(cache))
        }
        other => other.backend().map_err(BuildError::CacheTransfer),
    }
}

/// Parses every `--cache-from`/`--cache-to` value and opens its backend, so a typo fails before
/// any work.
pub fn parse_specs(values: &[String], export: bool) -> Result<Vec<CacheSpec>, BuildError> {
    values
        .iter()
        .map(|v| {
            let spec = CacheSpec::parse(v, export).map_err(BuildError::CacheTransfer)?;
            backend(&spec)?;
            Ok(spec)
        })
        .collect()
}

/// `--cache-from`: copies the exported keys and their blobs into the root before solving. An
/// unreadable source is a warning (the build runs without it), as in BuildKit.
pub(crate) fn import(
    root: &RootDir,
    specs: &[CacheSpec],
    warnings: &mut Vec<String>,
) -> Result<Vec<CacheImportReport>, BuildError> {
    let mut reports = Vec::new();
    for spec in specs {
        match backend(spec)?.import(root) {
            Ok(report) => reports.push(CacheImportReport {
                spec: spec.clone(),
                report,
            }),
            Err(e) => warnings.push(format!("importing cache: {e}")),
        }
    }
    Ok(reports)
}

/// `--cache-to`: exports the steps of the build (`mode=max`) or of the final image (`mode=min`).
pub(crate) fn export(
    root: &RootDir,
    specs: &[CacheSpec],
    result: &SolveResult,
) -> Result<Vec<CacheExportReport>, BuildError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<CacheKey> = result
        .steps
        .iter()
        .filter_map(|s| CacheKey::from_hex(&s.key))
        .collect();
    let all = records_for(root, &keys).map_err(BuildError::CacheTransfer)?;
    let mut reports = Vec::new();
    for spec in specs {
        let records = match spec.mode() {
            CacheMode::Max => all.clone(),
            CacheMode::Min => select_min(all.clone(), &result.layers),
        };
        let report = backend(spec)?
            .export(root, &records)
            .map_err(BuildError::CacheTransfer)?;
        reports.push(CacheExportReport {
            spec: spec.clone(),
            report,
        });
    }
    Ok(reports)
}

/// After a build: collects down to `limit` bytes (`0`: never) when the root is bigger, if no
/// other build holds the root. Failures only warn: the build itself succeeded.
pub(crate) fn collect(
    root: &RootDir,
    limit: u64,
    warnings: &mut Vec<String>,
) -> Option<CollectReport> {
    if limit == 0 || gc::root_size(root) <= limit {
        return None;
    }
    // Another build is running: the next one to finish collects.
    let lock = root.try_lock_exclusive().ok()?;
    let opts = GcOptions {
        keep_storage: Some(limit),
        ..Default::default()
    };
    match gc::collect(root, &lock, &opts) {
        Ok(report) => Some(CollectReport { limit, report }),
        Err(e) => {
            warnings.push(format!("cache collection: {e}"));
            None
        }
    }
}

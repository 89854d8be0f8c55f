//! Why a build failed, with enough kept to point at the Dockerfile line that failed.

use engine::solver::{SolveError, WorkError};
use frontend_dockerfile::instructions::{Diagnostic, ErrorKind};
use frontend_dockerfile::parser::ast::Span;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A flag or output spec that cannot work (caught before any work).
    #[error("{0}")]
    Request(String),
    #[error("build context {} is not a directory", .0.display())]
    ContextNotADirectory(PathBuf),
    #[error("reading {}: {source}", path.display())]
    ReadDockerfile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The Dockerfile does not parse; the parser's error starts with the line and column.
    #[error("{file}:{source}")]
    Parse {
        file: String,
        source: frontend_dockerfile::parser::ParseError,
    },
    #[error("reading the ignore file of {}: {message}", context.display())]
    IgnoreFile { context: PathBuf, message: String },
    /// Lowering refused the Dockerfile; the diagnostic renders file, line, column and caret.
    #[error("{0}")]
    Lower(Box<Diagnostic>),
    #[error("build checks failed (the Dockerfile sets check=error=true)")]
    ChecksFailed,
    #[error("opening the builder root directory: {0}")]
    Root(#[source] cache::lock::LockError),
    #[error("opening the image store: {0}")]
    ImageStore(#[source] cache::ImageStoreError),
    #[error("opening build records: {0}")]
    Records(#[source] cache::records::RecordError),
    #[error("build cache: {0}")]
    CacheTransfer(#[source] cache::export::CacheTransferError),
    #[error("build cache {spec}: {source}")]
    CacheBackend {
        spec: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("starting the worker: {0}")]
    Worker(#[source] WorkError),
    #[error("starting the solver: {0}")]
    Solver(#[source] Box<SolveError>),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A step (or the solve around it) failed; [`BuildError::render`] shows the Dockerfile lines.
    #[error("{source}")]
    Solve {
        file: String,
        dockerfile: String,
        #[source]
        source: Box<SolveError>,
    },
    #[error("writing the image: {0}")]
    Image(#[source] engine::image::ImageError),
    #[error("image {0} is not in the local store")]
    ImageMissing(cache::Digest),
    #[error("invalid name {name:?}: {source}")]
    BadName {
        name: String,
        source: cache::ReferenceError,
    },
    #[error("exporting: {0}")]
    Export(#[source] engine::export::ExportError),
    /// `--load`: the Docker engine could not be reached or refused the image.
    #[error(transparent)]
    DockerLoad(#[from] crate::docker_load::DockerLoadError),
    #[error("pushing {reference}: {source}")]
    Push {
        reference: String,
        source: registry::RegistryError,
    },
}

impl BuildError {
    /// The error as a user reads it. A failed step (or a base image that cannot be resolved)
    /// shows its last output lines, as BuildKit does, then the Dockerfile diagnostic: file, line
    /// and column, the instruction's lines and a caret under the instruction, rendered by the
    /// frontend's one renderer. Any other error is its message.
    pub fn render(&self) -> String {
        let BuildError::Solve {
            file,
            dockerfile,
            source,
        } = self
        else {
            return self.to_string();
        };
        let (message, line_range, last_lines) = match source.as_ref() {
            SolveError::Step {
                name,
                line_range,
                source,
            } => {
                let last_lines = match source.as_ref() {
                    WorkError::ExitCode { last_lines, .. } => last_lines.as_slice(),
                    _ => &[],
                };
                (format!("{name}: {source}"), *line_range, last_lines)
            }
            SolveError::Image { line_range, .. } => (source.to_string(), *line_range, &[][..]),
            _ => return self.to_string(),
        };
        let mut out = String::new();
        if !last_lines.is_empty() {
            out.push_str("------\n");
            let skip = last_lines.len().saturating_sub(10);
            for l in &last_lines[skip..] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("------\n");
        }
        let _ = write!(
            out,
            "{}",
            step_diagnostic(file, dockerfile, line_range, message)
        );
        out
    }
}

/// The diagnostic of a failed step: located at the first non-blank character of its first line,
/// spanning that line, with its continuation lines.
fn step_diagnostic(
    file: &str,
    dockerfile: &str,
    line_range: Option<(usize, usize)>,
    message: String,
) -> Diagnostic {
    let kind = ErrorKind::Build(message);
    let Some((start, end)) = line_range.filter(|(start, _)| *start > 0) else {
        return Diagnostic::unlocated(kind).in_file(file);
    };
    let text = dockerfile.lines().nth(start - 1).unwrap_or("");
    let indent = text.chars().take_while(|c| c.is_whitespace()).count();
    let width = text.trim().chars().count();
    let span = Span {
        start: 0,
        end: width,
        line: start,
        column: indent + 1,
    };
    Diagnostic::new(kind, span, text)
        .in_file(file)
        .with_following_lines(dockerfile, end)
}

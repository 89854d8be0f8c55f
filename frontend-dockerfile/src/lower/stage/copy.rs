//! `COPY` and `ADD`: sources, destinations, ownership and modes, `--link`, `--parents`,
//! `--exclude`, URLs and git sources, heredoc files (BuildKit's `convert_copy`).

use super::*;

impl<'a> Lowerer<'a> {
    pub(super) fn copy(
        &mut self,
        st: &mut StageState,
        node: &Node,
        c: &CopyArgs,
        from: Option<VertexId>,
        kind: CopyKind,
    ) -> Result<(), Diagnostic> {
        let platform = st.platform.clone();
        let link = c.link && c.chmod.is_none();
        self.check_chown_names(st, node, c, link)?;
        check_checksum(node, c, kind.checksum().is_some())?;
        let template = SpecTemplate {
            dest: st.resolve_path(&c.dest),
            c,
        };
        let mut inputs = StepInputs(if link { Vec::new() } else { vec![st.current] });
        let local_input = self.local_input(node, c, from, &platform)?;
        let mut created = history_prefix(c, &kind);
        let mut actions = Vec::new();
        for src in &c.sources {
            created.push(' ');
            created.push_str(src);
            let spec = if let Some(git) = git_source(src) {
                let v = self.git_vertex(st, node, &kind, git, &platform)?;
                let mut spec = template.spec(inputs.index_of(v), "/".into());
                spec.follow_symlinks = false;
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                spec
            } else if is_http(src) {
                let (v, filename) = self.http_vertex(st, node, &kind, src, &platform)?;
                let mut spec = template.spec(inputs.index_of(v), format!("/{filename}"));
                spec.attempt_unpack = kind.unpack().unwrap_or(false);
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                spec.follow_symlinks = false;
                spec.dir_contents_only = false;
                spec
            } else {
                let input = local_input.expect("local sources have an input");
                local_spec(&template, inputs.index_of(input), src, &kind)
            };
            actions.push(FileAction::Copy(spec));
        }
        for inline in &c.inline {
            created.push_str(&format!(" <<{}", inline.name));
            let v = self.inline_document(node, &inline.name, &inline.data, 0o644, &platform)?;
            let mut spec = template.spec(inputs.index_of(v), format!("/{}", inline.name));
            spec.follow_symlinks = false;
            spec.dir_contents_only = false;
            spec.allow_wildcard = false;
            spec.allow_empty_wildcard = false;
            actions.push(FileAction::Copy(spec));
        }
        created.push(' ');
        created.push_str(&c.dest);
        created.push_str(" # buildkit");
        self.add_copy_step(st, node, created, actions, inputs.0, link, &platform)
    }

    /// The vertex the copy's local sources read: the `--from` stage or image, or the build
    /// context narrowed to the paths the sources name. `None` when every source is remote.
    fn local_input(
        &mut self,
        node: &Node,
        c: &CopyArgs,
        from: Option<VertexId>,
        platform: &Platform,
    ) -> Result<Option<VertexId>, Diagnostic> {
        let local_sources: Vec<&String> = c
            .sources
            .iter()
            .filter(|s| !is_http(s) && git_source(s).is_none())
            .collect();
        if local_sources.is_empty() {
            return Ok(None);
        }
        Ok(Some(match from {
            Some(v) => v,
            None => self.context_source(node, context_includes(&local_sources), platform)?,
        }))
    }

    /// The source vertex of an `ADD` of a git repository (COPY refuses one).
    fn git_vertex(
        &mut self,
        st: &StageState,
        node: &Node,
        kind: &CopyKind,
        (remote, reference, subdir): GitSource,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        let CopyKind::Add {
            checksum,
            keep_git_dir,
            ..
        } = kind
        else {
            return Err(node_error(
                node,
                ErrorKind::Unsupported("a git source can only be used with ADD".into()),
                node.keyword_span,
            )
            .with_help("use `ADD` for git repositories"));
        };
        let name = self.display_name(st, node);
        let op = Op::Source(SourceOp::Git {
            remote,
            reference,
            subdir,
            keep_git_dir: *keep_git_dir,
            checksum: checksum.clone(),
        });
        let meta = VertexMeta {
            name,
            ..VertexMeta::default()
        };
        self.add(node, op, vec![], platform, meta)
    }

    /// The source vertex of an `ADD` of an HTTP(S) URL (COPY refuses one), and the file name the
    /// download is stored under.
    fn http_vertex(
        &mut self,
        st: &StageState,
        node: &Node,
        kind: &CopyKind,
        url: &str,
        platform: &Platform,
    ) -> Result<(VertexId, String), Diagnostic> {
        let CopyKind::Add { checksum, .. } = kind else {
            return Err(node_error(
                node,
                ErrorKind::Unsupported("a URL source can only be used with ADD".into()),
                node.keyword_span,
            )
            .with_help("use `ADD` to download files"));
        };
        let filename = url_filename(url);
        let name = self.display_name(st, node);
        let op = Op::Source(SourceOp::Http {
            url: url.to_string(),
            checksum: checksum.clone(),
            filename: filename.clone(),
        });
        let meta = VertexMeta {
            name,
            ..VertexMeta::default()
        };
        Ok((self.add(node, op, vec![], platform, meta)?, filename))
    }

    /// A `--chown` name needs an /etc/passwd or /etc/group to be looked up in: a `--link` copy is
    /// made apart from the image, and an empty `FROM scratch` stage has none; BuildKit fails both.
    fn check_chown_names(
        &self,
        st: &StageState,
        node: &Node,
        c: &CopyArgs,
        link: bool,
    ) -> Result<(), Diagnostic> {
        if let (true, Some(chown)) = (link, &c.chown) {
            // A linked copy is made apart from the image, so there is no /etc/passwd or
            // /etc/group to look a name up in; BuildKit fails such a copy.
            if let Some(name) = crate::lower::chown_name(chown) {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported(format!(
                        "COPY --link cannot look up the name {name:?} of --chown (a linked copy \
                         does not see the image's /etc/passwd and /etc/group): use numeric ids"
                    )),
                    node.keyword_span,
                ));
            }
        }
        if let Some(name) = c.chown.as_deref().and_then(crate::lower::chown_name) {
            if !link && crate::lower::is_empty_scratch(&self.def, st.current) {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported(format!(
                        "--chown cannot look up the name {name:?}: the stage's filesystem is \
                         still the empty one of FROM scratch, with no /etc/passwd or /etc/group \
                         to read: use numeric ids"
                    )),
                    node.keyword_span,
                ));
            }
        }
        Ok(())
    }

    /// Adds the copy's step: a file op on the stage, or, with `--link`, a file op on nothing
    /// merged onto the stage (BuildKit's `LINK` step, which keeps its cache when the stage
    /// below changes).
    #[allow(clippy::too_many_arguments)]
    fn add_copy_step(
        &mut self,
        st: &mut StageState,
        node: &Node,
        created: String,
        actions: Vec<FileAction>,
        inputs: Vec<VertexId>,
        link: bool,
        platform: &Platform,
    ) -> Result<(), Diagnostic> {
        let name = self.display_name(st, node);
        let name = st.prefix(&name);
        let history = Some(HistoryEntry {
            created_by: created,
            empty_layer: false,
        });
        if link {
            let meta = Self::meta(st, node, name.clone(), None);
            let layer = self.add(
                node,
                Op::File(FileOp {
                    base: None,
                    actions,
                }),
                inputs,
                platform,
                meta,
            )?;
            let link_name = match name.find("] ") {
                Some(p) => format!("{}LINK {}", &name[..p + 2], &name[p + 2..]),
                None => format!("LINK {name}"),
            };
            let meta = Self::meta(st, node, link_name, history);
            st.current = self.add(
                node,
                Op::Merge(MergeOp {}),
                vec![st.current, layer],
                platform,
                meta,
            )?;
        } else {
            let meta = Self::meta(st, node, name, history);
            st.current = self.add(
                node,
                Op::File(FileOp {
                    base: Some(0),
                    actions,
                }),
                inputs,
                platform,
                meta,
            )?;
        }
        Ok(())
    }
}

/// Which of COPY/ADD, with the options only one of them has.
pub(super) enum CopyKind {
    Copy {
        parents: bool,
    },
    Add {
        checksum: Option<String>,
        keep_git_dir: bool,
        unpack: Option<bool>,
    },
}

impl CopyKind {
    fn checksum(&self) -> Option<&String> {
        match self {
            CopyKind::Add { checksum, .. } => checksum.as_ref(),
            CopyKind::Copy { .. } => None,
        }
    }

    fn unpack(&self) -> Option<bool> {
        match self {
            CopyKind::Add { unpack, .. } => *unpack,
            CopyKind::Copy { .. } => None,
        }
    }

    fn parents(&self) -> bool {
        matches!(self, CopyKind::Copy { parents: true })
    }
}

/// The inputs of a copy step, each vertex once: a copy spec names its source by index.
struct StepInputs(Vec<VertexId>);

impl StepInputs {
    fn index_of(&mut self, v: VertexId) -> InputIndex {
        let position = match self.0.iter().position(|&x| x == v) {
            Some(p) => p,
            None => {
                self.0.push(v);
                self.0.len() - 1
            }
        };
        position as InputIndex
    }
}

/// What every source of one COPY/ADD shares: the destination and the flags that apply to all.
struct SpecTemplate<'c> {
    dest: String,
    c: &'c CopyArgs,
}

impl SpecTemplate<'_> {
    fn spec(&self, source_input: InputIndex, src: String) -> CopySpec {
        let mut spec = CopySpec::new(source_input, src, self.dest.clone());
        spec.owner = self.c.chown.clone();
        spec.mode = self.c.chmod.clone();
        spec.exclude_patterns = self.c.exclude.clone();
        spec
    }
}

/// The spec of a source in the context or a `--from` stage: with `--parents`, the part after a
/// `/./` pivot (or the whole path without one) is kept below the destination.
fn local_spec(
    template: &SpecTemplate<'_>,
    input: InputIndex,
    src: &str,
    kind: &CopyKind,
) -> CopySpec {
    let parents = kind.parents();
    let (src_path, include) = if parents {
        match src.split_once("/./") {
            Some((parent, pattern)) => (parent.to_string(), pattern.to_string()),
            None => ("/".to_string(), src.to_string()),
        }
    } else {
        (src.to_string(), String::new())
    };
    let mut spec = template.spec(input, clean_path(&src_path));
    if parents {
        spec.include_patterns = vec![clean_path(&include).trim_start_matches('/').to_string()];
        spec.preserve_parents = true;
    }
    let is_add = matches!(kind, CopyKind::Add { .. });
    spec.attempt_unpack = is_add && kind.unpack().unwrap_or(true);
    spec
}

/// The start of the step's history line: the keyword and the flags BuildKit records.
fn history_prefix(c: &CopyArgs, kind: &CopyKind) -> String {
    let mut created = String::from(match kind {
        CopyKind::Add { .. } => "ADD",
        CopyKind::Copy { .. } => "COPY",
    });
    if kind.parents() {
        created.push_str(" --parents");
    }
    if let Some(chown) = &c.chown {
        created.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &c.chmod_text {
        created.push_str(&format!(" --chmod={chmod}"));
    }
    created
}

/// A git source: remote, reference, subdirectory.
type GitSource = (String, Option<String>, Option<String>);

fn is_http(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && git_source(src).is_none()
}

/// `(remote, ref, subdir)` when `src` names a git repository: `git@host:repo`, `git://`,
/// `ssh://`, or an HTTP(S) URL whose path ends in `.git`; `#ref:subdir` selects what to check out.
fn git_source(src: &str) -> Option<GitSource> {
    let (remote, fragment) = match src.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (src, None),
    };
    let lower = remote.to_ascii_lowercase();
    let is_git = lower.starts_with("git@")
        || lower.starts_with("git://")
        || lower.starts_with("ssh://")
        || ((lower.starts_with("http://") || lower.starts_with("https://"))
            && lower.trim_end_matches('/').ends_with(".git"));
    if !is_git {
        return None;
    }
    let (reference, subdir) = match fragment {
        Some(f) => match f.split_once(':') {
            Some((r, s)) => (
                Some(r.to_string()).filter(|r| !r.is_empty()),
                Some(s.to_string()).filter(|s| !s.is_empty()),
            ),
            None => (Some(f.to_string()).filter(|r| !r.is_empty()), None),
        },
        None => (None, None),
    };
    Some((remote.to_string(), reference, subdir))
}

/// The file name an HTTP download is stored under: the URL path's last component.
fn url_filename(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query
        .split_once("://")
        .map(|x| x.1)
        .unwrap_or(without_query);
    let path = after_scheme.split_once('/').map(|x| x.1).unwrap_or("");
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// `ADD --checksum` verifies one remote source (HTTP(S) or git), as BuildKit allows it.
fn check_checksum(node: &Node, c: &CopyArgs, checksum: bool) -> Result<(), Diagnostic> {
    if checksum {
        let remote =
            c.sources.len() == 1 && (is_http(&c.sources[0]) || git_source(&c.sources[0]).is_some());
        if !remote {
            return Err(node_error(
                node,
                ErrorKind::Unsupported("--checksum needs exactly one HTTP(S) or git source".into()),
                node.keyword_span,
            ));
        }
    }
    Ok(())
}

/// The paths of the build context a COPY reads (what the context source includes): each local
/// source cleaned and relative, `.` for the whole context.
fn context_includes(local_sources: &[&String]) -> Vec<String> {
    local_sources
        .iter()
        .map(|s| {
            let cleaned = clean_path(&s.replace("/./", "/"));
            let rel = cleaned.trim_start_matches('/');
            if rel.is_empty() {
                ".".to_string()
            } else {
                rel.to_string()
            }
        })
        .collect()
}

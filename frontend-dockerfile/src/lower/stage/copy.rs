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
        let is_add = matches!(kind, CopyKind::Add { .. });
        let dest = st.resolve_path(&c.dest);
        let link = c.link && c.chmod.is_none();
        self.check_chown_names(st, node, c, link)?;
        let mut inputs: Vec<VertexId> = if link { Vec::new() } else { vec![st.current] };
        let input_of = |v: VertexId, inputs: &mut Vec<VertexId>| -> InputIndex {
            match inputs.iter().position(|&x| x == v) {
                Some(p) => p as InputIndex,
                None => {
                    inputs.push(v);
                    (inputs.len() - 1) as InputIndex
                }
            }
        };
        let (checksum, keep_git_dir, unpack) = match &kind {
            CopyKind::Add {
                checksum,
                keep_git_dir,
                unpack,
            } => (checksum.clone(), *keep_git_dir, *unpack),
            CopyKind::Copy { .. } => (None, false, None),
        };
        let parents = matches!(kind, CopyKind::Copy { parents: true });
        let mut created = String::from(if is_add { "ADD" } else { "COPY" });
        if parents {
            created.push_str(" --parents");
        }
        if let Some(chown) = &c.chown {
            created.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &c.chmod_text {
            created.push_str(&format!(" --chmod={chmod}"));
        }
        check_checksum(node, c, checksum.is_some())?;
        let base_spec = |source_input: InputIndex, src: String| {
            let mut spec = CopySpec::new(source_input, src, dest.clone());
            spec.owner = c.chown.clone();
            spec.mode = c.chmod.clone();
            spec.exclude_patterns = c.exclude.clone();
            spec
        };
        let mut actions = Vec::new();
        let local_sources: Vec<&String> = c
            .sources
            .iter()
            .filter(|s| !is_http(s) && git_source(s).is_none())
            .collect();
        let local_input = if local_sources.is_empty() {
            None
        } else {
            Some(match from {
                Some(v) => v,
                None => self.context_source(node, context_includes(&local_sources), &platform)?,
            })
        };
        for src in &c.sources {
            created.push(' ');
            created.push_str(src);
            if let Some(git) = git_source(src) {
                if !is_add {
                    return Err(node_error(
                        node,
                        ErrorKind::Unsupported("a git source can only be used with ADD".into()),
                        node.keyword_span,
                    )
                    .with_help("use `ADD` for git repositories"));
                }
                let name = self.display_name(st, node);
                let v = self.add(
                    node,
                    Op::Source(SourceOp::Git {
                        remote: git.0,
                        reference: git.1,
                        subdir: git.2,
                        keep_git_dir,
                        checksum: checksum.clone(),
                    }),
                    vec![],
                    &platform,
                    VertexMeta {
                        name,
                        ..VertexMeta::default()
                    },
                )?;
                let mut spec = base_spec(input_of(v, &mut inputs), "/".into());
                spec.follow_symlinks = false;
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                actions.push(FileAction::Copy(spec));
            } else if is_http(src) {
                if !is_add {
                    return Err(node_error(
                        node,
                        ErrorKind::Unsupported("a URL source can only be used with ADD".into()),
                        node.keyword_span,
                    )
                    .with_help("use `ADD` to download files"));
                }
                let filename = url_filename(src);
                let name = self.display_name(st, node);
                let v = self.add(
                    node,
                    Op::Source(SourceOp::Http {
                        url: src.clone(),
                        checksum: checksum.clone(),
                        filename: filename.clone(),
                    }),
                    vec![],
                    &platform,
                    VertexMeta {
                        name,
                        ..VertexMeta::default()
                    },
                )?;
                let mut spec = base_spec(input_of(v, &mut inputs), format!("/{filename}"));
                spec.attempt_unpack = unpack.unwrap_or(false);
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                spec.follow_symlinks = false;
                spec.dir_contents_only = false;
                actions.push(FileAction::Copy(spec));
            } else {
                let input = local_input.expect("local sources have an input");
                let (src_path, include) = if parents {
                    match src.split_once("/./") {
                        Some((parent, pattern)) => (parent.to_string(), pattern.to_string()),
                        None => ("/".to_string(), src.clone()),
                    }
                } else {
                    (src.clone(), String::new())
                };
                let mut spec = base_spec(input_of(input, &mut inputs), clean_path(&src_path));
                if parents {
                    spec.include_patterns =
                        vec![clean_path(&include).trim_start_matches('/').to_string()];
                    spec.preserve_parents = true;
                }
                spec.attempt_unpack = is_add && unpack.unwrap_or(true);
                actions.push(FileAction::Copy(spec));
            }
        }
        for inline in &c.inline {
            created.push_str(&format!(" <<{}", inline.name));
            let v = self.inline_document(node, &inline.name, &inline.data, 0o644, &platform)?;
            let mut spec = base_spec(input_of(v, &mut inputs), format!("/{}", inline.name));
            spec.follow_symlinks = false;
            spec.dir_contents_only = false;
            spec.allow_wildcard = false;
            spec.allow_empty_wildcard = false;
            actions.push(FileAction::Copy(spec));
        }
        created.push(' ');
        created.push_str(&c.dest);
        created.push_str(" # buildkit");
        self.add_copy_step(st, node, created, actions, inputs, link, &platform)
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

fn is_http(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && git_source(src).is_none()
}

/// `(remote, ref, subdir)` when `src` names a git repository: `git@host:repo`, `git://`,
/// `ssh://`, or an HTTP(S) URL whose path ends in `.git`; `#ref:subdir` selects what to check out.
fn git_source(src: &str) -> Option<(String, Option<String>, Option<String>)> {
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

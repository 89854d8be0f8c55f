//! Where a stage's inputs come from: base images (resolved for their config), named build
//! contexts, the main context, `COPY --from` and `RUN --mount=from=` references, and inline
//! documents (heredocs).

use super::*;

impl<'a> Lowerer<'a> {
    /// A one-file filesystem holding a heredoc body (`/<name>`), for RUN and COPY to use.
    pub(super) fn inline_document(
        &mut self,
        node: &Node,
        name: &str,
        data: &str,
        mode: u32,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        self.add(
            node,
            Op::File(FileOp {
                base: None,
                actions: vec![FileAction::Mkfile {
                    path: format!("/{name}"),
                    mode,
                    data: data.to_string(),
                    owner: None,
                }],
            }),
            vec![],
            platform,
            VertexMeta {
                name: "preparing inline document".into(),
                ..VertexMeta::default()
            },
        )
    }

    pub(super) fn image_source(
        &mut self,
        node: &Node,
        reference: &str,
        platform: &Platform,
        name: String,
        stage: Option<StageId>,
    ) -> Result<VertexId, Diagnostic> {
        let reference = normalize_image_reference(reference).map_err(|e| {
            node_error(
                node,
                ErrorKind::BadValue {
                    what: "image reference".into(),
                    value: reference.to_string(),
                    reason: e.to_string(),
                },
                node.keyword_span,
            )
        })?;
        self.add(
            node,
            Op::Source(SourceOp::Image {
                reference,
                platform: platform.clone(),
            }),
            vec![],
            platform,
            VertexMeta {
                name,
                stage,
                line_range: Some((node.start_line, node.end_line)),
                history: None,
            },
        )
    }

    /// The files of the local `--build-context` `name`, whole (its own `.dockerignore` is the
    /// solver's filter).
    pub(super) fn named_context_source(
        &mut self,
        node: &Node,
        name: &str,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        self.add(
            node,
            Op::Source(SourceOp::Context {
                name: name.to_string(),
                includes: Vec::new(),
                excludes: Vec::new(),
            }),
            vec![],
            platform,
            VertexMeta {
                name: format!("[context {name}] load from client"),
                ..VertexMeta::default()
            },
        )
    }

    pub(super) fn context_source(
        &mut self,
        node: &Node,
        includes: Vec<String>,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        self.add(
            node,
            Op::Source(SourceOp::Context {
                name: self.opts.context_name.clone(),
                includes,
                excludes: self.opts.dockerignore.clone(),
            }),
            vec![],
            platform,
            VertexMeta {
                name: "[internal] load build context".into(),
                ..VertexMeta::default()
            },
        )
    }

    pub(super) fn resolve_base_config(
        &self,
        node: &Node,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImageConfig>, Diagnostic> {
        let Some(resolver) = self.opts.resolver else {
            return Ok(None);
        };
        resolver.resolve(reference, platform).map_err(|e| {
            node_error(
                node,
                ErrorKind::BadValue {
                    what: "base image".into(),
                    value: reference.to_string(),
                    reason: e,
                },
                node.args
                    .first()
                    .map(|w| w.span)
                    .unwrap_or(node.keyword_span),
            )
        })
    }

    /// Resolves `COPY --from` to the vertex holding the files.
    pub(super) fn copy_source(
        &mut self,
        st: &StageState,
        node: &Node,
        from: &str,
    ) -> Result<VertexId, Diagnostic> {
        let span = node
            .flags
            .iter()
            .find(|f| f.value.starts_with("--from"))
            .map(|f| f.span)
            .unwrap_or(node.keyword_span);
        self.ref_vertex(st, node, from, span)
    }

    pub(super) fn ref_vertex(
        &mut self,
        st: &StageState,
        node: &Node,
        value: &str,
        span: crate::parser::ast::Span,
    ) -> Result<VertexId, Diagnostic> {
        match resolve_ref(
            value,
            self.names,
            &self.opts.named_contexts,
            self.stages.len(),
            node,
            span,
        )? {
            SourceRef::Context(name) => {
                let platform = st.platform.clone();
                self.named_context_source(node, &name, &platform)
            }
            SourceRef::Stage(j) => match self.finished.get(&j) {
                Some(f) => Ok(f.vertex),
                None => Err(node_error(
                    node,
                    ErrorKind::Cycle(format!("stage-{} -> stage-{j}", st.index)),
                    span,
                )),
            },
            SourceRef::Image(image) => {
                let name = format!(
                    "FROM {}",
                    normalize_image_reference(&image).unwrap_or(image.clone())
                );
                let platform = st.platform.clone();
                self.image_source(node, &image, &platform, name, None)
                    .map_err(|mut d| {
                        d.span = span;
                        d
                    })
            }
        }
    }
}

//! The errors `builder build` would stop at, found with the build's own code: every instruction
//! through [`instructions::parse`] (unknown instructions, bad flags, wrong arguments), the whole
//! file through [`lower::lower`] (stages, references, values), and each COPY/ADD from the build
//! context through the engine's source resolution ([`engine::fileops::plan::resolve`]) over the
//! walked context, as the solver plans it before running anything.

use super::{Finding, LintInput};
use crate::instructions::{self, Diagnostic, ErrorKind, Verbatim};
use crate::lower::{self, LowerOptions};
use crate::parser::ast::{Dockerfile, Span};
use engine::fileops::{self, plan, FileOpError};
use engine::graph::{FileAction, Op, SourceOp};
use engine::source::context::ContextSnapshot;

/// The rule every build error is reported under.
pub const RULE: &str = "BL0001";

pub(crate) fn check(dockerfile: &Dockerfile, input: &LintInput<'_>, out: &mut Vec<Finding>) {
    // Structure: the build rejects these in every stage, reached or not; report them all.
    let mut structural = false;
    for node in &dockerfile.children {
        if let Err(d) = instructions::parse(node, &Verbatim, "Dockerfile") {
            if d.kind.is_structural() {
                structural = true;
                out.push(finding(&d));
            }
        }
    }
    if structural {
        return;
    }
    let opts = LowerOptions {
        source: Some(input.source),
        build_args: input.build_args.clone(),
        target: input.target.clone(),
        ..LowerOptions::default()
    };
    let lowered = match lower::lower(dockerfile, &opts) {
        Ok(l) => l,
        Err(d) => {
            out.push(finding(&d));
            return;
        }
    };
    let Some(snapshot) = input.context.and_then(|c| c.snapshot.as_ref()) else {
        return;
    };
    missing_sources(
        dockerfile,
        &lowered.definition,
        &opts.context_name,
        snapshot,
        out,
    );
}

/// COPY/ADD sources of the main build context that the build would not find.
fn missing_sources(
    dockerfile: &Dockerfile,
    definition: &engine::graph::Definition,
    context_name: &str,
    snapshot: &ContextSnapshot,
    out: &mut Vec<Finding>,
) {
    for vertex in definition.vertices() {
        let Op::File(file) = &vertex.op else { continue };
        for action in &file.actions {
            let FileAction::Copy(spec) = action else {
                continue;
            };
            let from_main_context = vertex
                .inputs
                .get(spec.source_input as usize)
                .and_then(|id| definition.vertex(*id))
                .is_some_and(|v| {
                    matches!(&v.op, Op::Source(SourceOp::Context { name, .. }) if name == context_name)
                });
            if !from_main_context {
                continue;
            }
            let op = if spec.attempt_unpack { "ADD" } else { "COPY" };
            let copy = fileops::CopyAction::from_spec(
                spec,
                fileops::CONTEXT.to_string(),
                true,
                Vec::new(),
            );
            let Err(e) = plan::resolve(snapshot, &copy, op) else {
                continue;
            };
            let line = vertex.line_range.map(|(l, _)| l).unwrap_or(0);
            out.push(source_finding(dockerfile, line, &e));
        }
    }
}

/// A finding for a source the context lacks, pointing at the source word when it can.
fn source_finding(dockerfile: &Dockerfile, line: usize, e: &FileOpError) -> Finding {
    let node = dockerfile.children.iter().find(|n| n.start_line == line);
    let path = match e {
        FileOpError::NotFound { path, .. } | FileOpError::DanglingSource { path, .. } => {
            Some(path.as_str())
        }
        _ => None,
    };
    let clean = |s: &str| {
        s.trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string()
    };
    let span = node
        .and_then(|n| {
            let wanted = clean(path?);
            n.args
                .iter()
                .find(|w| clean(&w.value) == wanted)
                .map(|w| w.span)
                .or(Some(n.keyword_span))
        })
        .unwrap_or(Span {
            line,
            column: 1,
            ..Span::default()
        });
    let mut f = Finding::new(RULE, span, e.to_string());
    if path.is_some() {
        f = f.help("add the file to the build context, fix the path, or check that .dockerignore does not exclude it");
    }
    f
}

/// A finding for a diagnostic of the build's parsing and lowering.
fn finding(d: &Diagnostic) -> Finding {
    let mut f = Finding::new(RULE, d.span, d.kind.to_string());
    f.same_as = match d.kind.as_ref() {
        ErrorKind::InstructionBeforeFrom { .. } | ErrorKind::NoStages => Some("DL3061"),
        ErrorKind::SelfReference => Some("DL3023"),
        ErrorKind::BadValue { what, .. } if what == "base image" || what == "image reference" => {
            Some("InvalidDefaultArgInFrom")
        }
        _ => None,
    };
    if let Some(help) = &d.help {
        f = f.help(help.clone());
    }
    f
}

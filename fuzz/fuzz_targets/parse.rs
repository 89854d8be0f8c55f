//! Any text through the Dockerfile parser and both dumps: nothing may panic.
#![no_main]

use frontend_dockerfile::parser::{self, dump, heredoc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match parser::parse(&src) {
        Ok(file) => {
            let _ = dump::ast(&file);
            let _ = dump::json(&file);
            for node in &file.children {
                // Every span must lie inside the source on character boundaries.
                for w in node.args.iter().chain(&node.flags) {
                    assert!(w.span.start <= w.span.end && w.span.end <= src.len());
                    assert!(src.is_char_boundary(w.span.start) && src.is_char_boundary(w.span.end));
                }
                assert!(node.span.end <= src.len());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(first) = src.lines().next() {
        let _ = heredoc::heredocs_from_line(first);
        let _ = heredoc::parse_heredoc_word(first);
    }
});

//! Fuzzes the shell-word expander: no input may panic, and the three entry points must agree.
//!
//! Input layout: byte 0 picks the escape character and the lexer modes; the rest, as UTF-8, is
//! split on NUL into the word and then values for the variables `A`, `B`, `C` (so patterns and
//! replacements built from variables are exercised too).
#![no_main]

use frontend_dockerfile::shell::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.split('\0');
    let word = parts.next().unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        ("PWD".into(), "/home".into()),
        ("NULL".into(), String::new()),
    ];
    for (name, value) in ["A", "B", "C"].iter().zip(parts) {
        env.push((name.to_string(), value.to_string()));
    }
    let lexer = Lexer::new(if mode & 1 == 0 { '\\' } else { '`' })
        .raw_quotes(mode & 2 != 0)
        .raw_escapes(mode & 4 != 0)
        .skip_process_quotes(mode & 8 != 0)
        .skip_unset_env(mode & 16 != 0);

    let full = lexer.process_word_with_matches(word, &env);
    let single = lexer.process_word(word, &env);
    let split = lexer.process_words(word, &env);
    match (&full, &single, &split) {
        (Ok(f), Ok(s), Ok(w)) => {
            assert_eq!(&f.result, s);
            assert_eq!(&f.words, w);
            assert!(w.iter().all(|x| !x.is_empty()));
            assert!(f.matched.is_disjoint(&f.unmatched));
        }
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
            assert!(a.offset <= word.len());
            assert!(word.is_char_boundary(a.offset));
        }
        _ => panic!("entry points disagree on {word:?}"),
    }
    // A word with nothing special in it comes back unchanged (less a leading byte-order mark,
    // which BuildKit's scanner skips).
    let escape = lexer.escape();
    if !word.contains(['$', '\'', '"', escape]) {
        if let Ok(s) = single {
            assert_eq!(s, word.strip_prefix('\u{feff}').unwrap_or(word));
        }
    }
});

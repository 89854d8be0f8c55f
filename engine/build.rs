//! Marks the tests this machine cannot run as ignored, with their reason (see `test_support`).

fn main() {
    test_support::emit_cfgs();
}

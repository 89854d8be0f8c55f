//! The `builder` command.

fn main() {
    engine::executor::maybe_run_helper();
    println!("builder");
}

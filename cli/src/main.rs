//! The `builder` command.

fn main() {
    println!("builder");
}

//! Rebuild when a migration is added: `sqlx::migrate!` embeds the directory at compile time but
//! cannot tell cargo that a new file appeared.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}

//! Regenerates the captures in `fixtures/` (see fixtures/README.md).
//! Usage: cargo run --example make_fixtures [DIR]

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fixtures".into());
    recengine::testkit::generate_fixtures(std::path::Path::new(&dir))?;
    println!("fixtures written to {dir}");
    Ok(())
}

//! Catalogs for tests: every catalog test runs on SQLite and, when a
//! PostgreSQL server answers, on PostgreSQL too (each test in a schema of
//! its own, dropped afterwards). The server is `RECENGINE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); without one the
//! PostgreSQL half is skipped with a message, unless
//! `RECENGINE_REQUIRE_SERVICES=1` (as in CI) makes that a failure.

use std::ops::Deref;

use super::Catalog;
use crate::config::{CatalogBackend, CatalogConfig};

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("RECENGINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether the test PostgreSQL server answers (else why not, printed).
pub fn postgres_up() -> bool {
    match postgres::Client::connect(&postgres_url(), postgres::NoTls) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("RECENGINE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "RECENGINE_REQUIRE_SERVICES=1 but PostgreSQL at {} does not answer: {e}",
                postgres_url()
            );
            eprintln!(
                "SKIP (PostgreSQL half): no PostgreSQL at {} ({e})",
                postgres_url()
            );
            false
        }
    }
}

/// A schema name no other test run uses.
pub fn fresh_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t_{clean}_{}_{nanos}", std::process::id())
}

/// The `[catalog]` of a PostgreSQL catalog in `schema`.
pub fn postgres_config(schema: &str, node: &str) -> CatalogConfig {
    CatalogConfig {
        backend: CatalogBackend::Postgres,
        url: postgres_url(),
        schema: schema.into(),
        node_id: node.into(),
        pool_size: 4,
        ..CatalogConfig::default()
    }
}

/// Drops a test schema (and everything in it).
pub fn drop_schema(schema: &str) {
    if let Ok(mut c) = postgres::Client::connect(&postgres_url(), postgres::NoTls) {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}

/// A catalog under test; a PostgreSQL one drops its schema when done.
pub struct TestCatalog {
    pub cat: Catalog,
    /// What the test says it is running on.
    pub backend: &'static str,
    schema: Option<String>,
    dir: Option<std::path::PathBuf>,
}

impl Deref for TestCatalog {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.cat
    }
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        if let Some(s) = &self.schema {
            drop_schema(s);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A SQLite catalog in a fresh directory.
pub fn sqlite(name: &str) -> TestCatalog {
    let dir = std::env::temp_dir().join(format!("recengine-catalog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TestCatalog {
        cat: Catalog::open(&dir.join("catalog.db")).expect("open SQLite catalog"),
        backend: "sqlite",
        schema: None,
        dir: Some(dir),
    }
}

/// A PostgreSQL catalog in a fresh schema, as node `node`.
pub fn postgres(name: &str, node: &str) -> TestCatalog {
    let schema = fresh_schema(name);
    let cat = Catalog::open_configured(&postgres_config(&schema, node), std::path::Path::new("."))
        .expect("open PostgreSQL catalog");
    TestCatalog {
        cat,
        backend: "postgres",
        schema: Some(schema),
        dir: None,
    }
}

/// The catalogs a test runs on: SQLite, and PostgreSQL when it answers.
pub fn catalogs(name: &str) -> Vec<TestCatalog> {
    let mut out = vec![sqlite(name)];
    if postgres_up() {
        out.push(postgres(name, "node-a"));
    }
    out
}

//! The catalog's two SQL backends behind one small interface: SQLite (one
//! file, one connection, the single-box default) and PostgreSQL (a pool of
//! connections to a database a fleet of recorders shares). The catalog's
//! queries are written once, with `?1`-style placeholders and the SQL both
//! dialects accept; [`Sql`] runs them on either, turning `?N` into `$N` for
//! PostgreSQL. The few places the dialects differ ask [`Sql::dialect`].
//!
//! Values cross the interface as [`Value`]: integers (every integer
//! column is a 64-bit `BIGINT` on PostgreSQL), text, or NULL.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Mutex;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2;

use super::CatalogError;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A column value as a Rust type.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u64::try_from(i).ok())
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for u16 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u16::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as `T`; a NULL, a missing column or another type is an
    /// error naming the column.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, CatalogError> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| {
            CatalogError::Invalid(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Which SQL a connection speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection, or a transaction on one.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; answers how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, CatalogError>;
    /// Runs a query; answers every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, CatalogError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row a query must answer.
    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, CatalogError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| CatalogError::Invalid(format!("no row for {sql}")))
    }

    /// Serializes this transaction with every other one taking the same
    /// `name` on any node (PostgreSQL: an advisory transaction lock). A
    /// SQLite catalog has one connection, so it needs none.
    fn lock(&mut self, name: &str) -> Result<(), CatalogError> {
        if self.dialect() == Dialect::Postgres {
            self.query("SELECT pg_advisory_xact_lock(hashtext(?1))", &[name.into()])?;
        }
        Ok(())
    }
}

/// The `params` of a statement as [`Value`]s.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::catalog::db::Value::from($v)),*][..]
    };
}
pub(crate) use args;

// ---- SQLite ----

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

pub(crate) struct SqliteConn<'a>(pub(crate) &'a rusqlite::Connection);

impl Sql for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, CatalogError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(CatalogError::Invalid(format!(
                            "column {i} has type {:?}",
                            other.data_type()
                        )));
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

// ---- PostgreSQL ----

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer bound where PostgreSQL wants {ty}").into()),
            },
            // PostgreSQL text cannot hold NUL. Nothing stored holds one
            // (ids are checked, audit entries escape it), so a lookup by a
            // hostile id with a NUL must find nothing, as on SQLite: U+FFFD
            // in its place cannot match either.
            Value::Text(s) if s.contains('\0') => s.replace('\0', "\u{FFFD}").to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `?N` placeholders as PostgreSQL's `$N`.
pub(crate) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value, CatalogError> {
    let ty = row.columns()[i].type_().clone();
    let v = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        Type::VOID => None,
        other => {
            return Err(CatalogError::Invalid(format!(
                "column {i} has PostgreSQL type {other}"
            )));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// Statements kept per connection.
const MAX_STATEMENTS: usize = 256;

/// A pooled PostgreSQL connection and the statements prepared on it: each
/// catalog query is parsed and planned once per connection, then only
/// bound and executed (one round trip instead of two).
pub(crate) struct CachedClient {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Opens [`CachedClient`]s for the pool.
#[derive(Debug)]
pub(crate) struct PgManager(pub(crate) PostgresConnectionManager<postgres::NoTls>);

impl r2d2::ManageConnection for PgManager {
    type Connection = CachedClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<CachedClient, postgres::Error> {
        Ok(CachedClient {
            client: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, c: &mut CachedClient) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut c.client)
    }

    fn has_broken(&self, c: &mut CachedClient) -> bool {
        self.0.has_broken(&mut c.client)
    }
}

/// A client or a transaction on one, with the connection's statements.
pub(crate) struct PgConn<'a, C: postgres::GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> PgConn<'_, C> {
    /// The statement for `sql`, prepared on first use.
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, CatalogError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&to_postgres(sql))?;
        // Pages put their LIMIT and OFFSET in the text: keep the cache
        // bounded (dropping a Statement closes it on the server).
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl<C: postgres::GenericClient> Sql for PgConn<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, CatalogError> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, &refs)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| pg_value(r, i))
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }
}

/// A pool of PostgreSQL connections.
pub(crate) type PgPool = r2d2::Pool<PgManager>;

/// A pool that closes its connections off any async runtime when dropped
/// (closing one blocks on the client's own runtime).
pub(crate) struct PgPoolHolder(Option<PgPool>);

impl PgPoolHolder {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self(Some(pool))
    }

    pub(crate) fn pool(&self) -> &PgPool {
        self.0
            .as_ref()
            .expect("the pool lives until the holder is dropped")
    }
}

impl Drop for PgPoolHolder {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            off_async(move || drop(pool));
        }
    }
}

/// Where the catalog's rows are.
pub(crate) enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(PgPoolHolder),
}

use crate::offload::off_async;

impl Db {
    /// Runs `f` on a connection, each statement on its own.
    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError> + Send,
    ) -> Result<T, CatalogError> {
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut SqliteConn(&conn))
            }
            Db::Postgres(pool) => off_async(|| {
                let mut conn = pool.pool().get()?;
                let CachedClient { client, statements } = &mut *conn;
                f(&mut PgConn { client, statements })
            }),
        }
    }

    /// Runs `f` in one transaction: committed when it answers `Ok`, rolled
    /// back when it answers `Err`.
    pub(crate) fn tx<T: Send, E: From<CatalogError> + Send>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let tx = conn.unchecked_transaction().map_err(CatalogError::from)?;
                let out = f(&mut SqliteConn(&tx))?;
                tx.commit().map_err(CatalogError::from)?;
                Ok(out)
            }
            Db::Postgres(pool) => off_async(|| {
                let mut conn = pool.pool().get().map_err(CatalogError::from)?;
                let CachedClient { client, statements } = &mut *conn;
                let mut tx = client.transaction().map_err(CatalogError::from)?;
                let out = f(&mut PgConn {
                    client: &mut tx,
                    statements: &mut *statements,
                });
                match out {
                    Ok(v) => {
                        tx.commit().map_err(CatalogError::from)?;
                        Ok(v)
                    }
                    Err(e) => {
                        // What was prepared in a transaction that failed
                        // is not trusted afterwards.
                        drop(tx);
                        statements.clear();
                        Err(e)
                    }
                }
            }),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_and_nothing_else_changes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE x = ?1 AND y IN (?2, ?12) AND z = '?'"),
            "SELECT a FROM t WHERE x = $1 AND y IN ($2, $12) AND z = '?'"
        );
    }

    #[test]
    fn values_convert_only_to_what_they_hold() {
        assert_eq!(Row(vec![Value::Int(7)]).get::<u32>(0).unwrap(), 7);
        assert!(Row(vec![Value::Int(-1)]).get::<u64>(0).is_err());
        assert!(Row(vec![Value::Null]).get::<String>(0).is_err());
        assert_eq!(
            Row(vec![Value::Null]).get::<Option<String>>(0).unwrap(),
            None
        );
        assert_eq!(Value::from(Some(true)), Value::Int(1));
        assert_eq!(Value::from(None::<&str>), Value::Null);
    }
}

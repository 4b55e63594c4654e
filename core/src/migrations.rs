//! One migration set per crate: the scripts both engines take alike are kept once, in the
//! crate's `migrations/common`, and only what differs per engine in `migrations/sqlite` and
//! `migrations/postgres` (today: a table rebuilt on SQLite where PostgreSQL alters a
//! constraint, and identity columns). At run time the common set and the engine's own are one
//! list in version order. A script keeps its text when it moves between folders, so databases
//! migrated before the split see the same checksums. Running them is the crate's (core does
//! no I/O).

use sqlx::migrate::{MigrateError, Migrator};

/// `common` and the engine's own scripts (`dialect`, none when every script is common) as one
/// set; a version in both is refused.
pub fn merged(common: &Migrator, dialect: Option<&Migrator>) -> Result<Migrator, MigrateError> {
    let mut all: Vec<_> = common.iter().cloned().collect();
    for script in dialect.into_iter().flat_map(Migrator::iter) {
        if common.version_exists(script.version) {
            return Err(MigrateError::Source(
                format!(
                    "migration {} is in both the common and an engine's folder",
                    script.version
                )
                .into(),
            ));
        }
        all.push(script.clone());
    }
    let mut merged = Migrator::with_migrations(all);
    // Every crate's versions share the one table: the others' are not missing.
    merged.set_ignore_missing(true);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType};
    use std::borrow::Cow;

    fn script(version: i64) -> Migration {
        Migration::new(
            version,
            Cow::Owned(format!("v{version}")),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(format!("SELECT {version}")).into_sql_str(),
            false,
        )
    }

    #[test]
    fn the_sets_are_one_list_in_version_order_and_overlap_is_refused() {
        let common = Migrator::with_migrations(vec![script(100), script(120)]);
        let dialect = Migrator::with_migrations(vec![script(110), script(130)]);
        let merged = merged(&common, Some(&dialect)).unwrap();
        let versions: Vec<i64> = merged.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![100, 110, 120, 130]);
        let only_common = super::merged(&common, None).unwrap();
        assert_eq!(only_common.iter().count(), 2);
        let clash = Migrator::with_migrations(vec![script(120)]);
        assert!(super::merged(&common, Some(&clash)).is_err());
    }
}

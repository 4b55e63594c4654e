//! The platform's operators: people who run the deployment, not sellers. An operator's token
//! (made by `vitrine operators create`, stored hashed) opens the cluster's view and drains its
//! nodes; a seller's token never does, whatever its scopes.

use crate::store::{Store, StoreError};
use sqlx::Row;
use vitrine_core::{OperatorId, Secret};

/// An operator as the admin routes see one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: OperatorId,
    pub name: String,
}

/// Adds an operator; returns it and its token, shown once.
pub async fn create(store: &Store, name: &str) -> Result<(Operator, Secret), StoreError> {
    let operator = Operator {
        id: OperatorId::generate(),
        name: name.to_owned(),
    };
    let token = Secret::generate("vop");
    let now = crate::store::now_ms();
    sqlx::query("INSERT INTO operators (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(operator.id.as_str())
        .bind(&operator.name)
        .bind(token.hash().0)
        .bind(now)
        .execute(store.pool())
        .await?;
    Ok((operator, token))
}

/// The operator a presented token belongs to, if any.
pub async fn by_token(store: &Store, token: &Secret) -> Result<Option<Operator>, StoreError> {
    let row = sqlx::query("SELECT id, name FROM operators WHERE token_hash = $1")
        .bind(token.hash().0)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| {
        let id: String = r.try_get("id")?;
        Ok(Operator {
            id: OperatorId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: r.try_get("name")?,
        })
    })
    .transpose()
}

/// `vitrine operators create`: prints `{"operator_id", "token"}` as one JSON line.
pub async fn create_command(database_url: &str, name: &str) -> anyhow::Result<()> {
    let name = crate::store::checked_name(name)?;
    let store = Store::connect(database_url).await?;
    let created = create(&store, name).await;
    store.close().await;
    let (operator, token) = created?;
    println!(
        "{}",
        serde_json::json!({ "operator_id": operator.id, "token": token.expose() })
    );
    Ok(())
}

//! Tenants' Meta access tokens, opened from the database and kept briefly in memory so a batch
//! does not decrypt per message. Rotated tokens are picked up within the TTL.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};
use wafleet_core::{
    config::Secret,
    domain::TenantId,
    secrets::SecretBox,
    tenant::{TenantError, load_connection},
};

#[derive(Debug)]
pub struct TokenCache {
    secrets: SecretBox,
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, (Secret, Instant)>>,
}

impl TokenCache {
    pub fn new(secrets: SecretBox, ttl: Duration) -> Self {
        Self {
            secrets,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's access token, or `None` if the tenant has no Meta connection.
    pub async fn get(
        &self,
        pool: &sqlx::PgPool,
        tenant: TenantId,
    ) -> Result<Option<Secret>, TenantError> {
        if let Some((token, at)) = self.entries.lock().expect("token cache").get(&tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(token.clone()));
        }
        let Some(conn) = load_connection(pool, &self.secrets, tenant).await? else {
            return Ok(None);
        };
        self.entries
            .lock()
            .expect("token cache")
            .insert(tenant, (conn.access_token.clone(), Instant::now()));
        Ok(Some(conn.access_token))
    }
}

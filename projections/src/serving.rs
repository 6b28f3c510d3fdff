//! [`ReadModels`]: the query side's handle on the read-model database. It
//! resolves which generation of a read model serves (the blue-green switch
//! is one row update, so every query asks) and hands out connections.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::GenericClient;

use crate::schema;
use crate::ProjectionError;

/// Connections to the read models and the serving generation of each.
/// Cheap to clone.
#[derive(Clone)]
pub struct ReadModels {
    pool: Pool,
}

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModels")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl ReadModels {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection and the schema of `name`'s serving generation, to query
    /// as `{schema}.<table>`. A retired generation is dropped only after a
    /// grace period, so a query that resolved the schema just before a
    /// switch still finds its tables.
    pub async fn serving(&self, name: &str) -> Result<(Object, String), ProjectionError> {
        let client = self.pool.get().await?;
        let schema = self.serving_schema(&**client, name).await?;
        Ok((client, schema))
    }

    /// The schema of `name`'s serving generation, through `client`.
    pub async fn serving_schema(
        &self,
        client: &impl GenericClient,
        name: &str,
    ) -> Result<String, ProjectionError> {
        match schema::active_generation(client, name).await {
            Ok(Some(generation)) => Ok(schema::schema_name(name, generation)),
            Ok(None) => Err(ProjectionError::NotServing(name.to_owned())),
            // The runner's tables do not exist yet: nothing serves.
            Err(ProjectionError::Database(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                Err(ProjectionError::NotServing(name.to_owned()))
            }
            Err(e) => Err(e),
        }
    }
}

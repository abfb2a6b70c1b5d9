//! Form definitions from the configuration table, cached per warm container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use leadflow_domain::form::FormDefinition;
use leadflow_domain::ports::{FormCatalog, StoreError};

use crate::keys::{self, PK, SK, TYPE};
use crate::store_error;

/// How long a container trusts its copy of a form (and of "no such form").
pub const FORM_CACHE_TTL: Duration = Duration::from_secs(60);

type Cached = (Instant, Option<Arc<FormDefinition>>);

#[derive(Clone)]
pub struct DynamoForms {
    client: Client,
    table: String,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl DynamoForms {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: FORM_CACHE_TTL,
            cache: Arc::default(),
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Stores a form after checking it (configuration loading: local run, ops tool, tests).
    pub async fn put(&self, form: &FormDefinition) -> Result<(), StoreError> {
        form.check().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item: HashMap<String, AttributeValue> =
            to_item(form).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (pk, sk) = keys::form(&form.id);
        item.insert(PK.into(), AttributeValue::S(pk));
        item.insert(SK.into(), AttributeValue::S(sk));
        item.insert(TYPE.into(), AttributeValue::S("form".into()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&form.id);
        Ok(())
    }

    async fn load(&self, form_id: &str) -> Result<Option<Arc<FormDefinition>>, StoreError> {
        let (pk, sk) = keys::form(form_id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk))
            .key(SK, AttributeValue::S(sk))
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        let Some(mut item) = out.item else {
            return Ok(None);
        };
        for k in [PK, SK, TYPE] {
            item.remove(k);
        }
        let form: FormDefinition = from_item(item).map_err(|e| StoreError::Corrupt(format!("form {form_id}: {e}")))?;
        form.check().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(Arc::new(form)))
    }
}

impl FormCatalog for DynamoForms {
    async fn form(&self, form_id: &str) -> Result<Option<Arc<FormDefinition>>, StoreError> {
        // Ids that cannot exist are refused without a request, so junk paths cost nothing.
        if form_id.is_empty()
            || form_id.len() > 64
            || !form_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Ok(None);
        }
        if let Some((at, form)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(form_id) {
            if at.elapsed() < self.ttl {
                return Ok(form.clone());
            }
        }
        let form = self.load(form_id).await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(form_id.to_owned(), (Instant::now(), form.clone()));
        Ok(form)
    }
}

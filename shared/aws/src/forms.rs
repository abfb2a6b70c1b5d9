//! Configuration documents (forms, sites) from the configuration table, checked when stored
//! and when read, and cached per warm container.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use leadflow_domain::engagement::{Site, SiteCatalog};
use leadflow_domain::form::FormDefinition;
use leadflow_domain::ports::{FormCatalog, StoreError};

use crate::keys::{self, PK, SK, TYPE};
use crate::store_error;

/// How long a container trusts its copy of a document (and of "no such document").
pub const CONFIG_CACHE_TTL: Duration = Duration::from_secs(60);

/// A kind of configuration document.
pub trait Document: Serialize + DeserializeOwned + Send + Sync + 'static {
    const TYPE: &'static str;
    fn key(id: &str) -> (String, String);
    fn id(&self) -> &str;
    fn check(&self) -> Result<(), String>;
    /// Ids that cannot exist are refused without a request, so junk costs nothing.
    fn plausible(id: &str) -> bool {
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }
}

impl Document for FormDefinition {
    const TYPE: &'static str = "form";
    fn key(id: &str) -> (String, String) {
        keys::form(id)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&self) -> Result<(), String> {
        FormDefinition::check(self).map_err(|e| e.to_string())
    }
}

impl Document for Site {
    const TYPE: &'static str = "site";
    fn key(id: &str) -> (String, String) {
        keys::site(id)
    }
    fn id(&self) -> &str {
        &self.key
    }
    fn check(&self) -> Result<(), String> {
        if Self::plausible(&self.key) && !self.site_id.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "site {}: key must be 1-64 of a-z, 0-9, '-', '_'; site_id is required",
                self.site_id
            ))
        }
    }
}

type Cached<T> = (Instant, Option<Arc<T>>);

pub struct Catalog<T> {
    client: Client,
    table: String,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached<T>>>>,
    kind: PhantomData<T>,
}

impl<T> Clone for Catalog<T> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            table: self.table.clone(),
            ttl: self.ttl,
            cache: self.cache.clone(),
            kind: PhantomData,
        }
    }
}

pub type DynamoForms = Catalog<FormDefinition>;
pub type DynamoSites = Catalog<Site>;

impl<T: Document> Catalog<T> {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: CONFIG_CACHE_TTL,
            cache: Arc::default(),
            kind: PhantomData,
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Stores a document after checking it (configuration loading: local run, ops tool, tests).
    pub async fn put(&self, doc: &T) -> Result<(), StoreError> {
        doc.check().map_err(StoreError::Corrupt)?;
        let mut item: HashMap<String, AttributeValue> = to_item(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (pk, sk) = T::key(doc.id());
        item.insert(PK.into(), AttributeValue::S(pk));
        item.insert(SK.into(), AttributeValue::S(sk));
        item.insert(TYPE.into(), AttributeValue::S(T::TYPE.into()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(doc.id());
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<Arc<T>>, StoreError> {
        let (pk, sk) = T::key(id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk))
            .key(SK, AttributeValue::S(sk))
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        let Some(mut item) = out.item else { return Ok(None) };
        for k in [PK, SK, TYPE] {
            item.remove(k);
        }
        let doc: T = from_item(item).map_err(|e| StoreError::Corrupt(format!("{} {id}: {e}", T::TYPE)))?;
        doc.check().map_err(StoreError::Corrupt)?;
        Ok(Some(Arc::new(doc)))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Arc<T>>, StoreError> {
        if !T::plausible(id) {
            return Ok(None);
        }
        if let Some((at, doc)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            if at.elapsed() < self.ttl {
                return Ok(doc.clone());
            }
        }
        let doc = self.load(id).await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (Instant::now(), doc.clone()));
        Ok(doc)
    }
}

impl FormCatalog for Catalog<FormDefinition> {
    async fn form(&self, form_id: &str) -> Result<Option<Arc<FormDefinition>>, StoreError> {
        self.get(form_id).await
    }
}

impl SiteCatalog for Catalog<Site> {
    async fn site(&self, key: &str) -> Result<Option<Arc<Site>>, StoreError> {
        self.get(key).await
    }
}

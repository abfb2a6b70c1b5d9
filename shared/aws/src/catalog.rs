//! Configuration from the configuration table, checked when stored and when read, and cached
//! per warm container by one cache: documents by id (forms, sites: an item of attributes under
//! `FORM#<id>`/`SITE#<key>`) and whole documents (scoring, nurture, routing: JSON text in
//! `document` under `<NAME>`/`CONFIG`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use leadflow_domain::engagement::{Site, SiteCatalog};
use leadflow_domain::form::FormDefinition;
use leadflow_domain::ports::{FormCatalog, StoreError};
use leadflow_domain::process::handoff::RoutingConfig;
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::process::ports::ProcessConfigSource;
use leadflow_domain::process::routine::RoutineConfig;
use leadflow_domain::scoring::service::ScoringConfigSource;
use leadflow_domain::scoring::ScoringConfig;
use leadflow_domain::segment::{Segment, SegmentDef};

use crate::keys::{self, Key, PK, SK, TYPE};
use crate::table::{corrupt, from_record, plain_item, record_item, str_attr, Condition, Table};

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

impl Document for SegmentDef {
    const TYPE: &'static str = "segment";
    fn key(id: &str) -> (String, String) {
        keys::segment(id)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&self) -> Result<(), String> {
        Segment::new(self.clone())
            .map(|_| ())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    }
}

/// Every configured segment (one partition of the configuration table: a Query, not a Scan).
pub async fn segments(config_table: &Table) -> Result<Vec<Segment>, StoreError> {
    let items = config_table
        .query(crate::table::Query::partition(
            crate::keys::Index::Table,
            keys::SEGMENTS,
        ))
        .await?;
    items
        .into_iter()
        .map(|mut item| {
            for k in [PK, SK, TYPE] {
                item.remove(k);
            }
            let def: SegmentDef = from_record(item)?;
            Segment::new(def).map_err(|e| StoreError::Corrupt(format!("segment: {}", e[0])))
        })
        .collect()
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

type Entry<T> = (Instant, Option<Arc<T>>);

/// The one configuration cache: values (and "none stored") by id, each trusted for `ttl`.
pub struct TtlCache<T> {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, Entry<T>>>>,
}

impl<T> Clone for TtlCache<T> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            entries: self.entries.clone(),
        }
    }
}

impl<T> TtlCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value, or `load`'s, which is then cached.
    pub async fn get_or_load<F>(&self, id: &str, load: F) -> Result<Option<Arc<T>>, StoreError>
    where
        F: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        if let Some((at, v)) = self.lock().get(id) {
            if at.elapsed() < self.ttl {
                return Ok(v.clone());
            }
        }
        let v = load.await?.map(Arc::new);
        self.lock().insert(id.to_owned(), (Instant::now(), v.clone()));
        Ok(v)
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Documents of one kind by id (forms, sites).
pub struct Catalog<T> {
    table: Table,
    cache: TtlCache<T>,
}

impl<T> Clone for Catalog<T> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            cache: self.cache.clone(),
        }
    }
}

pub type DynamoForms = Catalog<FormDefinition>;
pub type DynamoSites = Catalog<Site>;

impl<T: Document> Catalog<T> {
    pub fn new(table: Table) -> Self {
        Self {
            table,
            cache: TtlCache::new(CONFIG_CACHE_TTL),
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.cache = TtlCache::new(ttl);
        self
    }

    /// Stores a document after checking it (configuration loading: local run, ops tool, tests).
    pub async fn put(&self, doc: &T) -> Result<(), StoreError> {
        doc.check().map_err(StoreError::Corrupt)?;
        let item = record_item(doc, T::key(doc.id()), T::TYPE)?;
        self.table.put(item, Condition::none()).await?;
        self.cache.forget(doc.id());
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<T>, StoreError> {
        let Some(mut item) = self.table.get(T::key(id)).await? else {
            return Ok(None);
        };
        for k in [PK, SK, TYPE] {
            item.remove(k);
        }
        let doc: T = from_record(item).map_err(|e| StoreError::Corrupt(format!("{} {id}: {e}", T::TYPE)))?;
        doc.check().map_err(StoreError::Corrupt)?;
        Ok(Some(doc))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Arc<T>>, StoreError> {
        if !T::plausible(id) {
            return Ok(None);
        }
        self.cache.get_or_load(id, self.load(id)).await
    }
}

/// A whole configuration document.
pub trait ConfigDocument: Serialize + DeserializeOwned + Send + Sync + 'static {
    const NAME: &'static str;
    fn check(&self) -> Result<(), String>;
}

impl ConfigDocument for ScoringConfig {
    const NAME: &'static str = "scoring";
    fn check(&self) -> Result<(), String> {
        ScoringConfig::check(self).map_err(|e| e.to_string())
    }
}

impl ConfigDocument for NurtureConfig {
    const NAME: &'static str = "nurture";
    fn check(&self) -> Result<(), String> {
        NurtureConfig::check(self).map_err(|e| e.to_string())
    }
}

impl ConfigDocument for RoutingConfig {
    const NAME: &'static str = "routing";
    fn check(&self) -> Result<(), String> {
        RoutingConfig::check(self)
    }
}

impl ConfigDocument for RoutineConfig {
    const NAME: &'static str = "routine";
    fn check(&self) -> Result<(), String> {
        RoutineConfig::check(self, None)
    }
}

/// A whole document, checked when stored and read.
pub struct Docs<T> {
    table: Table,
    cache: TtlCache<T>,
}

impl<T> Clone for Docs<T> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<T: ConfigDocument> Docs<T> {
    pub fn new(table: Table, ttl: Duration) -> Self {
        Self {
            table,
            cache: TtlCache::new(ttl),
        }
    }

    fn key() -> Key {
        keys::config_document(T::NAME)
    }

    pub async fn put(&self, doc: &T) -> Result<(), StoreError> {
        doc.check().map_err(|e| corrupt(format!("{}: {e}", T::NAME)))?;
        let text = serde_json::to_string(doc).map_err(corrupt)?;
        let item = plain_item(Self::key(), &format!("{}_config", T::NAME), &[("document", text)]);
        self.table.put(item, Condition::none()).await?;
        self.cache.forget(T::NAME);
        Ok(())
    }

    async fn load(&self) -> Result<Option<T>, StoreError> {
        let Some(item) = self.table.get(Self::key()).await? else {
            return Ok(None);
        };
        let text = str_attr(&item, "document").ok_or_else(|| corrupt(format!("{}: no document", T::NAME)))?;
        let doc: T = serde_json::from_str(text).map_err(|e| corrupt(format!("{}: {e}", T::NAME)))?;
        doc.check().map_err(|e| corrupt(format!("{}: {e}", T::NAME)))?;
        Ok(Some(doc))
    }

    pub async fn get(&self) -> Result<Option<Arc<T>>, StoreError> {
        self.cache.get_or_load(T::NAME, self.load()).await
    }
}

/// The scoring configuration (the built-in default, SPEC's model, when none is stored) with
/// the configured segments, which scoring keeps current: one cached value, two reads a minute.
#[derive(Clone)]
pub struct DynamoScoringConfig {
    docs: Docs<ScoringConfig>,
    table: Table,
    cache: TtlCache<ScoringConfig>,
}

impl DynamoScoringConfig {
    pub fn new(table: Table, ttl: Duration) -> Self {
        Self {
            docs: Docs::new(table.clone(), Duration::ZERO),
            table,
            cache: TtlCache::new(ttl),
        }
    }

    /// Stores the scoring document (checked); this container reads it afresh.
    pub async fn put(&self, doc: &ScoringConfig) -> Result<(), StoreError> {
        self.docs.put(doc).await?;
        self.cache.forget(ScoringConfig::NAME);
        Ok(())
    }
}

impl ScoringConfigSource for DynamoScoringConfig {
    async fn scoring_config(&self) -> Result<Arc<ScoringConfig>, StoreError> {
        let load = async {
            let mut config = match self.docs.get().await? {
                Some(doc) => (*doc).clone(),
                None => ScoringConfig::defaults(),
            };
            config.segments = segments(&self.table).await?;
            Ok(Some(config))
        };
        Ok(self
            .cache
            .get_or_load(ScoringConfig::NAME, load)
            .await?
            .unwrap_or_else(|| Arc::new(ScoringConfig::defaults())))
    }
}

/// The process's documents, read afresh each run (a run is every few minutes).
#[derive(Clone)]
pub struct DynamoProcessConfig {
    pub nurture: Docs<NurtureConfig>,
    pub routing: Docs<RoutingConfig>,
    pub routine: Docs<RoutineConfig>,
}

impl DynamoProcessConfig {
    pub fn new(table: Table) -> Self {
        Self {
            nurture: Docs::new(table.clone(), Duration::ZERO),
            routing: Docs::new(table.clone(), Duration::ZERO),
            routine: Docs::new(table, Duration::ZERO),
        }
    }
}

impl ProcessConfigSource for DynamoProcessConfig {
    async fn nurture(&self) -> Result<Option<NurtureConfig>, StoreError> {
        Ok(self.nurture.get().await?.map(|d| (*d).clone()))
    }

    async fn routing(&self) -> Result<Option<RoutingConfig>, StoreError> {
        Ok(self.routing.get().await?.map(|d| (*d).clone()))
    }

    async fn routine(&self) -> Result<Option<RoutineConfig>, StoreError> {
        Ok(self.routine.get().await?.map(|d| (*d).clone()))
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

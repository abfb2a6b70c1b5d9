//! The configuration directory (`config/`): every document read, checked, and written to a
//! stack's configuration table. Errors name the file (and the line, for JSON errors). Used by
//! the ops tool (`leadflow config validate|apply`) and the local run.

use std::path::Path;

use serde::de::DeserializeOwned;

use leadflow_domain::engagement::Site;
use leadflow_domain::form::FormDefinition;
use leadflow_domain::process::handoff::RoutingConfig;
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::process::routine::RoutineConfig;
use leadflow_domain::scoring::ScoringConfig;
use leadflow_domain::segment::SegmentDef;

use crate::catalog::{Catalog, ConfigDocument, Docs, Document, CONFIG_CACHE_TTL};
use crate::table::Table;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that does not read, parse or pass its checks.
    #[error("config {path}: {message}")]
    File { path: String, message: String },
    #[error("config table: {0}")]
    Store(#[from] leadflow_domain::ports::StoreError),
}

fn at(path: &Path, message: impl ToString) -> ConfigError {
    ConfigError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// One JSON document; errors name the file and line.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| at(path, e))?;
    serde_json::from_str(&text).map_err(|e| at(path, format!("line {}: {e}", e.line())))
}

/// The JSON documents of a directory, in name order, each with its path.
pub fn read_json_dir<T: DeserializeOwned>(dir: &Path) -> Result<Vec<(String, T)>, ConfigError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| at(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Ok((path.display().to_string(), read_json(&path)?)))
        .collect()
}

/// Everything in a configuration directory.
#[derive(Debug, Clone)]
pub struct ConfigBundle {
    pub forms: Vec<FormDefinition>,
    pub sites: Vec<Site>,
    pub scoring: ScoringConfig,
    pub nurture: NurtureConfig,
    pub routing: RoutingConfig,
    /// `segments/*.json` (optional directory).
    pub segments: Vec<SegmentDef>,
    /// `routine.json` (optional): the weekly HOT-lead routine.
    pub routine: Option<RoutineConfig>,
}

fn documents<T: Document>(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<T> {
    match read_json_dir::<T>(dir) {
        Ok(docs) => docs
            .into_iter()
            .filter_map(|(path, doc)| match doc.check() {
                Ok(()) => Some(doc),
                Err(message) => {
                    errors.push(ConfigError::File { path, message });
                    None
                }
            })
            .collect(),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

fn document<T: ConfigDocument>(path: &Path, errors: &mut Vec<ConfigError>) -> Option<T> {
    read_json::<T>(path)
        .and_then(|c| c.check().map(|_| c).map_err(|e| at(path, e)))
        .map_err(|e| errors.push(e))
        .ok()
}

/// Reads and checks every document, collecting every error rather than stopping at the first.
pub fn load(dir: &Path) -> Result<ConfigBundle, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let forms = documents::<FormDefinition>(&dir.join("forms"), &mut errors);
    let sites = documents::<Site>(&dir.join("sites"), &mut errors);
    let scoring = document::<ScoringConfig>(&dir.join("scoring/default.json"), &mut errors);
    let nurture = document::<NurtureConfig>(&dir.join("nurture.json"), &mut errors);
    let routing = document::<RoutingConfig>(&dir.join("routing.json"), &mut errors);
    let segments = if dir.join("segments").is_dir() {
        documents::<SegmentDef>(&dir.join("segments"), &mut errors)
    } else {
        Vec::new()
    };
    let routine_path = dir.join("routine.json");
    let routine = if routine_path.is_file() {
        document::<RoutineConfig>(&routine_path, &mut errors)
    } else {
        None
    };
    if let (Some(r), Some(routing)) = (&routine, &routing) {
        // Owners named by the routine must be in routing.json; the segment must be configured.
        let known_segment = segments.iter().any(|s| s.id == r.segment);
        let problem = r
            .check(Some(routing))
            .err()
            .or_else(|| (!known_segment).then(|| format!("segment: no segments/{}.json", r.segment)));
        if let Some(message) = problem {
            errors.push(at(&routine_path, message));
        }
    }
    match (scoring, nurture, routing) {
        (Some(scoring), Some(nurture), Some(routing)) if errors.is_empty() => Ok(ConfigBundle {
            forms,
            sites,
            scoring,
            nurture,
            routing,
            segments,
            routine,
        }),
        _ => Err(errors),
    }
}

/// Writes every document to the configuration table; the number written.
pub async fn apply(bundle: &ConfigBundle, config_table: &Table) -> Result<usize, ConfigError> {
    let forms = Catalog::<FormDefinition>::new(config_table.clone());
    for f in &bundle.forms {
        forms.put(f).await?;
    }
    let sites = Catalog::<Site>::new(config_table.clone());
    for s in &bundle.sites {
        sites.put(s).await?;
    }
    Docs::<ScoringConfig>::new(config_table.clone(), CONFIG_CACHE_TTL)
        .put(&bundle.scoring)
        .await?;
    Docs::<NurtureConfig>::new(config_table.clone(), CONFIG_CACHE_TTL)
        .put(&bundle.nurture)
        .await?;
    Docs::<RoutingConfig>::new(config_table.clone(), CONFIG_CACHE_TTL)
        .put(&bundle.routing)
        .await?;
    let segments = Catalog::<SegmentDef>::new(config_table.clone());
    for s in &bundle.segments {
        segments.put(s).await?;
    }
    if let Some(r) = &bundle.routine {
        Docs::<RoutineConfig>::new(config_table.clone(), CONFIG_CACHE_TTL)
            .put(r)
            .await?;
    }
    Ok(bundle.forms.len() + bundle.sites.len() + bundle.segments.len() + 3 + usize::from(bundle.routine.is_some()))
}

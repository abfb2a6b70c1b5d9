//! The configuration directory (`config/`): every document read, checked, and written to a
//! stack's configuration table. Errors name the file (and the line, for JSON errors).

use std::path::Path;

use leadflow_aws::config::Clients;
use leadflow_aws::docs::DynamoDocs;
use leadflow_aws::forms::{DynamoForms, DynamoSites};
use leadflow_aws::scoring::DynamoScoringConfig;
use leadflow_domain::engagement::Site;
use leadflow_domain::form::FormDefinition;
use leadflow_domain::process::handoff::RoutingConfig;
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::scoring::ScoringConfig;

use crate::{read_json, read_json_dir, LocalError};

/// Everything in a configuration directory.
#[derive(Debug, Clone)]
pub struct ConfigBundle {
    pub forms: Vec<FormDefinition>,
    pub sites: Vec<Site>,
    pub scoring: ScoringConfig,
    pub nurture: NurtureConfig,
    pub routing: RoutingConfig,
}

fn at(path: &Path, message: impl ToString) -> LocalError {
    LocalError::Config {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Reads and checks every document, collecting every error rather than stopping at the first.
pub fn load(dir: &Path) -> Result<ConfigBundle, Vec<LocalError>> {
    let mut errors = Vec::new();
    let mut forms = Vec::new();
    match read_json_dir::<FormDefinition>(&dir.join("forms")) {
        Ok(docs) => {
            for (path, form) in docs {
                match form.check() {
                    Ok(()) => forms.push(form),
                    Err(e) => errors.push(LocalError::Config {
                        path,
                        message: e.to_string(),
                    }),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let mut sites = Vec::new();
    match read_json_dir::<Site>(&dir.join("sites")) {
        Ok(docs) => sites.extend(docs.into_iter().map(|(_, s)| s)),
        Err(e) => errors.push(e),
    }
    let scoring_path = dir.join("scoring/default.json");
    let scoring = read_json::<ScoringConfig>(&scoring_path)
        .and_then(|c| c.check().map(|_| c).map_err(|e| at(&scoring_path, e)))
        .map_err(|e| errors.push(e))
        .ok();
    let nurture_path = dir.join("nurture.json");
    let nurture = read_json::<NurtureConfig>(&nurture_path)
        .and_then(|c| c.check().map(|_| c).map_err(|e| at(&nurture_path, e)))
        .map_err(|e| errors.push(e))
        .ok();
    let routing_path = dir.join("routing.json");
    let routing = read_json::<RoutingConfig>(&routing_path)
        .and_then(|c| c.check().map(|_| c).map_err(|e| at(&routing_path, e)))
        .map_err(|e| errors.push(e))
        .ok();
    match (scoring, nurture, routing) {
        (Some(scoring), Some(nurture), Some(routing)) if errors.is_empty() => Ok(ConfigBundle {
            forms,
            sites,
            scoring,
            nurture,
            routing,
        }),
        _ => Err(errors),
    }
}

/// Writes every document to the configuration table.
pub async fn apply(bundle: &ConfigBundle, clients: &Clients, config_table: &str) -> Result<usize, LocalError> {
    let other = |e: leadflow_domain::ports::StoreError| LocalError::Other(e.to_string());
    let forms = DynamoForms::new(clients.dynamodb.clone(), config_table);
    for f in &bundle.forms {
        forms.put(f).await.map_err(other)?;
    }
    let sites = DynamoSites::new(clients.dynamodb.clone(), config_table);
    for s in &bundle.sites {
        sites.put(s).await.map_err(other)?;
    }
    DynamoScoringConfig::new(clients.dynamodb.clone(), config_table)
        .put(&bundle.scoring)
        .await
        .map_err(other)?;
    let docs = DynamoDocs::new(clients.dynamodb.clone(), config_table);
    docs.put("nurture", &bundle.nurture).await.map_err(other)?;
    docs.put("routing", &bundle.routing).await.map_err(other)?;
    Ok(bundle.forms.len() + bundle.sites.len() + 3)
}

//! CloudWatch metrics in the embedded metric format (EMF): one JSON line on standard output
//! per record, which Lambda's log pipeline turns into metrics (namespace `Leadflow`) without a
//! request. Only counts and reasons, never personal data.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// The namespace of every leadflow metric.
pub const NAMESPACE: &str = "Leadflow";

/// One EMF record: counts for a function, optionally split by one more dimension (`Reason`).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    function: &'static str,
    dimension: Option<(&'static str, String)>,
    counts: Vec<(&'static str, f64)>,
}

impl Record {
    pub fn new(function: &'static str) -> Self {
        Self {
            function,
            dimension: None,
            counts: Vec::new(),
        }
    }

    /// The counts of this record are per value of `name` (e.g. `Reason` = `validation_failed`).
    pub fn by(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimension = Some((name, value.into()));
        self
    }

    pub fn count(mut self, name: &'static str, n: usize) -> Self {
        self.counts.push((name, n as f64));
        self
    }

    /// The EMF line.
    pub fn line(&self) -> String {
        let mut dims = vec!["Function"];
        let mut root = Map::new();
        root.insert("Function".into(), json!(self.function));
        if let Some((name, value)) = &self.dimension {
            dims.push(name);
            root.insert((*name).into(), json!(value));
        }
        let metrics: Vec<Value> = self
            .counts
            .iter()
            .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
            .collect();
        for (name, n) in &self.counts {
            root.insert((*name).into(), json!(n));
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": metrics}],
            }),
        );
        Value::Object(root).to_string()
    }

    /// Writes the record to standard output (nothing when it has no counts).
    pub fn emit(&self) {
        if !self.counts.is_empty() {
            println!("{}", self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_emf_line_whose_metrics_and_dimensions_are_at_the_root() {
        let line = Record::new("intake")
            .by("Reason", "validation_failed")
            .count("SubmissionsRefused", 1)
            .line();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(!line.contains('\n'));
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Leadflow");
        assert_eq!(cw["Dimensions"], json!([["Function", "Reason"]]));
        assert_eq!(cw["Metrics"], json!([{"Name": "SubmissionsRefused", "Unit": "Count"}]));
        assert_eq!(
            (v["Function"].as_str(), v["Reason"].as_str()),
            (Some("intake"), Some("validation_failed"))
        );
        assert_eq!(v["SubmissionsRefused"], 1.0);
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
}

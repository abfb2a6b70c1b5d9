//! Whole-configuration documents (nurture programs, routing) stored as JSON in the config table.

use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use leadflow_domain::ports::StoreError;

use crate::item::{corrupt, key, s, str_attr};
use crate::store_error;

#[derive(Clone)]
pub struct DynamoDocs {
    client: Client,
    table: String,
}

impl DynamoDocs {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key((name.to_uppercase(), "CONFIG".into()))))
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item
            .as_ref()
            .and_then(|i| str_attr(i, "document"))
            .map(|d| serde_json::from_str(d).map_err(|e| corrupt(format!("{name}: {e}"))))
            .transpose()
    }

    pub async fn put<T: Serialize>(&self, name: &str, doc: &T) -> Result<(), StoreError> {
        let mut item = key((name.to_uppercase(), "CONFIG".into()));
        item.insert("type".into(), s(format!("{name}_config")));
        item.insert("document".into(), s(serde_json::to_string(doc).map_err(corrupt)?));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }
}

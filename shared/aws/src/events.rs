//! The events API's side of the records table.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_dynamo::aws_sdk_dynamodb_1::from_item;

use leadflow_domain::engagement::EventStore;
use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{ContactId, Interaction, LeadId};

use crate::dynamo::DynamoStore;
use crate::item::{key, s, str_attr};
use crate::keys::{self, DUE_PK, DUE_SK, GSI1};
use crate::scoring::anonymous_item;
use crate::store_error;

async fn put_new(store: &DynamoStore, item: crate::item::Item) -> Result<bool, StoreError> {
    let result = store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    crate::conditional("PutItem", result)
}

impl EventStore for DynamoStore {
    async fn contact_of_lead(&self, lead: LeadId) -> Result<Option<ContactId>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::lead(lead))))
            .projection_expression("contact_id")
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| str_attr(i, "contact_id"))
            .and_then(ContactId::parse))
    }

    async fn latest_lead(&self, contact: ContactId) -> Result<Option<LeadId>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :c AND begins_with(gsi1sk, :l)")
            .expression_attribute_values(":c", s(format!("CONTACT#{contact}")))
            .expression_attribute_values(":l", s("LEAD#"))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|i| str_attr(i, "lead_id"))
            .and_then(LeadId::parse))
    }

    async fn visitor_link(&self, visitor: &str) -> Result<Option<(LeadId, ContactId)>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::visitor_link(visitor))))
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item.and_then(|i| {
            Some((
                str_attr(&i, "lead_id").and_then(LeadId::parse)?,
                str_attr(&i, "contact_id").and_then(ContactId::parse)?,
            ))
        }))
    }

    async fn put_interaction(&self, ix: &Interaction) -> Result<bool, StoreError> {
        let mut item = crate::item::record_item(ix, keys::interaction(ix.lead_id, ix.interaction_id), "interaction")?;
        let (due_pk, due_sk) = keys::outbox_entry(
            chrono::Utc::now() + leadflow_domain::outbox::OUTBOX_GRACE,
            ix.lead_id,
            ix.interaction_id,
        );
        item.insert(DUE_PK.into(), AttributeValue::S(due_pk));
        item.insert(DUE_SK.into(), AttributeValue::S(due_sk));
        put_new(self, item).await
    }

    async fn put_anonymous(&self, visitor: &str, ix: &Interaction) -> Result<bool, StoreError> {
        put_new(self, anonymous_item(visitor, ix)?).await
    }
}

/// An anonymous interaction read back (tests, the ops tool).
pub fn anonymous_from(item: crate::item::Item) -> Result<Interaction, StoreError> {
    from_item(item).map_err(crate::item::corrupt)
}

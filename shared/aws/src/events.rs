//! The events API's side of the records table.

use leadflow_domain::engagement::EventStore;
use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{ContactId, Interaction, LeadId};

use crate::intake::{outboxed_interaction, DynamoIntake};
use crate::keys::{self, Index};
use crate::scoring::anonymous_item;
use crate::table::{str_attr, Condition, Query};

impl EventStore for DynamoIntake {
    async fn contact_of_lead(&self, lead: LeadId) -> Result<Option<ContactId>, StoreError> {
        Ok(self
            .table
            .get(keys::lead(lead))
            .await?
            .as_ref()
            .and_then(|i| str_attr(i, "contact_id"))
            .and_then(ContactId::parse))
    }

    async fn latest_lead(&self, contact: ContactId) -> Result<Option<LeadId>, StoreError> {
        let q = Query::partition(Index::Gsi1, keys::contact_partition(contact))
            .begins_with(keys::LEADS_OF_CONTACT_PREFIX)
            .newest_first()
            .limit(1);
        Ok(self
            .table
            .query(q)
            .await?
            .first()
            .and_then(|i| str_attr(i, "lead_id"))
            .and_then(LeadId::parse))
    }

    async fn visitor_link(&self, visitor: &str) -> Result<Option<(LeadId, ContactId)>, StoreError> {
        Ok(self.table.get(keys::visitor_link(visitor)).await?.and_then(|i| {
            Some((
                str_attr(&i, "lead_id").and_then(LeadId::parse)?,
                str_attr(&i, "contact_id").and_then(ContactId::parse)?,
            ))
        }))
    }

    async fn put_interaction(&self, ix: &Interaction) -> Result<bool, StoreError> {
        let item = outboxed_interaction(ix, chrono::Utc::now())?;
        self.table.put(item, Condition::absent()).await
    }

    async fn put_anonymous(&self, visitor: &str, ix: &Interaction) -> Result<bool, StoreError> {
        self.table.put(anonymous_item(visitor, ix)?, Condition::absent()).await
    }
}

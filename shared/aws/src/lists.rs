//! Static lists in the records table: members sharded by lead, a reference in each member's
//! lead partition, the list's own item found through GSI1.

use chrono::{DateTime, Utc};

use leadflow_domain::lists::{ListMember, ListName};
use leadflow_domain::ports::StoreError;
use leadflow_domain::records::LeadId;

use crate::keys::{self, Index, GSI1_PK, GSI1_SK};
use crate::table::{from_record, record_item, s, str_attr, to_av, Item, Query, Table, Update};

#[derive(Clone)]
pub struct DynamoLists {
    table: Table,
}

/// A list as `list ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DynamoLists {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// The list's own item: created once, touched after.
    fn meta(list: &ListName, now: DateTime<Utc>) -> Result<Update, StoreError> {
        Ok(Update::new()
            .set("name", s(list.as_str()))
            .set_if_absent("created_at", to_av(&now)?)
            .set("updated_at", to_av(&now)?)
            .set(GSI1_PK, s(keys::LISTS))
            .set(GSI1_SK, s(list.as_str())))
    }

    /// Makes sure the list exists.
    pub async fn ensure(&self, list: &ListName, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.table
            .update(keys::list_meta(list.as_str()), Self::meta(list, now)?)
            .await?;
        Ok(())
    }

    /// A member item and its reference in the lead's partition.
    fn member_items(list: &ListName, m: &ListMember) -> Result<[Item; 2], StoreError> {
        let member_key = keys::list_member(list.as_str(), m.lead_id);
        let mut reference = record_item(m, keys::listed(m.lead_id, list.as_str()), "listed")?;
        reference.insert("list".into(), s(list.as_str()));
        reference.insert("key_pk".into(), s(member_key.0.clone()));
        reference.insert("key_sk".into(), s(member_key.1.clone()));
        Ok([record_item(m, member_key, "list_member")?, reference])
    }

    /// Adds members (again is harmless: a member is one item). Two writes a member, 25 a request.
    pub async fn add(&self, list: &ListName, members: &[ListMember], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.ensure(list, now).await?;
        let mut puts: Vec<Item> = Vec::with_capacity(members.len() * 2);
        for m in members {
            puts.extend(Self::member_items(list, m)?);
        }
        self.table.write_many(puts, vec![]).await
    }

    /// Adding one member as part of another write (an activity's result).
    pub fn add_tx(
        &self,
        list: &ListName,
        member: &ListMember,
        now: DateTime<Utc>,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        let mut items = vec![self
            .table
            .update_tx(keys::list_meta(list.as_str()), Self::meta(list, now)?)?];
        for item in Self::member_items(list, member)? {
            items.push(self.table.put_tx(item, crate::table::Condition::none())?);
        }
        Ok(items)
    }

    pub async fn remove(&self, list: &ListName, leads: &[LeadId], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.ensure(list, now).await?;
        let deletes = leads
            .iter()
            .flat_map(|l| [keys::list_member(list.as_str(), *l), keys::listed(*l, list.as_str())])
            .collect();
        self.table.write_many(vec![], deletes).await
    }

    /// One shard's members (a list has `LIST_SHARDS`); read shard by shard, a list of any size
    /// streams.
    pub async fn members(&self, list: &ListName, shard: u32) -> Result<Vec<ListMember>, StoreError> {
        self.table
            .query(
                Query::partition(Index::Table, keys::list_shard(list.as_str(), shard)).begins_with(keys::MEMBER_PREFIX),
            )
            .await?
            .into_iter()
            .map(from_record)
            .collect()
    }

    /// The lists a lead is on.
    pub async fn lists_of(&self, lead: LeadId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .table
            .query(Query::partition(Index::Table, keys::lead_partition(lead)).begins_with(keys::LISTED_PREFIX))
            .await?
            .iter()
            .filter_map(|i| str_attr(i, "list").map(str::to_owned))
            .collect())
    }

    /// Every list, by name.
    pub async fn all(&self) -> Result<Vec<ListInfo>, StoreError> {
        self.table
            .query(Query::partition(Index::Gsi1, keys::LISTS))
            .await?
            .into_iter()
            .map(from_record)
            .collect()
    }

    pub async fn exists(&self, list: &ListName) -> Result<bool, StoreError> {
        Ok(self.table.get(keys::list_meta(list.as_str())).await?.is_some())
    }
}

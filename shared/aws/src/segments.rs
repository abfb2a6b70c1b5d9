//! Segment memberships in the records table. A writer that changed a lead adds what its segments
//! did to its own transaction: the lead's `segments` map (set on the lead's update), a member
//! item per join (deleted on leave) in the segment's shard, and a history entry per change in
//! the lead's partition. A lead whose memberships did not change writes nothing more.

use aws_sdk_dynamodb::types::TransactWriteItem;

use leadflow_domain::ports::StoreError;
use leadflow_domain::records::LeadId;
pub use leadflow_domain::segment::SegmentMember;
use leadflow_domain::segment::{ActivityMark, MembershipChange, Memberships, Upkeep};

use crate::keys::{self, Index};
use crate::table::{attr, from_record, record_item, s, to_av, Condition, Item, Query, Table, Update};

/// A lead item keeps each membership as its own attribute, `seg#<segment>` = when it joined:
/// a writer sets or removes only the segments it changes, so two writers changing different
/// segments of one lead at once never undo each other.
pub const SEGMENT_ATTR_PREFIX: &str = "seg#";
/// The lead item's newest activities, for segments.
pub const MARKS_ATTR: &str = "activity_marks";

/// The memberships and activity marks kept on a lead item.
pub fn lead_segments(lead_item: &Item) -> Result<(Memberships, Vec<ActivityMark>), StoreError> {
    let mut members = Memberships::new();
    for (name, _) in lead_item.iter().filter(|(k, _)| k.starts_with(SEGMENT_ATTR_PREFIX)) {
        if let Some(at) = attr(lead_item, name)? {
            members.insert(name[SEGMENT_ATTR_PREFIX.len()..].to_owned(), at);
        }
    }
    Ok((members, attr(lead_item, MARKS_ATTR)?.unwrap_or_default()))
}

/// The lead's own update, with the memberships that changed set or removed.
pub fn with_members(mut update: Update, upkeep: &Upkeep) -> Result<Update, StoreError> {
    for c in &upkeep.changes {
        let name = format!("{SEGMENT_ATTR_PREFIX}{}", c.segment);
        update = if c.joined {
            update.set(&name, to_av(&c.at)?)
        } else {
            update.remove(&name)
        };
    }
    Ok(update)
}

/// The member items and history entries of the changes (none when nothing changed).
pub fn change_items(table: &Table, upkeep: &Upkeep) -> Result<Vec<TransactWriteItem>, StoreError> {
    let mut items = Vec::with_capacity(upkeep.changes.len() * 2);
    let Some((lead, contact)) = upkeep.who else {
        return Ok(items);
    };
    for c in &upkeep.changes {
        let member_key = keys::segment_member(&c.segment, lead);
        let mut log = record_item(c, keys::segment_log(lead, c.at, &c.segment, c.joined), "segment_change")?;
        if c.joined {
            let member = SegmentMember {
                lead_id: lead,
                contact_id: contact,
                joined_at: c.at,
                why: c.why.clone(),
            };
            let mut item = record_item(&member, member_key.clone(), "segment_member")?;
            item.insert("segment".into(), s(&c.segment));
            items.push(table.put_tx(item, Condition::none())?);
            // Erasure follows this to the member item.
            log.insert("key_pk".into(), s(member_key.0));
            log.insert("key_sk".into(), s(member_key.1));
        } else {
            items.push(table.delete_tx(member_key)?);
        }
        items.push(table.put_tx(log, Condition::none())?);
    }
    if let Some(at) = upkeep.reschedule {
        // A window of this lead's segments flips before its re-scoring entry is due.
        items.push(table.put_tx(crate::scoring::rescore_item(lead, contact, Some(at)), Condition::none())?);
    }
    Ok(items)
}

/// A segment's members, shard by shard.
#[derive(Clone)]
pub struct DynamoSegmentMembers {
    table: Table,
}

impl DynamoSegmentMembers {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// The members in one shard (a Query over one partition).
    pub async fn shard(&self, segment: &str, shard: u32) -> Result<Vec<SegmentMember>, StoreError> {
        self.table
            .query(Query::partition(Index::Table, keys::segment_shard(segment, shard)).begins_with(keys::MEMBER_PREFIX))
            .await?
            .into_iter()
            .map(from_record)
            .collect()
    }

    /// Every member, shard after shard.
    pub async fn all(&self, segment: &str) -> Result<Vec<SegmentMember>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..keys::SEGMENT_SHARDS {
            out.extend(self.shard(segment, shard).await?);
        }
        Ok(out)
    }

    /// A lead's joins and leaves, oldest first.
    pub async fn history(&self, lead: LeadId) -> Result<Vec<MembershipChange>, StoreError> {
        self.table
            .query(Query::partition(Index::Table, keys::lead_partition(lead)).begins_with(keys::SEGLOG_PREFIX))
            .await?
            .into_iter()
            .map(from_record)
            .collect()
    }
}

//! The table design (docs/architecture.md) in one place: every key the adapters write.
//!
//! One records table, items grouped by partition:
//! - `CKEY#<strategy>#<digest>` / `CKEY`: contact matching key → contact id
//! - `LKEY#<strategy>#<digest>` / `LKEY`: lead matching key → lead id, contact id
//! - `CONTACT#<id>` / `CONTACT`: the contact
//! - `LEAD#<id>` / `LEAD`: the lead (GSI1: `CONTACT#<id>` / `LEAD#<id>`, the leads of a contact;
//!   `band`: `BAND#<band>#<shard>`, `stage`: `STAGE#<stage>#<shard>`, the leads in a band or stage)
//! - `LEAD#<id>` / `IX#<interaction id>`: its interactions, time-ordered (UUIDv7)
//! - `RECEIPT#D#<digest>`, `RECEIPT#I#<digest>` / `RECEIPT`: double-click and idempotency receipts
//! - `SPAM#<form>#<day>#<shard>` / `<id>`: honeypot catches, kept apart
//!
//! The sparse `due` index (`due_pk`, `due_sk`) holds only work that is due: `OUTBOX#<shard>`
//! for interactions not yet confirmed by their consumer, `DUE#<shard>` for leads the process
//! function must look at. Sharded so no partition is hot at millions of leads.

use chrono::{DateTime, SecondsFormat, Utc};
use leadflow_domain::matching::MatchKey;
use leadflow_domain::records::{ContactId, InteractionId, LeadId, Stage};

/// A primary key: partition key and sort key.
pub type Key = (String, String);

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const DUE_PK: &str = "due_pk";
pub const DUE_SK: &str = "due_sk";
pub const TTL: &str = "ttl";
pub const TYPE: &str = "type";
pub const GSI1: &str = "gsi1";
pub const DUE_INDEX: &str = "due";
pub const OUTBOX_SHARDS: u32 = 8;
pub const DUE_SHARDS: u32 = 16;
pub const RESCORE_SHARDS: u32 = 16;
/// The due time of an entry that is never due by time (kept so a model change finds it).
pub const NEVER: &str = "9999-12-31T23:59:59.999Z";
pub const SPAM_SHARDS: u32 = 8;
/// `band_pk`: the `band` index's partition of a scored lead (`BAND#<band>#<shard>`).
pub const BAND_PK: &str = "band_pk";
/// `stage_pk`: the `stage` index's partition of a lead (`STAGE#<stage>#<shard>`).
pub const STAGE_PK: &str = "stage_pk";
pub const BAND_INDEX: &str = "band";
pub const STAGE_INDEX: &str = "stage";
pub const STATE_SHARDS: u32 = 16;

/// The table or one of its indexes, with its key attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Table,
    /// `gsi1pk`/`gsi1sk`: the leads of a contact.
    Gsi1,
    /// `due_pk`/`due_sk`: sparse, only work that is due.
    Due,
    /// `band_pk`/`pk`: leads by band, sharded.
    Band,
    /// `stage_pk`/`pk`: leads by stage, sharded.
    Stage,
}

impl Index {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Index::Table => None,
            Index::Gsi1 => Some(GSI1),
            Index::Due => Some(DUE_INDEX),
            Index::Band => Some(BAND_INDEX),
            Index::Stage => Some(STAGE_INDEX),
        }
    }

    pub fn attributes(self) -> (&'static str, &'static str) {
        match self {
            Index::Table => (PK, SK),
            Index::Gsi1 => (GSI1_PK, GSI1_SK),
            Index::Due => (DUE_PK, DUE_SK),
            Index::Band => (BAND_PK, PK),
            Index::Stage => (STAGE_PK, PK),
        }
    }
}

/// Sort-key prefixes of the items kept in a lead's partition.
pub const INTERACTION_PREFIX: &str = "IX#";
pub const SEND_PREFIX: &str = "SEND#";
pub const TASK_PREFIX: &str = "TASK#";
/// Field history, in the contact's partition.
pub const FIELDS_PREFIX: &str = "FIELDS#";
pub const SCORE_PREFIX: &str = "SCORE#";
pub const STAGE_PREFIX: &str = "STAGE#";
pub const ACTIVITY_PREFIX: &str = "ACT#";
const LEAD_PREFIX: &str = "LEAD#";
const CONTACT_PREFIX: &str = "CONTACT#";

pub fn contact_key(k: &MatchKey) -> (String, String) {
    (format!("CKEY#{}", k.as_str()), "CKEY".into())
}
pub fn lead_key(k: &MatchKey) -> (String, String) {
    (format!("LKEY#{}", k.as_str()), "LKEY".into())
}
pub fn contact(id: ContactId) -> (String, String) {
    (contact_partition(id), "CONTACT".into())
}
pub fn contact_partition(id: ContactId) -> String {
    format!("{CONTACT_PREFIX}{id}")
}
/// One submission's values, time-ordered in the contact's partition (unique by receipt).
pub fn field_history(contact: ContactId, at: DateTime<Utc>, receipt: InteractionId) -> (String, String) {
    (
        contact_partition(contact),
        format!("{FIELDS_PREFIX}{}#{receipt}", sortable_time(at)),
    )
}
pub fn lead(id: LeadId) -> (String, String) {
    (lead_partition(id), "LEAD".into())
}
/// The partition holding a lead and everything kept with it (interactions, history, sends, tasks).
pub fn lead_partition(id: LeadId) -> String {
    format!("{LEAD_PREFIX}{id}")
}
/// The lead id of a lead partition key.
pub fn lead_of_partition(pk: &str) -> Option<LeadId> {
    pk.strip_prefix(LEAD_PREFIX).and_then(LeadId::parse)
}
/// GSI1: the leads of a contact; `leads_of_contact_prefix` selects them all.
pub fn leads_of_contact(contact: ContactId, lead: LeadId) -> (String, String) {
    (contact_partition(contact), format!("{LEAD_PREFIX}{lead}"))
}
pub const LEADS_OF_CONTACT_PREFIX: &str = LEAD_PREFIX;
pub fn interaction(lead: LeadId, id: InteractionId) -> (String, String) {
    (lead_partition(lead), format!("{INTERACTION_PREFIX}{id}"))
}
pub fn dedup_receipt(digest: &str) -> (String, String) {
    (format!("RECEIPT#D#{digest}"), "RECEIPT".into())
}
pub fn idempotency_receipt(digest: &str) -> (String, String) {
    (format!("RECEIPT#I#{digest}"), "RECEIPT".into())
}
/// The receipt a receipt reference's `receipt_pk` names.
pub fn receipt(receipt_pk: &str) -> (String, String) {
    (receipt_pk.to_owned(), "RECEIPT".into())
}
pub fn receipt_ref(lead: LeadId, receipt_pk: &str) -> (String, String) {
    (lead_partition(lead), format!("RREF#{receipt_pk}"))
}
pub fn form(id: &str) -> (String, String) {
    (format!("FORM#{id}"), "FORM".into())
}

pub fn score_history(lead: LeadId, at: DateTime<Utc>, model: &str, version: u64) -> (String, String) {
    (
        lead_partition(lead),
        format!("{SCORE_PREFIX}{}#{model}#{version:010}", sortable_time(at)),
    )
}
pub fn rescore(lead: LeadId) -> (String, String) {
    (lead_partition(lead), "RESCORE".into())
}
pub fn rescore_pk(shard: u32) -> String {
    format!("RESCORE#{shard}")
}
/// Where an unfinished stale re-scoring pass stands (one item: only one pass runs at a time).
pub fn rescore_cursor() -> (String, String) {
    ("RESCORE_CURSOR".into(), "STALE".into())
}
pub fn rescore_entry(at: Option<DateTime<Utc>>, lead: LeadId) -> (String, String) {
    let when = at.map(sortable_time).unwrap_or_else(|| NEVER.to_owned());
    (
        rescore_pk(shard_of(&lead.to_string(), RESCORE_SHARDS)),
        format!("{when}#{lead}"),
    )
}
/// A lead the process function must look at (its score or band changed).
pub fn lead_due(at: DateTime<Utc>, lead: LeadId) -> (String, String) {
    (
        due_pk(shard_of(&lead.to_string(), DUE_SHARDS)),
        format!("{}#{lead}", sortable_time(at)),
    )
}
/// The `band` index partition of a lead in `band`.
pub fn band_pk(band: &str, lead: LeadId) -> String {
    band_shard(band, shard_of(&lead.to_string(), STATE_SHARDS))
}
pub fn band_shard(band: &str, shard: u32) -> String {
    format!("BAND#{band}#{shard}")
}
/// The `stage` index partition of a lead in `stage`.
pub fn stage_pk(stage: Stage, lead: LeadId) -> String {
    stage_shard(stage, shard_of(&lead.to_string(), STATE_SHARDS))
}
pub fn stage_shard(stage: Stage, shard: u32) -> String {
    format!("STAGE#{}#{shard}", leadflow_domain::segment::name_of(&stage))
}
pub fn due_pk(shard: u32) -> String {
    format!("DUE#{shard}")
}
/// What a `DUE#` entry names: a lead, or one of its tasks (by the item's own key).
pub fn due_target(pk: &str, sk: &str) -> Option<(LeadId, Option<String>)> {
    let lead = lead_of_partition(pk)?;
    Some((lead, sk.strip_prefix(TASK_PREFIX).map(str::to_owned)))
}
/// GSI1 partition of the spam caught under one email address (a digest, never the address):
/// erasure finds a person's spam without a Scan.
pub fn spam_by_email(email_digest: &str) -> String {
    format!("SPAMEMAIL#{email_digest}")
}
/// A reference to a matching key item, kept in the partition of the record it points to, so
/// erasure finds the keys of every strategy a contact or lead owns.
pub fn key_ref(owner_partition: String, key_pk: &str) -> (String, String) {
    (owner_partition, format!("{KEY_REF_PREFIX}{key_pk}"))
}
pub const KEY_REF_PREFIX: &str = "KEYREF#";
/// Honeypot catches, by form, day (UTC) and shard.
pub fn spam(form: &str, day: &str, shard: u32, id: &str) -> (String, String) {
    (format!("SPAM#{form}#{day}#{shard}"), id.to_owned())
}
pub fn visitor_interaction(visitor: &str, id: InteractionId) -> (String, String) {
    (format!("VISITOR#{visitor}"), format!("IX#{id}"))
}
pub fn visitor_link(visitor: &str) -> (String, String) {
    (format!("VISITOR#{visitor}"), "LINK".into())
}
/// SES's message id → the lead and contact an email was sent for (written when sending).
pub fn email_message(message_id: &str) -> (String, String) {
    (format!("SESMSG#{message_id}"), "SESMSG".into())
}
/// Time-ordered; the suffix keeps two moves recorded in the same millisecond apart.
pub fn stage_history(lead: LeadId, at: DateTime<Utc>, n: usize) -> (String, String) {
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
    (
        lead_partition(lead),
        format!("{STAGE_PREFIX}{}#{n:02}#{unique}", sortable_time(at)),
    )
}
pub fn send_ledger(lead: LeadId, key: &str) -> (String, String) {
    (lead_partition(lead), format!("{SEND_PREFIX}{key}"))
}
pub fn task(lead: LeadId, task_id: &str) -> (String, String) {
    (lead_partition(lead), format!("{TASK_PREFIX}{task_id}"))
}
pub fn task_due(at: DateTime<Utc>, lead: LeadId, task_id: &str) -> (String, String) {
    (
        due_pk(shard_of(&lead.to_string(), DUE_SHARDS)),
        format!("{}#{TASK_PREFIX}{lead}#{task_id}", sortable_time(at)),
    )
}
/// Time-ordered; the suffix keeps two activities recorded in the same millisecond apart.
pub fn activity(lead: LeadId, at: DateTime<Utc>) -> (String, String) {
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
    (
        lead_partition(lead),
        format!("{ACTIVITY_PREFIX}{}#{unique}", sortable_time(at)),
    )
}
pub fn round_robin(pool: &str) -> (String, String) {
    (format!("ROUNDROBIN#{pool}"), "ROUNDROBIN".into())
}
/// A whole-configuration document (scoring, nurture, routing) in the config table.
pub fn config_document(name: &str) -> (String, String) {
    (name.to_uppercase(), "CONFIG".into())
}
pub fn site(key: &str) -> (String, String) {
    (format!("SITE#{key}"), "SITE".into())
}

/// A stable shard for an id (FNV-1a), so one interaction always lands in the same shard.
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    h % shards
}

pub fn outbox_pk(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}
pub fn outbox_entry(due: DateTime<Utc>, lead: LeadId, id: InteractionId) -> (String, String) {
    (
        outbox_pk(shard_of(&id.to_string(), OUTBOX_SHARDS)),
        format!("{}#{lead}#{id}", sortable_time(due)),
    )
}

/// Times in sort keys: fixed-width RFC 3339 in UTC, so string order is time order.
pub fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Static lists: members sharded by lead (16 partitions a list, no hot partition however large
/// the list), a reference in the lead's partition (which lists a lead is on; erasure follows its
/// `key_pk`/`key_sk`), and the list itself, found through GSI1 (`LISTS`).
pub const LIST_SHARDS: u32 = 16;
pub const LISTED_PREFIX: &str = "LISTED#";
pub const LISTS: &str = "LISTS";
pub const MEMBER_PREFIX: &str = "MEMBER#";
pub fn list_shard(name: &str, shard: u32) -> String {
    format!("LIST#{name}#{shard}")
}
pub fn list_member(name: &str, lead: LeadId) -> (String, String) {
    let id = lead.to_string();
    (
        list_shard(name, shard_of(&id, LIST_SHARDS)),
        format!("{MEMBER_PREFIX}{id}"),
    )
}
pub fn list_meta(name: &str) -> (String, String) {
    (format!("LIST#{name}"), "LIST".into())
}
pub fn listed(lead: LeadId, name: &str) -> (String, String) {
    (lead_partition(lead), format!("{LISTED_PREFIX}{name}"))
}

/// Segment members, sharded by lead like lists; the lead's own partition keeps the history of
/// its joins and leaves (`SEGLOG#<time>#<segment>`), a join's entry pointing at the member item
/// (`key_pk`/`key_sk`) so erasure finds it.
pub const SEGMENT_SHARDS: u32 = 16;
pub const SEGLOG_PREFIX: &str = "SEGLOG#";
pub fn segment_shard(id: &str, shard: u32) -> String {
    format!("SEGMENT#{id}#{shard}")
}
pub fn segment_member(id: &str, lead: LeadId) -> (String, String) {
    let lead = lead.to_string();
    (
        segment_shard(id, shard_of(&lead, SEGMENT_SHARDS)),
        format!("{MEMBER_PREFIX}{lead}"),
    )
}
/// A join and a leave of one segment at one moment (an activity, then the move it asks for)
/// are two entries.
pub fn segment_log(lead: LeadId, at: DateTime<Utc>, id: &str, joined: bool) -> (String, String) {
    let what = if joined { "joined" } else { "left" };
    (
        lead_partition(lead),
        format!("{SEGLOG_PREFIX}{}#{id}#{what}", sortable_time(at)),
    )
}

/// A routine email's once-only claim (`<day>#<step>#<owner>`).
pub fn routine_claim(key: &str) -> (String, String) {
    (format!("ROUTINE#{key}"), "CLAIM".into())
}

/// Segment definitions, all in one partition of the configuration table.
pub const SEGMENTS: &str = "SEGMENTS";
pub fn segment(id: &str) -> (String, String) {
    (SEGMENTS.into(), format!("SEGMENT#{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_time_orders_as_strings() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::milliseconds(1);
        assert!(sortable_time(a) < sortable_time(b));
        assert_eq!(sortable_time(a), "2026-01-02T03:04:05.000Z");
    }

    #[test]
    fn shards_spread() {
        let mut counts = [0u32; OUTBOX_SHARDS as usize];
        for _ in 0..8000 {
            counts[shard_of(&InteractionId::generate().to_string(), OUTBOX_SHARDS) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }
}

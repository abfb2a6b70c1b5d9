//! Scoring a batch of interactions: grouped per lead, one atomic write per lead, each
//! interaction applied exactly once, concurrent writers never losing points.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::engine::Event;
use super::lead::{rescore, Input, LeadScoring, Outcome};
use super::model::ScoringConfig;
use crate::ports::StoreError;
use crate::records::{Contact, ContactId, Interaction, InteractionId, Lead, LeadId, Suppression};
use crate::segment::{upkeep, ActivityMark, Facts, Memberships, Upkeep};

/// Attempts per lead before its messages are handed back to the queue.
pub const MAX_ATTEMPTS: u32 = 5;
/// Leads scored at once within a batch.
pub const CONCURRENCY: usize = 4;
/// A lead's write fits one transaction (at most 100 items): the lead, up to `MAX_WORKS_PER_LEAD`
/// interactions confirmed or stored (20), `MAX_LINK` anonymous ones linked (each stored and its
/// visitor copy marked: 30), the link, the re-scoring entry, the score history (2), a
/// suppression, up to `segment::MAX_CHANGES` membership changes (two items each: 20), the report
/// counters (2), and for at most `MAX_SES_PER_LEAD` SES events an email mark and an email
/// counter each (20), and the outbox entry of its domain events (1): 99 at the most.
pub const MAX_LINK: usize = 15;
/// Interactions of one lead taken from one batch; the rest go back to the queue and are
/// scored with a later batch (a burst of one lead's events never makes an oversized write).
pub const MAX_WORKS_PER_LEAD: usize = 20;
/// Of those, SES events (each may add an email mark and an email counter).
pub const MAX_SES_PER_LEAD: usize = 10;

/// What scoring needs of a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadSnapshot {
    pub lead_id: LeadId,
    pub contact: Contact,
    pub scoring: LeadScoring,
    /// The rest of the lead, for its segments.
    pub lead: Lead,
    pub owner: Option<String>,
    pub marks: Vec<ActivityMark>,
    pub members: Memberships,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredInteraction {
    pub interaction: Interaction,
    pub scored: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub leads: HashMap<LeadId, LeadSnapshot>,
    pub interactions: HashMap<InteractionId, StoredInteraction>,
}

/// Anonymous interactions moved onto a lead when its visitor identified themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitorLink {
    pub visitor_id: String,
    pub moved: Vec<InteractionId>,
}

/// Everything one lead's scoring writes, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreWrite {
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub expected_version: u64,
    pub outcome: Outcome,
    /// Stored interactions now scored (each only if not scored before).
    pub confirm: Vec<InteractionId>,
    /// Interactions stored and scored in the same write (SES events, linked anonymous ones).
    pub create: Vec<Interaction>,
    pub link: Option<VisitorLink>,
    pub suppress: Option<Suppression>,
    /// The lead's segment memberships after this write (what changed, and the next check).
    pub upkeep: Upkeep,
    /// What the write counts for reports: the band entered, sales-ready.
    pub tally: crate::report::Tally,
    /// Email events counted (per program and step), and the emails now opened or clicked
    /// (SES message id, opened, clicked) so a later open is not counted again.
    pub email_tallies: Vec<crate::report::EmailTally>,
    pub email_marks: Vec<(String, bool, bool)>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoreCommit {
    Committed,
    /// Another writer changed the lead's scoring since it was read.
    VersionConflict,
    /// These interactions were scored meanwhile (a duplicate delivery in another batch).
    AlreadyScored(Vec<InteractionId>),
}

pub trait ScoringStore: Send + Sync {
    /// One round trip: the leads with their contacts, and the named stored interactions.
    fn load(
        &self,
        leads: &[(LeadId, ContactId)],
        interactions: &[(LeadId, InteractionId)],
    ) -> impl Future<Output = Result<Loaded, StoreError>> + Send;
    fn commit(&self, write: &ScoreWrite) -> impl Future<Output = Result<ScoreCommit, StoreError>> + Send;
    /// Writes for different leads, packed into as few atomic writes as the store allows; for
    /// each, whether it committed. `false`: the write it was packed in was refused or failed
    /// (none of it happened), and the lead is scored again on its own.
    fn commit_many(&self, writes: &[ScoreWrite]) -> impl Future<Output = Vec<bool>> + Send {
        async move {
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                out.push(matches!(self.commit(w).await, Ok(ScoreCommit::Committed)));
            }
            out
        }
    }
    /// A visitor's anonymous interactions not yet linked to a lead, oldest first.
    fn anonymous(
        &self,
        visitor_id: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Interaction>, StoreError>> + Send;
}

/// A marketing email leadflow sent, as SES events find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    /// The send ledger key (`warm:1`): the program and step it counts under.
    pub ledger_key: Option<String>,
    /// Opened, clicked before (the email report counts unique opens and clicks).
    pub opened: bool,
    pub clicked: bool,
}

/// SES's message ids → the emails they are.
pub trait SentEmails: Send + Sync {
    fn email_messages(
        &self,
        message_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, SentEmail>, StoreError>> + Send;
}

/// The email an SES event is about, for the email report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRef {
    pub ses_message_id: String,
    pub ledger_key: String,
    pub opened_before: bool,
    pub clicked_before: bool,
}

/// Which leads a re-scoring pass takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescorePass {
    /// Leads whose behaviour points age by this time.
    Due(DateTime<Utc>),
    /// Every scored lead (after a model change), page by page from a cursor (`None`: the start).
    Stale(Option<String>),
}

/// One page of a re-scoring pass: the leads, and where the next page starts (`None`: the pass
/// has seen every scored lead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescorePage {
    pub leads: Vec<(LeadId, ContactId)>,
    pub next: Option<String>,
}

/// The re-scoring schedule: every scored lead has an entry, due when its points next age.
pub trait RescoreSchedule: Send + Sync {
    fn rescore_candidates(
        &self,
        pass: RescorePass,
        limit: usize,
    ) -> impl Future<Output = Result<RescorePage, StoreError>> + Send;
    /// Where an unfinished stale pass stands, kept across invocations.
    fn stale_cursor(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Keeps (`Some`) or clears (`None`: the pass is done) the stale pass's cursor.
    fn save_stale_cursor(&self, cursor: Option<&str>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub trait ScoringConfigSource: Send + Sync {
    fn scoring_config(&self) -> impl Future<Output = Result<Arc<ScoringConfig>, StoreError>> + Send;
}

/// One unit of work from the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A stored interaction to score (from intake or the events API).
    Stored {
        message_id: String,
        lead_id: LeadId,
        contact_id: ContactId,
        interaction_id: InteractionId,
    },
    /// An interaction that arrives with its message (SES events): stored and scored at once.
    Arriving {
        message_id: String,
        interaction: Interaction,
        suppress: Option<Suppression>,
        /// The email it is about (SES events of marketing email).
        email: Option<EmailRef>,
    },
}

impl Work {
    pub fn message_id(&self) -> &str {
        match self {
            Work::Stored { message_id, .. } | Work::Arriving { message_id, .. } => message_id,
        }
    }
    fn lead(&self) -> (LeadId, ContactId) {
        match self {
            Work::Stored {
                lead_id, contact_id, ..
            } => (*lead_id, *contact_id),
            Work::Arriving { interaction, .. } => (interaction.lead_id, interaction.contact_id),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Message ids to hand back to the queue (retried, then dead-lettered).
    pub failed: Vec<String>,
    pub scored: usize,
    pub duplicates: usize,
    pub dropped: usize,
    pub conflicts: usize,
    pub linked: usize,
}

#[derive(Debug, Default)]
struct GroupReport {
    scored: usize,
    duplicates: usize,
    dropped: usize,
    conflicts: usize,
    linked: usize,
}

/// Scores a batch: one load for all leads, every lead's write packed into as few atomic writes
/// as the store allows; a lead whose packed write was refused (another writer, a duplicate
/// delivery) is scored again on its own, with its own retries, leads in parallel.
pub async fn score_batch<S: ScoringStore>(
    store: &S,
    config: &ScoringConfig,
    work: Vec<Work>,
    now: DateTime<Utc>,
) -> BatchReport {
    let mut groups: BTreeMap<LeadId, (ContactId, Vec<Work>)> = BTreeMap::new();
    for w in work {
        let (lead, contact) = w.lead();
        groups.entry(lead).or_insert_with(|| (contact, Vec::new())).1.push(w);
    }
    let mut report = BatchReport::default();
    let leads: Vec<(LeadId, ContactId)> = groups.iter().map(|(l, (c, _))| (*l, *c)).collect();
    let stored: Vec<(LeadId, InteractionId)> = groups
        .values()
        .flat_map(|(_, ws)| ws.iter())
        .filter_map(|w| match w {
            Work::Stored {
                lead_id,
                interaction_id,
                ..
            } => Some((*lead_id, *interaction_id)),
            Work::Arriving { .. } => None,
        })
        .collect();
    let loaded = match store.load(&leads, &stored).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "could not load the batch; every message goes back to the queue");
            report.failed = groups
                .into_values()
                .flat_map(|(_, ws)| ws)
                .map(|w| w.message_id().to_owned())
                .collect();
            return report;
        }
    };
    // A lead's interactions beyond what one write holds are scored after its first write, in
    // further writes of their own, one after the other (never handed back to the queue, where a
    // burst would be received again and again).
    let mut overflow: Vec<(LeadId, Vec<Work>)> = Vec::new();
    for (lead_id, (_, works)) in groups.iter_mut() {
        let mut chunks = chunks_that_fit(std::mem::take(works)).into_iter();
        *works = chunks.next().unwrap_or_default();
        overflow.extend(chunks.map(|c| (*lead_id, c)));
    }
    let mut results: Vec<(Vec<String>, Result<GroupReport, StoreError>)> = Vec::new();
    // Each lead's first attempt, then one packed commit for all of them.
    let mut planned: Vec<(LeadId, Vec<Work>, GroupReport, ScoreWrite)> = Vec::new();
    for (lead_id, (_, works)) in groups {
        let ids: Vec<String> = works.iter().map(|w| w.message_id().to_owned()).collect();
        let Some(snapshot) = loaded.leads.get(&lead_id) else {
            tracing::warn!(lead_id = %lead_id, "scoring: lead not found; dropped");
            let dropped = GroupReport {
                dropped: works.len(),
                ..Default::default()
            };
            results.push((ids, Ok(dropped)));
            continue;
        };
        let mut group = GroupReport::default();
        let done = HashSet::new();
        match plan_lead(
            store,
            config,
            &works,
            snapshot,
            &loaded.interactions,
            &done,
            1,
            &mut group,
            now,
        )
        .await
        {
            Ok(Some(write)) => planned.push((lead_id, works, group, write)),
            Ok(None) => results.push((ids, Ok(group))),
            Err(e) => results.push((ids, Err(e))),
        }
    }
    let writes: Vec<ScoreWrite> = planned.iter().map(|(_, _, _, w)| w.clone()).collect();
    let committed = store.commit_many(&writes).await;
    let mut again: Vec<(LeadId, Vec<Work>)> = Vec::new();
    for ((lead_id, works, mut group, write), ok) in planned.into_iter().zip(committed) {
        if ok {
            count_committed(&write, &works, &mut group);
            results.push((works.iter().map(|w| w.message_id().to_owned()).collect(), Ok(group)));
        } else {
            again.push((lead_id, works));
        }
    }
    let retried: Vec<(Vec<String>, Result<GroupReport, StoreError>)> = stream::iter(again)
        .map(|(lead_id, works)| {
            let loaded = &loaded;
            async move {
                let ids = works.iter().map(|w| w.message_id().to_owned()).collect();
                (ids, score_lead(store, config, lead_id, works, loaded, now).await)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.extend(retried);
    for (lead_id, works) in overflow {
        let ids = works.iter().map(|w| w.message_id().to_owned()).collect();
        results.push((ids, score_lead(store, config, lead_id, works, &loaded, now).await));
    }
    for (ids, result) in results {
        match result {
            Ok(g) => {
                report.scored += g.scored;
                report.duplicates += g.duplicates;
                report.dropped += g.dropped;
                report.conflicts += g.conflicts;
                report.linked += g.linked;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scoring a lead failed; its messages go back to the queue");
                report.failed.extend(ids);
            }
        }
    }
    report
}

/// A lead's work in pieces that each fit one write: at most `MAX_WORKS_PER_LEAD` interactions,
/// of them at most `MAX_SES_PER_LEAD` SES events.
fn chunks_that_fit(works: Vec<Work>) -> Vec<Vec<Work>> {
    let mut chunks: Vec<(Vec<Work>, usize)> = Vec::new();
    for w in works {
        let arriving = usize::from(matches!(w, Work::Arriving { .. }));
        let fits = |(c, ses): &(Vec<Work>, usize)| c.len() < MAX_WORKS_PER_LEAD && ses + arriving <= MAX_SES_PER_LEAD;
        match chunks.iter_mut().find(|c| fits(c)) {
            Some((c, ses)) => {
                c.push(w);
                *ses += arriving;
            }
            None => chunks.push((vec![w], arriving)),
        }
    }
    chunks.into_iter().map(|(c, _)| c).collect()
}

/// What a committed write scored, into the lead's report.
fn count_committed(write: &ScoreWrite, works: &[Work], report: &mut GroupReport) {
    report.scored += write.confirm.len() + write.create.len();
    report.linked += write.link.as_ref().map_or(0, |l| l.moved.len());
    let stored = works.iter().filter(|w| matches!(w, Work::Stored { .. })).count();
    report.duplicates += stored.saturating_sub(report.dropped + write.confirm.len());
}

/// One attempt at a lead: the write that scores what is new, or `None` when nothing is (the
/// report then says why).
#[allow(clippy::too_many_arguments)]
async fn plan_lead<S: ScoringStore>(
    store: &S,
    config: &ScoringConfig,
    works: &[Work],
    snapshot: &LeadSnapshot,
    interactions: &HashMap<InteractionId, StoredInteraction>,
    done: &HashSet<InteractionId>,
    attempt: u32,
    report: &mut GroupReport,
    now: DateTime<Utc>,
) -> Result<Option<ScoreWrite>, StoreError> {
    let lead_id = snapshot.lead_id;
    let mut confirm = Vec::new();
    let mut create = Vec::new();
    let mut suppress = None;
    let mut visitors = Vec::new();
    let mut emails = EmailCounts::default();
    // Two copies of one interaction in a batch (at-least-once delivery, SNS retries, the
    // outbox relay) are one: a transaction may touch an item only once.
    let mut seen: HashSet<InteractionId> = HashSet::new();
    for w in works {
        match w {
            Work::Stored { interaction_id, .. } => match interactions.get(interaction_id) {
                _ if !seen.insert(*interaction_id) => {}
                Some(s) if s.scored || done.contains(interaction_id) => {}
                Some(s) => {
                    if let Some(v) = s.interaction.properties.get("visitor_id").and_then(|v| v.as_str()) {
                        visitors.push(v.to_owned());
                    }
                    confirm.push(s.interaction.clone());
                }
                None if attempt == 1 => {
                    tracing::warn!(interaction_id = %interaction_id, "scoring: interaction not found; dropped");
                    report.dropped += 1;
                }
                None => {}
            },
            Work::Arriving {
                interaction,
                suppress: s,
                email,
                ..
            } => {
                if seen.insert(interaction.interaction_id) && !done.contains(&interaction.interaction_id) {
                    create.push(interaction.clone());
                    if let Some(e) = email {
                        // Counted on the day it happened, however late SES's event arrives.
                        emails.count(e, &interaction.kind, interaction.occurred_at);
                    }
                }
                if s.is_some() && snapshot.contact.suppressed.is_none() {
                    suppress = s.clone();
                }
            }
        }
    }
    let mut link = None;
    if let Some(visitor_id) = visitors.first() {
        let mut anonymous = store.anonymous(visitor_id, MAX_LINK).await?;
        anonymous.retain(|a| seen.insert(a.interaction_id));
        let moved: Vec<InteractionId> = anonymous.iter().map(|i| i.interaction_id).collect();
        for mut a in anonymous {
            a.lead_id = lead_id;
            a.contact_id = snapshot.contact.contact_id;
            create.push(a);
        }
        link = Some(VisitorLink {
            visitor_id: visitor_id.clone(),
            moved,
        });
    }
    if confirm.is_empty() && create.is_empty() && suppress.is_none() {
        report.duplicates = works.len() - report.dropped;
        return Ok(None);
    }
    let inputs: Vec<Input<'_>> = confirm
        .iter()
        .chain(create.iter())
        .map(|i| Input {
            interaction_id: i.interaction_id,
            event: Event {
                kind: i.kind.name(),
                occurred_at: i.occurred_at,
                properties: &i.properties,
            },
        })
        .collect();
    let mut kinds: Vec<&str> = inputs.iter().map(|i| i.event.kind).collect();
    kinds.dedup();
    let reason = kinds.join(", ");
    let mut outcome = rescore(config, &snapshot.contact, &snapshot.scoring, &inputs, &reason, now);
    let upkeep = keep_segments(config, snapshot, &mut outcome, now);
    let tally = tally(snapshot, &outcome, now);
    let (email_tallies, email_marks) = emails.into_parts();
    Ok(Some(ScoreWrite {
        lead_id,
        contact_id: snapshot.contact.contact_id,
        expected_version: snapshot.scoring.version,
        outcome,
        confirm: confirm.iter().map(|i| i.interaction_id).collect(),
        create,
        link,
        suppress,
        tally,
        email_tallies,
        email_marks,
        upkeep,
        now,
    }))
}

/// The lead's segments re-evaluated with its new scores and interaction counts; the re-scoring
/// pass is due no later than the moment a window next changes them.
/// The email events of one lead's write: counts per ledger key, unique opens and clicks.
#[derive(Default)]
struct EmailCounts {
    tallies: BTreeMap<String, crate::report::EmailTally>,
    /// SES message id → (opened now or before, clicked now or before, changed by this write).
    seen: BTreeMap<String, (bool, bool, bool)>,
}

impl EmailCounts {
    fn count(&mut self, e: &EmailRef, kind: &crate::records::InteractionKind, now: DateTime<Utc>) {
        use crate::records::InteractionKind as K;
        use crate::report as r;
        let state = self
            .seen
            .entry(e.ses_message_id.clone())
            .or_insert((e.opened_before, e.clicked_before, false));
        let metric = match kind {
            K::EmailDelivered => Some(r::DELIVERED),
            K::EmailBounced => Some(r::BOUNCED),
            K::EmailComplained => Some(r::COMPLAINED),
            K::EmailOpened if !state.0 => {
                *state = (true, state.1, true);
                Some(r::OPENED)
            }
            K::EmailClicked if !state.1 => {
                *state = (state.0, true, true);
                Some(r::CLICKED)
            }
            _ => None,
        };
        if let Some(m) = metric {
            let t = self
                .tallies
                .remove(&e.ledger_key)
                .unwrap_or_else(|| crate::report::EmailTally::new(now, &e.ledger_key));
            self.tallies.insert(e.ledger_key.clone(), t.add(m, 1));
        }
    }

    fn into_parts(self) -> (Vec<crate::report::EmailTally>, Vec<(String, bool, bool)>) {
        let marks = self
            .seen
            .into_iter()
            .filter(|(_, (_, _, changed))| *changed)
            .map(|(id, (opened, clicked, _))| (id, opened, clicked))
            .collect();
        (self.tallies.into_values().collect(), marks)
    }
}

/// What a scoring write counts: the primary band entered, and sales-ready.
fn tally(snapshot: &LeadSnapshot, outcome: &Outcome, now: DateTime<Utc>) -> crate::report::Tally {
    let band = outcome
        .scoring
        .band
        .as_deref()
        .filter(|b| outcome.band_changed && !b.is_empty());
    let mut t = crate::report::Tally::new(now, crate::report::Dims::of(&snapshot.lead));
    if let Some(b) = band {
        t = t
            .add(crate::report::band_entered(b), 1)
            .gauge(crate::report::in_band(b), 1);
        if let Some(before) = snapshot.scoring.band.as_deref().filter(|b| !b.is_empty()) {
            t = t.gauge(crate::report::in_band(before), -1);
        }
    }
    t.add(crate::report::SALES_READY, i64::from(outcome.became_sales_ready))
}

fn keep_segments(config: &ScoringConfig, snapshot: &LeadSnapshot, outcome: &mut Outcome, now: DateTime<Utc>) -> Upkeep {
    let facts = Facts {
        contact: &snapshot.contact,
        lead: &snapshot.lead,
        scoring: &outcome.scoring,
        grade: outcome.scoring.primary_grade(),
        owner: snapshot.owner.as_deref(),
        activities: &snapshot.marks,
        now,
    };
    let upkeep = upkeep(&config.segments, &facts, &snapshot.members);
    if let Some(at) = upkeep.next_check {
        let next = &mut outcome.scoring.next_rescore_at;
        *next = Some(next.map_or(at, |r| r.min(at)));
    }
    upkeep
}

#[tracing::instrument(name = "lead", skip_all, fields(lead_id = %lead_id))]
async fn score_lead<S: ScoringStore>(
    store: &S,
    config: &ScoringConfig,
    lead_id: LeadId,
    works: Vec<Work>,
    loaded: &Loaded,
    now: DateTime<Utc>,
) -> Result<GroupReport, StoreError> {
    let mut report = GroupReport::default();
    let mut snapshot = match loaded.leads.get(&lead_id) {
        Some(s) => s.clone(),
        None => {
            // Erased, or never existed: nothing to score, and retrying will not change that.
            tracing::warn!(lead_id = %lead_id, "scoring: lead not found; dropped");
            report.dropped = works.len();
            return Ok(report);
        }
    };
    let mut interactions: HashMap<InteractionId, StoredInteraction> = loaded.interactions.clone();
    let mut done: HashSet<InteractionId> = HashSet::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(write) = plan_lead(
            store,
            config,
            &works,
            &snapshot,
            &interactions,
            &done,
            attempt,
            &mut report,
            now,
        )
        .await?
        else {
            return Ok(report);
        };
        match store.commit(&write).await? {
            ScoreCommit::Committed => {
                count_committed(&write, &works, &mut report);
                return Ok(report);
            }
            ScoreCommit::AlreadyScored(ids) => {
                report.conflicts += 1;
                done.extend(ids);
            }
            ScoreCommit::VersionConflict => {
                report.conflicts += 1;
                let keys: Vec<(LeadId, InteractionId)> = write.confirm.iter().map(|i| (lead_id, *i)).collect();
                let fresh = store.load(&[(lead_id, snapshot.contact.contact_id)], &keys).await?;
                match fresh.leads.get(&lead_id) {
                    Some(s) => snapshot = s.clone(),
                    None => {
                        report.dropped = works.len();
                        return Ok(report);
                    }
                }
                interactions.extend(fresh.interactions);
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "lead {lead_id}: still conflicting after {MAX_ATTEMPTS} attempts"
    )))
}

/// Re-scores one lead with nothing new: ageing, or a changed model. `None` when nothing changed.
pub fn rescore_write(config: &ScoringConfig, snapshot: &LeadSnapshot, reason: &str, now: DateTime<Utc>) -> ScoreWrite {
    let mut outcome = rescore(config, &snapshot.contact, &snapshot.scoring, &[], reason, now);
    let upkeep = keep_segments(config, snapshot, &mut outcome, now);
    let tally = tally(snapshot, &outcome, now);
    ScoreWrite {
        lead_id: snapshot.lead_id,
        contact_id: snapshot.contact.contact_id,
        expected_version: snapshot.scoring.version,
        outcome,
        confirm: vec![],
        create: vec![],
        link: None,
        suppress: None,
        tally,
        email_tallies: vec![],
        email_marks: vec![],
        upkeep,
        now,
    }
}

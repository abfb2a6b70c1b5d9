//! The process's ports: what a run needs from the records table (leases, the send ledger,
//! tasks, round-robin counters) and from the mail service.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::handoff::Task;
use super::plan::{LeadView, NurtureState};
use super::stage::StageChange;
use crate::ports::StoreError;
use crate::records::{ContactId, LeadId, LeadStatus, Stage};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DueItem {
    Lead(LeadId),
    Task(LeadId, String),
}

/// What a run writes back for a lead, releasing its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadSave {
    pub lead_id: LeadId,
    pub run_id: String,
    pub stage: Stage,
    pub status: LeadStatus,
    pub moves: Vec<StageChange>,
    pub nurture: NurtureState,
    pub owner: Option<String>,
    pub task: Option<Task>,
    pub next_due: Option<DateTime<Utc>>,
    /// The lead's own hand-off request (an `on_submit` form) made its move to sales: cleared.
    pub handoff_request_done: bool,
    /// The lead's segment memberships after the save.
    pub upkeep: crate::segment::Upkeep,
    /// What the save counts for reports (stages entered, closed, hand-offs).
    pub tally: crate::report::Tally,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send.
    Claimed,
    /// Claimed before (sent, or a crash between claim and send: not sent again).
    AlreadyClaimed,
    /// The contact's send record changed meanwhile (another lead of theirs was emailed).
    ContactBusy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why an email did not go out. Each carries SES's error code (or a short reason of ours),
/// never SES's message text, which can quote the recipient's address.
pub enum MailError {
    /// The account's send rate or quota: stop sending this run; the claim is withdrawn.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Sending is paused or the account suspended: stop sending this run; the claim is withdrawn.
    #[error("account paused: {0}")]
    Paused(String),
    /// SES refused this message (bad address…): never retried for this lead and step.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Anything else: withdrawn and retried a bounded number of times, then the lead moves on.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Attempts at one nurture email before the lead moves on without it.
pub const MAX_SEND_ATTEMPTS: u32 = 3;
/// When a lead whose email SES could not take now is looked at again.
pub const SEND_RETRY: chrono::Duration = chrono::Duration::minutes(5);

/// An address's confirmation-email slot (at most one per interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmationSlot {
    /// Ours: the address's last confirmation email is now marked as sent now.
    Taken,
    /// The address had one at this time, inside the interval.
    SentAt(DateTime<Utc>),
    /// The request was replaced meanwhile: its email is not sent (the newer one's is).
    Replaced,
}

/// A frequency-cap slot to give back: the contact, the send record's version after the claim,
/// and the sends as they were before it.
pub type SlotGiveBack = (ContactId, u64, Vec<DateTime<Utc>>);

/// A task and the lead's last sales activity.
pub type TaskAndActivity = (Task, Option<DateTime<Utc>>);

/// The leads and tasks that are due, and a lead's lease for one run.
pub trait LeaseStore: Send + Sync {
    fn due(&self, now: DateTime<Utc>, limit: usize) -> impl Future<Output = Result<Vec<DueItem>, StoreError>> + Send;
    /// Takes the lead for this run until `until`; `None` if another run holds it or it is gone.
    fn lease(
        &self,
        lead: LeadId,
        run_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<LeadView>, StoreError>> + Send;
    /// Writes the run's outcome for the lead and releases the lease.
    fn save(&self, save: &LeadSave) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The send ledger: each email claimed once per lead and key, ever.
pub trait SendLedger: Send + Sync {
    /// Claims an email, with the contact's new send record (guarded by its version) for
    /// nurture emails.
    fn claim(
        &self,
        lead: LeadId,
        key: &str,
        contact: Option<(ContactId, u64, Vec<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// The email went out. For marketing email to the lead's contact, its SES message id is
    /// recorded so engagement events score the lead; internal email (`None`) is never the
    /// lead's engagement.
    /// SES took the email (`contact`: a marketing email to the lead's contact, counted in the
    /// email report and mapped back for SES events).
    fn sent(
        &self,
        lead: LeadId,
        contact: Option<ContactId>,
        key: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// SES refused before sending (throttled): the claim is withdrawn so a later run sends it,
    /// and the frequency-cap slot the claim took is given back (`give_back`: the contact, the
    /// send record's version the claim wrote, and the sends before it) unless the record moved
    /// on meanwhile (then the slot stays taken: never more email than the cap).
    fn release(
        &self,
        lead: LeadId,
        key: &str,
        give_back: Option<SlotGiveBack>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the address's confirmation slot unless it had a confirmation email after `since`,
    /// or the request `nonce` is no longer the pending one (a run holding an older view): one
    /// atomic conditional write on the contact, so two runs never both send.
    fn claim_confirmation(
        &self,
        contact: ContactId,
        nonce: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<ConfirmationSlot, StoreError>> + Send;
    /// Gives a slot taken at `taken_at` back (the email did not go), restoring `before`,
    /// unless another run took the slot meanwhile.
    fn release_confirmation(
        &self,
        contact: ContactId,
        taken_at: DateTime<Utc>,
        before: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Sales tasks and their SLA checks.
pub trait TaskStore: Send + Sync {
    /// A task, with the lead's last sales activity.
    fn task(
        &self,
        lead: LeadId,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<TaskAndActivity>, StoreError>> + Send;
    fn save_task(
        &self,
        task: &Task,
        next_check: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A shared counter per owner pool, for round-robin assignment.
pub trait RoundRobin: Send + Sync {
    /// The counter's value before this call (0, 1, 2, …).
    fn round_robin(&self, pool: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Everything a process run needs from the records table.
pub trait ProcessStore: LeaseStore + SendLedger + TaskStore + RoundRobin {}
impl<T: LeaseStore + SendLedger + TaskStore + RoundRobin> ProcessStore for T {}

/// Who an email is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Nurture email to a lead's contact: tracked (opens, clicks, bounces), with unsubscribe.
    Marketing,
    /// Owners and managers: not tracked, no unsubscribe, never the lead's engagement.
    Internal,
    /// A message the person asked for (the opt-in confirmation): not tracked, no unsubscribe.
    Transactional,
}

pub trait Mailer: Send + Sync {
    /// Sends a raw MIME message (about `lead`, if about one); returns SES's message id.
    fn send(
        &self,
        raw: Vec<u8>,
        to: &str,
        lead: Option<LeadId>,
        audience: Audience,
    ) -> impl Future<Output = Result<String, MailError>> + Send;
}

/// What the lead API (manual moves, sales activities) needs from the records table.
pub trait LeadApiStore: Send + Sync {
    /// The lead and its contact.
    fn view(&self, lead: LeadId) -> impl Future<Output = Result<Option<LeadView>, StoreError>> + Send;
    /// Applies a move only if the lead is still where the caller saw it; `false` if it moved meanwhile.
    /// In the same write: the lead's segment changes the move makes.
    fn move_lead(
        &self,
        lead: LeadId,
        change: &StageChange,
        upkeep: &crate::segment::Upkeep,
        tally: &crate::report::Tally,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Keeps an activity with the lead; it stops the SLA timer. In the same write: the list
    /// changes its result asks for ([`Activity::list_changes`]), the lead's activity marks
    /// (`marks`, the newest with this one) and the segment changes they make.
    fn record_activity(
        &self,
        lead: LeadId,
        contact: ContactId,
        activity: &super::activity::Activity,
        marks: &[crate::segment::ActivityMark],
        upkeep: &crate::segment::Upkeep,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The process's configuration documents (nurture programs, routing).
pub trait ProcessConfigSource: Send + Sync {
    fn nurture(&self) -> impl Future<Output = Result<Option<super::nurture::NurtureConfig>, StoreError>> + Send;
    fn routing(&self) -> impl Future<Output = Result<Option<super::handoff::RoutingConfig>, StoreError>> + Send;
    /// The weekly HOT-lead routine; `None` when not configured.
    fn routine(&self) -> impl Future<Output = Result<Option<super::routine::RoutineConfig>, StoreError>> + Send;
}

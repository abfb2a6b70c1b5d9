//! Lead scoring (SPEC.md, Scoring): fit from who a lead is, behaviour from what it does,
//! configurable models, every point explained.

pub mod attributes;
pub mod engine;
pub mod lead;
pub mod model;
pub mod service;

#[cfg(test)]
mod tests;

pub use attributes::AttributeMaps;
pub use engine::{Bucket, Event, Ledger, Line, LineKind, Score};
pub use model::{ScoringConfig, ScoringModel};

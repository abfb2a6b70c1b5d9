//! The process (SPEC.md, Process stages, Nurture email, Hand-off to sales).

pub mod activity;
pub mod handoff;
pub mod lead_link;
pub mod lead_page;
pub mod nurture;
pub mod plan;
pub mod ports;
pub mod routine;
pub mod run;
pub mod stage;
pub mod unsubscribe;

#[cfg(test)]
mod tests;

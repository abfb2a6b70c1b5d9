//! The process (SPEC.md, Process stages, Nurture email, Hand-off to sales).

pub mod handoff;
pub mod nurture;
pub mod plan;
pub mod run;
pub mod stage;
pub mod unsubscribe;

#[cfg(test)]
mod tests;

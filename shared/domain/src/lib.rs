//! leadflow's domain: records, typed values, form validation, matching and the intake
//! decision. Pure Rust with no AWS types; the outside world is reached through [`ports`].

pub mod email;
pub mod engagement;
pub mod form;
pub mod intake;
pub mod matching;
pub mod message;
pub mod normalize;
pub mod outbox;
pub mod ports;
pub mod process;
pub mod records;
pub mod scoring;
pub mod submission;

#[cfg(test)]
mod tests;

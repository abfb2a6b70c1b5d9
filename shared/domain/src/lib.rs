//! leadflow's domain: records, typed values, form validation, matching and the intake
//! decision. Pure Rust with no AWS types; the outside world is reached through [`ports`].

pub mod confirmation;
pub mod digest;
pub mod email;
pub mod engagement;
pub mod events;
pub mod form;
pub mod history;
pub mod intake;
pub mod lists;
pub mod matching;
pub mod message;
pub mod normalize;
pub mod outbox;
pub mod ports;
pub mod process;
pub mod records;
pub mod report;
pub mod scoring;
pub mod segment;
pub mod submission;

/// The one HTML escape for text and attribute values built outside templates (templates use
/// minijinja's autoescape). Leaves `/` alone so URLs in attributes stay readable.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod intake_tests;

//! The ops tool's commands, as functions over a [`Target`] so tests drive them directly.
//! One module per command group; `main.rs` only parses arguments and prints.

mod activity;
pub mod csv_out;
mod dlq;
mod export;
mod import;
mod lead;
mod list;
mod person;
mod report;
mod segment;
mod target;

pub use activity::activity_add;
pub use csv_out::{formula_safe, Cells};
pub use dlq::{dlq_list, dlq_replay};
pub use export::{leads_export, CsvEncoding, ExportFrom, LeadFilter};
pub use import::{field_for, import_contacts, ImportOptions, ImportReport, IMPORT_CHUNK};
pub use lead::{lead_show, render_lead};
pub use list::{list_add, list_add_named, list_create, list_ls, list_name, list_remove, list_show};
pub use person::{person_erase, person_export, Erasure};
pub use report::{
    email_csv, funnel_csv, render_email, render_funnel, render_stages, report_email, report_funnel, report_stages,
};
pub use segment::{render_explanation, render_segment, segment_explain, segment_ls, segment_marks, segment_show};
pub use target::Target;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

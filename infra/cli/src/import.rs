//! `import contacts`: CSV rows through intake's matching, resumable, with an error report.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use futures::future::join_all;

use leadflow_aws::catalog::DynamoForms;
use leadflow_aws::intake::DynamoIntake;
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::intake::{IntakeError, IntakeOutcome, IntakeService, SubmissionMeta};
use leadflow_domain::ports::FormCatalog;
use leadflow_domain::submission::{RawSubmission, RawValue};

use crate::{Error, Target};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub matched: usize,
    pub errors: usize,
    /// Rows skipped because an earlier, interrupted run had done them.
    pub resumed_from: usize,
    pub finished: bool,
}

/// Rows submitted at once.
pub const IMPORT_CHUNK: usize = 50;

fn fingerprint(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path)?;
    let digest = leadflow_domain::digest::sha256([
        path.display().to_string().as_bytes(),
        meta.len().to_le_bytes().as_slice(),
    ]);
    Ok(hex::encode(&digest[..8]))
}

/// `import contacts FILE.csv`: each row through the same matching as intake (the form's
/// strategies), streamed (memory stays flat at any size), resumable from a state file beside
/// the input, with a per-row error report (`FILE.errors.csv`). `stop_after` interrupts on purpose (tests).
/// An import records `imported` interactions (0 points in the default model) and starts no
/// nurture unless `nurture` (then only people with recorded consent are emailed).
pub async fn import_contacts(
    t: &Target,
    file: &Path,
    form_id: &str,
    nurture: bool,
    progress: bool,
    stop_after: Option<usize>,
) -> Result<ImportReport, Error> {
    let forms = DynamoForms::new(t.config());
    let mut form = (*forms.form(form_id).await?.ok_or_else(|| format!("no form {form_id}"))?).clone();
    if nurture {
        form.nurture = Some(true);
    }
    let service = IntakeService::new(
        DynamoIntake::new(t.records()),
        SqsQueue::new(t.clients.sqs.clone(), &t.scoring_queue_url),
    );
    let run_id = fingerprint(file)?;
    let state_path = PathBuf::from(format!("{}.import-state", file.display()));
    let done: usize = match std::fs::read_to_string(&state_path) {
        Ok(s) => match s.trim().split_once(' ') {
            Some((id, n)) if id == run_id => n.parse().unwrap_or(0),
            _ => 0,
        },
        Err(_) => 0,
    };
    let mut errors_out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{}.errors.csv", file.display()))?;
    if errors_out.metadata()?.len() == 0 {
        writeln!(errors_out, "row,field,message")?;
    }
    let total = std::fs::metadata(file)?.len();
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(file)?;
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    let mut report = ImportReport {
        resumed_from: done,
        ..Default::default()
    };
    let mut row_no = 0usize;
    let mut chunk: Vec<(usize, RawSubmission)> = Vec::with_capacity(IMPORT_CHUNK);
    let mut records = reader.records();
    loop {
        let next = records.next();
        if let Some(rec) = &next {
            row_no += 1;
            if row_no > done {
                match rec {
                    Ok(r) => {
                        let fields = headers
                            .iter()
                            .zip(r.iter())
                            .map(|(h, v)| (h.clone(), RawValue::Text(v.to_owned())))
                            .collect();
                        chunk.push((row_no, RawSubmission { fields }));
                    }
                    Err(e) => {
                        writeln!(errors_out, "{row_no},_row,\"{}\"", e.to_string().replace('"', "'"))?;
                        report.errors += 1;
                    }
                }
            }
        }
        if chunk.len() == IMPORT_CHUNK || (next.is_none() && !chunk.is_empty()) {
            let now = Utc::now();
            let results = join_all(chunk.iter().map(|(n, raw)| {
                // A stable key per row: a resumed run replays rows it already did instead of doubling them.
                let meta = SubmissionMeta {
                    received_at: now,
                    source_ip: None,
                    user_agent: Some("leadflow import".into()),
                    idempotency_key: Some(format!("import:{run_id}:{n}")),
                };
                let (service, form) = (&service, &form);
                async move { service.submit(form, raw, &meta).await }
            }))
            .await;
            for ((n, _), result) in chunk.iter().zip(results) {
                report.rows += 1;
                match result {
                    Ok(IntakeOutcome::Accepted { receipt, .. }) => {
                        if receipt.contact == leadflow_domain::intake::Resolution::Created {
                            report.created += 1;
                        } else {
                            report.matched += 1;
                        }
                    }
                    Ok(IntakeOutcome::Spam { .. }) => {}
                    Err(IntakeError::Invalid(errs)) => {
                        report.errors += 1;
                        for e in errs {
                            writeln!(errors_out, "{n},{},\"{}\"", e.field, e.message.replace('"', "'"))?;
                        }
                    }
                    Err(e) => return Err(format!("row {n}: {e}; rerun to resume").into()),
                }
            }
            let last = chunk.last().map(|(n, _)| *n).unwrap_or(row_no);
            std::fs::write(&state_path, format!("{run_id} {last}"))?;
            chunk.clear();
            bar.set_position(records.reader().position().byte());
            bar.set_message(format!("{} rows, {} errors", report.rows + done, report.errors));
            if stop_after.is_some_and(|s| report.rows >= s) {
                return Ok(report);
            }
        }
        if next.is_none() {
            break;
        }
    }
    bar.finish_with_message(format!("{} rows imported, {} errors", report.rows, report.errors));
    std::fs::write(&state_path, format!("{run_id} {row_no}"))?;
    report.finished = true;
    Ok(report)
}

//! `import contacts`: CSV rows (UTF-8 with or without BOM, or Excel's Shift_JIS/CP932) through
//! intake's matching, with Japanese and English header aliases, resumable, with a dry run and
//! an error report that holds each failed row as it was.
//!
//! An import is not a form submission: rows record `imported` interactions (0 points in the
//! default model) and start no nurture and no hand-off unless `--nurture` (then only people
//! with recorded consent are ever emailed).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;

use leadflow_aws::catalog::DynamoForms;
use leadflow_aws::intake::DynamoIntake;
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::form::FormDefinition;
use leadflow_domain::intake::{
    lookup_request, submission_keys, IntakeError, IntakeOutcome, IntakeService, IntakeStore, SubmissionMeta,
};
use leadflow_domain::ports::FormCatalog;
use leadflow_domain::submission::{validate, RawSubmission, RawValue, Validated};

use crate::csv_out::{Cell, Cells, CsvOut};
use crate::{Error, Target};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub matched: usize,
    /// Rows refused (each in the errors file with its line, its values and why).
    pub errors: usize,
    /// Rows skipped because an earlier, interrupted run had done them.
    pub resumed_from: usize,
    pub finished: bool,
    /// The encoding the file was read in (`UTF-8` or `Shift_JIS`).
    pub encoding: &'static str,
    /// A dry run: nothing was written.
    pub dry_run: bool,
}

/// How to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The form whose fields and matching strategies the rows follow.
    pub form: String,
    /// Put the people with recorded consent in their band's nurture program.
    pub nurture: bool,
    /// Say what would be created, matched and refused; write nothing.
    pub dry_run: bool,
    /// `Column=field` mappings, before the built-in aliases.
    pub map: Vec<(String, String)>,
    /// Put every imported (created or matched) lead on this static list.
    pub list: Option<leadflow_domain::lists::ListName>,
    /// The errors file's cells: formula-safe for Excel (the default), or exactly as read
    /// (`--raw`, to import the file again byte for byte).
    pub cells: Cells,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            form: "import".into(),
            nurture: false,
            dry_run: false,
            map: Vec::new(),
            list: None,
            cells: Cells::FormulaSafe,
        }
    }
}

/// Rows submitted at once.
pub const IMPORT_CHUNK: usize = 100;

/// Column names as Japanese and English spreadsheets write them, and the field each is.
const ALIASES: &[(&str, &str)] = &[
    ("メールアドレス", "email"),
    ("メール", "email"),
    ("eメール", "email"),
    ("e-mail", "email"),
    ("emailaddress", "email"),
    ("mail", "email"),
    ("姓", "last_name"),
    ("氏", "last_name"),
    ("苗字", "last_name"),
    ("lastname", "last_name"),
    ("surname", "last_name"),
    ("familyname", "last_name"),
    ("名", "first_name"),
    ("firstname", "first_name"),
    ("givenname", "first_name"),
    ("会社名", "company"),
    ("会社", "company"),
    ("企業名", "company"),
    ("companyname", "company"),
    ("organization", "company"),
    ("部署", "department"),
    ("部署名", "department"),
    ("役職", "job_title"),
    ("役職名", "job_title"),
    ("title", "job_title"),
    ("jobtitle", "job_title"),
    ("業種", "industry"),
    ("従業員数", "employees"),
    ("社員数", "employees"),
    ("companysize", "employees"),
    ("電話番号", "phone"),
    ("電話", "phone"),
    ("tel", "phone"),
    ("phonenumber", "phone"),
    ("国", "country"),
    ("国名", "country"),
    ("メール配信同意", "consent"),
    ("同意", "consent"),
    ("optin", "consent"),
];

/// The field a column feeds: an explicit `--map` first, then the aliases, else the column's
/// own name (lower-cased). Matching ignores case, spaces, `_` and `-`, and full-width forms.
pub fn field_for(column: &str, map: &[(String, String)]) -> String {
    let column = column.trim().trim_start_matches('\u{feff}');
    if let Some((_, f)) = map.iter().find(|(c, _)| c.trim() == column) {
        return f.trim().to_owned();
    }
    let squash = |s: &str| -> String {
        leadflow_domain::normalize::clean_text(s)
            .to_lowercase()
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .collect()
    };
    let key = squash(column);
    ALIASES
        .iter()
        .find(|(alias, _)| squash(alias) == key)
        .map(|(_, f)| (*f).to_owned())
        .unwrap_or_else(|| leadflow_domain::normalize::clean_text(column).to_lowercase())
}

/// The file decoded: UTF-8 (a BOM is dropped), or Shift_JIS/CP932 when the start of the file
/// is not UTF-8 (what Excel writes for "CSV" on Japanese Windows).
fn open_decoded(path: &Path) -> Result<(Box<dyn Read>, &'static str), Error> {
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    let utf8 = match std::str::from_utf8(&head) {
        Ok(_) => true,
        // Cut in the middle of a character at the end of the sample: still UTF-8.
        Err(e) => e.error_len().is_none(),
    };
    let encoding = if head.starts_with(&[0xEF, 0xBB, 0xBF]) || utf8 {
        encoding_rs::UTF_8
    } else {
        encoding_rs::SHIFT_JIS
    };
    let reader = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .build(std::fs::File::open(path)?);
    Ok((
        Box::new(reader),
        if encoding == encoding_rs::UTF_8 {
            "UTF-8"
        } else {
            "Shift_JIS"
        },
    ))
}

/// Reads through, noting where each line ends, so a row's line number can be told from its byte
/// offset (the csv crate's own line count is off by one after a CRLF header, as Excel writes).
struct LineIndex<R> {
    inner: R,
    read: u64,
    newlines: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut newlines = self.newlines.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                newlines.push(self.read + i as u64);
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// The 1-based line of a record starting at `byte` (after a CRLF the csv crate puts a record's
/// start on the line feed that ends the line before it, so that line feed counts).
fn line_at(newlines: &[u64], byte: u64) -> u64 {
    newlines.partition_point(|&nl| nl <= byte) as u64 + 1
}

fn fingerprint(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path)?;
    let digest = leadflow_domain::digest::sha256([
        path.display().to_string().as_bytes(),
        meta.len().to_le_bytes().as_slice(),
    ]);
    Ok(hex::encode(&digest[..8]))
}

/// Chunks being written at once: one is written while the next is read and sent, so the
/// store is never waiting for the file.
const IN_FLIGHT: usize = 2;

type Results = Vec<Result<IntakeOutcome, IntakeError>>;

/// A refused row in the errors file: its line (a number), why, and its values as read (text
/// from the file, neutralised like every text cell unless `--raw`).
fn refuse(out: &mut CsvOut<std::fs::File>, line: u64, why: &str, values: &[String]) -> csv::Result<()> {
    let mut record = vec![Cell::number(line), Cell::text(why)];
    record.extend(values.iter().map(|v| Cell::text(v.as_str())));
    out.row(record)
}

/// What an import keeps while it runs: its counts, its errors file, its checkpoint.
struct Settle<'a> {
    t: &'a Target,
    list: Option<&'a leadflow_domain::lists::ListName>,
    source: String,
    report: ImportReport,
    errors_out: CsvOut<std::fs::File>,
    state: String,
    run_id: String,
}

/// A chunk being written, with the people it touches.
struct Writing {
    rows: Vec<(usize, Row)>,
    keys: HashSet<String>,
    results: tokio::task::JoinHandle<Results>,
}

impl Writing {
    /// Waits for the chunk, counts it, lists its people, and moves the checkpoint past it
    /// (chunks are settled in the file's order).
    async fn settle(self, s: &mut Settle<'_>) -> Result<(), Error> {
        let results = self.results.await.map_err(|e| format!("import chunk: {e}"))?;
        let mut listed = Vec::new();
        for ((n, row), result) in self.rows.iter().zip(results) {
            s.report.rows += 1;
            match result {
                Ok(IntakeOutcome::Accepted { receipt, .. }) => {
                    listed.push((receipt.lead_id, receipt.contact_id));
                    if receipt.contact == leadflow_domain::intake::Resolution::Created {
                        s.report.created += 1;
                    } else {
                        s.report.matched += 1;
                    }
                }
                Ok(IntakeOutcome::Spam { .. }) => {
                    s.report.errors += 1;
                    refuse(
                        &mut s.errors_out,
                        row.line,
                        "the form's honeypot column is filled",
                        &row.values,
                    )?;
                }
                Err(IntakeError::Invalid(errs)) => {
                    s.report.errors += 1;
                    refuse(&mut s.errors_out, row.line, &describe(&errs), &row.values)?;
                }
                Err(e) => {
                    s.errors_out.flush()?;
                    return Err(format!("row {n}: {e}; rerun to resume").into());
                }
            }
        }
        if let Some(list) = s.list {
            // Before the checkpoint: a resumed run lists the chunk again (harmless).
            crate::list::list_add(s.t, list, &listed, &s.source).await?;
        }
        if let Some((last, _)) = self.rows.last() {
            std::fs::write(&s.state, format!("{} {last}", s.run_id))?;
        }
        s.errors_out.flush()?;
        Ok(())
    }
}

/// One row read from the file: its line, its values as given, and the submission made of them.
struct Row {
    line: u64,
    values: Vec<String>,
    raw: RawSubmission,
}

/// What a dry run says of one row, without writing.
async fn classify(
    service: &IntakeService<DynamoIntake, SqsQueue>,
    form: &FormDefinition,
    row: &Row,
    seen: &mut HashSet<String>,
) -> Result<Result<bool, String>, Error> {
    let meta = SubmissionMeta {
        route: leadflow_domain::intake::Route::Internal,
        received_at: Utc::now(),
        ..Default::default()
    };
    let sub = match validate(form, &row.raw) {
        Ok(Validated::Valid(sub)) => sub,
        Ok(Validated::Spam) => return Ok(Err("the form's honeypot column is filled".into())),
        Err(errors) => return Ok(Err(describe(&errors))),
    };
    let req = match lookup_request(form, &sub, &meta) {
        Ok(r) => r,
        Err(e) => return Ok(Err(describe(&[e]))),
    };
    let known = service.store.lookup(&req).await?.contact.is_some();
    // A person twice in one file is created once, then matched.
    let first_here = seen.insert(req.contact_key.as_str().to_owned());
    Ok(Ok(known || !first_here))
}

fn describe(errors: &[leadflow_domain::submission::FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `import contacts FILE.csv`: each row through the same matching as intake (the form's
/// strategies), streamed (memory stays flat at any size), resumable from a state file beside
/// the input. `FILE.errors.csv` is written anew by each run from the first row (appended to
/// when an interrupted run resumes): `line`, `error`, then the row's own columns as given
/// (formula-safe for Excel unless `opts.cells` is [`Cells::Raw`]; see [`crate::csv_out`]).
/// `stop_after` interrupts on purpose (tests).
pub async fn import_contacts(
    t: &Target,
    file: &Path,
    opts: &ImportOptions,
    progress: bool,
    stop_after: Option<usize>,
) -> Result<ImportReport, Error> {
    let forms = DynamoForms::new(t.config());
    let mut form = (*forms
        .form(&opts.form)
        .await?
        .ok_or_else(|| format!("no form {}", opts.form))?)
    .clone();
    if opts.nurture {
        form.nurture = Some(true);
    }
    let form = std::sync::Arc::new(form);
    let service = std::sync::Arc::new(IntakeService::new(
        DynamoIntake::new(t.records()),
        SqsQueue::new(t.clients.sqs.clone(), &t.scoring_queue_url),
    ));
    let run_id = fingerprint(file)?;
    let state_path = PathBuf::from(format!("{}.import-state", file.display()));
    let done: usize = match (opts.dry_run, std::fs::read_to_string(&state_path)) {
        (false, Ok(s)) => match s.trim().split_once(' ') {
            Some((id, n)) if id == run_id => n.parse().unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    };
    let done = if done > 0 && !resumable(t, &form.id, &run_id, done).await? {
        eprintln!(
            "{}: the target holds none of the rows this import did before (a new local run, or more than a day ago): starting from the first row (rows already there are matched, not doubled)",
            state_path.display()
        );
        0
    } else {
        done
    };
    let (decoded, encoding) = open_decoded(file)?;
    let newlines = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(LineIndex {
            inner: decoded,
            read: 0,
            newlines: newlines.clone(),
        });
    let columns: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let fields: Vec<String> = columns.iter().map(|c| field_for(c, &opts.map)).collect();
    let errors_path = format!("{}.errors.csv", file.display());
    let resuming = done > 0;
    let mut errors_file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resuming)
        .truncate(!resuming)
        .open(&errors_path)?;
    if !resuming {
        // UTF-8 with a BOM: Excel opens it with the Japanese intact.
        std::io::Write::write_all(&mut errors_file, "\u{feff}".as_bytes())?;
    }
    let mut errors_out = CsvOut::new(errors_file, opts.cells);
    if !resuming {
        // The file's own column names, as read (text like any other).
        let mut header = vec!["line".to_owned(), "error".to_owned()];
        header.extend(columns.iter().cloned());
        errors_out.texts(&header)?;
    }
    let total = std::fs::metadata(file)?.len();
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes}  {binary_bytes_per_sec}  ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut settle = Settle {
        t,
        list: opts.list.as_ref(),
        source: format!(
            "import:{}",
            file.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        report: ImportReport {
            resumed_from: done,
            encoding,
            dry_run: opts.dry_run,
            ..Default::default()
        },
        errors_out,
        state: format!("{}", state_path.display()),
        run_id: run_id.clone(),
    };
    let mut writing: std::collections::VecDeque<Writing> = std::collections::VecDeque::new();
    let mut seen = HashSet::new();
    let mut row_no = 0usize;
    let mut chunk: Vec<(usize, Row)> = Vec::with_capacity(IMPORT_CHUNK);
    let mut records = reader.records();
    let started = std::time::Instant::now();
    loop {
        let next = records.next();
        if let Some(rec) = &next {
            row_no += 1;
            if row_no > done {
                match rec {
                    Ok(r) => {
                        let values: Vec<String> = r.iter().map(str::to_owned).collect();
                        let raw = RawSubmission {
                            fields: fields
                                .iter()
                                .zip(values.iter())
                                .map(|(f, v)| (f.clone(), RawValue::Text(v.clone())))
                                .collect(),
                        };
                        let line = r
                            .position()
                            .map_or(row_no as u64 + 1, |p| line_at(&newlines.borrow(), p.byte()));
                        chunk.push((row_no, Row { line, values, raw }));
                    }
                    Err(e) => {
                        let line = e
                            .position()
                            .map_or(row_no as u64 + 1, |p| line_at(&newlines.borrow(), p.byte()));
                        refuse(&mut settle.errors_out, line, &format!("unreadable row: {e}"), &[])?;
                        settle.report.rows += 1;
                        settle.report.errors += 1;
                    }
                }
            }
        }
        if chunk.len() == IMPORT_CHUNK || (next.is_none() && !chunk.is_empty()) {
            if opts.dry_run {
                for (_, row) in &chunk {
                    settle.report.rows += 1;
                    match classify(&service, &form, row, &mut seen).await? {
                        Ok(true) => settle.report.matched += 1,
                        Ok(false) => settle.report.created += 1,
                        Err(why) => {
                            settle.report.errors += 1;
                            refuse(&mut settle.errors_out, row.line, &why, &row.values)?;
                        }
                    }
                }
                chunk.clear();
                settle.errors_out.flush()?;
            } else {
                let rows = std::mem::take(&mut chunk);
                let keys: HashSet<String> = rows.iter().flat_map(|(_, r)| submission_keys(&form, &r.raw)).collect();
                // A person of a chunk still being written: that chunk first, so rows of one
                // person are committed in the file's order.
                if writing.iter().any(|w| !w.keys.is_disjoint(&keys)) {
                    while let Some(w) = writing.pop_front() {
                        w.settle(&mut settle).await?;
                    }
                }
                let now = Utc::now();
                let submissions: Vec<(RawSubmission, SubmissionMeta)> = rows
                    .iter()
                    .map(|(n, row)| {
                        // A stable key per row: a resumed run replays rows it already did instead of doubling them.
                        let meta = SubmissionMeta {
                            route: leadflow_domain::intake::Route::Internal,
                            received_at: now,
                            source_ip: None,
                            user_agent: Some("leadflow import".into()),
                            idempotency_key: Some(format!("import:{run_id}:{n}")),
                        };
                        (row.raw.clone(), meta)
                    })
                    .collect();
                let (service, form) = (service.clone(), form.clone());
                writing.push_back(Writing {
                    rows,
                    keys,
                    results: tokio::spawn(async move { service.submit_many(&form, &submissions).await }),
                });
                if writing.len() >= IN_FLIGHT {
                    if let Some(w) = writing.pop_front() {
                        w.settle(&mut settle).await?;
                    }
                }
            }
            let report = &settle.report;
            bar.set_position(records.reader().position().byte());
            let rate = report.rows as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} rows ({rate:.0}/s), {} refused",
                report.rows + done,
                report.errors
            ));
            let sent: usize = writing.iter().map(|w| w.rows.len()).sum();
            if stop_after.is_some_and(|s| report.rows + sent >= s) {
                while let Some(w) = writing.pop_front() {
                    w.settle(&mut settle).await?;
                }
                return Ok(settle.report);
            }
        }
        if next.is_none() {
            break;
        }
    }
    while let Some(w) = writing.pop_front() {
        w.settle(&mut settle).await?;
    }
    let mut report = settle.report;
    bar.finish_with_message(format!("{} rows, {} refused", report.rows, report.errors));
    settle.errors_out.flush()?;
    if !opts.dry_run {
        std::fs::write(&state_path, format!("{run_id} {row_no}"))?;
    }
    report.finished = true;
    Ok(report)
}

/// Whether the target still holds what an earlier run of this import did: the receipt of one
/// of its first accepted rows (one GetItem each, at most five; receipts are kept 24 hours).
async fn resumable(t: &Target, form_id: &str, run_id: &str, done: usize) -> Result<bool, Error> {
    let table = t.records();
    for row in (1..=done).take(5) {
        let digest = leadflow_domain::intake::idempotency_digest(form_id, &format!("import:{run_id}:{row}"));
        if table
            .get(leadflow_aws::keys::idempotency_receipt(&digest))
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

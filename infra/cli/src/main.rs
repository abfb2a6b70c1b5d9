//! `leadflow`: the ops tool. Works against a local run (`--local`) or a deployed stack
//! (`--profile`, `--region`, table and queue names from the stack's outputs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use leadflow_aws::config::{emulator_sdk_config, Clients};
use leadflow_aws::config_dir;
use leadflow_cli::{
    activity_add, dlq_list, dlq_replay, email_csv, funnel_csv, import_contacts, lead_show, leads_export,
    list_add_named, list_create, list_ls, list_name, list_remove, list_show, person_erase, person_export, render_email,
    render_explanation, render_funnel, render_lead, render_segment, render_stages, report_email, report_funnel,
    report_stages, segment_explain, segment_ls, segment_marks, segment_show, Cells, CsvEncoding, ExportFrom,
    ImportOptions, LeadFilter, Target,
};

/// `--help` of `--raw` on the commands that write a CSV (the rule: `leadflow_cli::csv_out`).
const RAW_HELP: &str = "Write every cell exactly as stored, for programs that read the file. Without it a text \
cell starting with = + - @ (or full-width ＝ ＋ － ＠), a tab or a carriage return is written with a leading ' so \
Excel shows it as text instead of running it as a formula (numbers the tool writes are never changed)";

#[derive(Parser)]
#[command(name = "leadflow", about = "leadflow's ops tool", version)]
struct Cli {
    /// Work against `scripts/local.sh` (emulator on 127.0.0.1:4566, names prefixed `leadflow-`).
    #[arg(long, global = true)]
    local: bool,
    /// An AWS endpoint to use instead of AWS's own (another emulator).
    #[arg(long, global = true, env = "LEADFLOW_ENDPOINT")]
    endpoint: Option<String>,
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    #[arg(long, global = true, env = "AWS_REGION")]
    region: Option<String>,
    /// The stack's DataTableName output.
    #[arg(long, global = true, env = "LEADFLOW_TABLE")]
    table: Option<String>,
    /// The stack's ConfigTableName output.
    #[arg(long, global = true, env = "LEADFLOW_CONFIG_TABLE")]
    config_table: Option<String>,
    /// The stack's ScoringQueueUrl output.
    #[arg(long, global = true, env = "LEADFLOW_SCORING_QUEUE_URL")]
    scoring_queue_url: Option<String>,
    /// The stack's ScoringDeadLetterQueueUrl output.
    #[arg(long, global = true, env = "LEADFLOW_SCORING_DLQ_URL")]
    scoring_dlq_url: Option<String>,
    /// The stack's EngagementDeadLetterQueueUrl output (SES events that could not be scored).
    #[arg(long, global = true, env = "LEADFLOW_ENGAGEMENT_DLQ_URL")]
    engagement_dlq_url: Option<String>,
    /// The stack's ScheduleDeadLetterQueueUrl output (scheduled runs that could not be delivered).
    #[arg(long, global = true, env = "LEADFLOW_SCHEDULE_DLQ_URL")]
    schedule_dlq_url: Option<String>,
    /// The stack's EventBusName output: the tool's own writes (stage moves, activities,
    /// imports) publish their domain events there, as the functions' do.
    #[arg(long, global = true, env = "LEADFLOW_EVENT_BUS")]
    event_bus: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forms, sites, scoring models, nurture programs and templates, routing and owners.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Import contacts from a CSV file (a header row of field names).
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export leads as a CSV Excel opens (UTF-8 with BOM or CP932), filtered.
    Leads {
        #[command(subcommand)]
        action: LeadsAction,
    },
    /// Static lists of leads: a HOT-lead snapshot, an exhibition list, the opportunity list.
    List {
        #[command(subcommand)]
        action: ListAction,
    },
    /// Sales activities (seed 002): a call, a visit, an email, a web meeting, and its result.
    Activity {
        #[command(subcommand)]
        action: ActivityAction,
    },
    /// Reports from the counters kept as the work happens.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
    /// Segments (config/segments/): which there are, and why a lead is or is not in one.
    Segment {
        #[command(subcommand)]
        action: SegmentAction,
    },
    /// Show a lead (by lead id, contact id or email).
    Lead {
        #[command(subcommand)]
        action: LeadAction,
    },
    /// The scoring dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Privacy requests.
    Person {
        #[command(subcommand)]
        action: PersonAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Check every document of a configuration directory.
    Validate {
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
    /// Check, then write every document to the configuration table.
    Apply {
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    Contacts {
        file: PathBuf,
        /// The form whose fields and matching strategies the rows follow.
        #[arg(long, default_value = "import")]
        form: String,
        /// Put the imported people in their band's nurture program (only those with recorded
        /// consent are ever emailed). Without it an import starts no email and no hand-off.
        #[arg(long)]
        nurture: bool,
        /// Say what would be created, matched and refused; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// `Column=field`, for columns the built-in Japanese and English aliases do not know
        /// (repeatable), e.g. --map 'お名前(姓)=last_name'.
        #[arg(long = "map", value_parser = parse_map)]
        map: Vec<(String, String)>,
        /// Put every imported lead on this static list (created if new), e.g. --list 展示会2026.
        #[arg(long)]
        list: Option<String>,
        /// Write FILE.errors.csv's cells exactly as read (to fix it and import it again byte for
        /// byte). Without it a cell starting with = + - @ (or full-width ＝ ＋ － ＠), a tab or a
        /// carriage return is written with a leading ' so Excel shows it as text instead of
        /// running it as a formula.
        #[arg(long)]
        raw: bool,
    },
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(c, f)| (c.trim().to_owned(), f.trim().to_owned()))
        .filter(|(c, f)| !c.is_empty() && !f.is_empty())
        .ok_or_else(|| format!("--map takes Column=field, not {s:?}"))
}

#[derive(Subcommand)]
enum LeadsAction {
    /// Leads as a CSV Excel opens, filtered by stage, band, owner and campaign.
    Export {
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        band: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[command(flatten)]
        to: ExportTo,
    },
}

#[derive(Subcommand)]
enum ListAction {
    /// Every list with its member count.
    Ls,
    /// Create a list; with --from-segment, holding the segment's members as they are now
    /// (a snapshot: it keeps them until they are removed).
    Create {
        name: String,
        #[arg(long)]
        from_segment: Option<String>,
    },
    /// Add leads (lead ids, contact ids or emails: every lead of the person) to a list.
    Add { name: String, who: Vec<String> },
    /// Take leads off a list.
    Remove { name: String, who: Vec<String> },
    /// The members, with who they are and where they stand.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The members as a CSV Excel opens.
    Export {
        name: String,
        #[command(flatten)]
        to: ExportTo,
    },
}

/// Where a members export goes, and in which encoding.
#[derive(Args)]
struct ExportTo {
    /// utf-8-bom or cp932.
    #[arg(long, default_value = "utf-8-bom")]
    encoding: CsvEncoding,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, help = RAW_HELP)]
    raw: bool,
}

#[derive(Subcommand)]
enum ActivityAction {
    /// Record what a salesperson did with a lead (a lead id, or an email or contact id with one lead).
    Add {
        who: String,
        /// email, phone, visit or web_meeting.
        #[arg(long = "type")]
        kind: String,
        /// continue (follow up), opportunity or archive.
        #[arg(long, default_value = "continue")]
        result: String,
        /// Who did it: a configured owner's id (config/routing.json).
        #[arg(long)]
        actor: String,
        /// When it happened (RFC 3339, or YYYY-MM-DD in JST); now by default.
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        content: Option<String>,
        /// Where the lead came from: whitepaper, document_request, seminar, hot_lead_list, dig_up_list
        /// (or 資料請求, セミナー, HOTリードリスト, 掘り起こしリスト …).
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        notes: Option<String>,
        /// The list the lead was worked from (archive takes it off).
        #[arg(long)]
        list: Option<String>,
        /// With archive: back to nurture instead of disqualified.
        #[arg(long)]
        recycle: bool,
    },
}

/// A date as people type it: RFC 3339, or a day (midnight in Japan).
fn parse_date(d: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(d) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(chrono_tz::Asia::Tokyo).single())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| format!("--date takes RFC 3339 or YYYY-MM-DD, not {d:?}"))
}

#[derive(Subcommand)]
enum ReportAction {
    /// The funnel of a date range (days in JST, both included): submissions, new contacts and
    /// leads, MQL, sales-ready, SAL, hand-offs, converted, disqualified, and the rates between.
    Funnel {
        /// First day (YYYY-MM-DD); 29 days before --to by default.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day (YYYY-MM-DD); today in Japan by default.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// One row per campaign, source or form.
        #[arg(long, value_enum)]
        by: Option<ReportBy>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV for Excel (UTF-8 with BOM).
        #[arg(long)]
        csv: bool,
        #[arg(long, requires = "csv", help = RAW_HELP)]
        raw: bool,
    },
    /// How many leads are in each stage, status and band now, and how many days on average they
    /// have been in their stage (running totals kept with every move; 16 Queries).
    Stages {
        #[arg(long, value_enum)]
        by: Option<ReportBy>,
        #[arg(long)]
        json: bool,
    },
    /// Marketing email per program and step: sent, delivered, unique opens and clicks, bounces,
    /// complaints, unsubscribes, and their rates (days in JST, both included).
    Email {
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV for Excel (UTF-8 with BOM).
        #[arg(long)]
        csv: bool,
        #[arg(long, requires = "csv", help = RAW_HELP)]
        raw: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportBy {
    Campaign,
    Source,
    Form,
}

#[derive(Subcommand)]
enum SegmentAction {
    /// The configured segments.
    Ls,
    /// Each block and condition of a segment for a lead (lead id, contact id or email), with
    /// the value the lead has.
    Explain {
        name: String,
        who: String,
        #[arg(long)]
        json: bool,
    },
    /// How many members, and the newest with who they are and why they are in.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        /// Members listed (the count is all of them).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Every member as a CSV Excel opens.
    Export {
        name: String,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Gives every scored lead the activity marks segments count, from its recorded
    /// activities (once, for activities recorded before marks were kept); then run the scoring
    /// function's stale pass to settle memberships.
    Marks,
}

#[derive(Subcommand)]
enum LeadAction {
    Show {
        who: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    List {
        #[arg(long, default_value_t = 10)]
        max: i32,
    },
    Replay,
}

#[derive(Subcommand)]
enum PersonAction {
    Export { email: String },
    Erase { email: String },
}

async fn target(cli: &Cli) -> Result<Target, String> {
    let (endpoint, prefix) = if cli.local {
        (
            Some(cli.endpoint.clone().unwrap_or_else(|| "http://127.0.0.1:4566".into())),
            Some("leadflow-"),
        )
    } else {
        (cli.endpoint.clone(), None)
    };
    let sdk = match (&endpoint, cli.local) {
        (Some(e), true) => emulator_sdk_config(e).await,
        _ => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(p) = &cli.profile {
                loader = loader.profile_name(p);
            }
            if let Some(r) = &cli.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            if let Some(e) = &endpoint {
                loader = loader.endpoint_url(e);
            }
            loader.load().await
        }
    };
    let clients = Clients::new(&sdk);
    let name = |given: &Option<String>, local: &str, what: &str| -> Result<String, String> {
        given
            .clone()
            .or_else(|| prefix.map(|p| format!("{p}{local}")))
            .ok_or_else(|| format!("give --{what} (from the stack's outputs) or --local"))
    };
    let queue = |given: &Option<String>, local: &str, what: &str| -> Result<String, String> {
        match (given, endpoint.as_deref(), prefix) {
            (Some(u), _, _) => Ok(u.clone()),
            (None, Some(e), Some(p)) => Ok(format!("{}/123456789012/{p}{local}", e.trim_end_matches('/'))),
            _ => Err(format!("give --{what} (from the stack's outputs) or --local")),
        }
    };
    Ok(Target {
        clients,
        table: name(&cli.table, "DataTable", "table")?,
        config_table: name(&cli.config_table, "ConfigTable", "config-table")?,
        scoring_queue_url: queue(&cli.scoring_queue_url, "ScoringQueue", "scoring-queue-url").unwrap_or_default(),
        scoring_dlq_url: queue(&cli.scoring_dlq_url, "ScoringDeadLetterQueue", "scoring-dlq-url").unwrap_or_default(),
        engagement_dlq_url: queue(
            &cli.engagement_dlq_url,
            "EngagementDeadLetterQueue",
            "engagement-dlq-url",
        )
        .unwrap_or_default(),
        schedule_dlq_url: queue(&cli.schedule_dlq_url, "ScheduleDeadLetterQueue", "schedule-dlq-url")
            .unwrap_or_default(),
        event_bus: name(&cli.event_bus, "LeadflowBus", "event-bus").ok(),
    })
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Config {
        action: ConfigAction::Validate { dir },
    } = &cli.command
    {
        return match config_dir::load(dir) {
            Ok(b) => {
                println!(
                    "{}: valid ({} forms, {} sites, {} scoring models, {} nurture programs, {} owners, {} segments)",
                    dir.display(),
                    b.forms.len(),
                    b.sites.len(),
                    b.scoring.models.len(),
                    b.nurture.programs.len(),
                    b.routing.owners.len(),
                    b.segments.len()
                );
                Ok(())
            }
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
        };
    }
    let t = target(&cli).await?;
    let s = |e: leadflow_cli::Error| e.to_string();
    match cli.command {
        Command::Config {
            action: ConfigAction::Apply { dir },
        } => {
            let bundle = config_dir::load(&dir)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
            let n = config_dir::apply(&bundle, &t.config())
                .await
                .map_err(|e| e.to_string())?;
            println!("applied {n} documents to {}", t.config_table);
        }
        Command::Config {
            action: ConfigAction::Validate { .. },
        } => unreachable!("handled above"),
        Command::Import {
            what:
                ImportWhat::Contacts {
                    file,
                    form,
                    nurture,
                    dry_run,
                    map,
                    list,
                    raw,
                },
        } => {
            let opts = ImportOptions {
                form,
                nurture,
                dry_run,
                map,
                list: list.as_deref().map(list_name).transpose().map_err(s)?,
                cells: Cells::raw(raw),
            };
            let r = import_contacts(&t, &file, &opts, true, None).await.map_err(s)?;
            println!(
                "{}{} rows ({}): {} {}, {} {}, {} refused{}{}",
                if r.dry_run { "dry run, nothing written: " } else { "" },
                r.rows,
                r.encoding,
                r.created,
                if r.dry_run {
                    "would be new contacts"
                } else {
                    "new contacts"
                },
                r.matched,
                if r.dry_run { "would match" } else { "matched" },
                r.errors,
                if r.errors > 0 {
                    format!(" (each with its line and why in {}.errors.csv)", file.display())
                } else {
                    String::new()
                },
                if r.resumed_from > 0 {
                    format!("; resumed after row {}", r.resumed_from)
                } else {
                    String::new()
                }
            );
            if r.errors > 0 {
                return Err(format!("{} of {} rows failed", r.errors, r.rows));
            }
        }
        Command::Leads {
            action:
                LeadsAction::Export {
                    stage,
                    band,
                    owner,
                    campaign,
                    to,
                },
        } => {
            let filter = LeadFilter {
                stage,
                band,
                owner,
                campaign,
            };
            export_to(&t, &ExportFrom::Scored, &filter, &to).await?;
        }
        Command::List { action } => match action {
            ListAction::Ls => {
                let all = list_ls(&t).await.map_err(s)?;
                if all.is_empty() {
                    println!("no lists");
                }
                for (name, n) in all {
                    println!("{name}\t{n} members");
                }
            }
            ListAction::Create { name, from_segment } => {
                let list = list_name(&name).map_err(s)?;
                let n = list_create(&t, &list, from_segment.as_deref()).await.map_err(s)?;
                println!("list {name}: {n} members");
            }
            ListAction::Add { name, who } => {
                let n = list_add_named(&t, &list_name(&name).map_err(s)?, &who)
                    .await
                    .map_err(s)?;
                println!("{n} leads on {name}");
            }
            ListAction::Remove { name, who } => {
                let n = list_remove(&t, &list_name(&name).map_err(s)?, &who).await.map_err(s)?;
                println!("{n} leads taken off {name}");
            }
            ListAction::Show { name, json } => {
                let v = list_show(&t, &list_name(&name).map_err(s)?).await.map_err(s)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    println!("{}: members {}", v["name"].as_str().unwrap_or(""), v["count"]);
                    for m in v["members"].as_array().into_iter().flatten() {
                        let t = |k: &str| m[k].as_str().unwrap_or("").to_owned();
                        println!(
                            "  {}  {} {}  {}  {}  {} {}  score {}  ({})",
                            t("lead_id"),
                            t("last_name"),
                            t("first_name"),
                            t("company"),
                            t("job_title"),
                            t("stage"),
                            t("band"),
                            m["score"],
                            t("source")
                        );
                    }
                }
            }
            ListAction::Export { name, to } => {
                let from = ExportFrom::List(list_name(&name).map_err(s)?);
                export_to(&t, &from, &LeadFilter::default(), &to).await?;
            }
        },
        Command::Activity {
            action:
                ActivityAction::Add {
                    who,
                    kind,
                    result,
                    actor,
                    date,
                    content,
                    source,
                    notes,
                    list,
                    recycle,
                },
        } => {
            let request: leadflow_domain::process::activity::ActivityRequest =
                serde_json::from_value(serde_json::json!({
                    "type": kind, "result": result, "content": content, "source": source,
                    "notes": notes, "list": list, "recycle": recycle,
                }))
                .map_err(|e| {
                    format!(
                        "activity: {e} ({})",
                        leadflow_domain::process::activity::ACTIVITY_FIELDS
                    )
                })?;
            let at = match date {
                Some(d) => parse_date(&d)?,
                None => chrono::Utc::now(),
            };
            let v = activity_add(&t, &who, request, &actor, at).await.map_err(s)?;
            println!("{v}");
        }
        Command::Report {
            action:
                ReportAction::Funnel {
                    from,
                    to,
                    by,
                    json,
                    csv,
                    raw,
                },
        } => {
            let to = to.unwrap_or_else(|| leadflow_domain::report::day_of(chrono::Utc::now()));
            let from = from.unwrap_or(to - chrono::Duration::days(29));
            let by = by.map(report_by);
            let rows = report_funnel(&t, from, to, by).await.map_err(s)?;
            if json {
                let v = serde_json::json!({"from": from, "to": to, "rows": rows});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if csv {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&funnel_csv(&rows, Cells::raw(raw)).map_err(s)?)
                    .map_err(|e| e.to_string())?;
            } else {
                println!("funnel {from} – {to} (JST)");
                print!("{}", render_funnel(&rows));
            }
        }
        Command::Report {
            action: ReportAction::Stages { by, json },
        } => {
            let rows = report_stages(&t, by.map(report_by)).await.map_err(s)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
            } else {
                print!(
                    "{}",
                    render_stages(&rows, leadflow_domain::report::epoch_day(chrono::Utc::now()))
                );
            }
        }
        Command::Report {
            action:
                ReportAction::Email {
                    from,
                    to,
                    json,
                    csv,
                    raw,
                },
        } => {
            let to = to.unwrap_or_else(|| leadflow_domain::report::day_of(chrono::Utc::now()));
            let from = from.unwrap_or(to - chrono::Duration::days(29));
            let rows = report_email(&t, from, to).await.map_err(s)?;
            if csv {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&email_csv(&rows, Cells::raw(raw)).map_err(s)?)
                    .map_err(|e| e.to_string())?;
            } else if json {
                let v = serde_json::json!({"from": from, "to": to, "rows": rows});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("email {from} – {to} (JST)");
                print!("{}", render_email(&rows));
            }
        }
        Command::Segment { action } => match action {
            SegmentAction::Marks => {
                let (examined, written) = segment_marks(&t).await.map_err(s)?;
                println!("{examined} leads examined, {written} given their activity marks");
            }
            SegmentAction::Ls => {
                for seg in segment_ls(&t).await.map_err(s)? {
                    println!("{}\t{}\t{}", seg.def.id, seg.def.name, seg.def.expression);
                }
            }
            SegmentAction::Show { name, json, limit } => {
                let v = segment_show(&t, &name, limit).await.map_err(s)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print!("{}", render_segment(&v));
                }
            }
            SegmentAction::Export { name, to } => {
                export_to(&t, &ExportFrom::Segment(name), &LeadFilter::default(), &to).await?;
            }
            SegmentAction::Explain { name, who, json } => {
                let v = segment_explain(&t, &name, &who, chrono::Utc::now()).await.map_err(s)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print!("{}", render_explanation(&v));
                }
            }
        },
        Command::Lead {
            action: LeadAction::Show { who, json },
        } => {
            let v = lead_show(&t, &who).await.map_err(s)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_lead(&v));
            }
        }
        Command::Dlq {
            action: DlqAction::List { max },
        } => {
            for (queue, messages) in dlq_list(&t, max).await.map_err(s)? {
                if messages.is_empty() {
                    println!("{queue}: empty");
                } else {
                    println!("{queue}: {} message(s) shown (up to {max})", messages.len());
                    for m in messages {
                        println!("  {m}");
                    }
                }
            }
        }
        Command::Dlq {
            action: DlqAction::Replay,
        } => println!("replayed {} messages", dlq_replay(&t).await.map_err(s)?),
        Command::Person {
            action: PersonAction::Export { email },
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&person_export(&t, &email).await.map_err(s)?).unwrap_or_default()
            )
        }
        Command::Person {
            action: PersonAction::Erase { email },
        } => {
            let e = person_erase(&t, &email).await.map_err(s)?;
            if e.remaining > 0 {
                return Err(format!(
                    "{} items deleted, {} still present: run again",
                    e.deleted, e.remaining
                ));
            }
            println!("erased: {} items deleted, verified gone", e.deleted);
            if !e.dead_lettered.is_empty() {
                println!(
                    "still mentioned by {} dead-lettered message(s): {} (replay or purge them)",
                    e.dead_lettered.len(),
                    e.dead_lettered.join(", ")
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // `leadflow … | head`: a closed pipe ends the tool quietly, as it does any Unix tool,
    // instead of a panic on the next line printed.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any output; no other
    // thread is writing yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadflow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An export of leads (every scored one, a list's or a segment's members) to a file or
/// standard output.
async fn export_to(t: &Target, from: &ExportFrom, filter: &LeadFilter, to: &ExportTo) -> Result<(), String> {
    let mut sink: Box<dyn std::io::Write> = match &to.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| e.to_string())?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let n = leads_export(t, from, filter, to.encoding, Cells::raw(to.raw), &mut *sink)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("{n} leads exported");
    Ok(())
}

fn report_by(b: ReportBy) -> leadflow_domain::report::By {
    match b {
        ReportBy::Campaign => leadflow_domain::report::By::Campaign,
        ReportBy::Source => leadflow_domain::report::By::Source,
        ReportBy::Form => leadflow_domain::report::By::Form,
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_arguments_hold_together() {
        Cli::command().debug_assert();
    }

    /// Every command that writes a CSV takes `--raw`, and says what it does in its --help.
    #[test]
    fn raw_is_offered_wherever_a_csv_is_written() {
        for args in [
            &["leadflow", "leads", "export", "--raw"][..],
            &["leadflow", "list", "export", "展示会2026", "--raw"],
            &["leadflow", "segment", "export", "hot", "--raw"],
            &["leadflow", "import", "contacts", "x.csv", "--raw"],
            &["leadflow", "report", "funnel", "--csv", "--raw"],
            &["leadflow", "report", "email", "--csv", "--raw"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        for args in [
            &["leadflow", "report", "funnel", "--raw"][..],
            &["leadflow", "report", "email", "--raw"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "--raw needs --csv: {args:?}");
        }
        for path in [
            &["leads", "export"][..],
            &["list", "export"],
            &["segment", "export"],
            &["import", "contacts"],
            &["report", "funnel"],
            &["report", "email"],
        ] {
            let mut cmd = Cli::command();
            let mut sub = &mut cmd;
            for name in path {
                sub = sub.find_subcommand_mut(name).unwrap();
            }
            let help = sub.render_help().to_string();
            assert!(help.contains("--raw") && help.contains("formula"), "{path:?}: {help}");
        }
    }
}

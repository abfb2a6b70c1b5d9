//! `leads export`: leads as a CSV that Excel opens with the Japanese intact (UTF-8 with a BOM,
//! or CP932), filtered by stage, band, owner and campaign. No Scan, and a filtered export reads
//! only the leads it can export: with a band, the `band` index's 16 shards of that band; with
//! a stage, the `stage` index's of that stage; with neither, every scored lead (its entry in the
//! re-scoring schedule, as the stale re-scoring pass walks it). Leads and contacts are read 50
//! a page.

use std::io::Write;

use serde_json::Value;

use leadflow_aws::keys::{self, Index};
use leadflow_aws::lists::DynamoLists;
use leadflow_aws::table::{str_attr, Query};
use leadflow_domain::lists::ListName;
use leadflow_domain::records::{ContactId, LeadId, Stage};
use leadflow_domain::scoring::service::{RescorePass, RescoreSchedule};

use crate::csv_out::{Cell, Cells, CsvOut};
use crate::{Error, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    /// UTF-8 with a byte-order mark (Excel reads it as UTF-8).
    Utf8Bom,
    /// Windows-31J, what Excel on Japanese Windows writes and reads by default.
    Cp932,
}

impl std::str::FromStr for CsvEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8-bom" | "utf8-bom" | "utf-8" => Ok(CsvEncoding::Utf8Bom),
            "cp932" | "shift_jis" | "sjis" => Ok(CsvEncoding::Cp932),
            other => Err(format!("--encoding utf-8-bom or cp932, not {other}")),
        }
    }
}

/// Which leads to export (every given filter must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFilter {
    pub stage: Option<String>,
    pub band: Option<String>,
    pub owner: Option<String>,
    pub campaign: Option<String>,
}

impl LeadFilter {
    fn admits(&self, lead: &Value) -> bool {
        let is = |want: &Option<String>, got: &Value| want.as_ref().is_none_or(|w| got.as_str() == Some(w.as_str()));
        is(&self.stage, &lead["stage"])
            && is(&self.band, &lead["band"])
            && is(&self.owner, &lead["owner"])
            && is(&self.campaign, &lead["campaign"])
    }
}

/// The columns before `created_at`, which names the zone its times are in.
const COLUMNS: [&str; 14] = [
    "lead_id",
    "メールアドレス",
    "姓",
    "名",
    "会社名",
    "役職",
    "業種",
    "従業員数",
    "電話番号",
    "stage",
    "band",
    "score",
    "owner",
    "campaign",
];

/// Which leads an export walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFrom {
    /// The leads the filter names: those of its band, else of its stage (the indexes), else
    /// every scored lead (the re-scoring schedule).
    Scored,
    /// A static list's members, shard by shard.
    List(ListName),
    /// A segment's members, shard by shard.
    Segment(String),
}

/// Writes the matching leads to `out`; returns how many. Every stored string is a text cell,
/// neutralised for spreadsheets unless `cells` is [`Cells::Raw`] (see [`crate::csv_out`]);
/// the score, a stored number, stays a number.
pub async fn leads_export(
    t: &Target,
    from: &ExportFrom,
    filter: &LeadFilter,
    encoding: CsvEncoding,
    cells: Cells,
    out: &mut dyn Write,
) -> Result<usize, Error> {
    let mut csv = CsvOut::new(Vec::new(), cells);
    let zone = crate::lead::zone();
    csv.texts(
        COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain([format!("created_at ({zone})")]),
    )?;
    let mut header = csv.into_inner()?;
    if encoding == CsvEncoding::Utf8Bom {
        header.splice(0..0, "\u{feff}".bytes());
    }
    emit(out, &header, encoding)?;
    let table = t.records();
    // The stale re-scoring pass's walk: every scored lead, a page at a time, from a cursor.
    let schedule = leadflow_aws::scoring::DynamoScoring::new(table.clone());
    let lists = DynamoLists::new(table.clone());
    let segment_members = leadflow_aws::segments::DynamoSegmentMembers::new(table.clone());
    let mut written = 0;
    let mut cursor = None;
    let mut shard = 0;
    // With a band or a stage, the 16 index partitions that hold exactly those leads.
    let by_state: Option<(Index, Vec<String>)> = match (&filter.band, &filter.stage) {
        (Some(band), _) => Some((
            Index::Band,
            (0..keys::STATE_SHARDS).map(|n| keys::band_shard(band, n)).collect(),
        )),
        (None, Some(stage)) => {
            let stage: Stage = serde_json::from_value(Value::String(stage.clone())).map_err(|_| {
                format!("--stage: no stage {stage} (inquiry, automated_marketing_qualification, telemarketing_acceptance, telemarketing_qualification, sales_acceptance)")
            })?;
            Some((
                Index::Stage,
                (0..keys::STATE_SHARDS).map(|n| keys::stage_shard(stage, n)).collect(),
            ))
        }
        (None, None) => None,
    };
    loop {
        let (leads, done): (Vec<(LeadId, ContactId)>, bool) = match from {
            ExportFrom::Scored if by_state.is_some() => {
                let (index, partitions) = by_state.as_ref().expect("matched");
                let entries = table
                    .query(Query::partition(*index, &partitions[shard as usize]))
                    .await?;
                shard += 1;
                let pairs = entries.iter().filter_map(state_entry).collect();
                (pairs, shard as usize >= partitions.len())
            }
            ExportFrom::Scored => {
                let page = schedule.rescore_candidates(RescorePass::Stale(cursor), 50).await?;
                cursor = page.next;
                (page.leads, cursor.is_none())
            }
            ExportFrom::List(name) => {
                let members = lists.members(name, shard).await?;
                shard += 1;
                let pairs = members.into_iter().map(|m| (m.lead_id, m.contact_id)).collect();
                (pairs, shard >= keys::LIST_SHARDS)
            }
            ExportFrom::Segment(name) => {
                let members = segment_members.shard(name, shard).await?;
                shard += 1;
                let pairs = members.into_iter().map(|m| (m.lead_id, m.contact_id)).collect();
                (pairs, shard >= keys::SEGMENT_SHARDS)
            }
        };
        for page in leads.chunks(50) {
            written += write_rows(t, page, filter, encoding, cells, out).await?;
        }
        if done {
            break;
        }
    }
    out.flush()?;
    Ok(written)
}

/// A `band` or `stage` index entry: the lead (its partition key) and its contact.
fn state_entry(entry: &leadflow_aws::table::Item) -> Option<(LeadId, ContactId)> {
    let lead = keys::lead_of_partition(str_attr(entry, keys::PK)?)?;
    let contact = ContactId::parse(str_attr(entry, "contact_id")?)?;
    Some((lead, contact))
}

/// One page of leads as CSV rows (one `BatchGetItem` for their leads and contacts).
async fn write_rows(
    t: &Target,
    leads: &[(LeadId, ContactId)],
    filter: &LeadFilter,
    encoding: CsvEncoding,
    cells: Cells,
    out: &mut dyn Write,
) -> Result<usize, Error> {
    let mut csv = CsvOut::new(Vec::new(), cells);
    let mut written = 0;
    for (lead, contact) in t.leads_with_contacts(leads).await? {
        if lead.is_null() || contact.is_null() || !filter.admits(&lead) {
            continue;
        }
        // Stored strings are text; a stored number (the score) is a number.
        let s = Cell::json;
        csv.row([
            s(&lead["lead_id"]),
            s(&contact["email"]),
            s(&contact["last_name"]),
            s(&contact["first_name"]),
            s(&contact["company"]),
            s(&contact["job_title"]),
            s(&contact["industry"]),
            s(&contact["employees"]),
            s(&contact["phone"]),
            s(&lead["stage"]),
            s(&lead["band"]),
            s(&lead["score_total"]),
            s(&lead["owner"]),
            s(&lead["campaign"]),
            Cell::text(excel_time(&lead["created_at"])),
        ])?;
        written += 1;
    }
    emit(out, &csv.into_inner()?, encoding)?;
    Ok(written)
}

/// A stored time as Excel reads a date and time: `2026-11-24 19:18:45`, in the zone the header
/// names; anything that is not a time is kept as it is.
fn excel_time(t: &Value) -> String {
    crate::lead::in_zone(t, "%Y-%m-%d %H:%M:%S", "")
}

/// UTF-8 bytes out in the chosen encoding (characters CP932 lacks become `?`, as Excel does).
fn emit(out: &mut dyn Write, utf8: &[u8], encoding: CsvEncoding) -> Result<(), Error> {
    match encoding {
        CsvEncoding::Utf8Bom => out.write_all(utf8)?,
        CsvEncoding::Cp932 => {
            let text = std::str::from_utf8(utf8)?;
            let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(text);
            out.write_all(&bytes)?;
        }
    }
    Ok(())
}

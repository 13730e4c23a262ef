//! The audit trail: one line per work item for every command, click or approved request that
//! reached a decision, and `abort-bot audit`, which prints them.
//!
//! The lines are written by the store in the same write as the outcome they record (the
//! worker's end of a message, the result of a card), so an action is never done without its
//! line. This module is the mapping between the service's outcomes and the plain records the
//! store keeps, and the three formats the command prints: `table` for people (aligned
//! columns, local time, names when known), `json` (one object per line, the contract's
//! keys) and `csv` (a header row, RFC 4180 quoting, UTF-8 with a byte-order mark so that a
//! spreadsheet reads Chinese names and reasons right).

use std::io::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use unicode_width::UnicodeWidthChar;

use crate::domain::Action;
use crate::service::{ActReport, Outcome};
use crate::store::{AuditQuery, AuditReader, AuditRecord, StoreError};

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A chat command; its id is the message_id.
    Message,
    /// A card click; its id is the click's event_id (or, for a legacy click, the id the bot
    /// derives from it).
    Click,
}

impl Source {
    pub fn key(self) -> &'static str {
        match self {
            Source::Message => "message",
            Source::Click => "click",
        }
    }
}

/// What an audit line says about where and when, beside the report itself.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: Source,
    pub source_id: &'a str,
    pub chat_id: Option<&'a str>,
    pub actor_name: Option<&'a str>,
    /// When the decision was made (Unix ms).
    pub at_ms: i64,
}

/// The contract's name of an outcome of `action`. An unconfirmed PUT whose read-back shows
/// the target state landed: `done`. One whose read-back shows the item unchanged did not:
/// `busy` (Feishu Project did not answer; trying again may succeed). One that could not be
/// read back is `unexpected`: nobody can say whether it landed. A ref with no space (no
/// binding, no default) is `unknown_space`.
pub fn outcome_name(outcome: &Outcome, action: Action) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::AlreadyAborted => "already_aborted",
        Outcome::AlreadyRestored => "already_restored",
        Outcome::NotFound => "not_found",
        Outcome::StateFlow => "state_flow",
        Outcome::Intercepted => "intercepted",
        Outcome::ReasonMissing => "reason_missing",
        Outcome::NoPermission => "no_permission",
        Outcome::UnknownSpace | Outcome::NoSpace => "unknown_space",
        Outcome::NotAUser => "not_a_user",
        Outcome::Busy(_) => "busy",
        Outcome::Unconfirmed(Some(aborted)) if *aborted == (action == Action::Abort) => "done",
        Outcome::Unconfirmed(Some(_)) => "busy",
        Outcome::Unconfirmed(None) | Outcome::Unexpected(_) => "unexpected",
    }
}

/// The audit lines of a report: one per item, in the order of the refs. A line's key comes
/// from its source and position, so a re-run of the same message or click writes the same
/// lines, which the store keeps once.
pub fn lines(report: &ActReport, origin: &Origin<'_>) -> Vec<AuditRecord> {
    let action = report.action;
    report
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let outcome = outcome_name(&item.outcome, action);
            let project_key = item
                .item
                .as_ref()
                .map(|w| w.project_key.clone())
                .filter(|k| !k.is_empty())
                .or_else(|| item.space.as_ref().map(|s| s.project_key.clone()))
                .or_else(|| item.space_key.clone())
                .or_else(|| item.item_ref.space.clone())
                .unwrap_or_default();
            let work_item_type = item
                .item
                .as_ref()
                .map(|w| w.work_item_type_key.clone())
                .filter(|t| !t.is_empty())
                .or_else(|| item.item_ref.type_key.clone())
                .unwrap_or_default();
            let work_item_id = item
                .item
                .as_ref()
                .map_or(item.item_ref.id, |w| w.id)
                .to_string();
            AuditRecord {
                key: format!("{}:{}:{i}", origin.source.key(), origin.source_id),
                at_ms: origin.at_ms,
                chat_id: origin.chat_id.map(str::to_owned),
                actor_open_id: report.actor_open_id.clone().unwrap_or_default(),
                actor_name: origin.actor_name.map(str::to_owned),
                project_key,
                work_item_type,
                work_item_id,
                work_item_name: item
                    .item
                    .as_ref()
                    .map(|w| w.name.clone())
                    .filter(|n| !n.is_empty()),
                action: action.key().to_owned(),
                option: report.option.key().to_owned(),
                reason: report.reason.clone(),
                outcome: outcome.to_owned(),
                // The contract: 0 for done (also when the answer that said so was 10430 or
                // 20007/20008 to a retry of a PUT that had landed).
                code: if outcome == "done" {
                    Some(0)
                } else {
                    item.code
                },
                source: origin.source.key().to_owned(),
                source_id: origin.source_id.to_owned(),
            }
        })
        .collect()
}

/// How `abort-bot audit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Which lines `abort-bot audit` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub since_ms: i64,
    pub chat_id: Option<String>,
    pub actor_open_id: Option<String>,
}

/// `--since`: a duration back from `now` (`30m`, `24h`, `7d`) or an RFC 3339 time.
pub fn parse_since(raw: &str, now: Timestamp) -> Result<i64, String> {
    let raw = raw.trim();
    if let Ok(at) = raw.parse::<Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let back = crate::config::parse_duration(raw)
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            format!(
                "--since: `{raw}` is neither a duration such as 30m, 24h or 7d nor an RFC 3339 \
                 time such as 2026-12-01T08:00:00Z"
            )
        })?;
    Ok(now.as_millisecond().saturating_sub(back))
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot write the output: {0}")]
    Csv(#[from] csv::Error),
}

/// Lines read from the store at once (and, for the table, the lines its column widths are
/// measured on).
const PAGE: usize = 1000;

/// Prints every line `filter` selects, oldest first, reading the store page by page; returns
/// how many were printed. `tz` is the zone of the table's times.
pub async fn print(
    reader: &AuditReader,
    filter: &Filter,
    format: Format,
    tz: &TimeZone,
    out: &mut dyn Write,
) -> Result<usize, AuditError> {
    let mut printer = Printer::new(format, tz.clone());
    let mut after = None;
    let mut count = 0;
    loop {
        let page = reader
            .page(AuditQuery {
                since_ms: filter.since_ms,
                chat_id: filter.chat_id.clone(),
                actor_open_id: filter.actor_open_id.clone(),
                after: after.take(),
                limit: PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.at_ms, last.key.clone()));
        printer.page(&page, out)?;
        count += page.len();
        if page.len() < PAGE {
            break;
        }
    }
    printer.end(count, filter.since_ms, out)?;
    Ok(count)
}

/// The JSON object of a line: the contract's keys, in its order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    actor_open_id: &'a str,
    actor_name: Option<&'a str>,
    project_key: &'a str,
    work_item_type: &'a str,
    work_item_id: &'a str,
    work_item_name: Option<&'a str>,
    action: &'a str,
    option: &'a str,
    reason: &'a str,
    outcome: &'a str,
    code: Option<i64>,
    source: &'a str,
    source_id: &'a str,
}

/// The header row of the csv format: the JSON keys.
const CSV_HEADER: [&str; 14] = [
    "time",
    "actor_open_id",
    "actor_name",
    "project_key",
    "work_item_type",
    "work_item_id",
    "work_item_name",
    "action",
    "option",
    "reason",
    "outcome",
    "code",
    "source",
    "source_id",
];

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(at_ms: i64) -> String {
    match Timestamp::from_millisecond(at_ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => at_ms.to_string(),
    }
}

impl AuditRecord {
    fn json(&self) -> JsonLine<'_> {
        JsonLine {
            time: rfc3339(self.at_ms),
            actor_open_id: &self.actor_open_id,
            actor_name: self.actor_name.as_deref(),
            project_key: &self.project_key,
            work_item_type: &self.work_item_type,
            work_item_id: &self.work_item_id,
            work_item_name: self.work_item_name.as_deref(),
            action: &self.action,
            option: &self.option,
            reason: &self.reason,
            outcome: &self.outcome,
            code: self.code,
            source: &self.source,
            source_id: &self.source_id,
        }
    }
}

/// The table's columns: header, and the widest a cell may be (None: the last column, never
/// cut).
const COLUMNS: [(&str, Option<usize>); 9] = [
    ("TIME", Some(19)),
    // An open_id is 35 characters: never cut.
    ("ACTOR", Some(36)),
    ("SPACE", Some(24)),
    ("ITEM", Some(48)),
    ("ACTION", Some(7)),
    ("OPTION", Some(12)),
    ("REASON", Some(32)),
    ("OUTCOME", Some(28)),
    ("FROM", None),
];

enum Printer {
    Json,
    Csv {
        started: bool,
    },
    Table {
        tz: TimeZone,
        /// Measured on the first page, then kept, so every row lines up with the header.
        widths: Option<Vec<usize>>,
    },
}

impl Printer {
    fn new(format: Format, tz: TimeZone) -> Printer {
        match format {
            Format::Json => Printer::Json,
            Format::Csv => Printer::Csv { started: false },
            Format::Table => Printer::Table { tz, widths: None },
        }
    }

    fn csv_header(out: &mut dyn Write) -> Result<(), AuditError> {
        // A byte-order mark: without it a spreadsheet may read UTF-8 as a local code page.
        out.write_all("\u{feff}".as_bytes())?;
        let mut w = csv::Writer::from_writer(out);
        w.write_record(CSV_HEADER)?;
        w.flush()?;
        Ok(())
    }

    fn page(&mut self, lines: &[AuditRecord], out: &mut dyn Write) -> Result<(), AuditError> {
        match self {
            Printer::Json => {
                for l in lines {
                    serde_json::to_writer(&mut *out, &l.json()).map_err(std::io::Error::from)?;
                    out.write_all(b"\n")?;
                }
            }
            Printer::Csv { started } => {
                if !*started {
                    Self::csv_header(out)?;
                    *started = true;
                }
                let mut w = csv::Writer::from_writer(&mut *out);
                for l in lines {
                    let code = l.code.map(|c| c.to_string()).unwrap_or_default();
                    w.write_record([
                        rfc3339(l.at_ms).as_str(),
                        &l.actor_open_id,
                        l.actor_name.as_deref().unwrap_or_default(),
                        &l.project_key,
                        &l.work_item_type,
                        &l.work_item_id,
                        l.work_item_name.as_deref().unwrap_or_default(),
                        &l.action,
                        &l.option,
                        &l.reason,
                        &l.outcome,
                        &code,
                        &l.source,
                        &l.source_id,
                    ])?;
                }
                w.flush()?;
            }
            Printer::Table { tz, widths } => {
                let rows: Vec<[String; 9]> = lines.iter().map(|l| table_row(l, tz)).collect();
                let widths = match widths {
                    Some(w) => w,
                    None => {
                        let header = header(tz);
                        let measured = measure(&header, &rows);
                        write_row(out, &header, &measured)?;
                        widths.insert(measured)
                    }
                };
                for row in &rows {
                    write_row(out, row, widths)?;
                }
            }
        }
        Ok(())
    }

    /// What follows the last page: the csv header when there was no line, a sentence for
    /// people when the table is empty.
    fn end(&mut self, count: usize, since_ms: i64, out: &mut dyn Write) -> Result<(), AuditError> {
        match self {
            Printer::Json => {}
            Printer::Csv { started } => {
                if !*started {
                    Self::csv_header(out)?;
                    *started = true;
                }
            }
            Printer::Table { tz, .. } => {
                if count == 0 {
                    writeln!(
                        out,
                        "No abort or restore since {}.",
                        local_time(since_ms, tz)
                    )?;
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// The table header; the time column names its zone.
fn header(tz: &TimeZone) -> [String; 9] {
    let zone = tz.iana_name().unwrap_or("local");
    COLUMNS.map(|(name, _)| {
        if name == "TIME" {
            format!("TIME ({zone})")
        } else {
            name.to_owned()
        }
    })
}

fn local_time(at_ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(at_ms) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => at_ms.to_string(),
    }
}

/// One line as table cells: the name of whoever acted when known, else their open_id; the
/// space; the item as `type/id` and its name; the outcome with its code.
fn table_row(l: &AuditRecord, tz: &TimeZone) -> [String; 9] {
    let actor = l
        .actor_name
        .clone()
        .unwrap_or_else(|| l.actor_open_id.clone());
    let mut item = [l.work_item_type.as_str(), &l.work_item_id]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if let Some(name) = &l.work_item_name {
        item.push(' ');
        item.push_str(name);
    }
    let outcome = match l.code {
        Some(code) => format!("{} ({code})", l.outcome),
        None => l.outcome.clone(),
    };
    [
        local_time(l.at_ms, tz),
        actor,
        l.project_key.clone(),
        item,
        l.action.clone(),
        l.option.clone(),
        l.reason.clone(),
        outcome,
        format!("{} {}", l.source, l.source_id),
    ]
    .map(|cell| one_line(&cell))
}

/// A cell on one line: control characters (a reason's line breaks) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How many terminal columns `s` takes (CJK characters take two).
fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` cut to at most `max` columns, with `…` where it was cut.
fn fit(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Each column as wide as its widest cell, within its limit, and never narrower than its
/// header.
fn measure(header: &[String; 9], rows: &[[String; 9]]) -> Vec<usize> {
    COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, max))| {
            let head = width(&header[i]);
            let widest = rows.iter().map(|r| width(&r[i])).max().unwrap_or(0);
            max.map_or(widest, |m| widest.min(m)).max(head)
        })
        .collect()
}

fn write_row(out: &mut dyn Write, row: &[String; 9], widths: &[usize]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        let last = i + 1 == row.len();
        if last {
            line.push_str(cell);
            break;
        }
        let w = widths.get(i).copied().unwrap_or(0);
        let cell = fit(cell, w);
        line.push_str(&cell);
        line.extend(std::iter::repeat_n(' ', w.saturating_sub(width(&cell)) + 2));
    }
    writeln!(out, "{}", line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ReasonOption, WorkItemRef};
    use crate::project::{Space, WorkItem};
    use crate::service::ItemReport;

    fn work_item(id: u64, name: &str) -> WorkItem {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "work_item_type_key": "story", "project_key": "p_doc"
        }))
        .unwrap_or_else(|e| panic!("a work item: {e}"))
    }

    fn report(items: Vec<ItemReport>) -> ActReport {
        ActReport {
            action: Action::Abort,
            option: ReasonOption::REPEAT,
            option_label: None,
            opposite_menu: None,
            reason: "dup of 7".into(),
            actor_open_id: Some("ou_a".into()),
            items,
        }
    }

    fn found(id: u64, outcome: Outcome, code: Option<i64>) -> ItemReport {
        ItemReport {
            item_ref: WorkItemRef {
                space: None,
                type_key: None,
                id,
            },
            space_key: Some("doc".into()),
            space: Some(Space {
                project_key: "p_doc".into(),
                name: "Docs".into(),
                simple_name: "doc".into(),
            }),
            item: Some(work_item(id, "Export 导出")),
            outcome,
            code,
        }
    }

    fn origin() -> Origin<'static> {
        Origin {
            source: Source::Message,
            source_id: "om_1",
            chat_id: Some("oc_1"),
            actor_name: Some("Ann"),
            at_ms: 1_796_166_340_123,
        }
    }

    #[test]
    fn every_item_gets_a_line_with_the_contract_vocabulary() {
        let not_found = ItemReport::failed(
            &WorkItemRef {
                space: Some("doc".into()),
                type_key: Some("bug".into()),
                id: 9,
            },
            Some("doc".into()),
            None,
            Outcome::NotFound,
        );
        let r = report(vec![
            found(1, Outcome::Done, Some(0)),
            found(2, Outcome::Done, Some(10430)),
            found(3, Outcome::NoPermission, Some(10001)),
            not_found,
            found(4, Outcome::Unconfirmed(Some(true)), None),
            found(5, Outcome::Unconfirmed(Some(false)), None),
            found(6, Outcome::Unconfirmed(None), None),
            found(7, Outcome::Busy("timeout".into()), None),
        ]);
        let lines = lines(&r, &origin());
        let got: Vec<(&str, &str, &str, Option<i64>)> = lines
            .iter()
            .map(|l| {
                (
                    l.work_item_id.as_str(),
                    l.work_item_type.as_str(),
                    l.outcome.as_str(),
                    l.code,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("1", "story", "done", Some(0)),
                ("2", "story", "done", Some(0)),
                ("3", "story", "no_permission", Some(10001)),
                ("9", "bug", "not_found", None),
                ("4", "story", "done", Some(0)),
                ("5", "story", "busy", None),
                ("6", "story", "unexpected", None),
                ("7", "story", "busy", None),
            ]
        );
        let first = &lines[0];
        assert_eq!(first.key, "message:om_1:0");
        assert_eq!(lines[3].key, "message:om_1:3");
        assert_eq!(first.project_key, "p_doc");
        assert_eq!(
            lines[3].project_key, "doc",
            "the space tried, when none was found"
        );
        assert_eq!(first.work_item_name.as_deref(), Some("Export 导出"));
        assert_eq!(lines[3].work_item_name, None);
        assert_eq!(
            (first.option.as_str(), first.reason.as_str()),
            ("repeat", "dup of 7")
        );
        assert_eq!(first.actor_name.as_deref(), Some("Ann"));
        assert_eq!(first.chat_id.as_deref(), Some("oc_1"));
    }

    #[test]
    fn a_restore_reads_back_the_other_way() {
        assert_eq!(
            outcome_name(&Outcome::Unconfirmed(Some(false)), Action::Restore),
            "done"
        );
        assert_eq!(
            outcome_name(&Outcome::Unconfirmed(Some(true)), Action::Restore),
            "busy"
        );
        assert_eq!(
            outcome_name(&Outcome::NoSpace, Action::Restore),
            "unknown_space"
        );
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap_or_default();
        let at = |s: &str| parse_since(s, now);
        assert_eq!(at("30m"), Ok(now.as_millisecond() - 30 * 60_000));
        assert_eq!(at("24h"), Ok(now.as_millisecond() - 86_400_000));
        assert_eq!(at("7d"), Ok(now.as_millisecond() - 7 * 86_400_000));
        assert_eq!(
            at("2026-12-01T08:00:00+08:00"),
            Ok(now.as_millisecond() - 24 * 3_600_000)
        );
        assert!(at("yesterday").is_err_and(|e| e.contains("--since")));
    }

    fn record(reason: &str, name: Option<&str>) -> AuditRecord {
        let mut l = lines(&report(vec![found(1, Outcome::Done, Some(0))]), &origin()).remove(0);
        l.reason = reason.into();
        l.actor_name = name.map(str::to_owned);
        l
    }

    fn printed(format: Format, lines: &[AuditRecord]) -> String {
        let mut out = Vec::new();
        let mut p = Printer::new(format, TimeZone::fixed(jiff::tz::offset(8)));
        if !lines.is_empty() {
            p.page(lines, &mut out).unwrap_or_else(|e| panic!("{e}"));
        }
        p.end(lines.len(), 0, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn json_has_the_contract_keys_in_order() {
        let text = printed(Format::Json, &[record("dup", None)]);
        assert_eq!(
            text,
            "{\"time\":\"2026-12-01T23:05:40.123Z\",\"actor_open_id\":\"ou_a\",\
             \"actor_name\":null,\"project_key\":\"p_doc\",\"work_item_type\":\"story\",\
             \"work_item_id\":\"1\",\"work_item_name\":\"Export 导出\",\"action\":\"abort\",\
             \"option\":\"repeat\",\"reason\":\"dup\",\"outcome\":\"done\",\"code\":0,\
             \"source\":\"message\",\"source_id\":\"om_1\"}\n"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it_and_starts_with_a_bom() {
        let text = printed(Format::Csv, &[record("a, \"b\"\nc", Some("Ann"))]);
        let body = text.strip_prefix('\u{feff}').unwrap_or_default();
        let mut rows = csv::Reader::from_reader(body.as_bytes());
        let headers: Vec<String> = rows
            .headers()
            .map(|h| h.iter().map(str::to_owned).collect())
            .unwrap_or_default();
        assert_eq!(headers, CSV_HEADER);
        let all: Vec<csv::StringRecord> = rows.records().filter_map(Result::ok).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(&all[0][9], "a, \"b\"\nc");
        assert_eq!(&all[0][2], "Ann");
        assert_eq!(&all[0][11], "0");
        assert!(
            body.contains("\"a, \"\"b\"\"\nc\""),
            "RFC 4180 quoting: {body}"
        );
        // Without lines: the header alone.
        assert_eq!(printed(Format::Csv, &[]).lines().count(), 1);
    }

    #[test]
    fn the_table_aligns_wide_characters_and_shows_local_time() {
        let text = printed(
            Format::Table,
            &[record("重复", Some("张三")), record("a\nb", None)],
        );
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("TIME (local)"), "{text}");
        // 23:05:40 UTC at +08:00.
        assert!(rows[1].starts_with("2026-12-02 07:05:40"), "{text}");
        // Every column starts at the same terminal column on every row.
        let at = |row: &str, what: &str| row.find(what).map(|i| width(&row[..i]));
        assert_eq!(at(rows[1], "abort"), at(rows[0], "ACTION"));
        assert_eq!(at(rows[2], "abort"), at(rows[0], "ACTION"));
        assert_eq!(at(rows[1], "done (0)"), at(rows[2], "done (0)"));
        assert!(
            rows[1].contains("张三") && rows[2].contains("ou_a"),
            "{text}"
        );
        assert!(
            rows[2].contains("a b"),
            "a line break becomes a space: {text}"
        );
        assert!(rows[1].contains("p_doc  story/1 Export 导出"), "{text}");
        assert!(rows[1].ends_with("message om_1"));
        assert!(
            printed(Format::Table, &[])
                .starts_with("No abort or restore since 1970-01-01 08:00:00.")
        );
    }

    #[test]
    fn long_cells_are_cut_to_their_column() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("重复重复", 5), "重复…");
        assert_eq!(fit("ab", 4), "ab");
    }
}

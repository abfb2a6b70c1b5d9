//! Every CSV the ops tool writes goes through [`CsvOut`], so every cell passes
//! [`formula_safe`] (unless `--raw`): a spreadsheet must never run a formula that came from
//! data (CSV injection, OWASP's rule).
//!
//! The rule, cell by cell:
//!
//! - **Text** ([`Cell::text`], and every cell of [`CsvOut::texts`]) is neutralised: when its
//!   first character is `=`, `+`, `-`, `@`, a tab (0x09) or a carriage return (0x0D), or a
//!   full-width `＝` `＋` `－` `＠` (Excel in Japanese locales reads a full-width `＝` as a
//!   formula too), a single quote `'` is written before it; Excel shows the cell as text
//!   without the quote. Text is everything that is not a number the tool made: names,
//!   companies, titles, emails, phone numbers, employee counts as people typed them, notes,
//!   reasons, the rows an import echoes into its errors file, the columns of its header,
//!   group and program names, ids, times, and the headers the tool writes (which never start
//!   so; they go through the rule all the same).
//! - **Numbers** ([`Cell::number`], [`Cell::decimal`], and a JSON number through
//!   [`Cell::json`]) are written as they are, so `-5` stays the number -5. A number cell can
//!   only be made from a number (never from text), so it cannot carry a formula.
//!
//! With [`Cells::Raw`] (the commands' `--raw`) every cell is written exactly as given, for
//! programs that read the file and want the bytes as stored.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

/// Whether text cells are made safe for spreadsheets or written as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cells {
    /// Text cells that a spreadsheet would read as a formula get a leading `'`.
    #[default]
    FormulaSafe,
    /// Every cell exactly as given (`--raw`).
    Raw,
}

impl Cells {
    /// `--raw` given or not.
    pub fn raw(raw: bool) -> Cells {
        if raw {
            Cells::Raw
        } else {
            Cells::FormulaSafe
        }
    }
}

/// The first characters that make a spreadsheet read a cell as a formula (or, for tab and
/// carriage return, that Excel drops before reading the rest as one).
pub const FORMULA_STARTS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// A text cell as a spreadsheet must get it: with a `'` before it when it starts with one of
/// [`FORMULA_STARTS`], else unchanged (and not copied). The one place the rule is applied.
pub fn formula_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some(c) if FORMULA_STARTS.contains(&c) => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// A number the tool itself made, which a cell may hold as it is.
pub trait Number: std::fmt::Display + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Number for $t {}
    )*};
}
numbers!(i32, i64, u32, u64, usize);

/// One cell of a row: text (neutralised) or a number the tool made (as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell<'a>(Kind<'a>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind<'a> {
    Text(Cow<'a, str>),
    Number(String),
}

impl<'a> Cell<'a> {
    /// Text, from data or not: goes through [`formula_safe`].
    pub fn text(s: impl Into<Cow<'a, str>>) -> Cell<'a> {
        Cell(Kind::Text(s.into()))
    }

    /// An integer the tool counted or computed (a count, a line number): written as it is.
    pub fn number(n: impl Number) -> Cell<'a> {
        Cell(Kind::Number(n.to_string()))
    }

    /// A rate or a number of days with `digits` decimals; empty when there is none (or it is
    /// not finite).
    pub fn decimal(x: Option<f64>, digits: usize) -> Cell<'a> {
        Cell(Kind::Number(
            x.filter(|x| x.is_finite())
                .map_or(String::new(), |x| format!("{x:.digits$}")),
        ))
    }

    /// A stored attribute: a JSON number as a number; a string as text; null as empty; anything
    /// else as its JSON, as text.
    pub fn json(v: &'a Value) -> Cell<'a> {
        match v {
            Value::Number(n) => Cell(Kind::Number(n.to_string())),
            Value::String(s) => Cell::text(s.as_str()),
            Value::Null => Cell::text(""),
            other => Cell::text(other.to_string()),
        }
    }

    /// The cell as written.
    fn written(&self, cells: Cells) -> Cow<'_, str> {
        match (&self.0, cells) {
            (Kind::Text(s), Cells::FormulaSafe) => formula_safe(s),
            (Kind::Text(s), Cells::Raw) => Cow::Borrowed(s),
            (Kind::Number(n), _) => Cow::Borrowed(n),
        }
    }
}

/// The ops tool's only CSV writer: the csv crate's, with every row's cells through the rule
/// above (or none with [`Cells::Raw`]).
pub struct CsvOut<W: Write> {
    inner: csv::Writer<W>,
    cells: Cells,
}

impl<W: Write> CsvOut<W> {
    pub fn new(out: W, cells: Cells) -> CsvOut<W> {
        CsvOut {
            inner: csv::Writer::from_writer(out),
            cells,
        }
    }

    /// One row.
    pub fn row<'c>(&mut self, row: impl IntoIterator<Item = Cell<'c>>) -> csv::Result<()> {
        let cells = self.cells;
        let row: Vec<Cell<'c>> = row.into_iter().collect();
        self.inner
            .write_record(row.iter().map(|c| c.written(cells).into_owned()))
    }

    /// A row all of text (a header, a row echoed as it was read).
    pub fn texts<S: AsRef<str>>(&mut self, row: impl IntoIterator<Item = S>) -> csv::Result<()> {
        let cells = self.cells;
        self.inner.write_record(row.into_iter().map(|s| {
            let s = s.as_ref();
            match cells {
                Cells::FormulaSafe => formula_safe(s).into_owned(),
                Cells::Raw => s.to_owned(),
            }
        }))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer, flushed.
    pub fn into_inner(self) -> Result<W, crate::Error> {
        self.inner.into_inner().map_err(|e| e.to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(cells: Cells, row: Vec<Cell<'_>>) -> String {
        let mut out = CsvOut::new(Vec::new(), cells);
        out.row(row).unwrap();
        String::from_utf8(out.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn each_formula_start_gets_a_quote() {
        for (cell, safe) in [
            ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
            ("+1+1", "'+1+1"),
            ("-1+1", "'-1+1"),
            ("@SUM(1+1)", "'@SUM(1+1)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("=", "'="),
        ] {
            assert_eq!(formula_safe(cell), safe, "{cell:?}");
        }
    }

    #[test]
    fn full_width_formula_starts_get_a_quote() {
        for (cell, safe) in [
            ("＝HYPERLINK(\"http://x\")", "'＝HYPERLINK(\"http://x\")"),
            ("＋81", "'＋81"),
            ("－5", "'－5"),
            ("＠SUM(1+1)", "'＠SUM(1+1)"),
        ] {
            assert_eq!(formula_safe(cell), safe, "{cell:?}");
        }
    }

    #[test]
    fn a_japanese_name_and_ordinary_text_are_untouched_and_not_copied() {
        for cell in [
            "山田",
            "株式会社サンプル",
            "ヤマダ　タロウ",
            "taro@example.jp",
            "03-1234-5678",
            "1,000名以上",
            "a=b",
            " =1+1",
            "'=1+1",
            "",
        ] {
            assert!(matches!(formula_safe(cell), Cow::Borrowed(c) if c == cell), "{cell:?}");
        }
    }

    #[test]
    fn an_empty_cell_stays_empty() {
        assert_eq!(formula_safe(""), "");
        assert_eq!(csv(Cells::FormulaSafe, vec![Cell::text(""), Cell::text("x")]), ",x\n");
    }

    #[test]
    fn numbers_the_tool_marks_stay_numbers() {
        let score = serde_json::json!(-5);
        assert_eq!(
            csv(
                Cells::FormulaSafe,
                vec![
                    Cell::number(-5i64),
                    Cell::json(&score),
                    Cell::decimal(Some(-0.25), 4),
                    Cell::decimal(None, 1),
                    Cell::decimal(Some(f64::NAN), 1),
                    Cell::number(3usize),
                ]
            ),
            "-5,-5,-0.2500,,,3\n"
        );
        // The same characters as text from data are neutralised.
        let typed = serde_json::json!("-5");
        assert_eq!(
            csv(Cells::FormulaSafe, vec![Cell::text("-5"), Cell::json(&typed)]),
            "'-5,'-5\n"
        );
    }

    #[test]
    fn the_writer_quotes_text_rows_and_raw_writes_them_as_given() {
        let row = ["=HYPERLINK(\"http://x\",\"y\")", "@SUM(1+1)", "山田"];
        let mut safe = CsvOut::new(Vec::new(), Cells::FormulaSafe);
        safe.texts(row).unwrap();
        assert_eq!(
            String::from_utf8(safe.into_inner().unwrap()).unwrap(),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'@SUM(1+1),山田\n"
        );
        let mut raw = CsvOut::new(Vec::new(), Cells::Raw);
        raw.texts(row).unwrap();
        assert_eq!(
            String::from_utf8(raw.into_inner().unwrap()).unwrap(),
            "\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",@SUM(1+1),山田\n"
        );
        assert_eq!(csv(Cells::Raw, vec![Cell::text("-5"), Cell::number(-5i32)]), "-5,-5\n");
    }

    /// No second way: outside this module no source file of the tool makes a csv writer or
    /// writes a record itself.
    #[test]
    fn every_csv_writer_of_the_tool_is_this_one() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "csv_out.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in ["csv::Writer", "csv::WriterBuilder", "write_record", "write_field"] {
                assert!(
                    !text.contains(needle),
                    "{} uses {needle}: write CSV through csv_out::CsvOut",
                    path.display()
                );
            }
        }
    }
}

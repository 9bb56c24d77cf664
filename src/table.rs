//! Plain-text tables and summaries for the client commands, in the manner of kubectl and gh.
//!
//! - Columns are left-aligned (numbers right-aligned) and separated by two spaces, headers in
//!   capitals, no borders, no colour (so nothing depends on whether stdout is a terminal except
//!   the width), no trailing spaces.
//! - **Width**: `COLUMNS` when it is set to a number, else the terminal's width when stdout is
//!   a terminal, else unlimited: piped into `grep` or a file, rows are never cut.
//! - When a table is wider than that, its one free-text column (a pause reason, an error) is
//!   cut to fit and ends with `…`; the other columns (ids, figures) are never cut. If the table
//!   still does not fit, it overflows rather than hide an id.
//! - Control characters in cells (a newline in an error text, an escape sequence in a pause
//!   reason) are escaped, so a row is always one line and a cell cannot drive the terminal.
//!
//! Hand-written rather than `comfy-table` or `tabled`: those draw borders and wrap long cells
//! over several lines by default, while this output is meant to stay one row per line for
//! `grep` and `awk`; the rules above fit in this file. Display widths come from
//! `unicode-width`, so a wide character (CJK, emoji) in a reason keeps the columns aligned.

use std::fmt::Write as _;
use std::io::IsTerminal as _;

use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

/// The gap between two columns.
const GAP: &str = "  ";

/// A free-text column is never cut below this many columns (or its header's width).
const MIN_FREE_TEXT: usize = 10;

/// The width tables are fitted to: `COLUMNS`, else the terminal's, else none (no truncation).
pub(crate) fn output_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(columns);
    }
    if std::io::stdout().is_terminal() {
        return terminal_size::terminal_size().map(|(terminal_size::Width(w), _)| usize::from(w));
    }
    None
}

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table under construction.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    /// The column cut first when the table is too wide.
    free_text: Option<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            align: vec![Align::Left; headers.len()],
            free_text: None,
            rows: Vec::new(),
        }
    }

    /// Right-aligns the column `index` (numbers).
    pub(crate) fn right(mut self, index: usize) -> Self {
        if let Some(a) = self.align.get_mut(index) {
            *a = Align::Right;
        }
        self
    }

    /// Marks column `index` as the free-text column, the one cut to fit the width.
    pub(crate) fn free_text(mut self, index: usize) -> Self {
        self.free_text = Some(index);
        self
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| one_line(&c)).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The rendered table, one line per row after the header line, each ending in `\n`.
    /// `width`: the space to fit into, `None` for no limit.
    pub(crate) fn render(&self, width: Option<usize>) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.width());
            }
        }
        if let (Some(limit), Some(free)) = (width, self.free_text) {
            let total: usize =
                widths.iter().sum::<usize>() + GAP.len() * widths.len().saturating_sub(1);
            if total > limit {
                let others = total - widths[free];
                let floor = MIN_FREE_TEXT.max(self.headers[free].width());
                widths[free] = limit.saturating_sub(others).max(floor).min(widths[free]);
            }
        }

        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let cell = truncate(cell, widths[i]);
                let pad = widths[i] - cell.width();
                match self.align[i] {
                    Align::Left => {
                        line.push_str(&cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(&cell);
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// `key: value` lines with the values aligned, e.g. the summary of one delivery.
pub(crate) fn summary(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| k.width() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let key = format!("{key}:");
        let pad = key_width - key.width();
        let _ = writeln!(out, "{key}{}{GAP}{}", " ".repeat(pad), one_line(value));
    }
    out
}

/// `text` cut to at most `width` display columns, ending in `…` when it was cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so it stays on one line and cannot
/// move the cursor or change colours.
pub(crate) fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&["ID", "COUNT", "REASON"]).right(1).free_text(2);
        t.row(vec!["a".into(), "7".into(), "short".into()]);
        t.row(vec![
            "longer-id".into(),
            "1234".into(),
            "a much longer free-text reason".into(),
        ]);
        t
    }

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let text = table().render(None);
        assert_eq!(
            text,
            "ID         COUNT  REASON\n\
             a              7  short\n\
             longer-id   1234  a much longer free-text reason\n"
        );
    }

    #[test]
    fn the_free_text_column_is_cut_to_the_width() {
        let text = table().render(Some(36));
        for line in text.lines() {
            assert!(line.width() <= 36, "{line:?}");
        }
        assert!(
            text.contains("longer-id   1234  a much longer fre…\n"),
            "{text}"
        );
        // Never below the floor: ids and figures stay whole, the table overflows instead.
        let text = table().render(Some(5));
        assert!(text.contains("longer-id   1234  a much lo…"), "{text}");
        // Wide enough: nothing is cut.
        assert_eq!(table().render(Some(200)), table().render(None));
    }

    #[test]
    fn truncation_counts_display_width() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("日本語テキスト", 7), "日本語…");
        assert_eq!(truncate("日本語テキスト", 7).width(), 7);
        let mut t = Table::new(&["R", "X"]);
        t.row(vec!["日本".into(), "1".into()]);
        t.row(vec!["abcd".into(), "2".into()]);
        assert_eq!(t.render(None), "R     X\n日本  1\nabcd  2\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut t = Table::new(&["E"]);
        t.row(vec!["line\nbreak \u{1b}[31mred".into()]);
        let text = t.render(None);
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("line\\nbreak \\u{1b}[31mred"), "{text}");
        assert!(!summary(&[("k", "a\rb".into())]).contains('\r'));
    }

    #[test]
    fn summary_aligns_values() {
        assert_eq!(
            summary(&[("ID", "x".into()), ("Next attempt", "-".into())]),
            "ID:            x\nNext attempt:  -\n"
        );
    }
}

//! Aligned text tables for the terminal (the run summary, `compare`, `sweep --plan`), fitted
//! to a terminal's width and optionally coloured.
//!
//! Piped output (no [`Look::width`], no colour) is every cell in full, so `grep` and `awk`
//! see whole names. On a terminal narrower than a table, the first column (names) is
//! shortened, down to 12 characters, each cut name ending in `…`; numbers and flag counts are
//! never cut (a line that still does not fit wraps, as the terminal does).

/// How text is shown: the width to fit and whether to colour (ANSI SGR codes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// The terminal's width in columns; `None` when the output is not a terminal.
    pub width: Option<usize>,
    /// Colour the output.
    pub color: bool,
}

/// What a cell's colour says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Holds, succeeded (green).
    Good,
    /// Breached, failed (red).
    Bad,
    /// Worth a look (yellow).
    Warn,
    /// A heading (bold).
    Strong,
}

impl Look {
    /// `text` in `tone`'s colour, or as is without colour.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        let code = match tone {
            _ if !self.color || text.is_empty() => return text.to_owned(),
            Tone::Plain => return text.to_owned(),
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Warn => "33",
            Tone::Strong => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// `warning: TEXT`, the word in yellow when colouring, wrapped to the width (no final
    /// newline).
    pub fn warning(&self, text: &str) -> String {
        let wrapped = self.wrap(&format!("warning: {text}"));
        let rest = wrapped.strip_prefix("warning:").unwrap_or(&wrapped);
        format!("{}{rest}", self.paint("warning:", Tone::Warn))
    }

    /// `text` as lines of at most the width (words kept whole; no width: one line).
    pub fn wrap(&self, text: &str) -> String {
        let Some(width) = self.width else {
            return text.to_owned();
        };
        let mut out = String::new();
        let mut line = 0;
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            let n = word.chars().count();
            if line > 0 && line + 1 + n > width {
                out.push('\n');
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(word);
            line += n;
        }
        out
    }
}

/// Which side of its column a cell keeps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Names and labels.
    Left,
    /// Numbers.
    Right,
}

/// A column: its heading, alignment and least width.
#[derive(Clone, Debug)]
struct Column {
    head: String,
    align: Align,
    min: usize,
}

/// A table: columns, then rows of cells, rendered with [`Table::render`].
#[derive(Clone, Debug)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<(String, Tone)>>,
    gap: usize,
}

/// The narrowest a shortened name column gets.
const MIN_NAME: usize = 12;

impl Table {
    /// A table with `gap` spaces between columns (one more before a left-aligned column
    /// that follows a right-aligned one, so a label stands apart from the numbers).
    pub fn new(gap: usize) -> Table {
        Table {
            columns: Vec::new(),
            rows: Vec::new(),
            gap,
        }
    }

    /// Adds a column at least `min` wide.
    pub fn column(mut self, head: &str, align: Align, min: usize) -> Table {
        self.columns.push(Column {
            head: head.to_owned(),
            align,
            min,
        });
        self
    }

    /// Adds a row of plain cells (missing cells are empty, extra ones dropped).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.toned_row(cells.into_iter().map(|c| (c.into(), Tone::Plain)));
    }

    /// Adds a row of cells, each with its tone.
    pub fn toned_row(&mut self, cells: impl IntoIterator<Item = (String, Tone)>) {
        let mut cells: Vec<(String, Tone)> = cells.into_iter().collect();
        cells.resize(self.columns.len(), (String::new(), Tone::Plain));
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn gap_before(&self, i: usize) -> usize {
        match i {
            0 => 0,
            _ if self.columns[i].align == Align::Left
                && self.columns[i - 1].align == Align::Right =>
            {
                self.gap + 1
            }
            _ => self.gap,
        }
    }

    /// Column widths: the widest cell or heading, then shortened to fit `width`.
    fn widths(&self, width: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = (self.columns.iter().enumerate())
            .map(|(i, c)| {
                (self.rows.iter())
                    .map(|r| r[i].0.chars().count())
                    .chain([c.head.chars().count(), c.min])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let Some(width) = width else {
            return widths;
        };
        let total = |w: &[usize]| {
            w.iter().sum::<usize>() + (0..w.len()).map(|i| self.gap_before(i)).sum::<usize>()
        };
        if self.columns.first().is_some_and(|c| c.align == Align::Left) {
            let over = total(&widths).saturating_sub(width);
            let least = MIN_NAME.max(self.columns[0].head.chars().count());
            widths[0] -= over.min(widths[0].saturating_sub(least));
        }
        widths
    }

    /// The table as lines, fitted and coloured as `look` says; headings in bold.
    pub fn render(&self, look: &Look) -> String {
        let widths = self.widths(look.width);
        let mut out = String::new();
        let heads = self.columns.iter().map(|c| (c.head.clone(), Tone::Strong));
        for row in std::iter::once(heads.collect::<Vec<_>>()).chain(self.rows.iter().cloned()) {
            let mut line = String::new();
            for (i, ((text, tone), w)) in row.iter().zip(&widths).enumerate() {
                line.push_str(&" ".repeat(self.gap_before(i)));
                let cell = fit(text, *w);
                let pad = " ".repeat(w - cell.chars().count());
                let last = i + 1 == widths.len();
                match self.columns[i].align {
                    Align::Left if last => line.push_str(&look.paint(&cell, *tone)),
                    Align::Left => {
                        line.push_str(&look.paint(&cell, *tone));
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(&look.paint(&cell, *tone));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` cut to `width` characters, the last one `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(1)
            .column("route", Align::Left, 0)
            .column("requests", Align::Right, 9)
            .column("flags", Align::Left, 0);
        t.row([
            "reviews.default.svc.cluster.local/jason",
            "1200",
            "UH:3,UO:12,URX:4",
        ]);
        t.row(["ratings/default", "80", "-"]);
        t
    }

    #[test]
    fn piped_tables_keep_every_cell_whole() {
        let text = sample().render(&Look::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "route                                    requests  flags"
        );
        assert_eq!(
            lines[1],
            "reviews.default.svc.cluster.local/jason      1200  UH:3,UO:12,URX:4"
        );
        assert_eq!(
            lines[2],
            "ratings/default                                80  -"
        );
    }

    #[test]
    fn a_narrow_terminal_shortens_names_never_numbers_or_flags() {
        for width in [60, 40, 30] {
            let look = Look {
                width: Some(width),
                color: false,
            };
            let text = sample().render(&look);
            for line in text.lines() {
                let n = line.chars().count();
                // Past the least name width nothing more gives: 12 + 1 + 9 + 2 + 16 = 40.
                assert!(n <= width.max(40), "{n} > {width}: {line:?}");
            }
            assert!(
                text.contains("1200") && text.contains("UH:3,UO:12,URX:4"),
                "{text}"
            );
        }
        let text = sample().render(&Look {
            width: Some(40),
            color: false,
        });
        // 67 columns in full: the name gives the 27 over (39 → 12).
        let row = text.lines().nth(1).unwrap_or_default();
        assert_eq!(row, "reviews.def…      1200  UH:3,UO:12,URX:4");
        assert!(text.contains("ratings/def…"), "{text}");
    }

    #[test]
    fn colour_wraps_cells_after_padding_so_columns_stay_aligned() {
        let mut t = Table::new(1)
            .column("name", Align::Left, 0)
            .column("ok", Align::Right, 4);
        t.toned_row([
            ("a".to_owned(), Tone::Plain),
            ("100%".to_owned(), Tone::Good),
        ]);
        let look = Look {
            width: None,
            color: true,
        };
        let text = t.render(&look);
        assert_eq!(
            text,
            "\x1b[1mname\x1b[0m   \x1b[1mok\x1b[0m\na    \x1b[32m100%\x1b[0m\n"
        );
        assert_eq!(look.paint("", Tone::Bad), "");
    }

    #[test]
    fn wrap_keeps_words_whole() {
        let look = Look {
            width: Some(10),
            color: false,
        };
        assert_eq!(look.wrap("one two three four"), "one two\nthree four");
        assert_eq!(Look::default().wrap("one two"), "one two");
    }
}

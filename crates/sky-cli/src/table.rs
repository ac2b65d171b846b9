//! The one table renderer of the CLI: every table `sky` prints goes through [`Table`], in one of
//! SkyPilot's two layouts (both without vertical lines; comfy-table lays out the cells):
//!
//! - [`Table::plain`] (`sky status`, `queue`, `cost-report`, `show-gpus`): a header line, then
//!   the rows; columns separated by two spaces, one space before the first.
//! - [`Table::ruled`] (the optimizer's "Considered resources" of `sky launch`): a dashed rule
//!   above and below the header and at the end, columns separated by three spaces.
//!
//! Lines carry no trailing spaces.

use comfy_table::{Cell, CellAlignment, ContentArrangement};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Plain,
    Ruled,
}

/// A table: a header, rows of cells, and its layout. `center` lists columns whose cells are
/// centred.
#[derive(Debug)]
pub struct Table {
    layout: Layout,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    centered: Vec<usize>,
}

impl Table {
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(layout: Layout, header: I) -> Self {
        Table {
            layout,
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            centered: Vec::new(),
        }
    }

    /// A table without rules (`sky status`, `queue`, `cost-report`, `show-gpus`).
    pub fn plain<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Table::new(Layout::Plain, header)
    }

    /// A table with SkyPilot's dashed rules (the optimizer's "Considered resources").
    pub fn ruled<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Table::new(Layout::Ruled, header)
    }

    pub fn center(mut self, col: usize) -> Self {
        self.centered.push(col);
        self
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table's text, every line ending in a newline.
    pub fn render(&self) -> String {
        if let Some(out) = self.render_plain_ascii() {
            return out;
        }
        self.render_comfy()
    }

    /// The plain layout laid out directly, for the common case comfy-table's general layout
    /// is slow at (`sky jobs queue` with 10,000 jobs): one-line ASCII cells, every row as wide
    /// as the header, nothing centred. The same text as [`Table::render_comfy`] (tested).
    fn render_plain_ascii(&self) -> Option<String> {
        let n = self.header.len();
        if self.layout != Layout::Plain
            || !self.centered.is_empty()
            || n == 0
            || self.rows.iter().any(|r| r.len() != n)
        {
            return None;
        }
        let simple = |c: &String| c.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !self.header.iter().all(simple) || !self.rows.iter().flatten().all(simple) {
            return None;
        }
        // comfy-table gives an empty column a width of one.
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len().max(1)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line_len = widths.iter().map(|w| w + 2).sum::<usize>() + 1;
        let mut out = String::with_capacity(line_len * (self.rows.len() + 1));
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let start = out.len();
            for (c, w) in r.iter().zip(&widths) {
                out.push(' ');
                out.push_str(c);
                out.extend(std::iter::repeat_n(' ', w - c.len() + 1));
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
            out.push('\n');
        }
        Some(out)
    }

    fn render_comfy(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        t.set_header(self.header.iter().map(Cell::new));
        for r in &self.rows {
            t.add_row(r.iter().map(Cell::new));
        }
        for (i, col) in t.column_iter_mut().enumerate() {
            if self.layout == Layout::Ruled {
                col.set_padding((if i == 0 { 1 } else { 0 }, 3));
            }
            if self.centered.contains(&i) {
                col.set_cell_alignment(CellAlignment::Center);
            }
        }
        let lines: Vec<String> = t.lines().collect();
        let mut out = String::new();
        match self.layout {
            Layout::Plain => {
                for line in &lines {
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
            Layout::Ruled => {
                // The dashed rules are SkyPilot's, as wide as the padded columns
                // (1 + sum of (width + 3)).
                let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
                let rule = "-".repeat(width);
                for (i, line) in lines.iter().enumerate() {
                    if i <= 1 {
                        out.push_str(&rule);
                        out.push('\n');
                    }
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
                out.push_str(&rule);
                out.push('\n');
            }
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `5 mins ago` (a cell of `sky status`, `sky queue`, `sky cost-report`).
pub fn ago(now: i64, then: i64) -> String {
    let d = (now - then).max(0);
    if d < 60 {
        format!("{d} secs ago")
    } else if d < 3600 {
        format!("{} mins ago", d / 60)
    } else if d < 86400 {
        format!("{} hrs ago", d / 3600)
    } else {
        format!("{} days ago", d / 86400)
    }
}

/// `1m 5s` (a cell of `sky queue`, `sky cost-report`).
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_skypilot() {
        let mut t = Table::ruled([
            "INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "COST ($)", "CHOSEN",
        ])
        .center(6);
        t.row([
            "Lambda (us-east-1)",
            "gpu_8x_a100",
            "124",
            "1800",
            "A100:8",
            "15.92",
            "✔",
        ]);
        t.row([
            "GCP (europe-west4-a)",
            "a2-highgpu-8g",
            "96",
            "680",
            "A100:8",
            "19.42",
            "",
        ]);
        t.row([
            "Azure (eastus)",
            "Standard_ND96asr_v4",
            "96",
            "900",
            "A100:8",
            "27.20",
            "",
        ]);
        t.row([
            "AWS (us-east-1)",
            "p4d.24xlarge",
            "96",
            "1152",
            "A100:8",
            "32.77",
            "",
        ]);
        let expected = "\
---------------------------------------------------------------------------------------------
 INFRA                  INSTANCE              vCPUs   Mem(GB)   GPUS     COST ($)   CHOSEN
---------------------------------------------------------------------------------------------
 Lambda (us-east-1)     gpu_8x_a100           124     1800      A100:8   15.92         ✔
 GCP (europe-west4-a)   a2-highgpu-8g         96      680       A100:8   19.42
 Azure (eastus)         Standard_ND96asr_v4   96      900       A100:8   27.20
 AWS (us-east-1)        p4d.24xlarge          96      1152      A100:8   32.77
---------------------------------------------------------------------------------------------
";
        assert_eq!(t.render(), expected);
    }

    #[test]
    fn the_direct_plain_layout_is_comfy_tables() {
        // Pseudo-random tables (a fixed LCG): cells of 0-12 printable ASCII characters,
        // spaces included, empty cells, one column or several, no rows or many.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        for _ in 0..300 {
            let cols = 1 + next(6) as usize;
            let cell = |next: &mut dyn FnMut(u64) -> u64| -> String {
                let len = next(13);
                (0..len)
                    .map(|_| {
                        let c = 0x20 + next(0x5f) as u8;
                        if next(5) == 0 { ' ' } else { c as char }
                    })
                    .collect()
            };
            let header: Vec<String> = (0..cols).map(|_| cell(&mut next)).collect();
            let mut t = Table::plain(header);
            for _ in 0..next(8) {
                let row: Vec<String> = (0..cols).map(|_| cell(&mut next)).collect();
                t.row(row);
            }
            let direct = t.render_plain_ascii().expect("the direct layout applies");
            assert_eq!(direct, t.render_comfy(), "{t:?}");
        }
        // Where it does not apply, comfy-table lays the table out.
        let mut t = Table::plain(["A", "B"]);
        t.row(["é", "x"]);
        assert!(t.render_plain_ascii().is_none());
        let mut t = Table::plain(["A", "B"]);
        t.row(["two\nlines", "x"]);
        assert!(t.render_plain_ascii().is_none());
        assert!(Table::plain(["A"]).center(0).render_plain_ascii().is_none());
    }

    #[test]
    fn plain_tables_have_no_rules_and_no_trailing_spaces() {
        let mut t = Table::plain(["NAME", "LAUNCHED", "STATUS"]);
        t.row(["dev", "5 mins ago", "UP"]);
        t.row(["a-much-longer-name", "-", ""]);
        assert_eq!(
            t.render(),
            " NAME                LAUNCHED    STATUS\n dev                 5 mins ago  UP\n a-much-longer-name  -\n"
        );
        let t = Table::plain(["ID", "NAME"]);
        assert_eq!(t.render(), " ID  NAME\n");
    }
}

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

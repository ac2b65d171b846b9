//! Tables in SkyPilot's look: a dashed rule above and below the header and at the end, columns
//! separated by three spaces, no vertical lines. Built on comfy-table.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};

/// A table with SkyPilot's rules. `centered` lists columns whose cells are centred.
#[derive(Debug)]
pub struct SkyTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    centered: Vec<usize>,
}

impl SkyTable {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        SkyTable {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            centered: Vec::new(),
        }
    }

    pub fn center(mut self, col: usize) -> Self {
        self.centered.push(col);
        self
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Renders the table; lines carry no trailing spaces.
    pub fn render(&self) -> String {
        let mut t = Table::new();
        t.load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        t.set_header(self.header.iter().map(Cell::new));
        for r in &self.rows {
            t.add_row(r.iter().map(Cell::new));
        }
        for (i, col) in t.column_iter_mut().enumerate() {
            col.set_padding((if i == 0 { 1 } else { 0 }, 3));
            if self.centered.contains(&i) {
                col.set_cell_alignment(CellAlignment::Center);
            }
        }
        // comfy-table lays out the cells; the dashed rules are SkyPilot's, as wide as the
        // padded columns (1 + sum of (width + 3)).
        let lines: Vec<String> = t.lines().collect();
        let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let rule = "-".repeat(width);
        let mut out = String::new();
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
        out
    }
}

/// A table without rules (SkyPilot's `status`, `queue`, `show-gpus` look).
pub fn plain_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.iter().copied());
    t
}

/// Prints a table, without trailing spaces.
pub fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
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
        let mut t = SkyTable::new([
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
}

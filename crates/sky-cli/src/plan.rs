//! The optimizer's plan as SkyPilot prints it (`sky launch`, `sky jobs launch --dryrun`).

use sky_optimizer::Plan;

use crate::table::Table;

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => {
            let s = format!("{v:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

/// The plan as SkyPilot prints it (everything from "Running on cluster" to the hints).
pub fn render_plan(plan: &Plan, cluster: &str) -> String {
    let mut out = String::new();
    let (early, late): (Vec<&String>, Vec<&String>) = plan
        .notes
        .iter()
        .partition(|n| n.contains("runtime_version"));
    for n in early {
        out.push_str(n);
        out.push('\n');
    }
    out.push_str(&format!("Running on cluster: {cluster}\n"));
    for n in late {
        out.push_str(n);
        out.push('\n');
    }
    let nodes = plan.num_nodes;
    out.push_str(&format!(
        "Considered resources ({nodes} node{}):\n",
        if nodes == 1 { "" } else { "s" }
    ));
    let mut t = Table::ruled([
        "INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "COST ($)", "CHOSEN",
    ])
    .center(6);
    for r in &plan.rows {
        t.row([
            r.infra.clone(),
            r.instance.clone(),
            fmt_num(r.vcpus),
            fmt_num(r.mem_gb),
            r.gpus.clone().unwrap_or_else(|| "-".into()),
            format!("{:.2}", r.cost),
            if r.chosen {
                "✔".into()
            } else {
                String::new()
            },
        ]);
    }
    out.push_str(&t.render());
    if !plan.hints.is_empty() {
        for h in &plan.hints {
            out.push_str(h);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

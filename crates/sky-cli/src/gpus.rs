//! `sky show-gpus` / `sky gpus list`: accelerators in the bundled catalogs, with prices.

use std::collections::{BTreeMap, BTreeSet};

use comfy_table::{ContentArrangement, Table};
use sky_catalog::{AcceleratorOffer, AcceleratorQuery, Catalog};

use crate::{GpusArgs, clouds, exit, hostenv::HostEnv};

/// SkyPilot's "common" accelerators, listed without `-a`.
const COMMON: &[&str] = &[
    "A10",
    "A10G",
    "A100",
    "A100-80GB",
    "B200",
    "H100",
    "H200",
    "L4",
    "L40S",
    "T4",
    "V100",
    "V100-32GB",
];

pub fn plain_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.iter().copied());
    t
}

pub fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

fn money(x: Option<f64>) -> String {
    x.map(|v| format!("$ {v:.3}")).unwrap_or_else(|| "-".into())
}

fn qty(c: f64) -> String {
    if c.fract() == 0.0 {
        format!("{c:.0}")
    } else {
        format!("{c}")
    }
}

pub fn run(env: &HostEnv, args: &GpusArgs) -> i32 {
    let catalog = Catalog::bundled();
    // Which clouds: --infra/--cloud, else the enabled ones, else every bundled catalog.
    let infra = args.infra.clone().or_else(|| args.cloud.clone());
    let (mut cloud_filter, mut region) = (Vec::<String>::new(), args.region.clone());
    if let Some(infra) = &infra {
        let mut parts = infra.splitn(2, '/');
        let cloud = parts.next().unwrap_or_default();
        match sky_spec::canonical_cloud(cloud) {
            Some(c) if sky_catalog::BUNDLED_CLOUDS.contains(&c) => cloud_filter.push(c.to_string()),
            _ => {
                eprintln!(
                    "--infra {infra}: no bundled catalog for `{cloud}`; choose one of {}",
                    sky_catalog::BUNDLED_CLOUDS.join(", ")
                );
                return exit::INVALID_INPUT;
            }
        }
        if let Some(r) = parts.next().filter(|r| !r.is_empty() && *r != "*") {
            region = Some(r.to_string());
        }
    } else {
        let config = clouds::load_config(env).unwrap_or_default();
        let enabled = clouds::enabled_catalog_clouds(&clouds::check_all(env, &config));
        if enabled.is_empty() {
            println!("No cloud is enabled (see `sky check`); showing every bundled catalog.");
        }
        cloud_filter = enabled.iter().map(|c| c.to_string()).collect();
    }
    let (name, count) = match &args.accelerator {
        Some(a) => match a.split_once(':') {
            Some((n, c)) => match c.parse::<f64>() {
                Ok(c) if c > 0.0 => (Some(n.to_string()), Some(c)),
                _ => {
                    eprintln!(
                        "accelerator `{a}`: the count after `:` must be a positive number, e.g. A100:8"
                    );
                    return exit::INVALID_INPUT;
                }
            },
            None => (Some(a.clone()), None),
        },
        None => (None, None),
    };
    let query = AcceleratorQuery {
        name: name.clone(),
        count,
        clouds: cloud_filter,
        region: region.clone(),
        all_regions: args.all_regions,
    };
    let offers = catalog.list_accelerators(&query);
    if offers.is_empty() {
        eprintln!(
            "no accelerator matches {}{}. List all with `sky show-gpus -a`.",
            args.accelerator.as_deref().unwrap_or("the filter"),
            region
                .as_deref()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default()
        );
        return exit::NO_RESOURCES;
    }
    if name.is_none() {
        print_quantities(&offers, args.all);
        if args.all {
            println!();
            print_offers(&offers);
        } else {
            println!(
                "\nHint: use -a/--all to see all accelerators (including non-common ones) and pricing."
            );
        }
    } else {
        print_offers(&offers);
    }
    exit::OK
}

fn print_quantities(offers: &[AcceleratorOffer], all: bool) {
    let mut by_name: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for o in offers {
        if all || COMMON.contains(&o.accelerator.as_str()) {
            by_name
                .entry(o.accelerator.as_str())
                .or_default()
                .insert(qty(o.count));
        }
    }
    let mut t = plain_table(&["COMMON_GPU", "AVAILABLE_QUANTITIES"]);
    if all {
        t.set_header(["GPU", "AVAILABLE_QUANTITIES"]);
    }
    for (n, qs) in by_name {
        let mut qs: Vec<String> = qs.into_iter().collect();
        qs.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
        t.add_row([n.to_string(), qs.join(", ")]);
    }
    print_table(&t);
}

fn print_offers(offers: &[AcceleratorOffer]) {
    let mut by_cloud: BTreeMap<&str, Vec<&AcceleratorOffer>> = BTreeMap::new();
    for o in offers {
        by_cloud.entry(o.cloud.as_str()).or_default().push(o);
    }
    let mut first = true;
    for (cloud, rows) in by_cloud {
        if !first {
            println!();
        }
        first = false;
        println!("{} GPUs", clouds::display_name(cloud));
        let mut t = plain_table(&[
            "GPU",
            "QTY",
            "CLOUD",
            "INSTANCE_TYPE",
            "DEVICE_MEM",
            "vCPUs",
            "HOST_MEM",
            "HOURLY_PRICE",
            "HOURLY_SPOT_PRICE",
            "REGION",
        ]);
        for o in rows {
            t.add_row([
                o.accelerator.clone(),
                qty(o.count),
                clouds::display_name(&o.cloud).to_string(),
                o.instance_type.clone(),
                o.gpu_memory_mib
                    .map(|m| format!("{:.0}GB", m as f64 / 1024.0))
                    .unwrap_or_else(|| "-".into()),
                o.vcpus.map(qty).unwrap_or_else(|| "-".into()),
                o.memory_gib
                    .map(|m| format!("{}GB", qty(m)))
                    .unwrap_or_else(|| "-".into()),
                money(o.price),
                money(o.spot_price),
                o.region.clone(),
            ]);
        }
        print_table(&t);
    }
}

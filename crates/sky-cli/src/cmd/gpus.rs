//! `sky show-gpus` / `sky gpus list`: accelerators in the bundled catalogs, with prices, and
//! the GPUs detected on SSH node pools' hosts (`--infra ssh[/POOL]`).

use std::collections::{BTreeMap, BTreeSet};

use sky_catalog::{AcceleratorOffer, AcceleratorQuery, Catalog};

use crate::{
    args::GpusArgs, backend, clouds, exit, hostenv::HostEnv, interrupt::block_on, table::Table,
};

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
        if sky_spec::canonical_cloud(cloud) == Some("ssh") {
            let pool = parts.next().filter(|p| !p.is_empty() && *p != "*");
            return ssh_pools(env, pool, args.accelerator.as_deref());
        }
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
    if infra.is_none()
        && let Ok(config) = clouds::load_config(env)
        && let Ok(Some(ssh)) = backend::ssh_pools(env, &config)
    {
        println!();
        print_pools(&ssh.pools_summary(), name.as_deref());
    }
    exit::OK
}

/// `sky show-gpus --infra ssh[/POOL] [GPU]`: each pool's GPUs as detected on its hosts
/// (pools not detected yet are probed first), and how many are free.
fn ssh_pools(env: &HostEnv, pool: Option<&str>, accelerator: Option<&str>) -> i32 {
    let found = clouds::load_config(env).and_then(|c| backend::ssh_pools(env, &c));
    let ssh = match found {
        Ok(Some(ssh)) => ssh,
        Ok(None) => {
            eprintln!(
                "--infra ssh: no SSH node pools; list your machines in {} (see `sky check ssh`)",
                env.sky_dir().join(sky_cloud_ssh::POOLS_FILE).display()
            );
            return exit::INVALID_INPUT;
        }
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_INPUT;
        }
    };
    // 1 when some host did not answer (its pool stays undetected).
    let undetected = block_on(async {
        let failures = ssh.detect_capacity(true).await;
        for e in &failures {
            eprintln!("warning: {}", e.message);
        }
        i32::from(!failures.is_empty())
    });
    let mut pools = ssh.pools_summary();
    if let Some(name) = pool {
        let known: Vec<String> = pools.iter().map(|p| p.pool.clone()).collect();
        pools.retain(|p| p.pool == name);
        if pools.is_empty() {
            eprintln!(
                "--infra ssh/{name}: no such SSH node pool; pools: {}",
                known.join(", ")
            );
            return exit::INVALID_INPUT;
        }
    }
    let name = accelerator.map(|a| a.split(':').next().unwrap_or(a));
    if print_pools(&pools, name) == 0 && name.is_some() {
        return exit::NO_RESOURCES;
    }
    if undetected != 0 {
        eprintln!(
            "Pools whose hosts did not all answer are not detected yet; `sky check ssh` tells more."
        );
    }
    exit::OK
}

/// One section per pool: its GPU, the quantities a node can request, and how many are free
/// (a cluster holds its hosts whole). Returns how many GPU rows were printed.
fn print_pools(pools: &[sky_cloud_ssh::PoolSummary], name: Option<&str>) -> usize {
    let mut rows = 0;
    for (i, p) in pools.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("SSH Node Pool: {}", p.pool);
        let Some(cap) = &p.capacity else {
            println!("  not detected yet: `sky check ssh` logs in to its hosts");
            continue;
        };
        let Some((gpu, n)) = cap
            .accelerator
            .as_ref()
            .filter(|(gpu, _)| name.is_none_or(|w| w.eq_ignore_ascii_case(gpu)))
        else {
            println!(
                "  no GPU{} on its hosts ({} host{}, {} vCPUs and {} GB memory each)",
                name.map(|n| format!(" {n}")).unwrap_or_default(),
                p.hosts,
                if p.hosts == 1 { "" } else { "s" },
                qty(cap.vcpus),
                qty(cap.memory_gib)
            );
            continue;
        };
        // 1, 2, 4, ... up to the per-node count, and the count itself.
        let per_node = n.floor() as u32;
        let mut qtys: Vec<u32> = (0..)
            .map(|k| 1u32 << k)
            .take_while(|q| *q <= per_node)
            .collect();
        if qtys.last() != Some(&per_node) {
            qtys.push(per_node);
        }
        let mut t = Table::plain(["GPU", "REQUESTABLE_QTY_PER_NODE", "UTILIZATION"]);
        t.row([
            gpu.clone(),
            qtys.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "{} of {} free",
                qty(n * p.free_hosts as f64),
                qty(n * p.hosts as f64)
            ),
        ]);
        t.print();
        rows += 1;
    }
    rows
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
    let mut t = Table::plain([
        if all { "GPU" } else { "COMMON_GPU" },
        "AVAILABLE_QUANTITIES",
    ]);
    for (n, qs) in by_name {
        let mut qs: Vec<String> = qs.into_iter().collect();
        qs.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
        t.row([n.to_string(), qs.join(", ")]);
    }
    t.print();
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
        let mut t = Table::plain([
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
            t.row([
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
        t.print();
    }
}

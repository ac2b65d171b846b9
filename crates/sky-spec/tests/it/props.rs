//! Property tests: no input makes the parser panic, and generated tasks survive a dump.

use indexmap::IndexMap;
use proptest::prelude::*;
use sky_spec::*;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use crate::parse;

const FIELDS: &[&str] = &[
    "name",
    "workdir",
    "num_nodes",
    "resources",
    "setup",
    "run",
    "envs",
    "secrets",
    "file_mounts",
    "service",
    "config",
    "inputs",
    "outputs",
    "infra",
    "cloud",
    "region",
    "zone",
    "accelerators",
    "gpus",
    "cpus",
    "memory",
    "ports",
    "any_of",
    "ordered",
    "use_spot",
    "disk_size",
    "disk_tier",
    "image_id",
    "labels",
    "job_recovery",
    "strategy",
    "autostop",
    "idle_minutes",
    "readiness_probe",
    "replica_policy",
    "min_replicas",
    "max_replicas",
    "replicas",
    "path",
    "source",
    "mode",
    "store",
    "persistent",
    "post_data",
    "headers",
    "url",
    "ref",
    "priority",
    "tls",
    "recover_on_exit_codes",
    "max_restarts_on_errors",
    "wait_for",
    "execution",
    "1BAD",
    "secrets:X",
];

fn scalar() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        Just(Yaml::Null),
        any::<bool>().prop_map(Yaml::Boolean),
        any::<i64>().prop_map(Yaml::Integer),
        (-1000i64..70000).prop_map(Yaml::Integer),
        prop_oneof![
            Just("0.5"),
            Just("-1.5"),
            Just("1e-4"),
            Just(".nan"),
            Just(".inf"),
            Just("2.0")
        ]
        .prop_map(|s| Yaml::Real(s.into())),
        "[A-Za-z0-9:+/*${}_. -]{0,16}".prop_map(Yaml::String),
        prop_oneof![
            Just("A100:8"),
            Just("H100:0.5"),
            Just("aws/us-east-1"),
            Just("k8s/ctx"),
            Just("*"),
            Just("4+"),
            Just("32GB+"),
            Just("8080"),
            Just("1-10"),
            Just("MOUNT"),
            Just("COPY"),
            Just("s3://b"),
            Just("/health"),
            Just("1h"),
            Just("none"),
            Just("FAILOVER"),
            Just("docker:ubuntu"),
            Just("${X}"),
        ]
        .prop_map(|s| Yaml::String(s.into())),
    ]
}

fn yamlish() -> impl Strategy<Value = Yaml> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Yaml::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..6).prop_map(|kv| {
                let mut h = Hash::new();
                for (k, v) in kv {
                    h.insert(Yaml::String(k.to_string()), v);
                }
                Yaml::Hash(h)
            }),
        ]
    })
}

fn emit(y: &Yaml) -> String {
    let mut s = String::new();
    let mut e = YamlEmitter::new(&mut s);
    let _ = e.dump(y);
    s
}

fn text() -> impl Strategy<Value = String> {
    "[a-z]{1,8}"
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn quantity() -> impl Strategy<Value = Quantity> {
    (
        prop_oneof![(1u32..512).prop_map(f64::from), Just(0.5), Just(1.25)],
        any::<bool>(),
    )
        .prop_map(|(value, at_least)| Quantity { value, at_least })
}

fn resources() -> impl Strategy<Value = Resources> {
    let loc = (
        opt(prop::sample::select(CLOUDS)),
        opt("[a-z]{2}-[a-z]{4}-[1-9]"),
        opt("[a-z]{2}-[a-z]{4}-[1-9][a-c]"),
    );
    let acc = opt((
        prop::sample::select(&["A100", "H100", "tpu-v4-8", "L4", "A10g"][..]),
        prop_oneof![(1u32..16).prop_map(f64::from), Just(0.5)],
    )
        .prop_map(|(n, c)| AcceleratorRequest {
            name: n.to_string(),
            count: c,
        }));
    let compute = (
        opt(quantity()),
        opt(prop_oneof![
            quantity().prop_map(MemoryRequest::Gib),
            quantity().prop_map(MemoryRequest::PerVcpu)
        ]),
        opt("[a-z0-9]{2}\\.[a-z0-9]{2,6}"),
    );
    let misc = (
        any::<bool>(),
        1u64..4096,
        opt(prop::sample::select(
            &[
                DiskTier::Low,
                DiskTier::Medium,
                DiskTier::High,
                DiskTier::Ultra,
                DiskTier::Best,
            ][..],
        )),
        opt(prop::sample::select(
            &[NetworkTier::Standard, NetworkTier::Best][..],
        )),
        prop::collection::vec((1u16..60000, 0u16..20), 0..4),
        prop::collection::btree_map(text(), "[a-z0-9 ]{0,8}", 0..3),
        opt(-1000i32..1000),
        opt((1u32..100).prop_map(|c| f64::from(c) / 4.0)),
    );
    let policies = (
        opt((
            opt(prop::sample::select(&["EAGER_NEXT_REGION", "FAILOVER"][..])),
            0u32..10,
            prop::collection::btree_set(0u8..=255, 0..3),
        )
            .prop_map(|(s, m, c)| JobRecovery {
                strategy: s.map(str::to_string),
                max_restarts_on_errors: m,
                recover_on_exit_codes: c.into_iter().collect(),
            })),
        opt(prop_oneof![
            Just(Autostop {
                enabled: false,
                idle_minutes: DEFAULT_AUTOSTOP_IDLE_MINUTES,
                down: false,
                wait_for: AutostopWaitFor::JobsAndSsh,
                hook: None,
                hook_timeout: None
            }),
            (
                0u32..1000,
                any::<bool>(),
                prop::sample::select(
                    &[
                        AutostopWaitFor::Jobs,
                        AutostopWaitFor::JobsAndSsh,
                        AutostopWaitFor::None
                    ][..]
                ),
                opt(text()),
                opt(1u32..100)
            )
                .prop_map(|(i, d, w, h, t)| Autostop {
                    enabled: true,
                    idle_minutes: i,
                    down: d,
                    wait_for: w,
                    hook: h,
                    hook_timeout: t
                }),
        ]),
        opt(1u64..10_000_000),
    );
    (loc, acc, compute, misc, policies).prop_map(
        |(
            (cloud, region, zone),
            accelerators,
            (cpus, memory, instance_type),
            m,
            (job_recovery, autostop, max_duration),
        )| {
            let (
                use_spot,
                disk_size,
                disk_tier,
                network_tier,
                ports,
                labels,
                priority,
                max_hourly_cost,
            ) = m;
            let ports: Vec<PortRange> = ports
                .into_iter()
                .map(|(s, w)| PortRange {
                    start: s,
                    end: s.saturating_add(w),
                })
                .collect();
            let mut ports_norm = Vec::new();
            let mut sorted = ports;
            sorted.sort();
            for r in sorted {
                match ports_norm.last_mut() {
                    Some(PortRange { end, .. }) if u32::from(r.start) <= u32::from(*end) + 1 => {
                        *end = (*end).max(r.end)
                    }
                    _ => ports_norm.push(r),
                }
            }
            // A TPU pins the cloud to gcp or kubernetes, and memory 0 is never generated.
            let cloud = match (&accelerators, cloud) {
                (Some(a), Some(c))
                    if a.name.starts_with("tpu") && c != "gcp" && c != "kubernetes" =>
                {
                    Some("gcp")
                }
                (_, c) => c,
            };
            let image_id = match cloud {
                Some("aws") if region.is_none() => None,
                Some(_) => Some(ImageId::All("img-123".into())),
                None => Some(ImageId::All("docker:ubuntu:22.04".into())),
            };
            Resources {
                cloud: cloud.map(str::to_string),
                region,
                zone,
                accelerators,
                accelerator_args: None,
                cpus,
                memory,
                instance_type,
                use_spot,
                use_spot_specified: true,
                disk_size,
                disk_tier,
                network_tier,
                ports: ports_norm,
                image_id,
                labels,
                job_recovery,
                autostop,
                max_hourly_cost,
                max_duration,
                priority,
                extra: IndexMap::new(),
            }
        },
    )
}

fn value_text() -> impl Strategy<Value = String> {
    // Anything but `$` (substitution is not idempotent by design) and characters YAML cannot carry.
    "[^$\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{7f}-\u{9f}\u{feff}\u{fffe}\u{ffff}]{0,24}"
}

fn choice() -> impl Strategy<Value = ResourceChoice> {
    prop_oneof![
        resources().prop_map(ResourceChoice::Single),
        prop::collection::vec(resources(), 1..4).prop_map(ResourceChoice::AnyOf),
        prop::collection::vec(resources(), 1..4).prop_map(ResourceChoice::Ordered),
    ]
}

fn mount() -> impl Strategy<Value = FileMount> {
    prop_oneof![
        prop_oneof![
            "s3://[a-z]{3,8}/[a-z]{0,5}",
            "~/[a-z]{1,6}",
            "\\./[a-z]{1,6}"
        ]
        .prop_map(FileMount::Source),
        (
            // As SkyPilot constructs storage: a bucket URI source names its bucket; a new
            // bucket (empty, or uploaded from local paths) needs a name.
            prop_oneof![
                "s3://[a-z]{3,6}".prop_map(|u| (None, vec![u])),
                ("[a-z]{3,10}", prop::collection::vec("~/[a-z]{1,6}", 1..3))
                    .prop_map(|(n, v)| (Some(n), v)),
            ],
            opt(prop::sample::select(&["s3", "gcs", "r2"][..])),
            any::<bool>(),
            prop::sample::select(
                &[
                    StorageMode::Mount,
                    StorageMode::Copy,
                    StorageMode::MountCached
                ][..]
            )
        )
            .prop_map(
                |((name, source), store, persistent, mode)| FileMount::Storage(StorageSpec {
                    name,
                    source,
                    store: store.map(str::to_string),
                    persistent,
                    mode,
                    config: None,
                    file_mount_type: None,
                    mount_options: None,
                    extra: IndexMap::new(),
                })
            ),
    ]
}

fn service() -> impl Strategy<Value = Service> {
    (
        opt((
            "/[a-z]{0,8}",
            0u64..3000,
            1u64..100,
            opt(Just(serde_json::json!({"model": "m"}))),
            prop::collection::vec(("[A-Za-z-]{1,8}", value_text()), 0..2),
        )),
        prop_oneof![
            (0u32..3).prop_map(|r| (Some(r), None)),
            (
                0u32..3,
                // SkyPilot: autoscaling (max_replicas) and a QPS target come together.
                opt((3u32..9, (1u32..20).prop_map(f64::from))),
                0u64..999,
                0u64..999
            )
                .prop_map(|(min, autoscale, u, d)| (
                    None,
                    Some(ReplicaPolicy {
                        min_replicas: min,
                        max_replicas: autoscale.map(|(m, _)| m),
                        target_qps_per_replica: autoscale.map(|(_, q)| q),
                        target_qps_per_accelerator: IndexMap::new(),
                        upscale_delay_seconds: u,
                        downscale_delay_seconds: d,
                        num_overprovision: None,
                        base_ondemand_fallback_replicas: Some(1),
                        dynamic_ondemand_fallback: Some(true),
                        spot_placer: None,
                    })
                )),
        ],
        opt(1u16..65535),
        opt(prop::sample::select(&["round_robin", "least_load"][..])),
    )
        .prop_map(|(probe, (replicas, replica_policy), ports, lb)| Service {
            readiness_probe: probe.map(|(path, i, t, post_data, headers)| ReadinessProbe {
                path,
                post_data,
                initial_delay_seconds: i,
                timeout_seconds: t,
                headers: headers.into_iter().collect(),
                extra: IndexMap::new(),
            }),
            replica_policy,
            replicas,
            ports,
            load_balancing_policy: lb.map(str::to_string),
            tls: None,
            extra: IndexMap::new(),
        })
}

prop_compose! {
    fn task()(
        name in opt("[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?"),
        workdir in opt(prop_oneof![
            "[a-z~./]{1,10}".prop_map(Workdir::Path),
            ("https://[a-z]{3,8}\\.com/[a-z]{1,5}", opt("[a-z0-9]{1,8}")).prop_map(|(url, git_ref)| Workdir::Git { url, git_ref }),
        ]),
        num_nodes in 1u32..64,
        resources in choice(),
        setup in opt(value_text()),
        run in opt(value_text()),
        envs in prop::collection::vec(("[A-Z_][A-Z0-9_]{0,6}", value_text()), 0..4),
        secrets in prop::collection::vec(("[A-Z_][A-Z0-9_]{0,6}", value_text()), 0..3),
        secret_refs in prop::collection::vec("secrets:[a-z]{1,6}", 0..2),
        file_mounts in prop::collection::vec(("/[a-z]{1,8}", mount()), 0..3),
        service in opt(service()),
        config in opt(Just(serde_json::json!({"kubernetes": {"provision_timeout": 600}, "docker": {"run_options": ["--x"]}}))),
        inputs in opt(("s3://[a-z]{3}", (1u32..100).prop_map(f64::from))),
        event_callback in opt(value_text()),
    ) -> Task {
        let mut secret_refs = secret_refs;
        secret_refs.dedup();
        Task {
            name, workdir, num_nodes, resources, setup, run,
            envs: envs.into_iter().collect(),
            secrets: secrets.into_iter().collect(),
            required_envs: Vec::new(),
            required_secrets: Vec::new(),
            file_mounts: file_mounts.into_iter().collect(),
            service, config, inputs, outputs: None, event_callback,
            secret_refs: {
                let mut seen = Vec::new();
                for r in secret_refs { if !seen.contains(&r) { seen.push(r); } }
                seen
            },
            extra: IndexMap::new(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_yaml_like_text(s in "[a-z_:{}\\[\\],\\- \n0-9\"'#&*!|>%@]{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_arbitrary_yaml(y in yamlish(), docs in 1usize..3) {
        let one = emit(&y);
        let text = std::iter::repeat_n(one, docs).collect::<Vec<_>>().join("\n");
        let _ = parse(&text);
        // Nest under `resources:` too, to reach the resource walker.
        let mut h = Hash::new();
        h.insert(Yaml::String("resources".into()), y.clone());
        let _ = parse(&emit(&Yaml::Hash(h)));
        let mut h = Hash::new();
        h.insert(Yaml::String("service".into()), y);
        let _ = parse(&emit(&Yaml::Hash(h)));
    }

    #[test]
    fn generated_tasks_round_trip(t in task()) {
        let file = TaskFile::Task(Box::new(t));
        let text = to_yaml(&file);
        let back = parse(&text).map_err(|d| TestCaseError::fail(format!("{d}\n---\n{text}")))?;
        prop_assert_eq!(&back, &file, "{}", text);
    }

    #[test]
    fn generated_pipelines_round_trip(ts in prop::collection::vec(task(), 1..4), named in any::<bool>()) {
        let file = TaskFile::Pipeline(Pipeline { name: (named || ts.len() < 2).then(|| "pipe".to_string()), tasks: ts });
        let text = to_yaml(&file);
        let back = parse(&text).map_err(|d| TestCaseError::fail(format!("{d}\n---\n{text}")))?;
        prop_assert_eq!(&back, &file, "{}", text);
    }
}

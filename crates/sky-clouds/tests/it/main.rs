//! Consistency of the built-in profiles: one list, canonical SkyPilot names, SkyPilot's
//! display names, unique ranks and aliases, and message templates that name only what exists.

use sky_clouds::{SKYPILOT_CLOUDS, builtin, bundled_catalog_clouds, canonical, profile};

#[test]
fn every_profile_id_is_a_canonical_skypilot_name() {
    for p in builtin() {
        assert_eq!(canonical(&p.id), Some(&*p.id), "{}", p.id);
        assert!(
            SKYPILOT_CLOUDS.contains(&&*p.id),
            "{} is not a SkyPilot cloud",
            p.id
        );
        assert_eq!(p.id.to_ascii_lowercase(), p.id, "ids are lower-case");
        assert_eq!(
            profile(&p.id.to_ascii_uppercase()).map(|q| &q.id),
            Some(&p.id)
        );
    }
    let mut ids: Vec<&str> = builtin().iter().map(|p| &*p.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), builtin().len(), "one profile per cloud");
}

#[test]
fn display_names_are_skypilots() {
    let want = [
        ("aws", "AWS"),
        ("gcp", "GCP"),
        ("azure", "Azure"),
        ("lambda", "Lambda"),
        ("runpod", "RunPod"),
        ("vast", "Vast"),
        ("kubernetes", "Kubernetes"),
        ("ssh", "SSH"),
        ("local", "Local"),
    ];
    assert_eq!(builtin().len(), want.len());
    for (id, name) in want {
        assert_eq!(sky_clouds::display_name(id), name);
    }
}

#[test]
fn bundled_catalogs_and_ranks() {
    assert_eq!(
        bundled_catalog_clouds(),
        ["aws", "azure", "gcp", "lambda", "runpod", "vast"]
    );
    // SkyPilot's enumeration order of the catalog clouds, for cost ties.
    let mut ranked: Vec<(u8, &str)> = builtin()
        .iter()
        .filter_map(|p| p.rank.map(|r| (r, &*p.id)))
        .collect();
    ranked.sort_unstable();
    let order: Vec<&str> = ranked.iter().map(|(_, id)| *id).collect();
    assert_eq!(order, ["aws", "gcp", "azure", "lambda", "runpod", "vast"]);
    let mut ranks: Vec<u8> = ranked.iter().map(|(r, _)| *r).collect();
    ranks.dedup();
    assert_eq!(ranks.len(), ranked.len(), "ranks are unique");
    // The list is in rank order, unranked clouds last.
    let pos: Vec<Option<u8>> = builtin().iter().map(|p| p.rank).collect();
    let mut sorted = pos.clone();
    sorted.sort_by_key(|r| r.unwrap_or(u8::MAX));
    assert_eq!(pos, sorted);
    for p in builtin().iter().filter(|p| p.bundled_catalog) {
        assert!(p.rank.is_some(), "{}: a catalog cloud has a rank", p.id);
    }
}

#[test]
fn aliases_are_unique_and_not_ids() {
    let mut seen: Vec<String> = builtin().iter().map(|p| p.id.to_string()).collect();
    for p in builtin() {
        for a in p.aliases {
            assert!(!seen.contains(&a.to_string()), "alias {a} used twice");
            seen.push((*a).to_string());
            assert_eq!(canonical(a), Some(&*p.id));
        }
    }
}

#[test]
fn credential_templates_name_only_their_files() {
    for p in builtin() {
        let c = &p.credentials;
        for text in [c.missing, c.fix] {
            let mut rest = text;
            while let Some(i) = rest.find('{') {
                let tail = &rest[i + 1..];
                let end = tail.find('}').unwrap_or(0);
                if let Ok(n) = tail[..end].parse::<usize>() {
                    assert!(n < c.files.len(), "{}: {{{n}}} in {text:?}", p.id);
                }
                rest = &tail[end..];
            }
        }
        assert!(
            c.always.is_some() || !c.files.is_empty() || !c.env_keys.is_empty(),
            "{}: sky check has nothing to look for",
            p.id
        );
        assert!(
            c.always.is_some() || (!c.missing.is_empty() && !c.fix.is_empty()),
            "{}: a missing credential says why and how to fix it",
            p.id
        );
    }
}

#[test]
fn profiles_serialize() {
    let v = serde_json::to_value(sky_clouds::AWS).expect("serializes");
    assert_eq!(v["id"], "aws");
    assert_eq!(v["features"]["spot"], true);
    let f: sky_clouds::FeatureSet =
        serde_json::from_str(r#"{"stop":true,"spot":false,"multi_node":true,"open_ports":false,"custom_image":false,"docker":false,"autostop":true}"#)
            .expect("a feature set stored before disk_tiers still reads");
    assert!(f.stop && !f.disk_tiers);
}

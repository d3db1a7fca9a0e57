//! `--set PATH=VALUE`: a setting gives the scenario the same file written by hand with that
//! value would, and a path that names nothing is an error naming what is there.

use sim_core::load::{parse, parse_with};
use sim_core::{Scenario, ScenarioError, Setting};

const BASE: &str = r#"Scenario(
    seed: 1,
    duration: "60s",
    services: {
        "backend": Service(versions: {
            "v1": (instances: 5, workers: 10,
                   latency: LogNormal(p50: "7ms", p99: "20ms")),
        }),
    },
    mesh: Mesh(
        virtual_services: [
            VirtualService(hosts: ["backend"], http: [
                HttpRoute(name: "api", route: [(destination: (host: "backend"))],
                    retries: (attempts: 3, per_try_timeout: "100ms", retry_on: "5xx,reset")),
            ]),
        ],
    ),
    workload: [OpenLoop(host: "backend", rate: 5000)],
)"#;

fn set(pairs: &[(&str, &str)]) -> Result<Scenario, ScenarioError> {
    let settings: Vec<Setting> = pairs
        .iter()
        .map(|(p, v)| Setting::new(p, v).expect("setting"))
        .collect();
    parse_with("base.ron", BASE, &settings)
}

/// The base text with `from` replaced by `to`, parsed: what a hand edit gives.
fn edited(from: &str, to: &str) -> Scenario {
    assert!(BASE.contains(from), "{from}");
    parse("edited.ron", &BASE.replacen(from, to, 1)).expect("edited")
}

#[test]
fn a_setting_equals_the_hand_edit() {
    let cases = [
        (
            "services.backend.versions.v1.instances",
            "7",
            "instances: 5",
            "instances: 7",
        ),
        (
            "mesh.virtual_services[0].http[0].retries.attempts",
            "0",
            "attempts: 3",
            "attempts: 0",
        ),
        ("workload[0].rate", "2500.5", "rate: 5000", "rate: 2500.5"),
        (
            "duration",
            "10s",
            r#"duration: "60s""#,
            r#"duration: "10s""#,
        ),
        (
            "mesh.virtual_services[0].http[0].retries.per_try_timeout",
            r#""250ms""#,
            r#"per_try_timeout: "100ms""#,
            r#"per_try_timeout: "250ms""#,
        ),
        (
            "services.backend.versions.v1.latency",
            r#"Exponential(mean: "5ms")"#,
            r#"LogNormal(p50: "7ms", p99: "20ms")"#,
            r#"Exponential(mean: "5ms")"#,
        ),
        (
            "mesh.virtual_services[0].http[0].retries.retry_on",
            r#""5xx""#,
            r#""5xx,reset""#,
            r#""5xx""#,
        ),
    ];
    for (path, value, from, to) in cases {
        let got = set(&[(path, value)]).unwrap_or_else(|e| panic!("{path}={value}: {e}"));
        assert_eq!(got, edited(from, to), "{path}={value}");
        assert_ne!(
            got,
            parse("base.ron", BASE).expect("base"),
            "{path} changed nothing"
        );
    }
}

#[test]
fn a_field_the_file_leaves_out_is_added() {
    let got = set(&[("services.backend.versions.v1.queue", "64")]).expect("applies");
    assert_eq!(got, edited("workers: 10,", "workers: 10, queue: 64,"));
    let got = set(&[("drain", "2s")]).expect("applies");
    assert_eq!(
        got,
        edited(r#"duration: "60s","#, r#"duration: "60s", drain: "2s","#)
    );
}

#[test]
fn several_settings_apply_together() {
    let got = set(&[
        ("services.backend.versions.v1.instances", "2"),
        ("workload[0].rate", "10"),
    ])
    .expect("applies");
    let want = parse(
        "e.ron",
        &BASE
            .replace("instances: 5", "instances: 2")
            .replace("rate: 5000", "rate: 10"),
    )
    .expect("applies");
    assert_eq!(got, want);
}

fn error(pairs: &[(&str, &str)]) -> String {
    set(pairs).expect_err("must fail").to_string()
}

#[test]
fn an_unknown_path_names_what_is_there() {
    let e = error(&[("services.backnd.versions.v1.instances", "3")]);
    assert!(e.contains("did you mean `backend`"), "{e}");
    let e = error(&[("services.backend.versions.v1.instanzes", "3")]);
    assert!(e.contains("did you mean `instances`"), "{e}");
    assert!(e.contains("workers"), "lists the fields: {e}");
    let e = error(&[("mesh.virtual_services[3].http[0].timeout", "\"1s\"")]);
    assert!(
        e.contains("has 1 element(s): index 3 is out of range"),
        "{e}"
    );
    let e = error(&[("services.backend.versions.v1.instances.x", "3")]);
    assert!(e.contains("single value"), "{e}");
    let e = error(&[("mesh.virtual_services[0].http[0].fault.delay", "1")]);
    assert!(e.contains("is not written in the scenario"), "{e}");
    let e = error(&[("workload.rate", "3")]);
    assert!(e.contains("is a list"), "{e}");
}

#[test]
fn a_bad_value_is_an_error_naming_the_setting() {
    let e = error(&[("services.backend.versions.v1.instances", "many")]);
    assert!(
        e.contains("--set services.backend.versions.v1.instances") && e.contains("many"),
        "{e}"
    );
    let e = error(&[("services.backend.versions.v1.instances", "-3")]);
    assert!(e.contains("instances"), "{e}");
    let e = error(&[("duration", "3"), ("duration", "4")]);
    assert!(e.contains("set twice"), "{e}");
}

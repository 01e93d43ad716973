//! The Lambda bundle as a user builds it: `sam build` on template.yaml (for each function
//! `cargo lambda build --release` in its folder, C compiled with zig), then each artifact as
//! `sam deploy` uploads it: zipped within the size budget, linking only the clients of its own
//! ports, and answering an event through the Lambda Runtime API.
//!
//! And the OpenFaaS image's build, from the context faas-cli would lay out (infra/check-stack.py).
//!
//! A cold run compiles the release profile (LTO) five times over; it shares the cargo target
//! directory, so a warm run only relinks what changed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tests::{event, repo_root, target_dir, tools_bin, tools_python};

/// Every function's zip is held to this (the largest, scaling-decision, was 4.74 MB when it was set).
const ZIP_GOAL_BYTES: u64 = 5_000_000;

/// Text that a dependency leaves in a stripped binary (the source paths of its panic locations,
/// or a C library's own name), and the functions that may contain it: whatever else links it
/// carries code it never runs.
const MARKERS: [(&str, &[&str]); 9] = [
    ("shared/policy/src/", &["meta-weights", "scaling-decision"]),
    // rustls runs on ring everywhere: aws-lc would be a second crypto library.
    ("/aws-lc-", &[]),
    // The functions publish with rskafka on rustls; librdkafka and its OpenSSL stay in the local
    // stack's tools.
    ("/rskafka-", &["burst-signal", "scaling-decision"]),
    ("librdkafka", &[]),
    ("OpenSSL", &[]),
    // The policy crate evaluates the models itself; a general ONNX runtime is a test dependency only.
    ("/tract-", &[]),
    ("/aws-sdk-emrserverless-", &["scaling-decision", "prewarmer"]),
    ("/aws-sdk-elasticache-", &["scaling-decision"]),
    ("/aws-sdk-s3-", &["shuffle-router"]),
];

/// (function, template resource, event it answers)
const FUNCTIONS: [(&str, &str, &str); 5] = [
    ("burst-signal", "BurstSignalFunction", "burst-signal-msk.json"),
    ("meta-weights", "MetaWeightsFunction", "schedule.json"),
    ("scaling-decision", "ScalingDecisionFunction", "scaling-decision-spark-metrics.json"),
    ("shuffle-router", "ShuffleRouterFunction", "shuffle-router-manifest.json"),
    ("prewarmer", "PrewarmerFunction", "schedule.json"),
];

/// Zip `bootstrap` as SAM does (Python's zipfile, deflated), return the zip's size.
fn zipped_size(bootstrap: &Path, zip: &Path) -> u64 {
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write(sys.argv[1], 'bootstrap')\n";
    let status = Command::new(tools_python())
        .arg("-c")
        .arg(script)
        .arg(bootstrap)
        .arg(zip)
        .status()
        .expect("python runs");
    assert!(status.success(), "zipping {}", bootstrap.display());
    std::fs::metadata(zip).unwrap().len()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_build_makes_small_lean_artifacts_that_answer_events() {
    let build_dir = target_dir().join("sam-build");
    let path = format!("{}:{}", tools_bin().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(tools_bin().join("sam"))
        .args(["build", "--template", "template.yaml", "--build-dir"])
        .arg(&build_dir)
        .current_dir(repo_root())
        .env("PATH", &path)
        .env("SAM_CLI_TELEMETRY", "0")
        .env("CARGO_TARGET_DIR", target_dir())
        // With C_INCLUDE_PATH set, cargo-lambda (cargo-zigbuild 0.23, computing bindgen's include
        // paths from `zig cc -v` for C and for C++) finds a C-only directory and panics ("range
        // start index 18446744073709551615 out of range"); the README tells users not to set it.
        .env_remove("C_INCLUDE_PATH")
        .output()
        .expect("sam is installed by infra/setup");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sam build failed:\n{log}");

    for (function, resource, event_file) in FUNCTIONS {
        let bootstrap = build_dir.join(resource).join("bootstrap");
        let binary = std::fs::read(&bootstrap).unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()));
        let zip = zipped_size(&bootstrap, &build_dir.join(format!("{function}.zip")));
        eprintln!("{function}: binary {:.2} MB, zip {:.2} MB", binary.len() as f64 / 1e6, zip as f64 / 1e6);
        assert!(zip <= ZIP_GOAL_BYTES, "{function}'s zip is {zip} bytes, above {ZIP_GOAL_BYTES}");
        for (marker, users) in MARKERS {
            assert_eq!(
                contains(&binary, marker),
                users.contains(&function),
                "{function} {} {marker:?}",
                if users.contains(&function) { "lacks" } else { "links" }
            );
        }

        let mut cmd = tokio::process::Command::new(&bootstrap);
        cmd.env("SPARKPILOT_BACKEND", "embedded").env("RUST_LOG", "warn");
        let answer =
            tests::lambda_api::invoke(cmd, function, &event(event_file), Duration::from_secs(30)).await;
        assert_eq!(answer.kind, "response", "{function}: {}", answer.body);
        eprintln!(
            "{function}: ready after {:?}, answered {}",
            answer.ready_after,
            answer.body.to_string().chars().take(120).collect::<String>()
        );
    }
}

/// The OpenFaaS template's Dockerfile, its cargo steps run in the build context faas-cli lays out
/// for meta-weights (see infra/check-stack.py): the image would build, and its binary serves.
/// The release profile is relaxed for this build (no LTO, opt-level 1): what is tested is the
/// layout and the commands, and a second fully optimised release build of every dependency would
/// double the test's cold time.
#[test]
fn openfaas_build_context_builds_meta_weights() {
    let path = format!("{}:{}", tools_bin().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-stack.py"))
        .args(["--build", "meta-weights", "stack.yml"])
        .current_dir(repo_root())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .output()
        .expect("python with PyYAML (infra/tools-env)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "infra/check-stack.py --build meta-weights:\n{text}");
    for expect in [
        "RUN cargo chef prepare",
        "RUN cargo chef cook --release --locked -p \"${FUNCTION}\"",
        "RUN cargo build --release --locked -p \"${FUNCTION}\"",
        "meta-weights: initialises, and answers /_/health over HTTP",
    ] {
        assert!(text.contains(expect), "{expect:?} not in:\n{text}");
    }
}

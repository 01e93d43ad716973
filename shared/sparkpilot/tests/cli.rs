//! The `sparkpilot` binary end to end: tables, files, and clear errors on bad input.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn sparkpilot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparkpilot")).args(args).output().expect("run sparkpilot")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparkpilot-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn realistic_tournament_prints_the_table_and_writes_csv_and_svg() {
    let dir = scratch("realistic");
    let out = dir.join("out");
    let o =
        sparkpilot(&["tournament", "--trace", "flash-crowd", "--seeds", "2", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    // The learned ones too: the models built in, as there is no ./models here.
    for policy in [
        "fixed",
        "dexter",
        "seer",
        "keda",
        "spark-dra",
        "emr-performance-optimized",
        "emr-balanced",
        "emr-cost-optimized",
        "clairvoyant",
        "clairvoyant-schedule",
        "rl",
        "rl-meta",
    ] {
        assert!(
            stdout.lines().any(|l| l.split_whitespace().next() == Some(policy)),
            "{policy} missing from\n{stdout}"
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "policy,cost_usd,p95_ms,p99_ms,sla_violation_pct,sla_step_violation_pct,stability,cpu_util_pct,throughput_mb_s"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 9);
        let cost: f64 = fields[1].parse().unwrap();
        assert!(cost > 0.0, "{row}");
    }
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("clairvoyant"));
}

#[test]
fn seed_compat_tournament_runs_the_seed_baselines() {
    let dir = scratch("seed");
    let o =
        sparkpilot(&["tournament", "--arena", "seed-compat", "--seeds", "3", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let policies: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(policies, ["fixed", "dexter", "seer", "clairvoyant"]);
}

#[test]
fn a_user_trace_file_is_accepted() {
    let dir = scratch("user-trace");
    let trace = dir.join("mine.csv");
    std::fs::write(&trace, "time_s,events_per_s\n0,800\n120,3000\n240,800\n").unwrap();
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        trace.to_str().unwrap(),
        "--seeds",
        "1",
        "--policies",
        "fixed,spark-dra",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("trace ") && text(&o.stdout).contains("mine.csv"));
}

#[test]
fn a_users_own_dynamic_allocation_settings_run_as_a_baseline_and_bad_ones_are_named() {
    let dir = scratch("dra-settings");
    // The values a job's Spark UI lists under Environment, in the tournament's `:`-joined form.
    let mine = "spark-dra:executorAllocationRatio=0.5:schedulerBacklogTimeout=5s:executorIdleTimeout=2min";
    let policies = format!("emr-balanced,{mine}");
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        "step-burst",
        "--seeds",
        "1",
        "--policies",
        &policies,
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(dir.join("out/results.csv")).unwrap();
    let names: Vec<&str> = csv.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    assert_eq!(names, ["emr-balanced", mine]);
    let o = sparkpilot(&[
        "tournament",
        "--seeds",
        "1",
        "--policies",
        "spark-dra:executorAllocationRatio=2",
        "--out",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("executorAllocationRatio") && err.contains("outside (0, 1]"), "{err}");
}

#[test]
fn a_malformed_trace_names_the_file_and_line() {
    let dir = scratch("bad-trace");
    let trace = dir.join("broken.csv");
    std::fs::write(&trace, "time_s,events_per_s,bytes_per_event\n0,100,2500\n1,lots,2500\n").unwrap();
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        trace.to_str().unwrap(),
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{}:3:", trace.display())) && err.contains("lots"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_malformed_price_file_names_the_file_and_line() {
    let dir = scratch("bad-prices");
    let prices = dir.join("prices.toml");
    std::fs::write(&prices, "[regions.us-east-1.emr_serverless]\nvcpu_hour = 0.05\ngb_hour = oops\n")
        .unwrap();
    let o = sparkpilot(&[
        "tournament",
        "--prices",
        prices.to_str().unwrap(),
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{}:3:", prices.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_policy_and_trace_are_refused_clearly() {
    let dir = scratch("unknown");
    let o = sparkpilot(&[
        "tournament",
        "--policies",
        "fixed,magic",
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("`magic`") && err.contains("spark-dra"), "{err}");
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        "no-such-trace",
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no-such-trace"));
    let o = sparkpilot(&["tournament", "--cooldown-s=-5", "--seeds", "1", "--out", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("cooldown_s -5"), "{err}");
}

#[test]
fn traces_lists_every_builtin() {
    let o = sparkpilot(&["traces"]);
    assert!(o.status.success());
    let stdout = text(&o.stdout);
    for name in ["step-burst", "burst-4x", "rush-hour", "slow-ramp", "flash-crowd", "spike-30x"] {
        assert!(stdout.contains(name), "{name}");
    }
    let o = sparkpilot(&["traces", "--show", "step-burst"]);
    assert_eq!(text(&o.stdout).lines().count(), 901);
}

#[test]
fn train_to_onnx_to_tournament_smoke() {
    // Seconds, not minutes: a few thousand steps of each trainer, then the tournament runs the
    // exported models through the policy runtime beside the baselines.
    let dir = scratch("train-smoke");
    let models = dir.join("models");
    let m = models.to_str().unwrap();
    for (what, steps) in [("seed-compat", "4096"), ("scaling", "4096"), ("meta", "300")] {
        let o =
            sparkpilot(&["train", what, "--steps", steps, "--seed", "5", "--out", m, "--eval-seeds", "1"]);
        assert!(o.status.success(), "train {what}: {}", text(&o.stderr));
    }
    for file in [
        "seed-compat-ppo.onnx",
        "seed-compat-ppo.md",
        "scaling-ppo.onnx",
        "scaling-ppo.md",
        "meta-td3.onnx",
        "meta-td3.md",
    ] {
        assert!(models.join(file).exists(), "{file} missing");
    }
    let card = std::fs::read_to_string(models.join("scaling-ppo.md")).unwrap();
    assert!(card.contains("sparkpilot train scaling --steps 4096 --seed 5"), "{card}");
    // A second run would replace the model: refused unless asked for, and the model is untouched.
    let before = std::fs::read(models.join("scaling-ppo.onnx")).unwrap();
    let o = sparkpilot(&["train", "scaling", "--steps", "64", "--out", m]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("scaling-ppo.onnx exists") && text(&o.stderr).contains("--overwrite"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(models.join("scaling-ppo.onnx")).unwrap(), before);

    let out = dir.join("out");
    let o = sparkpilot(&[
        "tournament",
        "--arena",
        "seed-compat",
        "--seeds",
        "2",
        "--models",
        m,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).lines().any(|l| l.starts_with("rl ")), "{}", text(&o.stdout));
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        "flash-crowd",
        "--seeds",
        "1",
        "--models",
        m,
        "--scenario",
        "healthcare_critical",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(
        csv.lines().any(|l| l.starts_with("rl,")) && csv.lines().any(|l| l.starts_with("rl-meta,")),
        "{csv}"
    );
}

#[test]
fn a_model_of_the_wrong_shape_is_refused_by_the_tournament() {
    let dir = scratch("wrong-model");
    // A seed-compat model where the scaling model should be: [1,13] -> [1,4] fits, so use garbage.
    std::fs::write(dir.join("scaling-ppo.onnx"), b"not onnx").unwrap();
    let o = sparkpilot(&[
        "tournament",
        "--policies",
        "rl",
        "--seeds",
        "1",
        "--models",
        dir.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("scaling-ppo.onnx") && err.contains("not a valid ONNX model"), "{err}");
}

#[test]
fn outside_the_repository_the_tournament_uses_the_built_in_models_and_says_what_is_missing() {
    let dir = scratch("elsewhere");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sparkpilot")).args(args).current_dir(&dir).output().unwrap()
    };
    // Realistic arena: rl and rl-meta from the models built in (no ./models here).
    let o = run(&["tournament", "--trace", "step-burst", "--seeds", "1", "--policies", "fixed,rl,rl-meta"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("rl ")) && table.lines().any(|l| l.starts_with("rl-meta ")),
        "{table}"
    );
    // Seed-compat has no built-in model: the default line-up says it left `rl` out, and where it looked.
    let o = run(&["tournament", "--arena", "seed-compat", "--seeds", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("`rl` left out: no models/seed-compat-ppo.onnx"), "{}", text(&o.stderr));
    // Asked for by name with a --models that lacks it: one error naming the file, the cause once.
    let o = run(&["tournament", "--policies", "rl,fixed", "--seeds", "1", "--models", "nowhere"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("nowhere/scaling-ppo.onnx") && err.matches("No such file or directory").count() == 1,
        "{err}"
    );
    // An unknown name is named, with the known ones.
    let o = run(&["tournament", "--policies", "rl,foo", "--seeds", "1"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("foo") && text(&o.stderr).contains("rl-meta"), "{}", text(&o.stderr));
}

#[test]
fn invoke_runs_a_function_on_a_sample_event_in_process() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let event = root.join("events/burst-signal-msk.json");
    let out = sparkpilot(&["invoke", "burst-signal", event.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["result"]["burst"], true, "{v}");
    assert_eq!(v["published"][0]["topic"], "scaling-requests");
    assert_eq!(v["published"][0]["value"]["burst"], true);

    let dry = sparkpilot(&[
        "invoke",
        "scaling-decision",
        root.join("events/scaling-decision-spark-metrics.json").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["result"]["decision"]["dry_run"], true);
    assert_eq!(v["emr_application"]["capacity"]["max_vcpu"], 16, "dry run leaves the application as it was");

    let bad = sparkpilot(&["invoke", "no-such-function", event.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("unknown function \"no-such-function\""), "{}", text(&bad.stderr));
    let missing = sparkpilot(&["invoke", "burst-signal", "/nonexistent/event.json"]);
    assert!(
        text(&missing.stderr).starts_with("error: reading event /nonexistent/event.json"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn calibrate_job_fits_the_recorded_batches_of_the_real_job_and_names_bad_lines() {
    let recorded =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spark/calibration/standalone-2-cores.jsonl");
    let o = sparkpilot(&["calibrate", "--job", recorded.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let figure = |name: &str| -> (f64, f64) {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{stdout}"));
        let nums: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        (nums[0], nums[1])
    };
    // Measured on this machine kind: the overhead dominates, far above the assumed 200 ms.
    let (overhead, assumed) = figure("batch overhead, ms");
    assert_eq!(assumed, 200.0);
    assert!(overhead > 500.0 && overhead < 5_000.0, "{stdout}");
    let (per_event, assumed) = figure("CPU per event per core, ms");
    assert_eq!(assumed, 5.0);
    assert!(per_event.is_finite() && per_event < assumed, "{stdout}");

    let dir = scratch("calibrate-job");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"bytes_per_event\": 300, \"metrics\": {\"timestamp\": 1}}\n").unwrap();
    let o = sparkpilot(&["calibrate", "--job", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("bad.jsonl:1"), "{}", text(&o.stderr));
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    // `sparkpilot traces --show step-burst | head -0`: the reader is gone before the first line
    // (the output would fit a pipe's buffer, so the pipe is closed before anything is written).
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparkpilot"))
        .args(["traces", "--show", "step-burst"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn train_scaling_fine_tunes_on_a_users_csv_and_evaluates_its_held_out_tail() {
    let dir = scratch("train-own");
    // Twenty minutes of a user's history: a quiet base with two bursts, one in the tail.
    let mut csv = String::from("time_s,events_per_s,bytes_per_event\n");
    for t in 0..1_200 {
        let rate = if (300..420).contains(&t) || (1_000..1_100).contains(&t) { 9_000.0 } else { 1_500.0 };
        csv.push_str(&format!("{t},{rate},2500\n"));
    }
    let history = dir.join("history.csv");
    std::fs::write(&history, csv).unwrap();
    let h = history.to_str().unwrap();
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/scaling-ppo.onnx");
    let models = dir.join("models");
    let m = models.to_str().unwrap();
    let o = sparkpilot(&[
        "train",
        "scaling",
        "--steps",
        "2048",
        "--seed",
        "3",
        "--trace",
        h,
        "--holdout",
        "0.25",
        "--init",
        committed,
        "--out",
        m,
        "--eval-seeds",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let card = std::fs::read_to_string(models.join("scaling-ppo.md")).unwrap();
    assert!(card.contains(&format!("--trace {h} --holdout 0.25 --init {committed}")), "{card}");
    assert!(card.contains(&format!("### {h}, held-out last 300 s (the tail of a trained trace")), "{card}");
    assert!(card.contains("fine-tuned from"), "{card}");
    assert!(card.contains("greedy action spread"), "{card}");
    assert!(card.contains(&format!("| {h}, held-out last 300 s | ")), "the ablation row: {card}");
    // A retrain rewrites the generated card and keeps what was written by hand after it.
    std::fs::write(
        models.join("scaling-ppo.md"),
        format!("{card}\n## History and ablations\n\nkept by hand\n"),
    )
    .unwrap();
    let o = sparkpilot(&[
        "train",
        "scaling",
        "--steps",
        "1024",
        "--trace",
        h,
        "--holdout",
        "0.25",
        "--out",
        m,
        "--overwrite",
        "--eval-seeds",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let card = std::fs::read_to_string(models.join("scaling-ppo.md")).unwrap();
    assert!(
        card.ends_with("## History and ablations\n\nkept by hand\n") && !card.contains("fine-tuned from"),
        "{card}"
    );
    // The model it wrote runs in the tournament like any other.
    let results = dir.join("results");
    let o = sparkpilot(&[
        "tournament",
        "--trace",
        h,
        "--seeds",
        "1",
        "--models",
        m,
        "--policies",
        "rl,rule,fixed",
        "--out",
        results.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for policy in ["rl", "rule", "fixed"] {
        assert!(text(&o.stdout).lines().any(|l| l.split_whitespace().next() == Some(policy)), "{policy}");
    }

    // What cannot be trained on is refused before any training, naming what was wrong.
    let short = dir.join("short.csv");
    std::fs::write(&short, "time_s,events_per_s\n0,10\n1,10\n2,10\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--trace", short.to_str().unwrap()], "short.csv"),
        (&["--trace", h, "--holdout", "1.5"], "--holdout 1.5"),
        (&["--trace", "no-such-trace"], "no-such-trace"),
        (&["--trace", h, "--init", h], "history.csv"),
    ];
    for (args, named) in cases {
        let mut all = vec!["train", "scaling", "--steps", "64", "--out", m, "--overwrite"];
        all.extend_from_slice(args);
        let o = sparkpilot(&all);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(text(&o.stderr).contains(named), "{args:?}: {}", text(&o.stderr));
    }
    let o = sparkpilot(&["train", "meta", "--trace", h, "--out", m]);
    assert!(text(&o.stderr).contains("`train scaling` only"), "{}", text(&o.stderr));
}

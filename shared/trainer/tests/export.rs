//! Exported ONNX models run in the `policy` runtime, as deployed, and compute exactly
//! what the trained networks compute; wrong shapes and corrupt files are refused clearly.

use policy::{MetaPolicy, PolicyError, ScalingPolicy, SeedCompatPolicy};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::PathBuf;
use trainer::net::{Activation, Mlp};
use trainer::ppo::PpoAgent;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparkpilot-export-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn seed_agent(rng: &mut Xoshiro256PlusPlus) -> (PpoAgent, Vec<f32>) {
    let scale: Vec<f32> = sim::seed_compat::OBS_HIGH.iter().map(|&v| v as f32).collect();
    // Larger output gain than training's 0.01 so the argmax is not decided by rounding noise.
    let heads = trainer::seed_env::HEAD_DIMS;
    let mut agent = PpoAgent::new(13, &heads, Some(scale.clone()), &[64, 64], rng).unwrap();
    agent.actor = Mlp::new(&[13, 64, 64, heads.iter().sum()], Activation::Tanh, 1.0, rng).unwrap();
    (agent, scale)
}

#[test]
fn seed_compat_onnx_matches_the_network() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let (agent, scale) = seed_agent(&mut rng);
    let dir = scratch("seed");
    let path = dir.join("seed-compat-ppo.onnx");
    trainer::onnx::export_seed_relative(
        &path,
        &agent.actor,
        &trainer::seed_env::HEAD_DIMS,
        Some(&scale),
        &trainer::seed_env::decode(),
        "test",
    )
    .unwrap();
    let model = SeedCompatPolicy::load(&path).unwrap();
    for _ in 0..200 {
        let obs: [f64; 13] = std::array::from_fn(|i| rng.random::<f64>() * sim::seed_compat::OBS_HIGH[i]);
        let raw: Vec<f32> = obs.iter().map(|&v| v as f32).collect();
        let want = trainer::seed_env::seed_action(&agent.act_greedy(&raw).unwrap(), &raw).to_vec();
        let got = model.act(&obs).unwrap();
        assert_eq!(got.to_vec(), want, "obs {obs:?}");
    }
    // The graph sizes executors from obs 11: a value that is not a number is refused, not sized.
    let mut bad = [100.0; 13];
    bad[11] = f64::NAN;
    let err = model.act(&bad).unwrap_err().to_string();
    assert!(err.contains("observation 11"), "{err}");
}

#[test]
fn scaling_and_meta_exports_load_with_their_shapes() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    let dir = scratch("shapes");
    let arena = sim::Arena::embedded();
    let actor =
        Mlp::new(&[13, 64, 64, control::ACTION_DIMS.iter().sum()], Activation::Tanh, 1.0, &mut rng).unwrap();
    let scaling = dir.join("scaling-ppo.onnx");
    trainer::onnx::export_multidiscrete(&scaling, &actor, &control::ACTION_DIMS, None, "test").unwrap();
    let policy = ScalingPolicy::load(&scaling, arena.feature_builder()).unwrap();
    let features: [f32; 13] = std::array::from_fn(|_| rng.random::<f32>());
    let idx = policy.indices(&features).unwrap();
    assert!(idx.iter().zip(control::ACTION_DIMS).all(|(&i, d)| i >= 0 && (i as usize) < d));

    let meta_net = Mlp::new(&[7, 64, 64, 2], Activation::Relu, 1.0, &mut rng).unwrap();
    let meta_path = dir.join("meta-td3.onnx");
    trainer::onnx::export_sigmoid_actor(&meta_path, &meta_net, "test").unwrap();
    let meta = MetaPolicy::load(&meta_path).unwrap();
    let agent = trainer::td3::Td3Agent { actor: meta_net };
    let input: [f32; 7] = [0.0, 0.0, 1.0, 0.0, 0.5, 0.1, 0.3];
    let (a, b) = meta.weights(&input).unwrap();
    let want = agent.act(&input).unwrap();
    assert!((a - want[0] as f64).abs() < 1e-5 && (b - want[1] as f64).abs() < 1e-5);

    // A model of the wrong shape is refused, naming what does not match.
    let err = MetaPolicy::load(&scaling).unwrap_err();
    assert!(matches!(err, PolicyError::Shape { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("scaling-ppo.onnx") && text.contains("input"), "{text}");
    let err = SeedCompatPolicy::load(&meta_path).unwrap_err().to_string();
    assert!(err.contains("meta-td3.onnx") && err.contains("expected"), "{err}");
}

#[test]
fn corrupt_missing_and_unknown_files_are_refused() {
    let dir = scratch("corrupt");
    let bad = dir.join("garbage.onnx");
    std::fs::write(&bad, b"this is not a protobuf at all \xff\xfe").unwrap();
    let err = SeedCompatPolicy::load(&bad).unwrap_err();
    assert!(matches!(err, PolicyError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("garbage.onnx"));
    let truncated = dir.join("truncated.onnx");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let (agent, scale) = seed_agent(&mut rng);
    trainer::onnx::export_seed_relative(
        &truncated,
        &agent.actor,
        &trainer::seed_env::HEAD_DIMS,
        Some(&scale),
        &trainer::seed_env::decode(),
        "test",
    )
    .unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(SeedCompatPolicy::load(&truncated).is_err());
    let err = SeedCompatPolicy::load(&dir.join("absent.onnx")).unwrap_err().to_string();
    assert!(err.contains("absent.onnx"), "{err}");
    let err = SeedCompatPolicy::load(&dir.join("model.pt")).unwrap_err().to_string();
    assert!(err.contains("unknown format"), "{err}");
}

#[test]
fn a_short_ppo_run_trains_and_exports() {
    let dir = scratch("smoke");
    let report = trainer::train_seed_compat(4_096, 3, &dir, &mut |_| {}).unwrap();
    assert!(report.final_return.is_finite());
    let model = SeedCompatPolicy::load(&dir.join("seed-compat-ppo.onnx")).unwrap();
    let (_, obs) = sim::seed_compat::SeedEnv::reset(1);
    assert!(model.act(&obs).is_ok());
}

#[test]
fn a_scaling_export_reads_back_as_the_network_it_came_from() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let heads = control::ACTION_DIMS;
    let actor =
        Mlp::new(&[control::FEATURES, 64, 64, heads.iter().sum()], Activation::Tanh, 1.0, &mut rng).unwrap();
    let dir = scratch("import");
    let path = dir.join("scaling-ppo.onnx");
    trainer::onnx::export_multidiscrete(&path, &actor, &heads, None, "test").unwrap();
    let layers = trainer::onnx::import_multidiscrete(&path, &heads).unwrap();
    let ours: Vec<_> = actor.hidden.iter().chain(std::iter::once(&actor.out)).collect();
    assert_eq!(layers.len(), ours.len());
    for (read, layer) in layers.iter().zip(ours) {
        let (w, b) = layer.weights().unwrap();
        assert_eq!((read.input, read.output), layer.dims());
        assert_eq!(read.w, w);
        assert_eq!(read.b, b);
    }
    // The committed policy reads back too, with the shapes the trainer builds.
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/scaling-ppo.onnx");
    let layers = trainer::onnx::import_multidiscrete(&committed, &heads).unwrap();
    let shapes: Vec<(usize, usize)> = layers.iter().map(|l| (l.input, l.output)).collect();
    assert_eq!(shapes, vec![(control::FEATURES, 64), (64, 64), (64, heads.iter().sum())]);
    // Not a policy of this layout, or not ONNX at all: refused, naming the file.
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\x0a\xff\xff\xff not protobuf").unwrap();
    for bad in [garbage, dir.join("missing.onnx")] {
        let err = trainer::onnx::import_multidiscrete(&bad, &heads).unwrap_err().to_string();
        assert!(err.contains(bad.to_str().unwrap()), "{err}");
    }
}

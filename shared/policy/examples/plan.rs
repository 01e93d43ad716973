//! Print the plan the policy runtime makes of a scaling model (13 inputs, 4 actions) and time its
//! runs: where a decision's microseconds go.
//!
//! `cargo build --release --workspace --examples && target/release/examples/plan models/scaling-ppo.onnx [RUNS]`

use policy::{Elem, PolicyModel, TensorSpec};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: plan MODEL.onnx [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = match args.next().map(|r| r.parse()) {
        None => 200_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: RUNS must be a positive whole number");
            std::process::exit(2);
        }
    };
    let model = match PolicyModel::load(
        std::path::Path::new(&path),
        TensorSpec::new(&[1, 13], Elem::F32),
        TensorSpec::new(&[1, 4], Elem::I64),
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", model.describe_plan());
    let input = [0.3f32; 13];
    let mut times = Vec::with_capacity(runs / 1000);
    for _ in 0..runs / 1000 {
        let t = Instant::now();
        for _ in 0..1000 {
            if let Err(e) = model.run(std::hint::black_box(&input)).map(std::hint::black_box) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("median {:.2} us per run ({} runs)", times[times.len() / 2], runs);
}

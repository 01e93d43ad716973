//! The policy runtime against tract, a general ONNX runtime: the committed models and a graph of
//! every other operator the runtime implements give the same outputs on thousands of inputs; and
//! damaged model files are refused with an error, never a panic.

use policy::pb::{self, attribute_type, data_type};
use policy::{Elem, PolicyModel, TensorSpec};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

type Reference = std::sync::Arc<TypedRunnableModel>;

fn reference(bytes: &[u8], input: &[usize]) -> Reference {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), input.to_vec())))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract loads the model")
}

fn reference_run(plan: &Reference, shape: &[usize], input: &[f32]) -> (Vec<usize>, Vec<f64>) {
    let t = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), input.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(t).into())).unwrap().remove(0).into_tensor();
    let values = match out.datum_type() {
        DatumType::I64 => out.to_plain_array_view::<i64>().unwrap().iter().map(|&v| v as f64).collect(),
        _ => out.to_plain_array_view::<f32>().unwrap().iter().map(|&v| v as f64).collect(),
    };
    (out.shape().to_vec(), values)
}

fn ours(model: &PolicyModel, input: &[f32]) -> (Vec<usize>, Vec<f64>) {
    let out = model.run(input).unwrap();
    let values = match out.as_i64() {
        Some(v) => v.iter().map(|&v| v as f64).collect(),
        None => out.as_f32().unwrap().iter().map(|&v| v as f64).collect(),
    };
    (out.shape().to_vec(), values)
}

/// Run `runs` random inputs (each value drawn from `range`) through both runtimes.
fn compare(name: &str, bytes: &[u8], input: &[usize], output: TensorSpec, range: (f32, f32), runs: usize) {
    let model = PolicyModel::from_bytes(Path::new(name), bytes, TensorSpec::new(input, Elem::F32), output)
        .unwrap_or_else(|e| panic!("{e}"));
    let tract = reference(bytes, input);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let n: usize = input.iter().product();
    for _ in 0..runs {
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(range.0..range.1)).collect();
        let (shape, got) = ours(&model, &x);
        let (want_shape, want) = reference_run(&tract, input, &x);
        assert_eq!(shape, want_shape, "{name}: input {x:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{name}: {got:?} against tract's {want:?} on {x:?}"
            );
        }
    }
}

#[test]
fn the_committed_models_decide_as_tract_does() {
    compare(
        "scaling-ppo",
        models::SCALING_PPO,
        &[1, 13],
        TensorSpec::new(&[1, 4], Elem::I64),
        (-1.0, 3.0),
        3_000,
    );
    compare("meta-td3", models::META_TD3, &[1, 7], TensorSpec::new(&[1, 2], Elem::F32), (0.0, 1.0), 3_000);
    let seed = std::fs::read(models().join("seed-compat-ppo.onnx")).unwrap();
    // The seed's observations run to a few thousand (its load), so its level tables and sizes are hit.
    compare("seed-compat-ppo", &seed, &[1, 13], TensorSpec::new(&[1, 4], Elem::I64), (0.0, 2_000.0), 3_000);
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: attribute_type::INT, i, ..Default::default() }
}

fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: attribute_type::FLOAT, f, ..Default::default() }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], rng: &mut Xoshiro256PlusPlus) -> pb::TensorProto {
    let n = dims.iter().product::<i64>() as usize;
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        // As raw little-endian bytes, the way most exporters store weights.
        raw_data: (0..n).flat_map(|_| rng.random_range(-1.0f32..1.0).to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: i32, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d)) }).collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
    }
}

/// A network as another exporter might write it: Gemm with transposed weights, Softmax, Exp,
/// Sigmoid, Clip, Flatten, Concat, Gather, Cast, Sub, Mul, Floor, a Constant node and a dead branch.
fn other_operators() -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let nodes = vec![
        node("Gemm", &["x", "w1", "b1"], "h", vec![attr_int("transB", 1), attr_float("alpha", 0.5)]),
        node("Sigmoid", &["h"], "s", vec![]),
        node("Exp", &["s"], "e", vec![]),
        node(
            "Constant",
            &[],
            "lo",
            vec![pb::AttributeProto {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(pb::TensorProto {
                    data_type: data_type::FLOAT,
                    float_data: vec![1.2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        node("Clip", &["e", "lo", ""], "c", vec![]),
        node("Sub", &["c", "x8"], "d", vec![]),
        node("Softmax", &["d"], "p", vec![attr_int("axis", 1)]),
        node("Gather", &["p", "pick"], "g", vec![attr_int("axis", 1)]),
        node("Floor", &["x8"], "f", vec![]),
        node("Mul", &["f", "half"], "fh", vec![]),
        node("Concat", &["g", "fh"], "cat", vec![attr_int("axis", 1)]),
        node("Reshape", &["cat", "shape"], "r", vec![]),
        node("Flatten", &["r"], "out", vec![attr_int("axis", 1)]),
        node("Cast", &["out"], "unused", vec![attr_int("to", 7)]),
    ];
    let graph = pb::GraphProto {
        node: nodes,
        name: "others".into(),
        initializer: vec![
            floats("w1", &[8, 5], &mut rng),
            floats("b1", &[8], &mut rng),
            floats("x8", &[1, 8], &mut rng),
            ints("pick", &[7, 0, 3]),
            floats("half", &[], &mut rng),
            ints("shape", &[1, -1, 1]),
        ],
        input: vec![value_info("x", data_type::FLOAT, &[1, 5])],
        output: vec![value_info("out", data_type::FLOAT, &[1, 11])],
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn the_other_operators_compute_as_in_tract() {
    let bytes = other_operators();
    compare("others", &bytes, &[1, 5], TensorSpec::new(&[1, 11], Elem::F32), (-3.0, 3.0), 500);
    let model = PolicyModel::from_bytes(
        Path::new("others"),
        &bytes,
        TensorSpec::new(&[1, 5], Elem::F32),
        TensorSpec::new(&[1, 11], Elem::F32),
    )
    .unwrap();
    // The Cast hangs off the output and is never computed.
    assert!(!model.describe_plan().contains("Cast"), "{}", model.describe_plan());
}

#[test]
fn unsupported_operators_and_opsets_are_named() {
    let mut model = pb::ModelProto::decode(models::META_TD3).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let activation = graph.node.iter_mut().find(|n| n.op_type == "Relu" || n.op_type == "Tanh").unwrap();
    activation.op_type = "LeakyRelu".into();
    let err = load_meta(&model.encode_to_vec()).unwrap_err().to_string();
    assert!(err.contains("LeakyRelu") && err.contains("MatMul, Gemm"), "{err}");
    let mut old = pb::ModelProto::decode(models::META_TD3).unwrap();
    old.opset_import[0].version = 9;
    let err = load_meta(&old.encode_to_vec()).unwrap_err().to_string();
    assert!(err.contains("operator set 9"), "{err}");
    let mut cut = pb::ModelProto::decode(models::META_TD3).unwrap();
    cut.graph.as_mut().unwrap().initializer.pop();
    let err = load_meta(&cut.encode_to_vec()).unwrap_err().to_string();
    assert!(err.contains("is used but is not"), "{err}");
}

fn load_meta(bytes: &[u8]) -> Result<PolicyModel, policy::PolicyError> {
    PolicyModel::from_bytes(
        Path::new("meta"),
        bytes,
        TensorSpec::new(&[1, 7], Elem::F32),
        TensorSpec::new(&[1, 2], Elem::F32),
    )
}

/// Truncations and flipped bytes anywhere in the file: each load returns a model or an error.
#[test]
fn damaged_files_never_panic() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let original = models::SCALING_PPO;
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..2_000 {
        let mut bytes = original.to_vec();
        if round % 4 == 0 {
            bytes.truncate(rng.random_range(0..original.len()));
        } else {
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
        }
        let result = PolicyModel::from_bytes(
            Path::new("damaged"),
            &bytes,
            TensorSpec::new(&[1, 13], Elem::F32),
            TensorSpec::new(&[1, 4], Elem::I64),
        );
        match result {
            Ok(model) => {
                loaded += 1;
                // A model that loads runs on anything of the right length.
                let _ = model.run(&[f32::NAN; 13]);
            }
            Err(e) => {
                refused += 1;
                assert!(e.to_string().contains("damaged"), "{e}");
            }
        }
    }
    assert!(loaded > 0 && refused > 0, "{loaded} loaded, {refused} refused");
}

//! ONNX export of the trained networks, written with the protobuf types tract itself reads
//! (`tract_onnx::pb`), opset 13, so the files run unchanged in other ONNX runtimes.

use crate::net::{Activation, Linear, Mlp};
use crate::TrainError;
use prost::Message;
use std::path::Path;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, tensor_shape_proto::Dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

const OPSET: i64 = 13;
const IR_VERSION: i64 = 8;

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

fn value_info(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }).collect(),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: elem as i32, shape: Some(shape) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    fn constant(&mut self, stem: &str, dims: &[i64], data: Vec<f32>) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: data,
            ..Default::default()
        });
        name
    }

    fn constant_i64(&mut self, stem: &str, data: Vec<i64>) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: data,
            ..Default::default()
        });
        name
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, &out, attrs);
        out
    }

    fn node_to(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            name,
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    fn dense(&mut self, x: &str, w: &[f32], b: &[f32], input: usize, output: usize) -> String {
        let w = self.constant("weight", &[input as i64, output as i64], w.to_vec());
        let b = self.constant("bias", &[output as i64], b.to_vec());
        let mm = self.node("MatMul", &[x, &w], vec![]);
        self.node("Add", &[&mm, &b], vec![])
    }

    fn layer(&mut self, x: &str, layer: &Linear) -> Result<String, TrainError> {
        let (w, b) = layer.weights()?;
        let (i, o) = layer.dims();
        Ok(self.dense(x, &w, &b, i, o))
    }

    fn trunk(&mut self, x: &str, mlp: &Mlp) -> Result<String, TrainError> {
        let mut h = x.to_string();
        for layer in &mlp.hidden {
            let z = self.layer(&h, layer)?;
            h = match mlp.activation {
                Activation::Tanh => self.node("Tanh", &[&z], vec![]),
                Activation::Relu => self.node("Relu", &[&z], vec![]),
            };
        }
        Ok(h)
    }

    fn write(self, path: &Path, doc: &str, input: ValueInfoProto, output: ValueInfoProto) -> Result<(), TrainError> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "sparkpilot-trainer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(GraphProto {
                name: "policy".into(),
                node: self.nodes,
                initializer: self.initializers,
                input: vec![input],
                output: vec![output],
                ..Default::default()
            }),
            ..Default::default()
        };
        std::fs::write(path, model.encode_to_vec()).map_err(|source| TrainError::Write { path: path.to_path_buf(), source })
    }
}

/// Export a multi-discrete actor: `input` [1, n] float (divided by `input_scale` if given) through the
/// MLP's hidden layers, then every head at once: the output layer's columns are laid out as `heads`
/// rows of `width` (the widest head) logits, the columns a narrower head lacks carrying weight 0 and
/// bias -1e30, so that one MatMul, one Reshape to [1, heads, width] and one ArgMax over the last
/// axis give `actions` [1, heads] int64. The same argmax per head as separate heads would give
/// (padding never wins, ties go to the first index in both), in a third of the operators: at this
/// size tract's time goes to operators, not arithmetic.
pub fn export_multidiscrete(path: &Path, mlp: &Mlp, head_dims: &[usize], input_scale: Option<&[f32]>, doc: &str) -> Result<(), TrainError> {
    let (n_in, _) = mlp.hidden.first().map(|l| l.dims()).unwrap_or(mlp.out.dims());
    let (hidden, total) = mlp.out.dims();
    if head_dims.iter().sum::<usize>() != total || head_dims.contains(&0) {
        return Err(TrainError::Invalid(format!("heads {head_dims:?} do not add up to the output layer's {total}")));
    }
    let mut g = Graph::default();
    let mut x = "input".to_string();
    if let Some(scale) = input_scale {
        let s = g.constant("input_scale", &[1, scale.len() as i64], scale.to_vec());
        x = g.node("Div", &[&x, &s], vec![]);
    }
    let h = g.trunk(&x, mlp)?;
    let (w, b) = mlp.out.weights()?;
    let heads = head_dims.len();
    let width = head_dims.iter().copied().max().unwrap_or(1);
    let mut wp = vec![0.0f32; hidden * heads * width];
    let mut bp = vec![-1e30f32; heads * width];
    let mut offset = 0;
    for (k, &d) in head_dims.iter().enumerate() {
        for j in 0..d {
            for r in 0..hidden {
                wp[r * heads * width + k * width + j] = w[r * total + offset + j];
            }
            bp[k * width + j] = b[offset + j];
        }
        offset += d;
    }
    let logits = g.dense(&h, &wp, &bp, hidden, heads * width);
    let shape = g.constant_i64("heads_shape", vec![1, heads as i64, width as i64]);
    let grid = g.node("Reshape", &[&logits, &shape], vec![]);
    g.node_to("ArgMax", &[&grid], "actions", vec![int_attr("axis", 2), int_attr("keepdims", 0)]);
    let input = value_info("input", DataType::Float, &[1, n_in as i64]);
    let output = value_info("actions", DataType::Int64, &[1, heads as i64]);
    g.write(path, doc, input, output)
}

/// Export a deterministic continuous actor with a sigmoid output: `input` [1, n] → `weights` [1, m]
/// in 0..1.
pub fn export_sigmoid_actor(path: &Path, mlp: &Mlp, doc: &str) -> Result<(), TrainError> {
    let (n_in, _) = mlp.hidden.first().map(|l| l.dims()).unwrap_or(mlp.out.dims());
    let (_, n_out) = mlp.out.dims();
    let mut g = Graph::default();
    let h = g.trunk("input", mlp)?;
    let z = g.layer(&h, &mlp.out)?;
    g.node_to("Sigmoid", &[&z], "weights", vec![]);
    let input = value_info("input", DataType::Float, &[1, n_in as i64]);
    let output = value_info("weights", DataType::Float, &[1, n_out as i64]);
    g.write(path, doc, input, output)
}

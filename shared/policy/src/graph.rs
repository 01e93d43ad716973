//! An ONNX graph read into a plan: the nodes the output needs, in an order where every value is
//! computed before it is used, with constants decoded once. Running the plan is one pass over it.

use crate::ops::{Attributes, Binary, Op, SUPPORTED};
use crate::pb::{self, attribute_type, data_type, type_proto, ModelProto, NodeProto, TensorProto};
use crate::tensor::{Elem, Tensor, Values};
use prost::Message;
use std::collections::HashMap;

/// ONNX opsets whose operators this runtime implements with their semantics (Clip's bounds as
/// inputs from 11, Softmax on one axis from 13).
const OPSETS: std::ops::RangeInclusive<i64> = 13..=22;

/// Where a step's input comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Input,
    Constant(usize),
    Step(usize),
    /// An optional input left out (an empty name).
    Absent,
}

#[derive(Debug)]
struct Step {
    op: Op,
    inputs: Vec<Source>,
    /// ONNX's operator name and the node's own name, for messages.
    op_type: String,
    name: String,
}

/// What the file declares its input or output to be (a dimension may be symbolic: `None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declared {
    pub name: String,
    pub elem: Option<i32>,
    pub dims: Option<Vec<Option<i64>>>,
}

/// A model ready to run.
#[derive(Debug)]
pub(crate) struct Plan {
    constants: Vec<Tensor>,
    steps: Vec<Step>,
    output: Source,
    pub input: Declared,
    pub output_declared: Declared,
}

/// Why a file could not become a plan.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// Not an ONNX model, or one whose parts do not fit together.
    Corrupt(String),
    /// A valid model using something this runtime does not implement.
    Unsupported(String),
    /// Not one input and one output.
    Count { what: &'static str, found: usize },
}

struct NodeAttributes<'a>(&'a [pb::AttributeProto]);

impl Attributes for NodeAttributes<'_> {
    fn int(&self, name: &str) -> Option<i64> {
        self.0.iter().find(|a| a.name == name && a.r#type == attribute_type::INT).map(|a| a.i)
    }

    fn float(&self, name: &str) -> Option<f32> {
        self.0.iter().find(|a| a.name == name && a.r#type == attribute_type::FLOAT).map(|a| a.f)
    }
}

/// Values of a tensor as stored in the file: the typed field, or little-endian `raw_data`. Also
/// what the trainer reads a model's weights back with, so one reader knows the ways a file stores
/// them.
pub fn tensor_of(t: &TensorProto) -> Result<Tensor, String> {
    let what = || format!("tensor `{}`", t.name);
    if t.data_location == 1 {
        return Err(format!("{} is stored in an external file", what()));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{} has dimension {d}", what())))
        .collect::<Result<Vec<_>, _>>()?;
    let raw = |width: usize| {
        if !t.raw_data.len().is_multiple_of(width) {
            return Err(format!("{} has {} raw bytes, not whole values", what(), t.raw_data.len()));
        }
        Ok(t.raw_data.chunks_exact(width))
    };
    let values = match t.data_type {
        data_type::FLOAT if t.raw_data.is_empty() => Values::F32(t.float_data.clone()),
        data_type::FLOAT => {
            Values::F32(raw(4)?.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        data_type::DOUBLE if t.raw_data.is_empty() => {
            Values::F32(t.double_data.iter().map(|&v| v as f32).collect())
        }
        data_type::DOUBLE => {
            Values::F32(raw(8)?.map(|b| f64::from_le_bytes(std::array::from_fn(|i| b[i])) as f32).collect())
        }
        data_type::INT64 if t.raw_data.is_empty() => Values::I64(t.int64_data.clone()),
        data_type::INT64 => {
            Values::I64(raw(8)?.map(|b| i64::from_le_bytes(std::array::from_fn(|i| b[i]))).collect())
        }
        data_type::INT32 if t.raw_data.is_empty() => {
            Values::I64(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        data_type::INT32 => {
            Values::I64(raw(4)?.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect())
        }
        other => {
            return Err(format!(
                "{} is {} (this runtime reads FLOAT, DOUBLE, INT32 and INT64)",
                what(),
                data_type::name(other)
            ))
        }
    };
    Tensor::new(shape, values).map_err(|e| format!("{}: {e}", what()))
}

fn declared(v: &pb::ValueInfoProto) -> Declared {
    let tensor = v.r#type.as_ref().and_then(|t| t.value.as_ref()).map(|type_proto::Value::TensorType(t)| t);
    let dims = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect()
    });
    Declared { name: v.name.clone(), elem: tensor.map(|t| t.elem_type), dims }
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// The graph's nodes and constants while the plan is built.
struct Builder<'a> {
    producers: HashMap<&'a str, usize>,
    nodes: &'a [NodeProto],
    input: &'a str,
    constants: Vec<Tensor>,
    constant_of: HashMap<&'a str, usize>,
    steps: Vec<Step>,
    step_of: HashMap<usize, Source>,
}

impl<'a> Builder<'a> {
    /// The source of value `name`, planning the nodes it needs first (depth first, iteratively).
    fn source(&mut self, name: &'a str) -> Result<Source, LoadError> {
        if let Some(s) = self.known(name) {
            return Ok(s);
        }
        // (node, whether its inputs have been pushed)
        let mut stack = vec![(self.producer(name)?, false)];
        let mut open = vec![false; self.nodes.len()];
        while let Some((n, expanded)) = stack.pop() {
            if self.step_of.contains_key(&n) {
                continue;
            }
            let node = &self.nodes[n];
            if expanded {
                let source = self.plan_node(node)?;
                self.step_of.insert(n, source);
                continue;
            }
            if open[n] {
                return Err(LoadError::Corrupt(format!(
                    "node `{}` depends on its own output (a cycle)",
                    node.name
                )));
            }
            open[n] = true;
            stack.push((n, true));
            for input in &node.input {
                if self.known(input).is_none() {
                    let p = self.producer(input)?;
                    if open[p] && !self.step_of.contains_key(&p) {
                        return Err(LoadError::Corrupt(format!(
                            "node `{}` depends on its own output (a cycle)",
                            self.nodes[p].name
                        )));
                    }
                    stack.push((p, false));
                }
            }
        }
        self.known(name).ok_or_else(|| LoadError::Corrupt(format!("nothing computes `{name}`")))
    }

    fn known(&self, name: &str) -> Option<Source> {
        if name.is_empty() {
            return Some(Source::Absent);
        }
        if name == self.input {
            return Some(Source::Input);
        }
        if let Some(&c) = self.constant_of.get(name) {
            return Some(Source::Constant(c));
        }
        self.producers.get(name).and_then(|n| self.step_of.get(n)).copied()
    }

    fn producer(&self, name: &str) -> Result<usize, LoadError> {
        self.producers.get(name).copied().ok_or_else(|| {
            LoadError::Corrupt(format!(
                "`{name}` is used but is not the input, an initializer or any node's output"
            ))
        })
    }

    fn plan_node(&mut self, node: &NodeProto) -> Result<Source, LoadError> {
        let label = format!("node `{}` ({})", node.name, node.op_type);
        if !is_default_domain(&node.domain) {
            return Err(LoadError::Unsupported(format!("{label} is in operator domain `{}`", node.domain)));
        }
        if node.output.len() != 1 {
            return Err(LoadError::Unsupported(format!("{label} has {} outputs", node.output.len())));
        }
        if node.op_type == "Constant" {
            let value = node
                .attribute
                .iter()
                .find(|a| a.name == "value" && a.r#type == attribute_type::TENSOR)
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| {
                    LoadError::Unsupported(format!("{label}: only a `value` tensor is supported"))
                })?;
            let t = tensor_of(value).map_err(|e| LoadError::Corrupt(format!("{label}: {e}")))?;
            self.constants.push(t);
            return Ok(Source::Constant(self.constants.len() - 1));
        }
        let parsed = Op::parse(&node.op_type, &NodeAttributes(&node.attribute))
            .map_err(|e| LoadError::Unsupported(format!("{label}: {e}")))?;
        let Some((op, least, most)) = parsed else {
            return Err(LoadError::Unsupported(format!(
                "{label}: the operator is not one this runtime runs ({SUPPORTED})"
            )));
        };
        let n = node.input.len();
        if n < least || n > most {
            return Err(LoadError::Corrupt(format!("{label} has {n} inputs")));
        }
        let mut inputs = Vec::with_capacity(n);
        for name in &node.input {
            let source = self
                .known(name)
                .ok_or_else(|| LoadError::Corrupt(format!("{label}: `{name}` is not computed before it")))?;
            if matches!(source, Source::Absent) && inputs.len() < least {
                return Err(LoadError::Corrupt(format!("{label}: required input {} is empty", inputs.len())));
            }
            inputs.push(source);
        }
        self.steps.push(Step { op, inputs, op_type: node.op_type.clone(), name: node.name.clone() });
        Ok(Source::Step(self.steps.len() - 1))
    }
}

/// Every MatMul by a constant matrix whose only use is an Add of a constant bias of one row
/// ([n]) becomes one [`Op::Dense`] step; the steps are renumbered.
fn fuse_dense(steps: Vec<Step>, constants: &[Tensor], output: Source) -> (Vec<Step>, Source) {
    let mut uses = vec![0usize; steps.len()];
    for s in steps.iter().flat_map(|s| &s.inputs).chain(std::iter::once(&output)) {
        if let Source::Step(i) = *s {
            uses[i] += 1;
        }
    }
    let matrix = |s: Source| matches!(s, Source::Constant(c) if constants[c].shape().len() == 2);
    let mut dense: Vec<Option<(Source, Source, Source)>> = vec![None; steps.len()];
    let mut dead = vec![false; steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let (Op::Binary(Binary::Add), [p, q]) = (&step.op, &step.inputs[..]) else { continue };
        let ((Source::Step(m), Source::Constant(c)) | (Source::Constant(c), Source::Step(m))) = (*p, *q)
        else {
            continue;
        };
        let producer = &steps[m];
        let (Op::MatMul, [x, w]) = (&producer.op, &producer.inputs[..]) else { continue };
        let bias = &constants[c];
        let n = match *w {
            Source::Constant(wc) => constants[wc].shape().get(1).copied(),
            _ => None,
        };
        if uses[m] == 1
            && matrix(*w)
            && bias.shape().len() == 1
            && Some(bias.shape()[0]) == n
            && bias.as_f32().is_some()
        {
            dense[i] = Some((*x, *w, Source::Constant(c)));
            dead[m] = true;
        }
    }
    let mut index = vec![0usize; steps.len()];
    let mut kept = Vec::with_capacity(steps.len());
    let renumber = |s: Source, index: &[usize]| match s {
        Source::Step(i) => Source::Step(index[i]),
        other => other,
    };
    for (i, mut step) in steps.into_iter().enumerate() {
        if dead[i] {
            continue;
        }
        if let Some((x, w, b)) = dense[i] {
            step.op = Op::Dense;
            step.op_type = "MatMul+Add".into();
            step.inputs = vec![x, w, b];
        }
        step.inputs = step.inputs.iter().map(|&s| renumber(s, &index)).collect();
        index[i] = kept.len();
        kept.push(step);
    }
    (kept, renumber(output, &index))
}

impl Plan {
    /// Read an ONNX file's bytes into a plan.
    pub(crate) fn from_onnx(bytes: &[u8]) -> Result<Plan, LoadError> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| LoadError::Corrupt(format!("not an ONNX protobuf: {e}")))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| is_default_domain(&o.domain))
            .map(|o| o.version)
            .ok_or_else(|| LoadError::Corrupt("no ONNX operator set is imported".into()))?;
        if !OPSETS.contains(&opset) {
            return Err(LoadError::Unsupported(format!(
                "ONNX operator set {opset} (this runtime runs {} to {})",
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        let graph =
            model.graph.as_ref().ok_or_else(|| LoadError::Corrupt("the model has no graph".into()))?;
        let mut constants = Vec::with_capacity(graph.initializer.len());
        let mut constant_of = HashMap::new();
        for t in &graph.initializer {
            constants.push(tensor_of(t).map_err(LoadError::Corrupt)?);
            constant_of.insert(t.name.as_str(), constants.len() - 1);
        }
        // Files of IR version 3 and older also list their initializers as inputs.
        let inputs: Vec<_> =
            graph.input.iter().filter(|i| !constant_of.contains_key(i.name.as_str())).collect();
        let [input] = inputs[..] else {
            return Err(LoadError::Count { what: "the number of inputs", found: inputs.len() });
        };
        let [output] = &graph.output[..] else {
            return Err(LoadError::Count { what: "the number of outputs", found: graph.output.len() });
        };
        let mut producers = HashMap::new();
        for (n, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                if producers.insert(out.as_str(), n).is_some() || constant_of.contains_key(out.as_str()) {
                    return Err(LoadError::Corrupt(format!("`{out}` is computed twice")));
                }
            }
        }
        let mut b = Builder {
            producers,
            nodes: &graph.node,
            input: &input.name,
            constants,
            constant_of,
            steps: Vec::new(),
            step_of: HashMap::new(),
        };
        let out = b.source(&output.name)?;
        let (steps, output_source) = fuse_dense(b.steps, &b.constants, out);
        Ok(Plan {
            constants: b.constants,
            steps,
            output: output_source,
            input: declared(input),
            output_declared: declared(output),
        })
    }

    /// Run the plan on `input` (its shape and type are the caller's to check).
    pub(crate) fn run(&self, input: &Tensor) -> Result<Tensor, String> {
        let mut results: Vec<Tensor> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let result = {
                let value = |s: &Source| match *s {
                    Source::Input => Some(input),
                    Source::Constant(c) => Some(&self.constants[c]),
                    Source::Step(i) => Some(&results[i]),
                    Source::Absent => None,
                };
                // Most operators take at most three inputs: no allocation for their list.
                let mut few = [None; 3];
                let many: Vec<Option<&Tensor>>;
                let args = if step.inputs.len() <= few.len() {
                    for (slot, s) in few.iter_mut().zip(&step.inputs) {
                        *slot = value(s);
                    }
                    &few[..step.inputs.len()]
                } else {
                    many = step.inputs.iter().map(value).collect();
                    &many[..]
                };
                step.op.eval(args).map_err(|e| format!("node `{}` ({}): {e}", step.name, step.op_type))?
            };
            results.push(result);
        }
        Ok(match self.output {
            Source::Input | Source::Absent => input.clone(),
            Source::Constant(c) => self.constants[c].clone(),
            Source::Step(i) => results.swap_remove(i),
        })
    }

    /// One line per step: operator, node name and its inputs.
    pub(crate) fn describe(&self) -> String {
        let name = |s: &Source| match *s {
            Source::Input => "input".to_string(),
            Source::Constant(c) => format!("const{c}{:?}", self.constants[c].shape()),
            Source::Step(i) => format!("#{i}"),
            Source::Absent => "-".to_string(),
        };
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let args: Vec<String> = s.inputs.iter().map(name).collect();
                format!("#{i} {} `{}` ({})", s.op_type, s.name, args.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The element type a declared ONNX type number stands for, if one this runtime has.
pub(crate) fn elem_of(code: i32) -> Option<Elem> {
    match code {
        data_type::FLOAT => Some(Elem::F32),
        data_type::INT64 => Some(Elem::I64),
        _ => None,
    }
}

//! ONNX export of the trained networks, written with the protobuf messages the `policy` runtime
//! reads (`policy::pb`, ONNX's own field numbers), opset 13, so the files run unchanged in other
//! ONNX runtimes too (the policy crate's tests run them in tract).

use crate::net::{Activation, Linear, Mlp};
use crate::TrainError;
use policy::pb::{
    attribute_type, data_type, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use prost::Message;
use std::path::Path;

const OPSET: i64 = 13;
const IR_VERSION: i64 = 8;

/// The output layer's columns in the per-head layout [`export_multidiscrete`] writes: for every
/// action of every head, its column among the heads' packed logits (sum of `head_dims`) and its
/// column among `heads x width` padded ones. Export and read-back both walk this.
fn head_columns(head_dims: &[usize], width: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let offsets = head_dims.iter().scan(0, |next, &d| {
        let start = *next;
        *next += d;
        Some(start)
    });
    head_dims
        .iter()
        .zip(offsets)
        .enumerate()
        .flat_map(move |(k, (&d, start))| (0..d).map(move |j| (start + j, k * width + j)))
}

/// What [`Graph::greedy_heads`] wrote.
struct GreedyHeads {
    n_in: usize,
    /// Logits per head are padded to this width.
    width: usize,
    /// Argmax per head: [1, heads] int64.
    picked: String,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INT, i: value, ..Default::default() }
}

fn value_info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)) }).collect(),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(shape),
            })),
        }),
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
            data_type: data_type::FLOAT,
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
            data_type: data_type::INT64,
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

    /// The actor's greedy choice per head (see [`export_multidiscrete`]), written to `output` if
    /// given; returns the input width and the name of the [1, heads] int64 result.
    fn greedy_heads(
        &mut self,
        mlp: &Mlp,
        head_dims: &[usize],
        input_scale: Option<&[f32]>,
        min_width: usize,
        output: Option<&str>,
    ) -> Result<GreedyHeads, TrainError> {
        let (n_in, _) = mlp.hidden.first().map(|l| l.dims()).unwrap_or(mlp.out.dims());
        let (hidden, total) = mlp.out.dims();
        if head_dims.iter().sum::<usize>() != total || head_dims.contains(&0) {
            return Err(TrainError::Invalid(format!(
                "heads {head_dims:?} do not add up to the output layer's {total}"
            )));
        }
        let mut x = "input".to_string();
        if let Some(scale) = input_scale {
            let s = self.constant("input_scale", &[1, scale.len() as i64], scale.to_vec());
            x = self.node("Div", &[&x, &s], vec![]);
        }
        let h = self.trunk(&x, mlp)?;
        let (w, b) = mlp.out.weights()?;
        let heads = head_dims.len();
        let width = head_dims.iter().copied().max().unwrap_or(1).max(min_width);
        let mut wp = vec![0.0f32; hidden * heads * width];
        let mut bp = vec![-1e30f32; heads * width];
        for (packed, padded) in head_columns(head_dims, width) {
            for r in 0..hidden {
                wp[r * heads * width + padded] = w[r * total + packed];
            }
            bp[padded] = b[packed];
        }
        let logits = self.dense(&h, &wp, &bp, hidden, heads * width);
        let shape = self.constant_i64("heads_shape", vec![1, heads as i64, width as i64]);
        let grid = self.node("Reshape", &[&logits, &shape], vec![]);
        let argmax = vec![int_attr("axis", 2), int_attr("keepdims", 0)];
        let picked = match output {
            Some(out) => {
                self.node_to("ArgMax", &[&grid], out, argmax);
                out.to_string()
            }
            None => self.node("ArgMax", &[&grid], argmax),
        };
        Ok(GreedyHeads { n_in, width, picked })
    }

    fn write(
        self,
        path: &Path,
        doc: &str,
        input: ValueInfoProto,
        output: ValueInfoProto,
    ) -> Result<(), TrainError> {
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
            }),
        };
        std::fs::write(path, model.encode_to_vec())
            .map_err(|error| TrainError::Write { path: path.to_path_buf(), error })
    }
}

/// Export a multi-discrete actor: `input` [1, n] float (divided by `input_scale` if given) through the
/// MLP's hidden layers, then every head at once: the output layer's columns are laid out as `heads`
/// rows of `width` (the widest head) logits, the columns a narrower head lacks carrying weight 0 and
/// bias -1e30, so that one MatMul, one Reshape to [1, heads, width] and one ArgMax over the last
/// axis give `actions` [1, heads] int64. The same argmax per head as separate heads would give
/// (padding never wins, ties go to the first index in both), in a third of the operators: at this
/// size a runtime's time goes to operators, not arithmetic.
pub fn export_multidiscrete(
    path: &Path,
    mlp: &Mlp,
    head_dims: &[usize],
    input_scale: Option<&[f32]>,
    doc: &str,
) -> Result<(), TrainError> {
    let mut g = Graph::default();
    let n_in = g.greedy_heads(mlp, head_dims, input_scale, 1, Some("actions"))?.n_in;
    let input = value_info("input", data_type::FLOAT, &[1, n_in as i64]);
    let output = value_info("actions", data_type::INT64, &[1, head_dims.len() as i64]);
    g.write(path, doc, input, output)
}

/// One (executors, GB per executor) the seed allows, and its cost per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizePair {
    pub executors: f32,
    pub gb: f32,
    pub cost: f32,
}

/// How the seed-compat policy's heads (margin level, tier, codec) decode into the seed's executors
/// and GB per executor (see `seed_env::seed_action`, which training decodes with, operation for
/// operation).
#[derive(Debug, Clone, PartialEq)]
pub struct SeedDecode {
    /// Index of the edge-predicted load in the raw observation.
    pub load_index: usize,
    /// Compute latency = this x load / executor-GB, ms.
    pub compute_ms_per_load: f32,
    /// The latency a step must stay within, ms.
    pub sla_ms: f32,
    /// The largest shuffle a step can have, MB.
    pub max_shuffle_mb: f32,
    /// By tier.
    pub access_ms_per_100mb: Vec<f32>,
    /// By codec.
    pub compressed_share: Vec<f32>,
    /// By codec.
    pub decompress_ms_per_100mb: Vec<f32>,
    /// Price of a GB of stored (compressed) shuffle per step, by tier.
    pub storage_price_per_gb: Vec<f32>,
    pub margin_levels: Vec<f32>,
    /// Every size the seed allows, in the order ties are broken (the first wins).
    pub pairs: Vec<SizePair>,
    /// Per executor-GB a pair falls short by; above the dearest pair's cost.
    pub shortfall_penalty: f32,
}

/// One place the shuffle can be stored: a tier and a codec, what the largest shuffle costs there in
/// time and what storing it costs a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageOption {
    pub tier: usize,
    pub codec: usize,
    /// Access plus decompression of the largest shuffle, ms.
    pub shuffle_ms: f32,
    /// Storing the largest shuffle for a step, $ (the cost is proportional to the shuffle, so the
    /// options rank the same for any shuffle).
    pub cost: f32,
}

impl SeedDecode {
    /// One more executor-GB than the largest pair holds: the capacity asked for is capped here, so
    /// that a huge load still scores the pairs by how much they hold, exactly in f32.
    pub fn most_capacity(&self) -> f32 {
        self.pairs.iter().map(|p| p.executors * p.gb).fold(0.0, f32::max) + 1.0
    }

    /// Access plus decompression of the largest shuffle on `tier` with `codec`, ms, in the f32
    /// operations the graph performs.
    pub fn shuffle_ms(&self, tier: usize, codec: usize) -> f32 {
        let per_100mb = self.access_ms_per_100mb[tier] * self.compressed_share[codec]
            + self.decompress_ms_per_100mb[codec];
        self.max_shuffle_mb / 100.0 * per_100mb
    }

    /// Every tier and codec, tier-major (the order ties are broken in: the first wins).
    pub fn storage_options(&self) -> Vec<StorageOption> {
        let mut options = Vec::new();
        for (tier, price) in self.storage_price_per_gb.iter().enumerate() {
            for (codec, share) in self.compressed_share.iter().enumerate() {
                options.push(StorageOption {
                    tier,
                    codec,
                    shuffle_ms: self.shuffle_ms(tier, codec),
                    cost: self.max_shuffle_mb * share / 1024.0 * price,
                });
            }
        }
        options
    }
}

/// Export the seed-compat actor: greedy heads as in [`export_multidiscrete`] for a margin level, a
/// tier and a codec, then the size and the storage decoded in the graph, so `actions` is int64 [1, 4]
/// = (executors - 1, GB - 1, tier, compression) and the file runs in any ONNX runtime:
/// shuffle = max_shuffle / 100 x (access[tier] x compressed[codec] + decompress[codec]);
/// need = compute_ms_per_load x load / clip(sla - shuffle, 1, sla); required = clip(ceil(level x
/// need), 0, most); the pair with the highest -cost - penalty x relu(required - executors x GB);
/// and on that pair, the storage option with the highest -cost - penalty x relu(level x
/// compute_ms_per_load x load / (executors x GB) + its shuffle - sla).
pub fn export_seed_relative(
    path: &Path,
    mlp: &Mlp,
    head_dims: &[usize],
    input_scale: Option<&[f32]>,
    decode: &SeedDecode,
    doc: &str,
) -> Result<(), TrainError> {
    if head_dims.len() != 3
        || head_dims[0] != decode.margin_levels.len()
        || head_dims[1] != decode.access_ms_per_100mb.len()
        || head_dims[2] != decode.compressed_share.len()
        || decode.decompress_ms_per_100mb.len() != decode.compressed_share.len()
        || decode.storage_price_per_gb.len() != decode.access_ms_per_100mb.len()
        || decode.pairs.is_empty()
    {
        return Err(TrainError::Invalid(format!("heads {head_dims:?} do not match the decode's tables")));
    }
    let mut g = Graph::default();
    // Wide enough for a row per size (executors and GB) beside the heads' logits.
    let sizes = decode.pairs.iter().map(|p| p.executors.max(p.gb)).fold(1.0, f32::max) as usize;
    let heads = g.greedy_heads(mlp, head_dims, input_scale, sizes, None)?;
    let (n_in, width, picked) = (heads.n_in, heads.width, heads.picked);
    // A head's table entry for the index that head picked: [1, 1].
    let lookup = |g: &mut Graph, col: i64, table: &[f32], stem: &str| {
        let idx = g.constant_i64(stem, vec![col]);
        let k = g.node("Gather", &[&picked, &idx], vec![int_attr("axis", 1)]);
        let t = g.constant(stem, &[table.len() as i64], table.to_vec());
        g.node("Gather", &[&t, &k], vec![int_attr("axis", 0)])
    };
    let level = lookup(&mut g, 0, &decode.margin_levels, "margin_levels");
    let access = lookup(&mut g, 1, &decode.access_ms_per_100mb, "access_ms_per_100mb");
    let share = lookup(&mut g, 2, &decode.compressed_share, "compressed_share");
    let decompress = lookup(&mut g, 2, &decode.decompress_ms_per_100mb, "decompress_ms_per_100mb");
    let per_100mb = g.node("Mul", &[&access, &share], vec![]);
    let per_100mb = g.node("Add", &[&per_100mb, &decompress], vec![]);
    let hundreds = g.constant("max_shuffle_hundreds_mb", &[], vec![decode.max_shuffle_mb / 100.0]);
    let shuffle_ms = g.node("Mul", &[&hundreds, &per_100mb], vec![]);
    let sla = g.constant("sla_ms", &[], vec![decode.sla_ms]);
    let left = g.node("Sub", &[&sla, &shuffle_ms], vec![]);
    let one = g.constant("one", &[], vec![1.0]);
    let budget = g.node("Clip", &[&left, &one, &sla], vec![]);
    let load_idx = g.constant_i64("load_column", vec![decode.load_index as i64]);
    let load = g.node("Gather", &["input", &load_idx], vec![int_attr("axis", 1)]);
    let per_load = g.constant("compute_ms_per_load", &[], vec![decode.compute_ms_per_load]);
    let work = g.node("Mul", &[&load, &per_load], vec![]);
    let need = g.node("Div", &[&work, &budget], vec![]);
    let capacity = g.node("Mul", &[&level, &need], vec![]);
    let up = g.node("Ceil", &[&capacity], vec![]);
    let zero = g.constant("zero", &[], vec![0.0]);
    let most = g.constant("most_capacity", &[], vec![decode.most_capacity()]);
    let required = g.node("Clip", &[&up, &zero, &most], vec![]);
    // Score every pair: -cost, less the penalty for each executor-GB it falls short by.
    let n = decode.pairs.len() as i64;
    let held = g.constant("pair_capacity", &[n], decode.pairs.iter().map(|p| p.executors * p.gb).collect());
    let short = g.node("Sub", &[&required, &held], vec![]);
    let short = g.node("Relu", &[&short], vec![]);
    let penalty = g.constant("shortfall_penalty", &[], vec![decode.shortfall_penalty]);
    let short = g.node("Mul", &[&short, &penalty], vec![]);
    let neg_cost = g.constant("pair_neg_cost", &[n], decode.pairs.iter().map(|p| -p.cost).collect());
    let scores = g.node("Sub", &[&neg_cost, &short], vec![]);
    let best = g.node("ArgMax", &[&scores], vec![int_attr("axis", 1), int_attr("keepdims", 0)]);
    let size = |g: &mut Graph, stem: &str, of: &dyn Fn(&SizePair) -> f32| {
        let t = g.constant(stem, &[n], decode.pairs.iter().map(of).collect());
        g.node("Gather", &[&t, &best], vec![int_attr("axis", 0)])
    };
    let executors = size(&mut g, "pair_executors", &|p| p.executors);
    let memory = size(&mut g, "pair_gb", &|p| p.gb);
    // Where the shuffle goes: the cheapest tier and codec on which the chosen pair still meets the
    // SLA with the largest shuffle (the heads' own choice always does; one that stores for less may).
    let options = decode.storage_options();
    let k = options.len() as i64;
    let held_best = g.node("Gather", &[&held, &best], vec![int_attr("axis", 0)]);
    let planned = g.node("Mul", &[&level, &work], vec![]);
    let compute_ms = g.node("Div", &[&planned, &held_best], vec![]);
    let storage_ms = g.constant("storage_shuffle_ms", &[k], options.iter().map(|o| o.shuffle_ms).collect());
    let total_ms = g.node("Add", &[&compute_ms, &storage_ms], vec![]);
    let over = g.node("Sub", &[&total_ms, &sla], vec![]);
    let over = g.node("Relu", &[&over], vec![]);
    let over = g.node("Mul", &[&over, &penalty], vec![]);
    let storage_neg_cost = g.constant("storage_neg_cost", &[k], options.iter().map(|o| -o.cost).collect());
    let storage_scores = g.node("Sub", &[&storage_neg_cost, &over], vec![]);
    let stored = g.node("ArgMax", &[&storage_scores], vec![int_attr("axis", 1), int_attr("keepdims", 0)]);
    // As sizes (index + 1), for the same index rows as the executors and GB.
    let option = |g: &mut Graph, stem: &str, of: &dyn Fn(&StorageOption) -> usize| {
        let t = g.constant(stem, &[k], options.iter().map(|o| (of(o) + 1) as f32).collect());
        g.node("Gather", &[&t, &stored], vec![int_attr("axis", 0)])
    };
    let tier = option(&mut g, "storage_tier", &|o| o.tier);
    let codec = option(&mut g, "storage_codec", &|o| o.codec);
    // The sizes become indices through the same ArgMax as the other heads (not a Cast: tract, which
    // these files must run in as well, types an int64 produced by Cast as a symbolic dimension): a
    // row scoring -|i - (size - 1)| over 0..width peaks at the index.
    let positions = g.constant("positions", &[1, 1, width as i64], (1..=width).map(|i| i as f32).collect());
    let row = |g: &mut Graph, size: &str| {
        let shape = g.constant_i64("row_shape", vec![1, 1, 1]);
        let s = g.node("Reshape", &[size, &shape], vec![]);
        let d = g.node("Sub", &[&positions, &s], vec![]);
        let a = g.node("Abs", &[&d], vec![]);
        g.node("Neg", &[&a], vec![])
    };
    let exec_row = row(&mut g, &executors);
    let mem_row = row(&mut g, &memory);
    let tier_row = row(&mut g, &tier);
    let codec_row = row(&mut g, &codec);
    let scores = g.node("Concat", &[&exec_row, &mem_row, &tier_row, &codec_row], vec![int_attr("axis", 1)]);
    g.node_to("ArgMax", &[&scores], "actions", vec![int_attr("axis", 2), int_attr("keepdims", 0)]);
    let input = value_info("input", data_type::FLOAT, &[1, n_in as i64]);
    let output = value_info("actions", data_type::INT64, &[1, 4]);
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
    let input = value_info("input", data_type::FLOAT, &[1, n_in as i64]);
    let output = value_info("weights", data_type::FLOAT, &[1, n_out as i64]);
    g.write(path, doc, input, output)
}

/// One dense layer's weights as read back from a model: `w` row-major [input, output].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub input: usize,
    pub output: usize,
}

/// Read back the actor of a model [`export_multidiscrete`] wrote: its dense layers in order (the
/// `weight_*`/`bias_*` initializer pairs), the last one with the padding of the per-head layout
/// removed, so that it is again [hidden, sum of `head_dims`]. For fine-tuning a committed policy
/// (`ppo::PpoConfig::init_actor`). A file of another layout is refused with what did not match.
pub fn import_multidiscrete(path: &Path, head_dims: &[usize]) -> Result<Vec<LayerWeights>, TrainError> {
    let bad = |why: String| TrainError::Invalid(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let graph = model.graph.ok_or_else(|| bad("no graph".into()))?;
    let floats = |t: &TensorProto| -> Result<Vec<f32>, TrainError> {
        let tensor = policy::tensor_of(t).map_err(bad)?;
        let values =
            tensor.as_f32().ok_or_else(|| bad(format!("initializer {} is not a float tensor", t.name)))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("initializer {} holds a non-finite value", t.name)));
        }
        Ok(values.to_vec())
    };
    let named = |stem: &'static str| -> Vec<&TensorProto> {
        graph.initializer.iter().filter(|t| t.name.starts_with(stem)).collect()
    };
    let (weights, biases) = (named("weight_"), named("bias_"));
    if weights.is_empty() || weights.len() != biases.len() {
        return Err(bad(format!(
            "{} weight and {} bias initializers: not a policy this trainer exported",
            weights.len(),
            biases.len()
        )));
    }
    let mut layers = Vec::with_capacity(weights.len());
    for (w, b) in weights.iter().zip(&biases) {
        let [input, output] = w.dims[..] else {
            return Err(bad(format!("weight {} has dims {:?}, not [in, out]", w.name, w.dims)));
        };
        let (input, output) = (input as usize, output as usize);
        let (wv, bv) = (floats(w)?, floats(b)?);
        if bv.len() != output {
            return Err(bad(format!("bias {} has {} values for {output} outputs", b.name, bv.len())));
        }
        if let Some(prev) = layers.last().map(|l: &LayerWeights| l.output) {
            if prev != input {
                return Err(bad(format!("layer {} takes {input} inputs after a layer of {prev}", w.name)));
            }
        }
        layers.push(LayerWeights { w: wv, b: bv, input, output });
    }
    // Undo the per-head padding of the output layer: heads x width columns back to sum(head_dims).
    let last = layers.last_mut().expect("at least one layer");
    let heads = head_dims.len();
    let total: usize = head_dims.iter().sum();
    if heads == 0 || !last.output.is_multiple_of(heads) {
        return Err(bad(format!("output layer of {} columns for {heads} heads", last.output)));
    }
    let width = last.output / heads;
    if head_dims.iter().any(|&d| d > width) {
        return Err(bad(format!("heads {head_dims:?} do not fit the model's {heads} x {width} logits")));
    }
    let hidden = last.input;
    let mut w = vec![0.0f32; hidden * total];
    let mut b = vec![0.0f32; total];
    for (packed, padded) in head_columns(head_dims, width) {
        for r in 0..hidden {
            w[r * total + packed] = last.w[r * heads * width + padded];
        }
        b[packed] = last.b[padded];
    }
    *last = LayerWeights { w, b, input: hidden, output: total };
    Ok(layers)
}

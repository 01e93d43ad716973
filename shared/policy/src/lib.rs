//! Runs sparkpilot's exported policies: small ONNX networks evaluated in-process, in microseconds,
//! by the same code in the arena and in the functions.
//!
//! A [`PolicyModel`] is read once (at function init) into a plan of the operators its output
//! needs; the file's declared input and the output of a trial run are checked against what the
//! caller expects (a mismatch, a corrupt file or an operator this runtime does not run is a clear
//! error), and every decision after that is one call to [`PolicyModel::run`]. Three typed wrappers
//! sit on top: [`ScalingPolicy`] (scaling-ppo), [`MetaPolicy`] (meta-td3) and [`SeedCompatPolicy`]
//! (seed-compat-ppo).
//!
//! The runtime implements the ONNX operators a policy network is built from (dense layers,
//! activations, broadcasting arithmetic, reshape, gather, concat, argmax, softmax; opsets 13 to 22)
//! and nothing else, which keeps a function binary megabytes smaller than a general ONNX runtime
//! would. The trainer's exports are checked against tract, a general ONNX runtime, in this crate's
//! tests.
//!
//! ```
//! use policy::{Elem, PolicyModel, TensorSpec};
//!
//! let model = PolicyModel::from_bytes(
//!     std::path::Path::new("embedded:meta-td3.onnx"),
//!     models::META_TD3,
//!     TensorSpec::new(&[1, 7], Elem::F32),
//!     TensorSpec::new(&[1, 2], Elem::F32),
//! )?;
//! let weights = model.run(&[0.0, 0.0, 1.0, 0.0, 0.5, 0.1, 0.3])?;
//! assert_eq!(weights.shape(), &[1, 2]);
//! assert!(weights.as_f32().unwrap().iter().all(|w| (0.0..=1.0).contains(w)));
//! # Ok::<(), policy::PolicyError>(())
//! ```

mod error;
mod graph;
mod ops;
pub mod pb;
mod tensor;

pub use error::PolicyError;
pub use graph::tensor_of;
pub use tensor::{Elem, Tensor, Values};

use control::{FeatureBuilder, Observation, ScalingAction, FEATURES};
use graph::{LoadError, Plan};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Shape and element type a caller expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub shape: Vec<usize>,
    pub elem: Elem,
}

impl TensorSpec {
    pub fn new(shape: &[usize], elem: Elem) -> Self {
        Self { shape: shape.to_vec(), elem }
    }

    fn describe(&self) -> String {
        format!("{:?} {:?}", self.elem, self.shape)
    }
}

/// A loaded, shape-checked model ready to run. Clones share the plan.
#[derive(Clone)]
pub struct PolicyModel {
    plan: Arc<Plan>,
    path: PathBuf,
    version: String,
    input: TensorSpec,
    output: TensorSpec,
}

impl std::fmt::Debug for PolicyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyModel")
            .field("path", &self.path)
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

/// Values of one element type, read out of a [`Tensor`].
trait Scalar: Copy {
    fn slice(t: &Tensor) -> Option<&[Self]>;
}

impl Scalar for f32 {
    fn slice(t: &Tensor) -> Option<&[f32]> {
        t.as_f32()
    }
}

impl Scalar for i64 {
    fn slice(t: &Tensor) -> Option<&[i64]> {
        t.as_i64()
    }
}

impl PolicyModel {
    /// Load the ONNX file `path` and check it takes `input` and returns `output`.
    pub fn load(path: &Path, input: TensorSpec, output: TensorSpec) -> Result<Self, PolicyError> {
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err(PolicyError::UnknownFormat { path: path.to_path_buf() });
        }
        let bytes =
            std::fs::read(path).map_err(|error| PolicyError::Io { path: path.to_path_buf(), error })?;
        Self::from_bytes(path, &bytes, input, output)
    }

    /// Load an ONNX model held in memory (a model built into a binary); `label` names it in errors.
    pub fn from_bytes(
        label: &Path,
        bytes: &[u8],
        input: TensorSpec,
        output: TensorSpec,
    ) -> Result<Self, PolicyError> {
        let path = label.to_path_buf();
        let plan = Plan::from_onnx(bytes).map_err(|e| match e {
            LoadError::Corrupt(message) => {
                PolicyError::Corrupt { path: path.clone(), format: "ONNX", message }
            }
            LoadError::Unsupported(message) => PolicyError::Unsupported { path: path.clone(), message },
            LoadError::Count { what, found } => PolicyError::Shape {
                path: path.clone(),
                what,
                found: found.to_string(),
                expected: "1".into(),
            },
        })?;
        let shape_error = |what, found: String, expected: &TensorSpec| PolicyError::Shape {
            path: path.clone(),
            what,
            found,
            expected: expected.describe(),
        };
        if let Some(code) = plan.input.elem {
            if graph::elem_of(code) != Some(input.elem) {
                return Err(shape_error("the input type", pb::data_type::name(code), &input));
            }
        }
        if let Some(dims) = &plan.input.dims {
            let fits = dims.len() == input.shape.len()
                && dims.iter().zip(&input.shape).all(|(d, &w)| d.is_none_or(|d| d == w as i64));
            if !fits {
                let found = dims.iter().map(|d| d.map_or("?".into(), |d| d.to_string())).collect::<Vec<_>>();
                return Err(shape_error("the input shape", format!("[{}]", found.join(", ")), &input));
            }
        }
        // A trial run types every value: the output it gives is the output every run gives.
        let trial = Tensor::zeros(&input.shape, input.elem)
            .and_then(|zeros| plan.run(&zeros))
            .map_err(|message| PolicyError::Corrupt { path: path.clone(), format: "ONNX", message })?;
        if trial.elem() != output.elem || trial.shape() != &output.shape[..] {
            return Err(shape_error(
                "the output",
                format!("{:?} {:?}", trial.elem(), trial.shape()),
                &output,
            ));
        }
        if let Some(code) = plan.output_declared.elem {
            if graph::elem_of(code) != Some(trial.elem()) {
                return Err(PolicyError::Corrupt {
                    path,
                    format: "ONNX",
                    message: format!(
                        "the output `{}` is declared {} but computes {:?}",
                        plan.output_declared.name,
                        pb::data_type::name(code),
                        trial.elem()
                    ),
                });
            }
        }
        Ok(Self { plan: Arc::new(plan), path, version: fingerprint(bytes), input, output })
    }

    /// A fingerprint of the model file (FNV-1a, 64 bits, hex): recorded with every decision so a
    /// decision can be traced to the exact model that made it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The plan, one operator per line with its inputs.
    pub fn describe_plan(&self) -> String {
        self.plan.describe()
    }

    fn input_len(&self) -> usize {
        self.input.shape.iter().product()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run on a flat f32 input; returns the output tensor.
    pub fn run(&self, input: &[f32]) -> Result<Tensor, PolicyError> {
        if input.len() != self.input_len() {
            return Err(PolicyError::InputLength { found: input.len(), expected: self.input_len() });
        }
        let run_err = |message| PolicyError::Run { path: self.path.clone(), message };
        let values = match self.input.elem {
            Elem::F32 => Values::F32(input.to_vec()),
            Elem::I64 => Values::I64(input.iter().map(|&v| v as i64).collect()),
        };
        let tensor = Tensor::new(self.input.shape.clone(), values).map_err(run_err)?;
        self.plan.run(&tensor).map_err(run_err)
    }

    /// Run and read the output as exactly `N` values of `T`.
    fn run_array<T: Scalar, const N: usize>(&self, input: &[f32]) -> Result<[T; N], PolicyError> {
        let out = self.run(input)?;
        let run_err = |message: String| PolicyError::Run { path: self.path.clone(), message };
        let values = T::slice(&out).ok_or_else(|| run_err(format!("output is {:?}", out.elem())))?;
        values.try_into().map_err(|_| run_err(format!("{} outputs, expected {N}", values.len())))
    }
}

/// The scaling policy (scaling-ppo): 13 features in, action indices out.
#[derive(Debug, Clone)]
pub struct ScalingPolicy {
    model: PolicyModel,
    pub state: FeatureBuilder,
}

impl ScalingPolicy {
    pub const INPUT: [usize; 2] = [1, FEATURES];
    pub const OUTPUT: [usize; 2] = [1, 4];

    pub fn load(path: &Path, state: FeatureBuilder) -> Result<Self, PolicyError> {
        let model = PolicyModel::load(
            path,
            TensorSpec::new(&Self::INPUT, Elem::F32),
            TensorSpec::new(&Self::OUTPUT, Elem::I64),
        )?;
        Ok(Self { model, state })
    }

    /// Load from bytes (an embedded model); `label` names it in errors.
    pub fn from_bytes(label: &str, bytes: &[u8], state: FeatureBuilder) -> Result<Self, PolicyError> {
        let model = PolicyModel::from_bytes(
            Path::new(label),
            bytes,
            TensorSpec::new(&Self::INPUT, Elem::F32),
            TensorSpec::new(&Self::OUTPUT, Elem::I64),
        )?;
        Ok(Self { model, state })
    }

    pub fn version(&self) -> &str {
        self.model.version()
    }

    /// Action indices for features already built.
    pub fn indices(&self, features: &[f32; FEATURES]) -> Result<[i64; 4], PolicyError> {
        self.model.run_array::<i64, 4>(features)
    }

    /// The policy's action for an observation (pre-initialised capacity is left as observed).
    pub fn decide(&self, obs: &Observation) -> Result<ScalingAction, PolicyError> {
        let indices = self.indices(&self.state.features(obs))?;
        Ok(self.state.action(indices, obs)?)
    }
}

/// Inputs of the meta-controller, in order: scenario one-hot (4), budget remaining (0..1), recent
/// violation rate (0..1), recent cost rate relative to the budget rate.
pub const META_INPUTS: usize = 7;

/// The meta-controller (meta-td3): scenario and recent history in, weights (alpha, beta) out.
#[derive(Debug, Clone)]
pub struct MetaPolicy {
    model: PolicyModel,
}

impl MetaPolicy {
    pub const INPUT: [usize; 2] = [1, META_INPUTS];
    pub const OUTPUT: [usize; 2] = [1, 2];

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let model = PolicyModel::load(
            path,
            TensorSpec::new(&Self::INPUT, Elem::F32),
            TensorSpec::new(&Self::OUTPUT, Elem::F32),
        )?;
        Ok(Self { model })
    }

    /// Load from bytes (an embedded model); `label` names it in errors.
    pub fn from_bytes(label: &str, bytes: &[u8]) -> Result<Self, PolicyError> {
        let model = PolicyModel::from_bytes(
            Path::new(label),
            bytes,
            TensorSpec::new(&Self::INPUT, Elem::F32),
            TensorSpec::new(&Self::OUTPUT, Elem::F32),
        )?;
        Ok(Self { model })
    }

    pub fn version(&self) -> &str {
        self.model.version()
    }

    /// (alpha, beta), each in 0..1.
    pub fn weights(&self, input: &[f32; META_INPUTS]) -> Result<(f64, f64), PolicyError> {
        let [a, b] = self.model.run_array::<f32, 2>(input)?;
        Ok((a.clamp(0.0, 1.0) as f64, b.clamp(0.0, 1.0) as f64))
    }
}

/// The seed-compat policy: the seed environment's raw 13 observations in, its action indices out.
#[derive(Debug, Clone)]
pub struct SeedCompatPolicy {
    model: PolicyModel,
}

impl SeedCompatPolicy {
    pub const INPUT: [usize; 2] = [1, 13];
    pub const OUTPUT: [usize; 2] = [1, 4];

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let model = PolicyModel::load(
            path,
            TensorSpec::new(&Self::INPUT, Elem::F32),
            TensorSpec::new(&Self::OUTPUT, Elem::I64),
        )?;
        Ok(Self { model })
    }

    pub fn act(&self, obs: &[f64; 13]) -> Result<[usize; 4], PolicyError> {
        // The graph sizes executors from obs 11 (the predicted load); a NaN there has no size.
        if let Some((i, v)) = obs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(PolicyError::Run {
                path: self.model.path.clone(),
                message: format!("observation {i} is {v}, not a finite number"),
            });
        }
        let input = obs.map(|v| v as f32);
        let [a, b, c, d] = self.model.run_array::<i64, 4>(&input)?;
        let dims = [20i64, 8, 4, 3];
        let idx = [a, b, c, d];
        for (i, (&v, &dim)) in idx.iter().zip(dims.iter()).enumerate() {
            if v < 0 || v >= dim {
                return Err(PolicyError::Run {
                    path: self.model.path.clone(),
                    message: format!("action {i} index {v} outside 0..{dim}"),
                });
            }
        }
        Ok(idx.map(|v| v as usize))
    }
}

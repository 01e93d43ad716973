//! Runs sparkpilot's exported policies with tract.
//!
//! A [`PolicyModel`] is loaded once (at function init), its input and output shapes are checked
//! against what the caller expects (a mismatch or a corrupt file is a clear error), the plan is
//! optimised and run once to warm it, and every decision after that is one call to
//! [`PolicyModel::run`]. Three typed wrappers sit on top: [`ScalingPolicy`] (scaling-ppo),
//! [`MetaPolicy`] (meta-td3) and [`SeedCompatPolicy`] (seed-compat-ppo).

mod error;

pub use error::PolicyError;

use control::{FeatureBuilder, Observation, ScalingAction, FEATURES};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// Element type of a model input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
}

impl Elem {
    fn datum(self) -> DatumType {
        match self {
            Elem::F32 => DatumType::F32,
            Elem::I64 => DatumType::I64,
        }
    }
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
        format!("{:?} {:?}", self.elem.datum(), self.shape)
    }
}

/// On-disk format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Onnx,
    /// tract's NNEF tarball (`.nnef.tar`, or gzipped `.nnef.tgz`), with the ONNX extensions.
    Nnef,
}

impl ModelFormat {
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".onnx") {
            Some(ModelFormat::Onnx)
        } else if name.ends_with(".nnef.tgz") || name.ends_with(".nnef.tar") {
            Some(ModelFormat::Nnef)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "ONNX",
            ModelFormat::Nnef => "NNEF",
        }
    }
}

/// A loaded, shape-checked, optimised model ready to run.
#[derive(Clone)]
pub struct PolicyModel {
    /// Run state kept between calls: building it allocates, and a decision should not.
    state: Arc<Mutex<TypedSimpleState>>,
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

fn corrupt(path: &Path, format: ModelFormat, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Corrupt { path: path.to_path_buf(), format: format.name(), message: format!("{e:#}") }
}

impl PolicyModel {
    /// Load `path` (format from its extension) and check it takes `input` and returns `output`.
    pub fn load(path: &Path, input: TensorSpec, output: TensorSpec) -> Result<Self, PolicyError> {
        let format =
            ModelFormat::of(path).ok_or_else(|| PolicyError::UnknownFormat { path: path.to_path_buf() })?;
        let bytes =
            std::fs::read(path).map_err(|error| PolicyError::Io { path: path.to_path_buf(), error })?;
        Self::from_bytes(path, format, &bytes, input, output)
    }

    /// Load a model held in memory (a model built into a binary); `label` names it in errors.
    pub fn from_bytes(
        label: &Path,
        format: ModelFormat,
        bytes: &[u8],
        input: TensorSpec,
        output: TensorSpec,
    ) -> Result<Self, PolicyError> {
        let path = label;
        let typed = match format {
            ModelFormat::Onnx => {
                let model = tract_onnx::onnx()
                    .model_for_read(&mut &bytes[..])
                    .map_err(|e| corrupt(path, format, e))?;
                Self::check_declared(path, &model, &input)?;
                let fact = InferenceFact::dt_shape(input.elem.datum(), input.shape.clone());
                model
                    .with_input_fact(0, fact)
                    .and_then(|m| m.into_typed())
                    .map_err(|e| corrupt(path, format, e))?
            }
            ModelFormat::Nnef => {
                let nnef = tract_nnef::nnef().with_onnx();
                nnef.model_for_read(&mut &bytes[..]).map_err(|e| corrupt(path, format, e))?
            }
        };
        Self::check_typed(path, &typed, &input, &output)?;
        let plan =
            typed.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| corrupt(path, format, e))?;
        let state = plan.spawn().map_err(|e| corrupt(path, format, e))?;
        let model = Self {
            state: Arc::new(Mutex::new(state)),
            path: path.to_path_buf(),
            version: fingerprint(bytes),
            input,
            output,
        };
        // The first run allocates and is slower: pay it here, at load, not on the first decision.
        let zeros = vec![0.0f32; model.input_len()];
        model.run(&zeros)?;
        Ok(model)
    }

    /// A fingerprint of the model file (FNV-1a, 64 bits, hex): recorded with every decision so a
    /// decision can be traced to the exact model that made it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The ONNX file's own declared input, before we impose ours.
    fn check_declared(path: &Path, model: &InferenceModel, want: &TensorSpec) -> Result<(), PolicyError> {
        let inputs = model.input_outlets().map_err(|e| corrupt(path, ModelFormat::Onnx, e))?;
        if inputs.len() != 1 {
            return Err(PolicyError::Shape {
                path: path.to_path_buf(),
                what: "the number of inputs",
                found: inputs.len().to_string(),
                expected: "1".into(),
            });
        }
        let fact = model.input_fact(0).map_err(|e| corrupt(path, ModelFormat::Onnx, e))?;
        if let Some(dt) = fact.datum_type.concretize() {
            if dt != want.elem.datum() {
                return Err(PolicyError::Shape {
                    path: path.to_path_buf(),
                    what: "the input type",
                    found: format!("{dt:?}"),
                    expected: format!("{:?}", want.elem.datum()),
                });
            }
        }
        if let Some(shape) = fact.shape.concretize() {
            let dims: Vec<Option<i64>> = shape.iter().map(|d| d.to_i64().ok()).collect();
            let matches = dims.len() == want.shape.len()
                && dims.iter().zip(&want.shape).all(|(d, w)| d.is_none_or(|d| d == *w as i64));
            if !matches {
                return Err(PolicyError::Shape {
                    path: path.to_path_buf(),
                    what: "the input shape",
                    found: format!("{shape:?}"),
                    expected: format!("{:?}", want.shape),
                });
            }
        }
        Ok(())
    }

    fn check_typed(
        path: &Path,
        model: &TypedModel,
        input: &TensorSpec,
        output: &TensorSpec,
    ) -> Result<(), PolicyError> {
        let shape_of =
            |fact: &TypedFact| -> Option<Vec<usize>> { fact.shape.as_concrete().map(|s| s.to_vec()) };
        let check = |what: &'static str,
                     fact: TractResult<&TypedFact>,
                     want: &TensorSpec|
         -> Result<(), PolicyError> {
            let fact = fact.map_err(|e| PolicyError::Corrupt {
                path: path.to_path_buf(),
                format: "typed",
                message: format!("{e:#}"),
            })?;
            if fact.datum_type != want.elem.datum() || shape_of(fact).as_deref() != Some(&want.shape[..]) {
                return Err(PolicyError::Shape {
                    path: path.to_path_buf(),
                    what,
                    found: format!("{:?} {:?}", fact.datum_type, fact.shape),
                    expected: want.describe(),
                });
            }
            Ok(())
        };
        if model.outputs.len() != 1 {
            return Err(PolicyError::Shape {
                path: path.to_path_buf(),
                what: "the number of outputs",
                found: model.outputs.len().to_string(),
                expected: "1".into(),
            });
        }
        check("the input", model.input_fact(0), input)?;
        check("the output", model.output_fact(0), output)
    }

    /// The optimised plan, one node per line (operator and output fact).
    pub fn describe_plan(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let model = state.model();
        model
            .eval_order()
            .unwrap_or_default()
            .iter()
            .map(|&n| format!("{}", model.node(n)))
            .collect::<Vec<_>>()
            .join("\n")
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
        let run_err = |e: TractError| PolicyError::Run { path: self.path.clone(), message: format!("{e:#}") };
        let tensor = Tensor::from_shape(&self.input.shape, input).map_err(run_err)?;
        // Clones share the state; the lock is uncontended in a function (one decision at a time).
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = state.run(tvec!(tensor.into())).map_err(run_err)?;
        Ok(out.remove(0).into_tensor())
    }

    /// Run and read the output as exactly `N` values of `T`.
    fn run_array<T: Datum + Copy, const N: usize>(&self, input: &[f32]) -> Result<[T; N], PolicyError> {
        let out = self.run(input)?;
        let run_err = |message: String| PolicyError::Run { path: self.path.clone(), message };
        let view = out.to_plain_array_view::<T>().map_err(|e| run_err(format!("{e:#}")))?;
        let values: Vec<T> = view.iter().copied().collect();
        let found = values.len();
        values.try_into().map_err(|_| run_err(format!("{found} outputs, expected {N}")))
    }

    /// Convert an ONNX model to a tract NNEF tarball (`.nnef.tar`), decluttered but not optimised,
    /// so that it loads without the ONNX front end.
    pub fn convert_onnx_to_nnef(onnx: &Path, nnef_out: &Path, input: &TensorSpec) -> Result<(), PolicyError> {
        let model = tract_onnx::onnx()
            .model_for_path(onnx)
            .and_then(|m| {
                m.with_input_fact(0, InferenceFact::dt_shape(input.elem.datum(), input.shape.clone()))
            })
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .map_err(|e| corrupt(onnx, ModelFormat::Onnx, e))?;
        let file = std::fs::File::create(nnef_out)
            .map_err(|error| PolicyError::Io { path: nnef_out.to_path_buf(), error })?;
        tract_nnef::nnef()
            .with_onnx()
            .write_to_tar(&model, file)
            .map(|_| ())
            .map_err(|e| PolicyError::Run { path: nnef_out.to_path_buf(), message: format!("{e:#}") })
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
            ModelFormat::Onnx,
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
            ModelFormat::Onnx,
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

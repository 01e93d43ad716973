//! Small MLPs on candle, with the initialisation CleanRL uses (orthogonal weights, zero biases) and
//! access to the raw weights for ONNX export.

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_distr::StandardNormal;

/// A dense layer `y = x W + b` with `W` of shape [in, out].
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Var,
    pub b: Var,
}

/// Orthogonal matrix [rows, cols] scaled by `gain` (Gram-Schmidt on a Gaussian matrix), as
/// `torch.nn.init.orthogonal_` produces.
pub fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut impl Rng) -> Vec<f32> {
    // Orthonormalise the longer side's vectors along the shorter dimension.
    let (n, m) = if rows >= cols { (cols, rows) } else { (rows, cols) };
    let mut vecs: Vec<Vec<f64>> = Vec::with_capacity(n);
    while vecs.len() < n {
        let mut v: Vec<f64> = (0..m).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        for u in &vecs {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-8 {
            vecs.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows >= cols { vecs[c][r] } else { vecs[r][c] };
            out[r * cols + c] = (v * gain) as f32;
        }
    }
    out
}

impl Linear {
    pub fn new(input: usize, output: usize, gain: f64, rng: &mut impl Rng) -> candle_core::Result<Self> {
        let w = Tensor::from_vec(orthogonal(input, output, gain, rng), (input, output), &Device::Cpu)?;
        Ok(Self { w: Var::from_tensor(&w)?, b: Var::zeros(output, DType::F32, &Device::Cpu)? })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())
    }

    pub fn vars(&self) -> Vec<Var> {
        vec![self.w.clone(), self.b.clone()]
    }

    pub fn dims(&self) -> (usize, usize) {
        let d = self.w.dims();
        (d[0], d[1])
    }

    /// Weights row-major [in, out] and biases.
    pub fn weights(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.w.as_tensor().flatten_all()?.to_vec1()?, self.b.as_tensor().to_vec1()?))
    }

    /// Copy another layer's weights (target networks); `tau` = 1 copies, < 1 moves towards.
    pub fn soft_update(&self, from: &Linear, tau: f64) -> candle_core::Result<()> {
        let mix = |dst: &Var, src: &Var| -> candle_core::Result<()> {
            let v = ((src.as_tensor() * tau)? + (dst.as_tensor() * (1.0 - tau))?)?;
            dst.set(&v)
        };
        mix(&self.w, &from.w)?;
        mix(&self.b, &from.b)
    }
}

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
}

/// Hidden layers with an activation after each, then a linear output layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub hidden: Vec<Linear>,
    pub out: Linear,
    pub activation: Activation,
}

impl Mlp {
    /// `sizes` = [input, hidden..., output]; hidden layers get gain sqrt(2), the output `out_gain`.
    pub fn new(
        sizes: &[usize],
        activation: Activation,
        out_gain: f64,
        rng: &mut impl Rng,
    ) -> candle_core::Result<Self> {
        let n = sizes.len();
        let hidden = (0..n - 2)
            .map(|i| Linear::new(sizes[i], sizes[i + 1], 2f64.sqrt(), rng))
            .collect::<Result<_, _>>()?;
        let out = Linear::new(sizes[n - 2], sizes[n - 1], out_gain, rng)?;
        Ok(Self { hidden, out, activation })
    }

    pub fn trunk(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.forward(&h)?;
            h = match self.activation {
                Activation::Tanh => h.tanh()?,
                Activation::Relu => h.relu()?,
            };
        }
        Ok(h)
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.out.forward(&self.trunk(x)?)
    }

    pub fn vars(&self) -> Vec<Var> {
        self.hidden.iter().chain(std::iter::once(&self.out)).flat_map(|l| l.vars()).collect()
    }

    pub fn soft_update(&self, from: &Mlp, tau: f64) -> candle_core::Result<()> {
        for (a, b) in self.hidden.iter().zip(&from.hidden) {
            a.soft_update(b, tau)?;
        }
        self.out.soft_update(&from.out, tau)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn orthogonal_columns_are_orthonormal() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let (r, c) = (16, 8);
        let w = orthogonal(r, c, 1.0, &mut rng);
        for i in 0..c {
            for j in 0..c {
                let d: f32 = (0..r).map(|k| w[k * c + i] * w[k * c + j]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-4);
            }
        }
    }
}

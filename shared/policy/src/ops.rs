//! The ONNX operators a policy network is made of, with ONNX's semantics (opset 13 and later):
//! dense layers, activations, broadcasting arithmetic, and the reshaping, gathering and argmax that
//! turn logits into actions. Every operator checks its inputs' types and shapes and returns an error
//! naming what is wrong; none panics on any input.

use crate::tensor::{size_of, Elem, Tensor, Values};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unary {
    Relu,
    Tanh,
    Sigmoid,
    Exp,
    Abs,
    Neg,
    Ceil,
    Floor,
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    MatMul,
    /// MatMul by a constant matrix, then Add of a constant bias over its columns: the plan fuses
    /// the pair, the dense layer of every exported network (inputs: x, weights [k, n], bias [n]).
    Dense,
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    Unary(Unary),
    Binary(Binary),
    Clip,
    Reshape {
        allow_zero: bool,
    },
    Flatten {
        axis: i64,
    },
    ArgMax {
        axis: i64,
        keep_dims: bool,
        select_last: bool,
    },
    Gather {
        axis: i64,
    },
    Concat {
        axis: i64,
    },
    Softmax {
        axis: i64,
    },
    Cast {
        to: Elem,
    },
}

/// The operators [`Op::parse`] accepts, for error messages.
pub(crate) const SUPPORTED: &str =
    "MatMul, Gemm, Add, Sub, Mul, Div, Relu, Tanh, Sigmoid, Exp, Abs, Neg, Ceil, \
     Floor, Identity, Clip, Reshape, Flatten, ArgMax, Gather, Concat, Softmax, Cast, Constant";

/// An operator's attributes, read by name with ONNX's defaults.
pub(crate) trait Attributes {
    fn int(&self, name: &str) -> Option<i64>;
    fn float(&self, name: &str) -> Option<f32>;
}

impl Op {
    /// The operator `op_type` with its attributes, and how many inputs it takes (least, most);
    /// `None` if it is not one this runtime runs.
    pub(crate) fn parse(op_type: &str, attrs: &dyn Attributes) -> Result<Option<(Op, usize, usize)>, String> {
        let flag = |name: &str, default: bool| attrs.int(name).map_or(default, |v| v != 0);
        let unary = |u| Some((Op::Unary(u), 1, 1));
        let binary = |b| Some((Op::Binary(b), 2, 2));
        Ok(match op_type {
            "MatMul" => Some((Op::MatMul, 2, 2)),
            "Gemm" => Some((
                Op::Gemm {
                    alpha: attrs.float("alpha").unwrap_or(1.0),
                    beta: attrs.float("beta").unwrap_or(1.0),
                    trans_a: flag("transA", false),
                    trans_b: flag("transB", false),
                },
                2,
                3,
            )),
            "Relu" => unary(Unary::Relu),
            "Tanh" => unary(Unary::Tanh),
            "Sigmoid" => unary(Unary::Sigmoid),
            "Exp" => unary(Unary::Exp),
            "Abs" => unary(Unary::Abs),
            "Neg" => unary(Unary::Neg),
            "Ceil" => unary(Unary::Ceil),
            "Floor" => unary(Unary::Floor),
            "Identity" => unary(Unary::Identity),
            "Add" => binary(Binary::Add),
            "Sub" => binary(Binary::Sub),
            "Mul" => binary(Binary::Mul),
            "Div" => binary(Binary::Div),
            "Clip" => Some((Op::Clip, 1, 3)),
            "Reshape" => Some((Op::Reshape { allow_zero: flag("allowzero", false) }, 2, 2)),
            "Flatten" => Some((Op::Flatten { axis: attrs.int("axis").unwrap_or(1) }, 1, 1)),
            "ArgMax" => Some((
                Op::ArgMax {
                    axis: attrs.int("axis").unwrap_or(0),
                    keep_dims: flag("keepdims", true),
                    select_last: flag("select_last_index", false),
                },
                1,
                1,
            )),
            "Gather" => Some((Op::Gather { axis: attrs.int("axis").unwrap_or(0) }, 2, 2)),
            "Concat" => {
                let axis = attrs.int("axis").ok_or("Concat without an axis attribute")?;
                Some((Op::Concat { axis }, 1, usize::MAX))
            }
            "Softmax" => Some((Op::Softmax { axis: attrs.int("axis").unwrap_or(-1) }, 1, 1)),
            "Cast" => {
                let to = match attrs.int("to") {
                    Some(1) => Elem::F32,
                    Some(7) => Elem::I64,
                    Some(other) => {
                        return Err(format!(
                            "Cast to {} (this runtime has FLOAT and INT64)",
                            crate::pb::data_type::name(other as i32)
                        ))
                    }
                    None => return Err("Cast without a `to` attribute".into()),
                };
                Some((Op::Cast { to }, 1, 1))
            }
            _ => None,
        })
    }

    /// Apply the operator; an absent optional input is `None`.
    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor, String> {
        let arg = |i: usize| inputs.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing"));
        match self {
            Op::MatMul => matmul(arg(0)?, arg(1)?),
            Op::Dense => dense(arg(0)?, arg(1)?, arg(2)?),
            Op::Gemm { alpha, beta, trans_a, trans_b } => {
                gemm(arg(0)?, arg(1)?, inputs.get(2).copied().flatten(), *alpha, *beta, *trans_a, *trans_b)
            }
            Op::Unary(u) => unary(*u, arg(0)?),
            Op::Binary(b) => binary(*b, arg(0)?, arg(1)?),
            Op::Clip => clip(arg(0)?, inputs.get(1).copied().flatten(), inputs.get(2).copied().flatten()),
            Op::Reshape { allow_zero } => reshape(arg(0)?, arg(1)?, *allow_zero),
            Op::Flatten { axis } => flatten(arg(0)?, *axis),
            Op::ArgMax { axis, keep_dims, select_last } => argmax(arg(0)?, *axis, *keep_dims, *select_last),
            Op::Gather { axis } => gather(arg(0)?, arg(1)?, *axis),
            Op::Concat { axis } => {
                let parts: Result<Vec<&Tensor>, String> = (0..inputs.len()).map(arg).collect();
                concat(&parts?, *axis)
            }
            Op::Softmax { axis } => softmax(arg(0)?, *axis),
            Op::Cast { to } => cast(arg(0)?, *to),
        }
    }
}

fn f32_of<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], String> {
    t.as_f32().ok_or_else(|| format!("{what} is {:?}, expected F32", t.elem()))
}

fn i64_of<'a>(t: &'a Tensor, what: &str) -> Result<&'a [i64], String> {
    t.as_i64().ok_or_else(|| format!("{what} is {:?}, expected I64", t.elem()))
}

/// `axis` counted from the end when negative, checked against `rank` (`rank + 1` positions when
/// `inclusive`, as Flatten allows).
fn axis_of(axis: i64, rank: usize, inclusive: bool) -> Result<usize, String> {
    let positions = rank as i64 + i64::from(inclusive);
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if !(0..positions).contains(&a) {
        return Err(format!("axis {axis} is outside a tensor of rank {rank}"));
    }
    Ok(a as usize)
}

/// (outer, dim, inner) sizes around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// `out += a * w`, eight lanes at a time: fixed-width blocks vectorise even where the binary is
/// optimised for size (a loop of unknown length is then left scalar).
#[inline]
fn axpy(out: &mut [f32], a: f32, w: &[f32]) {
    let mut out_blocks = out.chunks_exact_mut(8);
    let mut w_blocks = w.chunks_exact(8);
    for (o, w) in (&mut out_blocks).zip(&mut w_blocks) {
        if let (Ok(o), Ok(w)) = (<&mut [f32; 8]>::try_from(o), <&[f32; 8]>::try_from(w)) {
            for j in 0..8 {
                o[j] += a * w[j];
            }
        }
    }
    for (o, &w) in out_blocks.into_remainder().iter_mut().zip(w_blocks.remainder()) {
        *o += a * w;
    }
}

fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let (av, bv) = (f32_of(a, "the left operand")?, f32_of(b, "the right operand")?);
    let (ash, bsh) = (a.shape(), b.shape());
    let (k, n, b_vector) = match bsh {
        [k] => (*k, 1, true),
        [k, n] => (*k, *n, false),
        _ => return Err(format!("right operand of shape {bsh:?}: only a matrix or a vector is supported")),
    };
    let Some((&ak, lead)) = ash.split_last() else {
        return Err("left operand is a scalar".into());
    };
    if ak != k {
        return Err(format!("shapes {ash:?} and {bsh:?} do not multiply"));
    }
    let rows = lead.iter().product::<usize>();
    let mut out = vec![0.0f32; size_of(&[rows, n])?];
    for (r, o) in out.chunks_exact_mut(n.max(1)).enumerate().take(rows) {
        let a_row = &av[r * k..(r + 1) * k];
        for (&x, b_row) in a_row.iter().zip(bv.chunks_exact(n.max(1))) {
            axpy(o, x, b_row);
        }
    }
    let mut shape = lead.to_vec();
    if !b_vector {
        shape.push(n);
    }
    Tensor::f32(&shape, out)
}

/// x [.., k] times w [k, n] plus bias [n].
fn dense(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor, String> {
    let bv = f32_of(bias, "the bias")?;
    if w.shape().len() != 2 || w.shape()[1] != bv.len() || bv.is_empty() {
        return Err(format!("weights {:?} and a bias of {} do not fit", w.shape(), bv.len()));
    }
    // The product first and the bias added last, as MatMul then Add would: the same numbers.
    let (shape, values) = matmul(x, w)?.into_parts();
    let Values::F32(mut out) = values else {
        return Err("the product is not F32".into());
    };
    for row in out.chunks_exact_mut(bv.len()) {
        for (o, &b) in row.iter_mut().zip(bv) {
            *o += b;
        }
    }
    Tensor::new(shape, Values::F32(out))
}

fn gemm(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor, String> {
    let (av, bv) = (f32_of(a, "A")?, f32_of(b, "B")?);
    let (&[ar, ac], &[br, bc]) = (a.shape(), b.shape()) else {
        return Err(format!("A {:?} and B {:?} must both be matrices", a.shape(), b.shape()));
    };
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(format!(
            "A {:?} and B {:?} do not multiply (transA {trans_a}, transB {trans_b})",
            a.shape(),
            b.shape()
        ));
    }
    let at = |i: usize, j: usize| if trans_a { av[j * ac + i] } else { av[i * ac + j] };
    let bt = |i: usize, j: usize| if trans_b { bv[j * bc + i] } else { bv[i * bc + j] };
    let mut out = vec![0.0f32; size_of(&[m, n])?];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = alpha * (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f32>();
        }
    }
    let product = Tensor::f32(&[m, n], out)?;
    match c {
        None => Ok(product),
        Some(c) => {
            let scaled = if beta == 1.0 { c.clone() } else { unary_map(c, |x| beta * x)? };
            let sum = binary(Binary::Add, &product, &scaled)?;
            if sum.shape() != [m, n] {
                return Err(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape()));
            }
            Ok(sum)
        }
    }
}

#[inline]
fn unary_map(t: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor, String> {
    let v = f32_of(t, "the input")?;
    Tensor::f32(t.shape(), v.iter().map(|&x| f(x)).collect())
}

fn unary(op: Unary, t: &Tensor) -> Result<Tensor, String> {
    if let Values::I64(v) = t.values() {
        let f: fn(i64) -> i64 = match op {
            Unary::Abs => i64::wrapping_abs,
            Unary::Neg => i64::wrapping_neg,
            Unary::Identity | Unary::Ceil | Unary::Floor => |x| x,
            _ => return Err(format!("{op:?} of an I64 tensor")),
        };
        return Tensor::i64(t.shape(), v.iter().map(|&x| f(x)).collect());
    }
    // One loop per operator, each compiled for its own function (no call through a pointer per value).
    match op {
        // NaN stays NaN, as it does in other runtimes.
        Unary::Relu => unary_map(t, |x| if x > 0.0 || x.is_nan() { x } else { 0.0 }),
        Unary::Tanh => unary_map(t, f32::tanh),
        Unary::Sigmoid => unary_map(t, |x| 1.0 / (1.0 + (-x).exp())),
        Unary::Exp => unary_map(t, f32::exp),
        Unary::Abs => unary_map(t, f32::abs),
        Unary::Neg => unary_map(t, |x| -x),
        Unary::Ceil => unary_map(t, f32::ceil),
        Unary::Floor => unary_map(t, f32::floor),
        Unary::Identity => Ok(t.clone()),
    }
}

/// NumPy-style broadcast of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i < rank - s.len() { 1 } else { s[i - (rank - s.len())] };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// For each flat index of `out`, the flat index into a tensor of shape `of` broadcast to it.
fn broadcast_index(of: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - of.len();
    let mut strides = vec![0usize; out.len()];
    let mut s = 1;
    for i in (0..of.len()).rev() {
        strides[pad + i] = if of[i] == 1 { 0 } else { s };
        s *= of[i];
    }
    let total: usize = out.iter().product();
    let mut idx = Vec::with_capacity(total);
    let mut pos = vec![0usize; out.len()];
    for _ in 0..total {
        idx.push(pos.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for d in (0..out.len()).rev() {
            pos[d] += 1;
            if pos[d] < out[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    idx
}

/// `f` over `a` and `b` broadcast together.
#[inline]
fn zip_broadcast<T: Copy>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    f: impl Fn(T, T) -> T,
) -> Result<(Vec<usize>, Vec<T>), String> {
    let shape = broadcast(ash, bsh)?;
    let total = size_of(&shape)?;
    // A trailing block repeated (a bias over rows) or a scalar: no index tables.
    let repeats = |s: &[usize], len: usize| {
        len > 0
            && total.is_multiple_of(len)
            && shape.ends_with(&s[s.iter().take_while(|&&d| d == 1).count()..])
    };
    let out = if a.len() == total && repeats(bsh, b.len()) {
        a.iter().enumerate().map(|(i, &x)| f(x, b[i % b.len()])).collect()
    } else if b.len() == total && repeats(ash, a.len()) {
        b.iter().enumerate().map(|(i, &y)| f(a[i % a.len()], y)).collect()
    } else {
        let (ia, ib) = (broadcast_index(ash, &shape), broadcast_index(bsh, &shape));
        ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect()
    };
    Ok((shape, out))
}

fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    match (a.values(), b.values()) {
        (Values::F32(x), Values::F32(y)) => {
            let (ash, bsh) = (a.shape(), b.shape());
            let (shape, v) = match op {
                Binary::Add => zip_broadcast(x, ash, y, bsh, |p, q| p + q)?,
                Binary::Sub => zip_broadcast(x, ash, y, bsh, |p, q| p - q)?,
                Binary::Mul => zip_broadcast(x, ash, y, bsh, |p, q| p * q)?,
                Binary::Div => zip_broadcast(x, ash, y, bsh, |p, q| p / q)?,
            };
            Tensor::f32(&shape, v)
        }
        (Values::I64(x), Values::I64(y)) => {
            if op == Binary::Div && y.contains(&0) {
                return Err("integer division by zero".into());
            }
            let f: fn(i64, i64) -> i64 = match op {
                Binary::Add => i64::wrapping_add,
                Binary::Sub => i64::wrapping_sub,
                Binary::Mul => i64::wrapping_mul,
                Binary::Div => i64::wrapping_div,
            };
            let (shape, v) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
            Tensor::i64(&shape, v)
        }
        _ => Err(format!("{op:?} of {:?} and {:?}", a.elem(), b.elem())),
    }
}

fn scalar_bound<'a>(t: Option<&'a Tensor>, what: &str) -> Result<Option<&'a Tensor>, String> {
    match t {
        Some(t) if t.len() != 1 => Err(format!("{what} has {} values, expected one", t.len())),
        other => Ok(other),
    }
}

fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor, String> {
    let (lo, hi) = (scalar_bound(lo, "the minimum")?, scalar_bound(hi, "the maximum")?);
    match x.values() {
        Values::F32(v) => {
            let lo =
                lo.map(|t| f32_of(t, "the minimum").map(|s| s[0])).transpose()?.unwrap_or(f32::NEG_INFINITY);
            let hi = hi.map(|t| f32_of(t, "the maximum").map(|s| s[0])).transpose()?.unwrap_or(f32::INFINITY);
            let f = |v: f32| {
                if v < lo {
                    lo
                } else if v > hi {
                    hi
                } else {
                    v
                }
            };
            Tensor::f32(x.shape(), v.iter().map(|&v| f(v)).collect())
        }
        Values::I64(v) => {
            let lo = lo.map(|t| i64_of(t, "the minimum").map(|s| s[0])).transpose()?.unwrap_or(i64::MIN);
            let hi = hi.map(|t| i64_of(t, "the maximum").map(|s| s[0])).transpose()?.unwrap_or(i64::MAX);
            Tensor::i64(x.shape(), v.iter().map(|&v| v.max(lo).min(hi)).collect())
        }
    }
}

fn reshape(x: &Tensor, shape: &Tensor, allow_zero: bool) -> Result<Tensor, String> {
    let wanted = i64_of(shape, "the shape")?;
    let mut dims = Vec::with_capacity(wanted.len());
    let mut infer = None;
    for (i, &d) in wanted.iter().enumerate() {
        dims.push(match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allow_zero => *x.shape().get(i).ok_or_else(|| {
                format!("shape {wanted:?} copies dimension {i}, which {:?} lacks", x.shape())
            })?,
            d if d >= 0 => d as usize,
            _ => return Err(format!("shape {wanted:?} is not a valid shape")),
        });
    }
    if let Some(i) = infer {
        let known = size_of(&dims)?;
        if known == 0 || !x.len().is_multiple_of(known) {
            return Err(format!("cannot reshape {:?} to {wanted:?}", x.shape()));
        }
        dims[i] = x.len() / known;
    }
    let (_, values) = x.clone().into_parts();
    Tensor::new(dims, values).map_err(|e| format!("cannot reshape {:?} to {wanted:?}: {e}", x.shape()))
}

fn flatten(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let axis = axis_of(axis, x.shape().len(), true)?;
    let (_, values) = x.clone().into_parts();
    let outer = x.shape()[..axis].iter().product();
    Tensor::new(vec![outer, x.shape()[axis..].iter().product()], values)
}

fn argmax(x: &Tensor, axis: i64, keep_dims: bool, select_last: bool) -> Result<Tensor, String> {
    let v = f32_of(x, "the input")?;
    let axis = axis_of(axis, x.shape().len(), false)?;
    let (outer, dim, inner) = around(x.shape(), axis);
    if dim == 0 {
        return Err("argmax over an empty axis".into());
    }
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * dim + j) * inner + i];
            let mut best = 0;
            for j in 1..dim {
                let (c, b) = (at(j), at(best));
                if c > b || (select_last && c == b) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    let mut shape = x.shape().to_vec();
    if keep_dims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Tensor::i64(&shape, out)
}

fn gather_values<T: Copy>(data: &[T], (outer, dim, inner): (usize, usize, usize), idx: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in idx {
            out.extend_from_slice(&data[(o * dim + j) * inner..(o * dim + j + 1) * inner]);
        }
    }
    out
}

fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, String> {
    let axis = axis_of(axis, data.shape().len(), false)?;
    let sizes = around(data.shape(), axis);
    let dim = sizes.1 as i64;
    let idx = i64_of(indices, "the indices")?
        .iter()
        .map(|&j| {
            let k = if j < 0 { j + dim } else { j };
            if (0..dim).contains(&k) {
                Ok(k as usize)
            } else {
                Err(format!("index {j} is outside an axis of {dim}"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut shape = data.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&data.shape()[axis + 1..]);
    size_of(&shape)?;
    let values = match data.values() {
        Values::F32(v) => Values::F32(gather_values(v, sizes, &idx)),
        Values::I64(v) => Values::I64(gather_values(v, sizes, &idx)),
    };
    Tensor::new(shape, values)
}

fn concat_values<T: Copy>(parts: &[&[T]], chunks: &[usize], outer: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for o in 0..outer {
        for (p, &c) in parts.iter().zip(chunks) {
            out.extend_from_slice(&p[o * c..(o + 1) * c]);
        }
    }
    out
}

fn concat(parts: &[&Tensor], axis: i64) -> Result<Tensor, String> {
    let first = parts.first().ok_or("nothing to concatenate")?;
    let rank = first.shape().len();
    let axis = axis_of(axis, rank, false)?;
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for p in parts {
        let same_elsewhere = p.shape().len() == rank
            && p.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == axis || a == b);
        if !same_elsewhere || p.elem() != first.elem() {
            return Err(format!(
                "cannot concatenate {:?} {:?} with {:?} {:?} on axis {axis}",
                first.elem(),
                first.shape(),
                p.elem(),
                p.shape()
            ));
        }
        shape[axis] += p.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let chunks: Vec<usize> = parts.iter().map(|p| p.shape()[axis..].iter().product()).collect();
    let values = match first.values() {
        Values::F32(_) => Values::F32(concat_values(
            &parts.iter().filter_map(|p| p.as_f32()).collect::<Vec<_>>(),
            &chunks,
            outer,
        )),
        Values::I64(_) => Values::I64(concat_values(
            &parts.iter().filter_map(|p| p.as_i64()).collect::<Vec<_>>(),
            &chunks,
            outer,
        )),
    };
    Tensor::new(shape, values)
}

fn softmax(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let v = f32_of(x, "the input")?;
    let axis = axis_of(axis, x.shape().len(), false)?;
    let (outer, dim, inner) = around(x.shape(), axis);
    let mut out = v.to_vec();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * dim + j) * inner + i;
            let max = (0..dim).map(|j| v[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..dim).map(|j| (v[at(j)] - max).exp()).sum();
            for j in 0..dim {
                out[at(j)] = (v[at(j)] - max).exp() / sum;
            }
        }
    }
    Tensor::f32(x.shape(), out)
}

fn cast(x: &Tensor, to: Elem) -> Result<Tensor, String> {
    let values = match (x.values(), to) {
        (Values::F32(v), Elem::I64) => Values::I64(v.iter().map(|&f| f as i64).collect()),
        (Values::I64(v), Elem::F32) => Values::F32(v.iter().map(|&i| i as f32).collect()),
        (same, _) => same.clone(),
    };
    Tensor::new(x.shape().to_vec(), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(shape, v.to_vec()).unwrap()
    }

    fn i(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::i64(shape, v.to_vec()).unwrap()
    }

    fn run(op: Op, inputs: &[&Tensor]) -> Result<Tensor, String> {
        op.eval(&inputs.iter().map(|t| Some(*t)).collect::<Vec<_>>())
    }

    #[test]
    fn matmul_is_rows_times_columns_and_refuses_mismatched_sizes() {
        let a = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(run(Op::MatMul, &[&a, &b]).unwrap(), f(&[2, 2], &[4.0, 5.0, 10.0, 11.0]));
        let v = f(&[3], &[1.0, 1.0, 1.0]);
        assert_eq!(run(Op::MatMul, &[&a, &v]).unwrap(), f(&[2], &[6.0, 15.0]));
        let err = run(Op::MatMul, &[&b, &b]).unwrap_err();
        assert!(err.contains("[3, 2]"), "{err}");
        assert!(run(Op::MatMul, &[&f(&[], &[1.0]), &b]).is_err());
    }

    #[test]
    fn gemm_transposes_scales_and_adds_c() {
        let a = f(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]); // [2, 3] transposed
        let b = f(&[2, 3], &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]); // [3, 2] transposed
        let c = f(&[2], &[0.5, -0.5]);
        let op = Op::Gemm { alpha: 2.0, beta: 2.0, trans_a: true, trans_b: true };
        let out = op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap();
        assert_eq!(out, f(&[2, 2], &[9.0, 9.0, 21.0, 21.0]));
    }

    #[test]
    fn arithmetic_broadcasts_as_numpy_does() {
        let rows = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let bias = f(&[3], &[10.0, 20.0, 30.0]);
        assert_eq!(
            run(Op::Binary(Binary::Add), &[&rows, &bias]).unwrap(),
            f(&[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0])
        );
        let col = f(&[2, 1], &[1.0, 2.0]);
        assert_eq!(
            run(Op::Binary(Binary::Sub), &[&col, &bias]).unwrap(),
            f(&[2, 3], &[-9.0, -19.0, -29.0, -8.0, -18.0, -28.0])
        );
        let s = f(&[], &[2.0]);
        assert_eq!(run(Op::Binary(Binary::Div), &[&s, &rows]).unwrap().shape(), &[2, 3]);
        assert!(run(Op::Binary(Binary::Mul), &[&rows, &f(&[2], &[1.0, 2.0])])
            .unwrap_err()
            .contains("broadcast"));
        assert!(run(Op::Binary(Binary::Div), &[&i(&[1], &[4]), &i(&[1], &[0])])
            .unwrap_err()
            .contains("zero"));
        assert!(run(Op::Binary(Binary::Add), &[&rows, &i(&[1], &[1])]).is_err());
    }

    #[test]
    fn argmax_takes_the_first_best_unless_asked_for_the_last() {
        let x = f(&[1, 2, 3], &[0.0, 5.0, 5.0, 7.0, 1.0, 2.0]);
        let op = |select_last| Op::ArgMax { axis: 2, keep_dims: false, select_last };
        assert_eq!(run(op(false), &[&x]).unwrap(), i(&[1, 2], &[1, 0]));
        assert_eq!(run(op(true), &[&x]).unwrap(), i(&[1, 2], &[2, 0]));
        let kept = Op::ArgMax { axis: -2, keep_dims: true, select_last: false };
        assert_eq!(run(kept, &[&x]).unwrap(), i(&[1, 1, 3], &[1, 0, 0]));
        assert!(run(Op::ArgMax { axis: 3, keep_dims: true, select_last: false }, &[&x]).is_err());
    }

    #[test]
    fn gather_concat_reshape_and_clip() {
        let table = f(&[4], &[0.5, 1.0, 1.5, 2.0]);
        assert_eq!(run(Op::Gather { axis: 0 }, &[&table, &i(&[1, 1], &[-1])]).unwrap(), f(&[1, 1], &[2.0]));
        assert!(run(Op::Gather { axis: 0 }, &[&table, &i(&[1], &[4])]).unwrap_err().contains("index 4"));
        let grid = f(&[1, 3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            run(Op::Gather { axis: 1 }, &[&grid, &i(&[2], &[2, 0])]).unwrap(),
            f(&[1, 2, 2], &[5.0, 6.0, 1.0, 2.0])
        );
        let row = f(&[1, 1, 2], &[9.0, 8.0]);
        let joined = run(Op::Concat { axis: 1 }, &[&row, &grid]).unwrap();
        assert_eq!(joined, f(&[1, 4, 2], &[9.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert!(run(Op::Concat { axis: 2 }, &[&row, &grid]).is_err());
        let flat = run(Op::Reshape { allow_zero: false }, &[&grid, &i(&[2], &[0, -1])]).unwrap();
        assert_eq!(flat.shape(), &[1, 6]);
        assert!(run(Op::Reshape { allow_zero: false }, &[&grid, &i(&[1], &[4])]).is_err());
        let clipped = Op::Clip.eval(&[Some(&grid), None, Some(&f(&[], &[3.5]))]).unwrap();
        assert_eq!(clipped.as_f32().unwrap(), &[1.0, 2.0, 3.0, 3.5, 3.5, 3.5]);
        assert_eq!(run(Op::Flatten { axis: 0 }, &[&grid]).unwrap().shape(), &[1, 6]);
    }

    #[test]
    fn activations_softmax_and_cast() {
        let x = f(&[1, 3], &[-1.0, 0.0, 2.0]);
        assert_eq!(run(Op::Unary(Unary::Relu), &[&x]).unwrap().as_f32().unwrap(), &[0.0, 0.0, 2.0]);
        assert_eq!(run(Op::Unary(Unary::Sigmoid), &[&x]).unwrap().as_f32().unwrap()[1], 0.5);
        let p = run(Op::Softmax { axis: -1 }, &[&x]).unwrap();
        assert!((p.as_f32().unwrap().iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(run(Op::Cast { to: Elem::I64 }, &[&x]).unwrap(), i(&[1, 3], &[-1, 0, 2]));
        assert!(run(Op::Unary(Unary::Tanh), &[&i(&[1], &[1])]).is_err());
    }
}

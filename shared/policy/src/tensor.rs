//! The values a policy graph computes on: dense row-major tensors of `f32` or `i64`, the two element
//! types the exported policies use (observations and logits; shapes, indices and actions).

/// The most values one tensor may hold (64 MB of f32): a policy network's tensors hold hundreds,
/// and a corrupt or hostile file must not make a function allocate without bound.
pub const MAX_VALUES: usize = 1 << 24;

/// How many values `shape` holds, or why it may not be built.
pub(crate) fn size_of(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| format!("shape {shape:?} holds more than {MAX_VALUES} values"))
}

/// Element type of a model input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
}

/// A tensor's values, flat in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem(&self) -> Elem {
        match self {
            Values::F32(_) => Elem::F32,
            Values::I64(_) => Elem::I64,
        }
    }
}

/// A dense tensor: a shape and as many values as the shape holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    values: Values,
}

impl Tensor {
    /// A tensor of `shape` holding `values`; an error if their counts differ.
    pub fn new(shape: Vec<usize>, values: Values) -> Result<Self, String> {
        let want = size_of(&shape)?;
        if want != values.len() {
            return Err(format!("shape {shape:?} holds {want} values, {} given", values.len()));
        }
        Ok(Self { shape, values })
    }

    pub fn f32(shape: &[usize], values: Vec<f32>) -> Result<Self, String> {
        Self::new(shape.to_vec(), Values::F32(values))
    }

    pub fn i64(shape: &[usize], values: Vec<i64>) -> Result<Self, String> {
        Self::new(shape.to_vec(), Values::I64(values))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], elem: Elem) -> Result<Self, String> {
        let n = size_of(shape)?;
        let values = match elem {
            Elem::F32 => Values::F32(vec![0.0; n]),
            Elem::I64 => Values::I64(vec![0; n]),
        };
        Ok(Self { shape: shape.to_vec(), values })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn values(&self) -> &Values {
        &self.values
    }

    pub fn elem(&self) -> Elem {
        self.values.elem()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.values {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }

    pub(crate) fn into_parts(self) -> (Vec<usize>, Values) {
        (self.shape, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_must_hold_exactly_its_values() {
        assert!(Tensor::f32(&[2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::f32(&[2, 3], vec![0.0; 5]).unwrap_err();
        assert!(err.contains("[2, 3]") && err.contains("6") && err.contains("5"), "{err}");
        let scalar = Tensor::i64(&[], vec![4]).unwrap();
        assert_eq!((scalar.len(), scalar.as_i64()), (1, Some(&[4i64][..])));
        assert_eq!(scalar.as_f32(), None);
        assert_eq!(Tensor::zeros(&[1, 0], Elem::F32).unwrap().len(), 0);
        let err = Tensor::zeros(&[usize::MAX, 2], Elem::F32).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        assert!(Tensor::zeros(&[MAX_VALUES + 1], Elem::I64).is_err());
    }
}

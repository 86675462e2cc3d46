//! Host-side f32 tensors: the exchange format between checkpoints, the model and the CLI.
use crate::error::{Error, Result};
use burn::tensor::{Tensor, TensorData, backend::Backend};

/// A dense row-major f32 tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (row-major); errors when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Internal(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(HostTensor { shape, data })
    }

    /// Copy a device tensor to the host.
    pub fn from_tensor<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap_or_else(|e| unreachable!("converted to f32 just before: {e:?}"));
        HostTensor { shape, data }
    }

    /// Copy to a device tensor of rank `D` (the rank must match).
    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        debug_assert_eq!(self.shape.len(), D, "rank mismatch");
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        )
    }

    /// Transpose of a matrix (`[r, c]` → `[c, r]`).
    pub fn transpose(&self) -> HostTensor {
        debug_assert_eq!(self.shape.len(), 2, "transpose needs a matrix");
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut data = vec![0f32; r * c];
        for i in 0..r {
            let row = &self.data[i * c..(i + 1) * c];
            for (j, &x) in row.iter().enumerate() {
                data[j * r + i] = x;
            }
        }
        HostTensor {
            shape: vec![c, r],
            data,
        }
    }

    /// Little-endian f32 bytes of the data (the safetensors F32 encoding).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.data.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

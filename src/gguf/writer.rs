//! A streaming f32 safetensors writer: the header is laid out from the shapes up front, then
//! each tensor is produced and written in turn, so only one tensor is in memory at a time.
use crate::error::{Error, Result};
use serde_json::{Map, json};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write `tensors` (name, row-major shape) as f32 to `path`; `produce(i)` yields the values of
/// tensor `i`, called once per tensor in order. `metadata` goes to `__metadata__`.
pub fn write_f32_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    metadata: &[(&str, &str)],
    mut produce: impl FnMut(usize) -> Result<Vec<f32>>,
) -> Result<()> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        header.insert("__metadata__".into(), meta.into());
    }
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_string(&header)
        .map_err(|e| Error::Internal(format!("serializing the safetensors header: {e}")))?
        .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');

    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    w.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&header).map_err(io)?;
    let mut buf = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let values = produce(i)?;
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(Error::Internal(format!(
                "tensor {name}: produced {} values for shape {shape:?}",
                values.len()
            )));
        }
        buf.clear();
        buf.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&buf).map_err(io)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(())
}

//! The GGUF container (versions 2 and 3, little-endian): header, metadata key/values, tensor
//! infos and the aligned data section. Parsing is bounds-checked against the file length, so a
//! corrupt or malicious header (huge counts, lengths, offsets) gives an error, never a panic
//! or an unbounded allocation.
use super::quant::{GgmlType, type_name};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// ggml's limit on tensor dimensions.
const MAX_DIMS: u32 = 4;
/// Deepest array-of-array nesting accepted in metadata (real files use 1).
const MAX_ARRAY_DEPTH: usize = 3;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }

    /// Any non-negative integer value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any numeric value as f64 (f32 widens exactly).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml dimensions, `ne[0]` (the fastest-varying) first.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The row-major (C-order) shape a Hugging Face tensor has: the ggml dims reversed.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF header: everything but the tensor data.
#[derive(Debug, Clone)]
pub struct Header {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub version: u32,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
}

/// A reader that counts its position and refuses to read past the declared length.
struct Source<'a, R> {
    r: R,
    pos: u64,
    len: u64,
    path: &'a Path,
}

impl<R: Read> Source<'_, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, need: u64, what: &str) -> Error {
        Error::file(
            self.path,
            format!(
                "truncated GGUF: {what} needs {need} byte(s) at offset {}, but the file has {} byte(s)",
                self.pos, self.len
            ),
        )
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let need = buf.len() as u64;
        if need > self.remaining() {
            return Err(self.truncated(need, what));
        }
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated(need, what)
            } else {
                Error::io(self.path, e)
            }
        })?;
        self.pos += need;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > self.remaining() {
            return Err(self.truncated(n, what));
        }
        let mut buf = vec![0u8; n as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|e| {
            Error::file(
                self.path,
                format!("{what} is not valid UTF-8 ({e}) before offset {}", self.pos),
            )
        })
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Error::file(
                        self.path,
                        format!("{what}: bool byte {b} is neither 0 nor 1"),
                    ));
                }
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::file(
                        self.path,
                        format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
                    ));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                let min = min_value_size(elem).ok_or_else(|| {
                    Error::file(
                        self.path,
                        format!("{what}: unknown array element type {elem}"),
                    )
                })?;
                let need = n.saturating_mul(min);
                if need > self.remaining() {
                    return Err(self.truncated(need, &format!("{what} ({n} elements)")));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => {
                return Err(Error::file(
                    self.path,
                    format!("{what}: unknown metadata value type {t}"),
                ));
            }
        })
    }
}

/// The fewest bytes a value of GGUF type `ty` occupies, or None for an unknown type.
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl Header {
    /// Parse a header from `r`, which yields a file of `file_len` bytes from its start. `path`
    /// only names the file in errors.
    pub fn read(r: impl Read, file_len: u64, path: &Path) -> Result<Header> {
        let mut src = Source {
            r,
            pos: 0,
            len: file_len,
            path,
        };
        let magic: [u8; 4] = src.array("magic")?;
        if &magic != b"GGUF" {
            return Err(Error::file(
                path,
                format!(
                    "not a GGUF file: it starts with {magic:02x?}, expected the magic \"GGUF\""
                ),
            ));
        }
        let version = src.u32("version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(Error::file(path, "big-endian GGUF files are not supported"));
        }
        if version != 2 && version != 3 {
            return Err(Error::file(
                path,
                format!("GGUF version {version} is not supported (only 2 and 3)"),
            ));
        }
        let tensor_count = src.u64("tensor count")?;
        let kv_count = src.u64("metadata count")?;
        // Each key/value needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info
        // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
        let bound = |n: u64, min: u64| n.checked_mul(min).is_none_or(|b| b > src.remaining());
        if bound(kv_count, 13) {
            return Err(src.truncated(
                kv_count.saturating_mul(13),
                &format!("{kv_count} metadata entries"),
            ));
        }
        if bound(tensor_count, 24) {
            return Err(src.truncated(
                tensor_count.saturating_mul(24),
                &format!("{tensor_count} tensor infos"),
            ));
        }

        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut index = HashMap::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = src.string(&format!("metadata key #{i}"))?;
            let what = format!("metadata value '{key}'");
            let ty = src.u32(&what)?;
            let value = src.value(ty, &what, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::file(path, format!("duplicate metadata key '{key}'")));
            }
            metadata.push((key, value));
        }

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = HashMap::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = src.string(&format!("tensor info #{i} name"))?;
            let what = format!("tensor info '{name}'");
            let n_dims = src.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::file(
                    path,
                    format!("{what}: {n_dims} dimensions (expected 1 to {MAX_DIMS})"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(src.u64(&what)?);
            }
            let type_id = src.u32(&what)?;
            let offset = src.u64(&what)?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| {
                let supported: Vec<&str> = GgmlType::ALL.iter().map(|t| t.name()).collect();
                Error::file(
                    path,
                    format!(
                        "tensor '{name}' has ggml type {} (id {type_id}), which this importer does not \
                         de-quantize (supported: {})",
                        type_name(type_id),
                        supported.join(", ")
                    ),
                )
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    Error::file(path, format!("{what}: dimensions {dims:?} overflow"))
                })?;
            if !dims[0].is_multiple_of(ty.block_size()) {
                return Err(Error::file(
                    path,
                    format!(
                        "{what}: row length {} is not a multiple of the {ty} block size {}",
                        dims[0],
                        ty.block_size()
                    ),
                ));
            }
            let n_bytes = ty.n_bytes(n_elements).ok_or_else(|| {
                Error::file(path, format!("{what}: dimensions {dims:?} overflow"))
            })?;
            if names.insert(name.clone(), i).is_some() {
                return Err(Error::file(path, format!("duplicate tensor name '{name}'")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let mut header = Header {
            path: path.to_path_buf(),
            version,
            metadata,
            index,
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            file_len,
        };
        if let Some(v) = header.get("general.alignment") {
            let a = v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                Error::file(
                    path,
                    format!("general.alignment must be a power of two, got {v:?}"),
                )
            })?;
            header.alignment = a;
        }
        header.data_offset = src
            .pos
            .div_ceil(header.alignment)
            .saturating_mul(header.alignment);
        let data_len = file_len.saturating_sub(header.data_offset);
        for t in &tensors {
            if !t.offset.is_multiple_of(header.alignment) {
                return Err(Error::file(
                    path,
                    format!(
                        "tensor '{}': data offset {} is not aligned to {}",
                        t.name, t.offset, header.alignment
                    ),
                ));
            }
            if t.offset
                .checked_add(t.n_bytes)
                .is_none_or(|end| end > data_len)
            {
                return Err(Error::file(
                    path,
                    format!(
                        "truncated GGUF: tensor '{}' ({} bytes at data offset {}) runs past the end of the \
                         file ({} bytes of data from offset {})",
                        t.name, t.n_bytes, t.offset, data_len, header.data_offset
                    ),
                ));
            }
        }
        header.tensors = tensors;
        Ok(header)
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn wrong_type(&self, key: &str, expected: &str, v: &Value) -> Error {
        Error::file(
            &self.path,
            format!(
                "metadata '{key}' should be {expected}, found {}",
                v.type_name()
            ),
        )
    }

    fn missing(&self, key: &str) -> Error {
        Error::file(&self.path, format!("metadata '{key}' is missing"))
    }

    /// An optional non-negative integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
            })
            .transpose()
    }

    /// A required non-negative integer.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.wrong_type(key, "a number", v))
            })
            .transpose()
    }

    /// An optional bool.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool", v)))
            .transpose()
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "a string", v))
            })
            .transpose()
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional array, with each element converted by `f` (None = wrong element type).
    pub fn opt_array<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, expected, v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                f(item).ok_or_else(|| {
                    Error::file(
                        &self.path,
                        format!(
                            "metadata '{key}'[{i}] should be {expected}, found {}",
                            item.type_name()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<T>>>()
            .map(Some)
    }
}

/// An open GGUF file: its parsed header and a handle for reading tensor data.
pub struct GgufFile {
    pub header: Header,
    file: File,
}

impl GgufFile {
    /// Open and parse the header of a GGUF file (a buffered read; tensor data is read later,
    /// one tensor at a time).
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let header = Header::read(BufReader::with_capacity(1 << 20, &file), len, path)?;
        Ok(GgufFile { header, file })
    }

    /// The raw bytes of one tensor.
    pub fn tensor_bytes(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        let path = &self.header.path;
        let start = self.header.data_offset + t.offset;
        self.file
            .seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
        let mut buf = vec![0u8; t.n_bytes as usize];
        self.file.read_exact(&mut buf).map_err(|e| {
            Error::file(
                path,
                format!(
                    "reading tensor '{}' ({} bytes at offset {start}): {e}",
                    t.name, t.n_bytes
                ),
            )
        })?;
        Ok(buf)
    }

    /// One tensor de-quantized to f32, in ggml order (`ne[0]` fastest).
    pub fn tensor_f32(&mut self, t: &TensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(t)?;
        super::quant::dequantize(t.ty, &bytes, t.n_elements as usize)
    }
}

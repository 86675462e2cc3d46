//! Reading externally generated completions: JSON Lines (optionally gzip-compressed), one object
//! per line, blank lines ignored.
use crate::error::{Error, Location, Result};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// One sample record: its 1-based line and its fields.
#[derive(Debug, Clone)]
pub struct Record {
    pub line: usize,
    pub fields: Map<String, Value>,
}

impl Record {
    /// A required string field.
    pub fn string(&self, path: &Path, key: &str) -> Result<String> {
        match self.fields.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.error(
                path,
                format!("field {key:?} must be a string, found {other}"),
            )),
            None => Err(self.error(path, format!("missing field {key:?}"))),
        }
    }

    /// An error about this record.
    pub fn error(&self, path: &Path, message: impl Into<String>) -> Error {
        Error::record(path, Location::Line(self.line), message)
    }
}

/// Read every record of a JSONL samples file. Errors name the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::file(path, format!("gzip stream is truncated or corrupt ({e})")))?;
        out
    } else {
        raw
    };
    let text =
        String::from_utf8(bytes).map_err(|e| Error::file(path, format!("not UTF-8 text ({e})")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = Location::Line(i + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Error::record(path, location, format!("invalid JSON ({e})")))?;
        let Value::Object(fields) = value else {
            return Err(Error::record(
                path,
                location,
                "expected a JSON object per line",
            ));
        };
        records.push(Record {
            line: i + 1,
            fields,
        });
    }
    if records.is_empty() {
        return Err(Error::file(
            path,
            "no samples (expected JSON Lines, one object per line)",
        ));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "{\"a\": \"x\"}\n\n{\"a\": 1}\n").unwrap();
        let r = read_jsonl(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].line, 3);
        assert_eq!(r[0].string(&p, "a").unwrap(), "x");
        let e = r[1].string(&p, "a").unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("must be a string"),
            "{e}"
        );
        assert!(
            r[0].string(&p, "b")
                .unwrap_err()
                .to_string()
                .contains("missing field \"b\"")
        );

        std::fs::write(&p, "{\"a\": 1}\nnot json\n").unwrap();
        let e = read_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("invalid JSON"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        assert!(
            read_jsonl(&p)
                .unwrap_err()
                .to_string()
                .contains("no samples")
        );
    }

    #[test]
    fn reads_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"task_id\": \"HumanEval/0\"}\n").unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        assert_eq!(
            read_jsonl(&p).unwrap()[0].string(&p, "task_id").unwrap(),
            "HumanEval/0"
        );
    }
}

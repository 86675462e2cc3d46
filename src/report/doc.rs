//! The report as a document: sections of text, notes, tables and rendered figures, written out
//! as a self-contained HTML page and a Markdown summary.
use super::render::{Figure, render};
use crate::error::Result;
use base64::Engine;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A rendered figure: `figures/<name>.png` and `.svg` exist.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub name: String,
    pub caption: String,
    pub size: (u32, u32),
    pub svg: String,
}

/// A table with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One piece of a section.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    /// Something the reader must know (data missing, a caveat); shown highlighted.
    Note(String),
    Figure(Rendered),
    Table(Table),
    /// A bulleted list.
    List(Vec<String>),
}

/// One section of the report.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: String,
    pub title: String,
    pub blocks: Vec<Block>,
    /// Why the section has no content (its data is absent), if so.
    pub skipped: Option<String>,
}

impl Section {
    pub fn new(id: &str, title: &str) -> Section {
        Section {
            id: id.into(),
            title: title.into(),
            blocks: Vec::new(),
            skipped: None,
        }
    }

    /// A section whose data is absent: it shows only `why`.
    pub fn skipped(id: &str, title: &str, why: impl Into<String>) -> Section {
        Section {
            skipped: Some(why.into()),
            ..Section::new(id, title)
        }
    }

    pub fn text(&mut self, s: impl Into<String>) {
        self.blocks.push(Block::Text(s.into()));
    }
    pub fn note(&mut self, s: impl Into<String>) {
        self.blocks.push(Block::Note(s.into()));
    }
    pub fn table(&mut self, t: Table) {
        if !t.rows.is_empty() {
            self.blocks.push(Block::Table(t));
        }
    }

    /// Number of figures in the section.
    pub fn figures(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| matches!(b, Block::Figure(_)))
            .count()
    }
}

/// Renders figures into one directory and remembers their files.
pub struct Figures {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

impl Figures {
    /// Render `figure` as `<name>.png` and `<name>.svg` and add it to `section`.
    pub fn add<F: Figure>(
        &mut self,
        section: &mut Section,
        name: &str,
        caption: &str,
        figure: &F,
    ) -> Result<()> {
        let svg = render(figure, &self.dir, name)?;
        self.files.push(self.dir.join(format!("{name}.png")));
        self.files.push(self.dir.join(format!("{name}.svg")));
        section.blocks.push(Block::Figure(Rendered {
            name: name.to_string(),
            caption: caption.to_string(),
            size: figure.size(),
            svg,
        }));
        Ok(())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = r#"
:root { --ink: #1e1e1e; --muted: #5a5a5a; --line: #dddddd; --note: #fff6dd; --noteline: #e0b000; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fafafa;
  font: 16px/1.5 "DejaVu Sans", Verdana, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff;
  box-shadow: 0 0 0 1px var(--line); }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 22px; margin: 40px 0 10px; padding-top: 10px; border-top: 2px solid var(--line); }
p.sub { color: var(--muted); margin: 0 0 16px; }
nav ol { columns: 2; margin: 8px 0 0; padding-left: 22px; }
nav a, figcaption a { color: #1f5fa8; }
.note { background: var(--note); border-left: 4px solid var(--noteline); padding: 8px 12px; margin: 12px 0; }
.skipped { color: var(--muted); }
figure { margin: 18px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 6px; }
.tablewrap { overflow-x: auto; margin: 12px 0; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 13px; word-break: break-all; }
p.broken { color: #b00020; font-weight: bold; }
"#;

/// Marks, after load, how many figures there are and which failed to load, as attributes of
/// `<body>` (the browser test reads them) and visibly under a broken figure.
const SCRIPT: &str = r#"
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img[data-figure]');
  var broken = [];
  imgs.forEach(function (im) {
    if (!(im.complete && im.naturalWidth > 0)) {
      broken.push(im.getAttribute('data-figure'));
      im.insertAdjacentHTML('afterend', '<p class="broken">This figure failed to load.</p>');
    }
  });
  document.body.setAttribute('data-figures', String(imgs.length));
  document.body.setAttribute('data-figures-broken', broken.length ? broken.join(' ') : 'none');
});
"#;

fn is_numeric(cell: &str) -> bool {
    let t = cell.trim_end_matches('%').trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

/// The self-contained HTML page: CSS inline, every figure an `<img>` with its SVG inlined as a
/// data URI (links to the PNG/SVG files beside it).
pub fn html(title: &str, subtitle: &str, sections: &[Section]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n<p class=\"sub\">{}</p>\n",
        esc(title),
        esc(title),
        esc(subtitle)
    );
    h.push_str("<nav><strong>Contents</strong><ol>\n");
    for s in sections {
        let _ = writeln!(h, "<li><a href=\"#{}\">{}</a></li>", s.id, esc(&s.title));
    }
    h.push_str("</ol></nav>\n");
    for s in sections {
        let _ = writeln!(h, "<section id=\"{}\">\n<h2>{}</h2>", s.id, esc(&s.title));
        if let Some(why) = &s.skipped {
            let _ = writeln!(
                h,
                "<p class=\"note skipped\"><strong>Not shown:</strong> {}</p>",
                esc(why)
            );
        }
        for b in &s.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(h, "<p>{}</p>", esc(t));
                }
                Block::Note(t) => {
                    let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(t));
                }
                Block::List(items) => {
                    h.push_str("<ul>\n");
                    for i in items {
                        let _ = writeln!(h, "<li>{}</li>", esc(i));
                    }
                    h.push_str("</ul>\n");
                }
                Block::Table(t) => {
                    h.push_str("<div class=\"tablewrap\"><table>\n<thead><tr>");
                    for c in &t.header {
                        let _ = write!(h, "<th>{}</th>", esc(c));
                    }
                    h.push_str("</tr></thead>\n<tbody>\n");
                    for r in &t.rows {
                        h.push_str("<tr>");
                        for c in r {
                            let class = if is_numeric(c) { " class=\"num\"" } else { "" };
                            let _ = write!(h, "<td{class}>{}</td>", esc(c));
                        }
                        h.push_str("</tr>\n");
                    }
                    h.push_str("</tbody></table></div>\n");
                }
                Block::Figure(f) => {
                    let _ = writeln!(
                        h,
                        "<figure id=\"fig-{name}\"><img data-figure=\"{name}\" width=\"{w}\" height=\"{hh}\" alt=\"{alt}\" \
                         src=\"data:image/svg+xml;base64,{data}\">\n<figcaption>{alt} \
                         (<a href=\"figures/{name}.svg\">SVG</a> · <a href=\"figures/{name}.png\">PNG</a>)</figcaption></figure>",
                        name = f.name,
                        w = f.size.0,
                        hh = f.size.1,
                        alt = esc(&f.caption),
                        data = b64.encode(f.svg.as_bytes()),
                    );
                }
            }
        }
        h.push_str("</section>\n");
    }
    let _ = write!(h, "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown summary: the same sections, figures linked as PNG (with SVG links).
pub fn markdown(title: &str, subtitle: &str, sections: &[Section]) -> String {
    let mut m = format!("# {title}\n\n{subtitle}\n\n");
    for s in sections {
        let _ = writeln!(m, "## {}\n", s.title);
        if let Some(why) = &s.skipped {
            let _ = writeln!(m, "> **Not shown:** {why}\n");
        }
        for b in &s.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(m, "{t}\n");
                }
                Block::Note(t) => {
                    let _ = writeln!(m, "> {t}\n");
                }
                Block::List(items) => {
                    for i in items {
                        let _ = writeln!(m, "- {i}");
                    }
                    m.push('\n');
                }
                Block::Table(t) => {
                    let _ = writeln!(
                        m,
                        "| {} |",
                        t.header
                            .iter()
                            .map(|c| md_cell(c))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                    let _ = writeln!(m, "|{}", "---|".repeat(t.header.len()));
                    for r in &t.rows {
                        let _ = writeln!(
                            m,
                            "| {} |",
                            r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                        );
                    }
                    m.push('\n');
                }
                Block::Figure(f) => {
                    let _ = writeln!(
                        m,
                        "![{cap}](figures/{n}.png)\n\n*{cap}* ([SVG](figures/{n}.svg))\n",
                        cap = md_cell(&f.caption),
                        n = f.name
                    );
                }
            }
        }
    }
    m
}

/// Write `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    crate::util::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

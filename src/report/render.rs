//! Rendering one figure twice — PNG (plotters' bitmap backend) and SVG — with the embedded
//! DejaVu Sans font, so that a report looks the same on every machine.
//!
//! Fonts: `assets/fonts/DejaVuSans.ttf` is compiled in and registered with plotters' ab_glyph
//! text renderer as the `sans-serif` family (the bitmap backend rasterizes it). In the SVGs, text
//! is **converted to paths**: every `<text>` element plotters' SVG backend writes is replaced by
//! the glyph outlines of the same font, with the layout box, anchor and baseline plotters' bitmap
//! backend uses (glyphs keep their side bearings, which the bitmap renderer drops, so letter
//! spacing in an SVG can differ from its PNG by a pixel).
//! An SVG therefore needs no font (in a browser, an `<img>`, Inkscape or a LaTeX toolchain alike)
//! and renders identically everywhere; the price is that its text is not selectable.
use crate::error::{Error, Result};
use ab_glyph::{Font, FontRef, OutlineCurve, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;
use regex::Regex;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera license, see assets/fonts/DejaVuSans.LICENSE).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name figures use for all text.
pub const FAMILY: &str = "sans-serif";

/// The parsed font, registered with plotters on first use.
fn font() -> Result<&'static FontRef<'static>> {
    static FONT: OnceLock<std::result::Result<FontRef<'static>, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let font = FontRef::try_from_slice(FONT_BYTES).map_err(|e| format!("{e}"))?;
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "plotters rejected the embedded font".to_string())?;
        Ok(font)
    })
    .as_ref()
    .map_err(|e| Error::Internal(format!("embedded font DejaVuSans.ttf: {e}")))
}

/// Something drawable on any plotters backend at a fixed pixel size.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draw onto `root` (already filled white).
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Draw `figure` to `dir/name.png` and `dir/name.svg`; returns the SVG text.
pub fn render<F: Figure>(figure: &F, dir: &Path, name: &str) -> Result<String> {
    font()?;
    let size = figure.size();
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Error::file(&png, e.to_string()))?;
        figure
            .draw(&root)
            .map_err(|e| Error::file(&png, format!("drawing failed: {e}")))?;
        root.present()
            .map_err(|e| Error::file(&png, format!("writing the PNG failed: {e}")))?;
    }
    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Error::file(&svg_path, e.to_string()))?;
        figure
            .draw(&root)
            .map_err(|e| Error::file(&svg_path, format!("drawing failed: {e}")))?;
        root.present()
            .map_err(|e| Error::file(&svg_path, format!("writing the SVG failed: {e}")))?;
    }
    let svg = text_to_paths(font()?, &svg)?;
    crate::util::write_atomic(&svg_path, svg.as_bytes())?;
    Ok(svg)
}

/// Where a text's anchor point sits on its layout box.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// Replace every `<text>` element of plotters' SVG output by a filled `<path>` of its glyphs.
fn text_to_paths(font: &FontRef<'static>, svg: &str) -> Result<String> {
    static TEXT: OnceLock<Regex> = OnceLock::new();
    let re = TEXT.get_or_init(|| {
        Regex::new(
            r#"(?s)<text x="(-?\d+)" y="(-?\d+)" dy="([^"]*)" text-anchor="(start|middle|end)" font-family="[^"]*" font-size="([0-9.eE+-]+)" opacity="([0-9.eE+-]+)" fill="(#[0-9A-Fa-f]{6})"([^>]*)>\n?(.*?)\n?</text>\n?"#,
        )
        .expect("static regex")
    });
    let bad = |m: &str| Error::Internal(format!("unexpected SVG text element from plotters: {m}"));
    let mut out = String::with_capacity(svg.len());
    let mut last = 0;
    for caps in re.captures_iter(svg) {
        let whole = caps.get(0).expect("group 0");
        out.push_str(&svg[last..whole.start()]);
        last = whole.end();
        let num = |i: usize| caps[i].parse::<f64>().map_err(|_| bad(whole.as_str()));
        let (x, y, font_size, opacity) = (num(1)?, num(2)?, num(5)?, num(6)?);
        let anchor = match &caps[4] {
            "start" => Anchor::Start,
            "middle" => Anchor::Middle,
            _ => Anchor::End,
        };
        // plotters: VPos::Top → "0.76em", Center → "0.5ex", Bottom → "-0.5ex".
        let v = match &caps[3] {
            "0.76em" => 0,
            "0.5ex" => 1,
            "-0.5ex" => 2,
            _ => return Err(bad(whole.as_str())),
        };
        let rotate = match caps[8].find("rotate(") {
            Some(i) => caps[8][i + 7..]
                .split(',')
                .next()
                .and_then(|a| a.trim().parse::<i32>().ok())
                .ok_or_else(|| bad(whole.as_str()))?,
            None => 0,
        };
        let text = caps[9]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        let d = text_path(font, &text, font_size, anchor, v, rotate, (x, y));
        let _ = writeln!(
            out,
            r#"<path d="{d}" fill="{}" fill-opacity="{opacity}"/>"#,
            &caps[7]
        );
    }
    out.push_str(&svg[last..]);
    if out.contains("<text") {
        return Err(bad("a <text> element the converter does not understand"));
    }
    Ok(out)
}

/// The SVG path data of `text` set in `font` at `size`, placed as plotters' bitmap backend
/// places it: its layout box (advance widths, height `size / 1.24`) anchored at `pos`,
/// the baseline `size / 2` below the box's top, then rotated by `rotate` degrees about `pos`. `font_size` is the SVG attribute (plotters
/// writes the font size divided by 1.24), `v` the vertical anchor (0 top, 1 center, 2 bottom).
fn text_path(
    font: &FontRef<'static>,
    text: &str,
    font_size: f64,
    anchor: Anchor,
    v: u8,
    rotate: i32,
    pos: (f64, f64),
) -> String {
    let size = font_size * 1.24;
    let scaled = font.as_scaled(size as f32);
    let (hs, vs) = (scaled.h_scale_factor(), scaled.v_scale_factor());
    // Layout box, as plotters' ab_glyph `estimate_layout` computes it.
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(c);
        width += scaled.h_advance(id);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        prev = Some(id);
    }
    let (w, h) = (width as i32, font_size as i32);
    let dx = match anchor {
        Anchor::Start => 0,
        Anchor::End => -w,
        Anchor::Middle => -w / 2,
    };
    let dy = match v {
        0 => 0,
        1 => -h / 2,
        _ => -h,
    };
    let place = |x: f32, y: f32| -> (f32, f32) {
        let (x, y) = (x + dx as f32, y + dy as f32);
        let (x, y) = match rotate.rem_euclid(360) {
            90 => (-y, x),
            180 => (-x, -y),
            270 => (y, -x),
            _ => (x, y),
        };
        (x + pos.0 as f32, y + pos.1 as f32)
    };
    let baseline = (size / 2.0) as f32;
    let mut d = String::new();
    let mut pen = 0f32;
    let mut prev = None;
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        prev = Some(id);
        if let Some(outline) = font.outline(id) {
            let pt = |p: ab_glyph::Point| place(pen + p.x * hs, baseline - p.y * vs);
            let mut last: Option<ab_glyph::Point> = None;
            for curve in &outline.curves {
                let (start, end) = match *curve {
                    OutlineCurve::Line(a, b) | OutlineCurve::Quad(a, _, b) => (a, b),
                    OutlineCurve::Cubic(a, _, _, b) => (a, b),
                };
                if last != Some(start) {
                    if last.is_some() {
                        d.push('Z');
                    }
                    let (x, y) = pt(start);
                    let _ = write!(d, "M{x:.2} {y:.2}");
                }
                match *curve {
                    OutlineCurve::Line(_, b) => {
                        let (x, y) = pt(b);
                        let _ = write!(d, "L{x:.2} {y:.2}");
                    }
                    OutlineCurve::Quad(_, c, b) => {
                        let ((cx, cy), (x, y)) = (pt(c), pt(b));
                        let _ = write!(d, "Q{cx:.2} {cy:.2} {x:.2} {y:.2}");
                    }
                    OutlineCurve::Cubic(_, c1, c2, b) => {
                        let ((ax, ay), (bx, by), (x, y)) = (pt(c1), pt(c2), pt(b));
                        let _ = write!(d, "C{ax:.2} {ay:.2} {bx:.2} {by:.2} {x:.2} {y:.2}");
                    }
                }
                last = Some(end);
            }
            if last.is_some() {
                d.push('Z');
            }
        }
        pen += scaled.h_advance(id);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Label;
    impl Figure for Label {
        fn size(&self) -> (u32, u32) {
            (200, 80)
        }
        fn draw<DB: DrawingBackend>(
            &self,
            root: &DrawingArea<DB, Shift>,
        ) -> std::result::Result<(), String> {
            root.draw(&Text::new("Hg 0.5", (20, 20), (FAMILY, 24).into_font()))
                .map_err(|e| e.to_string())?;
            let rotated = (FAMILY, 14).into_font().transform(FontTransform::Rotate270);
            root.draw(&Text::new("a<b & c", (150, 70), rotated))
                .map_err(|e| e.to_string())
        }
    }

    #[test]
    fn svg_text_becomes_paths_and_png_has_ink() {
        let dir = tempfile::tempdir().unwrap();
        let svg = render(&Label, dir.path(), "label").unwrap();
        assert!(!svg.contains("<text"), "text must be converted to paths");
        assert_eq!(svg.matches("<path d=\"M").count(), 2, "one path per text");
        assert!(
            svg.matches('M').count() >= 5 + 2,
            "every glyph contour starts a subpath"
        );
        assert!(dir.path().join("label.png").is_file());
        assert!(dir.path().join("label.svg").is_file());
    }
}

//! Reports: HTML, Markdown and PNG/SVG figures of an experiment directory (being implemented).

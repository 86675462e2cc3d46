//! Probe specifications: the shipped specs parse and resolve their layers by the documented
//! rule; bad specs fail with errors that name the file and the field.
use mixprobe::probe::spec::{Content, LayerSel, Layers, Method, Pooling, ProbeSpec, TextTemplate};
use std::path::Path;

fn shipped(name: &str) -> ProbeSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("probes")
        .join(name);
    ProbeSpec::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn paper_spec_is_the_papers_protocol() {
    let spec = shipped("paper.toml");
    assert_eq!(spec.sources(), ["math", "code", "general"]);
    assert!(spec.sets.iter().all(|s| s.count == Some(100)));
    assert_eq!(spec.sets[0].path, Path::new("gsm8k/train.jsonl"));
    assert_eq!(spec.pooling, Pooling::Mean);
    assert_eq!(spec.projection, Method::Tsne);
    assert_eq!(spec.text.content, Content::Query);
    assert_eq!(spec.text.template, TextTemplate::Raw);
    // layer 15 of 32 blocks; scaled for shallower models: round(15 * L / 32)
    assert_eq!(spec.layers.resolve(32).unwrap(), [15]);
    assert_eq!(spec.layers.resolve(40).unwrap(), [15]);
    assert_eq!(spec.layers.resolve(30).unwrap(), [14]);
    assert_eq!(spec.layers.resolve(16).unwrap(), [8]); // 7.5 rounds up
    assert_eq!(spec.layers.resolve(4).unwrap(), [2]);
    assert_eq!(shipped("paper-last.toml").pooling, Pooling::Last);
    let skip = shipped("paper-skip-first.toml");
    assert_eq!(skip.pooling, Pooling::MeanSkipFirst);
    assert_eq!(
        (skip.sets.clone(), skip.layers.clone()),
        (spec.sets.clone(), spec.layers.clone())
    );
}

#[test]
fn other_shipped_specs_parse() {
    let bench = shipped("benchmarks.toml");
    assert_eq!(bench.sources(), ["gsm8k", "humaneval", "mtbench"]);
    assert_eq!(bench.sets[2].count, None);
    let demo = shipped("demo.toml");
    assert_eq!(demo.layers.resolve(4).unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn layer_selectors_follow_the_documented_rule() {
    let l: Layers = "0, middle,last,15/32 of depth,first,3".parse().unwrap();
    assert_eq!(l.resolve(30).unwrap(), [0, 3, 14, 15, 30]);
    assert_eq!(l.resolve(7).unwrap(), [0, 3, 7]); // middle 3, 15/32 of 7 = 3.28 -> 3
    let all: Layers = "all".parse().unwrap();
    assert_eq!(all.resolve(2).unwrap(), [0, 1, 2]);
    assert_eq!(
        "16/32".parse::<LayerSel>().unwrap(),
        LayerSel::Depth { layer: 16, of: 32 }
    );
    let e = "31".parse::<Layers>().unwrap().resolve(30).unwrap_err();
    assert!(e.to_string().contains("31 is out of range"), "{e}");
    for bad in ["fifteen", "3/0", "5/4", "-1", ""] {
        let e = bad.parse::<Layers>().unwrap_err().to_string();
        assert!(e.contains("layer"), "{bad}: {e}");
    }
    // TOML: a single string, integers and strings mixed
    let spec = ProbeSpec::from_toml_str(
        "layers = [2, \"last\"]\n[[set]]\nname = \"a\"\npath = \"x.jsonl\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(spec.layers.resolve(5).unwrap(), [2, 5]);
    // serialisation round trip (the spec is stored in index.json)
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""layers":[2,"last"]"#), "{json}");
    let back: ProbeSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
}

/// A spec with one line replaced or added, parsed as `bad.toml`; returns the error text.
fn error_of(toml: &str) -> String {
    let e = ProbeSpec::from_toml_str(toml, "probes/bad.toml").unwrap_err();
    assert!(e.is_user_error(), "{e:?}");
    e.to_string()
}

const SET: &str = "[[set]]\nname = \"math\"\npath = \"gsm8k/train.jsonl\"\ncount = 5\n";

#[test]
fn bad_specs_name_the_file_and_field() {
    let cases: &[(String, &[&str])] = &[
        (
            format!("layers = 3\npooling = \"max\"\n{SET}"),
            &["pooling", "max"],
        ),
        (
            format!("layers = \"fifteen\"\n{SET}"),
            &["fifteen", "layer"],
        ),
        (format!("layers = -2\n{SET}"), &["negative"]),
        (
            format!("layers = 3\nlayer = 4\n{SET}"),
            &["unknown field", "layer"],
        ),
        (
            format!("layers = 3\n[text]\ntemplate = \"jinja\"\n{SET}"),
            &["jinja", "template"],
        ),
        (
            format!("layers = 3\n[text]\nmax_tokens = 0\n{SET}"),
            &["max_tokens"],
        ),
        (
            format!("layers = 3\n[text]\ncontent = \"answer\"\n{SET}"),
            &["answer", "content"],
        ),
        ("layers = 3\n".to_string(), &["set"]),
        (format!("layers = []\n{SET}"), &["layers", "empty"]),
        (SET.to_string(), &["layers"]),
        (
            "layers = 3\n[[set]]\nname = \"m\"\npath = \"a\"\ncount = 0\n".to_string(),
            &["set 1", "count", "at least 1"],
        ),
        (
            "layers = 3\n[[set]]\nname = \"Math Set\"\npath = \"a\"\n".to_string(),
            &["set 1", "name"],
        ),
        (
            format!("layers = 3\n{SET}{SET}"),
            &["set 2", "name", "repeats"],
        ),
        (
            "layers = 3\n[[set]]\nname = \"m\"\npath = \"a\"\nformat = \"csv\"\n".to_string(),
            &["format", "csv"],
        ),
        (
            "layers = 3\n[[set]]\nname = \"m\"\npath = \"a\"\ncount = -4\n".to_string(),
            &["count"],
        ),
        ("layers = 3\n[[set]]\nname = \"m\"\n".to_string(), &["path"]),
    ];
    for (toml, needles) in cases {
        let e = error_of(toml);
        assert!(e.contains("probes/bad.toml"), "no file name in {e:?}");
        for n in *needles {
            assert!(e.contains(n), "{toml:?}: {n:?} missing from {e:?}");
        }
    }
}

#[test]
fn missing_spec_file_is_an_io_error_naming_it() {
    let e = ProbeSpec::load(Path::new("/nonexistent/spec.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/spec.toml"), "{e}");
}

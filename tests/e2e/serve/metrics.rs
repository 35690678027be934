//! `GET /metrics` over real HTTP: refused without a valid token; with one, an OpenMetrics text
//! exposition (checked by the small parser below: every sample belongs to a family declared by a
//! `# TYPE` line, every value is a number, no series twice, `# EOF` last) whose counters say that
//! one `hello` run completed and one `probe` run was killed for reaching for the network.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;
use warden::serve::DevIssuer;

use super::{Server, ended, request_bytes, start, submit};

/// One sample: its name, its labels (sorted) and its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's type, and the samples.
#[derive(Debug)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`, if there is one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// The suffixes a sample of a family of `kind` may add to the family's name.
fn suffixes(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "counter" => Some(&["_total", "_created"]),
        "gauge" | "unknown" => Some(&[""]),
        "histogram" => Some(&["_bucket", "_sum", "_count", "_created"]),
        _ => None,
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",k2="v2"` (the text between the braces), with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("no `=\"` in labels {text:?}"))?;
        if !is_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {text:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice in {text:?}"));
        }
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return Err(format!("junk after a label value in {text:?}")),
        };
    }
    Ok(labels)
}

/// Parse an OpenMetrics text exposition, refusing anything a scraper would refuse.
fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut types = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (what, family) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if !is_name(family) {
                return Err(format!("bad family name in {line:?}"));
            }
            match what {
                "TYPE" => {
                    let kind = words.next().unwrap_or("");
                    suffixes(kind).ok_or_else(|| format!("unknown type in {line:?}"))?;
                    if types.insert(family.to_string(), kind.to_string()).is_some() {
                        return Err(format!("family {family} declared twice"));
                    }
                }
                "HELP" | "UNIT" => {}
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels in {line:?}"))?;
                (name, parse_labels(labels)?)
            }
            None => (series, BTreeMap::new()),
        };
        if !is_name(name) {
            return Err(format!("bad sample name in {line:?}"));
        }
        let declared = types.iter().any(|(family, kind)| {
            name.strip_prefix(family.as_str())
                .is_some_and(|suffix| suffixes(kind).unwrap().contains(&suffix))
        });
        if !declared {
            return Err(format!("sample {name} of no declared family"));
        }
        let sample = Sample {
            name: name.to_string(),
            labels,
            value,
        };
        if samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return Err(format!("series twice: {line:?}"));
        }
        samples.push(sample);
    }
    Ok(Exposition { types, samples })
}

#[test]
fn the_parser_refuses_what_a_scraper_refuses() {
    let good = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{agent=\"x\\\"y\",outcome=\"ok\"} 2\n# EOF\n";
    let parsed = parse(good).unwrap();
    assert_eq!(
        parsed.value("a_runs_total", &[("agent", "x\"y"), ("outcome", "ok")]),
        Some(2.0)
    );
    for bad in [
        "a_runs_total 1\n# EOF\n",                               // no # TYPE
        "# TYPE a_runs counter\na_runs_total 1\n",               // no # EOF
        "# TYPE a_runs counter\na_runs_total one\n# EOF\n",      // not a number
        "# TYPE a_runs counter\na_runs 1\n# EOF\n",              // a counter without _total
        "# TYPE a_runs counter\na_runs_total{x=\"1} 1\n# EOF\n", // unterminated
        "# TYPE a_runs counter\na_runs_total 1\na_runs_total 2\n# EOF\n", // twice
        "# TYPE a_runs widget\n# EOF\n",                         // unknown type
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// `GET /metrics` with `token`: status, content type, text.
async fn scrape(s: &Server, token: Option<&str>) -> (u16, String, String) {
    let (status, content_type, body) =
        request_bytes(&s.addr, "GET", "/metrics", token, Vec::new()).await;
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_completed_and_killed_runs() {
    let s = start();
    let dev = s.token.clone();

    // Deny by default: no token, or a forged one, sees nothing.
    let other = tempfile::tempdir().unwrap();
    let forged = DevIssuer::open(other.path())
        .unwrap()
        .token(Duration::from_secs(60))
        .unwrap();
    for token in [None, Some(forged.as_str())] {
        let (status, _, body) = scrape(&s, token).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
        assert!(!body.contains("warden_runs"), "{body}");
    }

    // Before any run: the histogram and the gauge, empty; a counter family without a sample is
    // not written at all.
    let (status, content_type, text) = scrape(&s, Some(&dev)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let before = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    for (family, kind) in [
        ("warden_run_duration_seconds", "histogram"),
        ("warden_tasks_running", "gauge"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{text}"
        );
    }
    assert!(!text.contains("warden_runs"), "{text}");
    assert_eq!(before.value("warden_tasks_running", &[]), Some(0.0));
    assert_eq!(
        before.value("warden_run_duration_seconds_count", &[]),
        Some(0.0)
    );

    // One run completes, one is killed.
    let hello = submit(
        &s,
        &dev,
        &json!({"agent": "hello", "input": {"name": "bob"}}),
    )
    .await;
    assert_eq!(ended(&s, &dev, hello).await["status"], "completed");
    let probe = json!({"agent": "probe", "input": {"op": "http", "url": "http://127.0.0.1:1/"}});
    let probe = submit(&s, &dev, &probe).await;
    assert_eq!(ended(&s, &dev, probe).await["status"], "killed");

    // A run is counted just after its row is closed: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, after) = loop {
        let (status, _, text) = scrape(&s, Some(&dev)).await;
        assert_eq!(status, 200, "{text}");
        let after = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        if after.value("warden_run_duration_seconds_count", &[]) == Some(2.0) {
            break (text, after);
        }
        assert!(Instant::now() < deadline, "two runs never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (family, kind) in [
        ("warden_runs", "counter"),
        ("warden_kills", "counter"),
        ("warden_run_duration_seconds", "histogram"),
        ("warden_tasks_running", "gauge"),
    ] {
        assert_eq!(
            after.types.get(family).map(String::as_str),
            Some(kind),
            "{text}"
        );
    }
    // Nothing escalated: no escalation family.
    assert!(!after.types.contains_key("warden_escalations"), "{text}");
    let runs = |agent, outcome| {
        after.value(
            "warden_runs_total",
            &[("agent", agent), ("outcome", outcome)],
        )
    };
    assert_eq!(runs("hello", "completed"), Some(1.0), "{text}");
    assert_eq!(runs("probe", "killed"), Some(1.0), "{text}");
    assert_eq!(runs("hello", "killed"), None, "{text}");
    assert_eq!(runs("probe", "completed"), None, "{text}");
    assert_eq!(
        after.value("warden_kills_total", &[("reason", "not-granted")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        after
            .samples
            .iter()
            .filter(|s| s.name == "warden_kills_total")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(after.value("warden_tasks_running", &[]), Some(0.0));

    // The histogram: buckets from 100 µs to 60 s and +Inf, cumulative, +Inf equal to the count.
    let buckets: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter(|s| s.name == "warden_run_duration_seconds_bucket")
        .map(|s| {
            (
                s.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY),
                s.value,
            )
        })
        .collect();
    assert_eq!(buckets.first().map(|b| b.0), Some(0.0001), "{text}");
    assert_eq!(buckets[buckets.len() - 2].0, 60.0, "{text}");
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2.0)), "{text}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{text}"
    );
    let sum = after.value("warden_run_duration_seconds_sum", &[]).unwrap();
    assert!(sum > 0.0 && sum < 60.0, "{text}");
}

/// `[server] metrics_without_token = true`: `/metrics` answers a scraper without a token (its
/// exposition parses), while every other route still needs one. (Its deny twin, the default
/// host answering `401`, opens [`metrics_count_completed_and_killed_runs`].)
#[tokio::test(flavor = "multi_thread")]
async fn a_host_may_open_metrics_to_a_scraper_without_a_token() {
    let (_agents, config) =
        super::queue::host_config("", "[server]\nmetrics_without_token = true\n");
    let data = tempfile::tempdir().unwrap();
    let s = super::queue::serve_on(&config, data.path());
    let (status, content_type, body) =
        request_bytes(&s.addr, "GET", "/metrics", None, Vec::new()).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert!(text.contains("warden_tasks_running 0"), "{text}");
    for (method, path) in [
        ("GET", "/v1/agents"),
        ("GET", "/v1/tasks/1"),
        ("POST", "/v1/tasks"),
        ("GET", "/v1/trust"),
    ] {
        let (status, _, body) = request_bytes(&s.addr, method, path, None, Vec::new()).await;
        assert_eq!(
            status,
            401,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

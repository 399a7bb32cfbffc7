//! Reads a metrics page (the Prometheus text format) back into samples, for tests: every sample
//! line is parsed whole (name, labels with their escapes, value), every sample must belong to a
//! family that a `# TYPE` line declared, and no series may appear twice.

use std::collections::{BTreeMap, HashMap};

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub samples: Vec<Sample>,
    /// Each family's type (`counter`, `gauge`, `histogram`, ...), by the name its `# TYPE` line
    /// gives.
    types: HashMap<String, String>,
}

impl Page {
    /// Parses `text`, or says which line is wrong and why.
    pub fn parse(text: &str) -> Result<Page, String> {
        let mut page = Page::default();
        let mut seen = std::collections::HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let wrong = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let (Some(name), Some(kind), None) = (words.next(), words.next(), words.next())
                    else {
                        return Err(wrong("a TYPE line is `# TYPE name type`"));
                    };
                    if page.types.insert(name.into(), kind.into()).is_some() {
                        return Err(wrong("a second TYPE line for the family"));
                    }
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|why| wrong(&why))?;
            if page.family(&sample.name).is_none() {
                return Err(wrong("no TYPE line declared this sample's family"));
            }
            if !seen.insert((sample.name.clone(), sample.labels.clone())) {
                return Err(wrong("the same series appears twice"));
            }
            page.samples.push(sample);
        }
        Ok(page)
    }

    /// The value of the series `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// Every series of `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The type of the family that the series `name` belongs to.
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.family(name)
            .and_then(|family| self.types.get(family))
            .map(String::as_str)
    }

    /// The declared family of a sample name: the name itself, or a histogram's or summary's
    /// name without `_bucket`, `_sum` or `_count`.
    fn family<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.types.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let family = name.strip_suffix(suffix)?;
            matches!(
                self.types.get(family).map(String::as_str),
                Some("histogram" | "summary")
            )
            .then_some(family)
        })
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("a label is `key=\"value\"`")?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}"));
            }
            let (value, after) = label_value(after)?;
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    // An optional timestamp may follow; nothing else.
    if fields.nth(1).is_some() {
        return Err("more than a value and a timestamp".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse()
            .map_err(|_| format!("bad value {number:?}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote (with `\\`, `\"` and `\n` unescaped), and what follows.
fn label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape {other:?} in a label value")),
            },
            c => value.push(c),
        }
    }
    Err("a label value without its closing quote".into())
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        route: String,
        status: u16,
    }

    #[test]
    fn reads_back_what_the_library_wrote() {
        let mut registry = Registry::default();
        let counter = Family::<Labels, Counter>::default();
        let gauge = Gauge::<i64>::default();
        let histogram = Histogram::new([0.5, 1.0]);
        registry.register("requests", "Requests", counter.clone());
        registry.register("open", "Open", gauge.clone());
        registry.register("latency", "Latency", histogram.clone());
        let odd = "/a \"quoted\" \\ path\nwith a newline";
        counter
            .get_or_create(&Labels {
                route: odd.into(),
                status: 401,
            })
            .inc_by(3);
        counter
            .get_or_create(&Labels {
                route: "/b".into(),
                status: 200,
            })
            .inc();
        gauge.set(-2);
        histogram.observe(0.7);
        histogram.observe(3.0);

        let page = Page::parse(&crate::encode(&registry)).unwrap();
        let status = "401";
        assert_eq!(
            page.value("requests_total", &[("route", odd), ("status", status)]),
            Some(3.0)
        );
        assert_eq!(
            page.value("requests_total", &[("route", "/b"), ("status", "200")]),
            Some(1.0)
        );
        assert_eq!(page.value("requests_total", &[("route", "/b")]), None);
        assert_eq!(page.series("requests_total").count(), 2);
        assert_eq!(page.value("open", &[]), Some(-2.0));
        assert_eq!(page.value("latency_bucket", &[("le", "0.5")]), Some(0.0));
        assert_eq!(page.value("latency_bucket", &[("le", "1")]), Some(1.0));
        assert_eq!(page.value("latency_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(page.value("latency_count", &[]), Some(2.0));
        assert_eq!(page.value("latency_sum", &[]), Some(3.7));
        assert_eq!(page.kind("latency_sum"), Some("histogram"));
        assert_eq!(page.kind("requests_total"), Some("counter"));
    }

    #[test]
    fn refuses_what_is_not_a_metrics_page() {
        for (text, why) in [
            ("x 1\n", "no TYPE line"),
            ("# TYPE x gauge\nx{a=\"1} 1\n", "closing quote"),
            ("# TYPE x gauge\nx{a=1} 1\n", "key=\"value\""),
            ("# TYPE x gauge\nx one\n", "bad value"),
            ("# TYPE x gauge\nx 1\nx 2\n", "twice"),
            ("# TYPE x gauge\n# TYPE x counter\n", "second TYPE"),
            ("{\"error\":\"no such endpoint\"}", "no metric name"),
        ] {
            let err = Page::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}

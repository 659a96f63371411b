//! Prometheus text exposition, parsed just enough to read counters, gauges and histograms.

use std::collections::BTreeMap;

/// Samples by full series name, e.g. `tec_ingest_rejected_total{reason="oversize"}`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value follows the last space outside the label set.
            let label_end = line.rfind('}').map_or(0, |i| i + 1);
            let Some(space) = line.get(label_end..).and_then(|tail| tail.find(' ')) else {
                continue;
            };
            let (series, value) = line.split_at(label_end + space);
            let value = value.split_whitespace().next().unwrap_or_default();
            if let Ok(value) = value.parse::<f64>() {
                samples.insert(normalise(series), value);
            }
        }
        Self { samples }
    }

    /// The value of an exact series (labels in the order the gateway writes them), or 0.
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(&normalise(series)).copied().unwrap_or(0.0)
    }

    /// Sum of every series of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .map(|(_, value)| value)
            .sum()
    }

    /// `tec_ingest_rejected_total{reason="..."}`.
    pub fn rejected(&self, reason: &str) -> f64 {
        self.get(&format!("tec_ingest_rejected_total{{reason=\"{reason}\"}}"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|series| series.split('{').next() == Some(name))
    }

    /// Mean of a histogram from its `_sum` and `_count`.
    pub fn histogram_mean(&self, name: &str) -> Option<f64> {
        let count = self.get(&format!("{name}_count"));
        (count > 0.0).then(|| self.get(&format!("{name}_sum")) / count)
    }

    /// Upper bound of the bucket that holds quantile `q` of a histogram.
    pub fn histogram_quantile(&self, name: &str, q: f64) -> Option<f64> {
        let prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|(series, _)| series.starts_with(&prefix))
            .filter_map(|(series, count)| {
                let le = series.split("le=\"").nth(1)?.split('"').next()?;
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((bound, *count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        let wanted = total * q;
        buckets
            .iter()
            .find(|(_, count)| *count >= wanted)
            .map(|(bound, _)| *bound)
    }
}

/// Drops spaces so `a{x="1"}` and `a{x="1"} ` compare equal.
fn normalise(series: &str) -> String {
    series.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_labels_and_histograms() {
        let text = "# HELP x\n# TYPE tec_ingest_received_total counter\ntec_ingest_received_total 12\n\
                    tec_ingest_rejected_total{reason=\"oversize\"} 3\n\
                    tec_ingest_rejected_total{reason=\"malformed\"} 2\n\
                    tec_commit_batch_size_sum 30\ntec_commit_batch_size_count 3\n\
                    tec_commit_batch_size_bucket{le=\"1.0\"} 1\ntec_commit_batch_size_bucket{le=\"16.0\"} 3\n\
                    tec_commit_batch_size_bucket{le=\"+Inf\"} 3\n# EOF\n";
        let m = Metrics::parse(text);
        assert_eq!(m.get("tec_ingest_received_total"), 12.0);
        assert_eq!(m.rejected("oversize"), 3.0);
        assert_eq!(m.sum("tec_ingest_rejected_total"), 5.0);
        assert_eq!(m.histogram_mean("tec_commit_batch_size"), Some(10.0));
        assert_eq!(m.histogram_quantile("tec_commit_batch_size", 0.5), Some(16.0));
        assert!(m.has("tec_ingest_received_total"));
    }
}

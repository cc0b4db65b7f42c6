//! What a run measured, its one-line summary, and the table of medians.

/// The figures of one run of one server.
#[derive(Debug)]
pub struct Run {
    /// `rg` or `fb`.
    pub server: &'static str,
    pub per_request: usize,
    pub rep: u32,
    /// Wall-clock time the run started, `HH:MM:SS`.
    pub time: String,
    /// Events in 2xx answers per second of load.
    pub events_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests answered with a non-2xx status.
    pub rejected: u64,
    /// Connect errors, timeouts, broken connections.
    pub errors: u64,
    /// Server CPU during the load, 100 = one core.
    pub cpu_pct: f64,
    /// This process's CPU during the load (the load generator), 100 = one core.
    pub load_cpu_pct: f64,
    /// The server's `VmHWM` at the end of the load.
    pub rss_peak_mib: f64,
    /// Events in 2xx answers.
    pub accepted_events: u64,
    /// Events the server itself says it accepted (see `Server::progress`).
    pub server_count: Option<u64>,
    /// Records in the run's topic when the drain ended.
    pub kafka_records: Option<u64>,
    /// From the end of the load until Kafka held every event (or the wait gave up).
    pub drain_s: f64,
    /// Whether the server was still running after the drain.
    pub alive: bool,
}

impl Run {
    /// Kafka holds at least every event answered 2xx and every event the server counted.
    pub fn all_in_kafka(&self) -> bool {
        self.kafka_records
            .is_some_and(|n| n >= self.accepted_events && n >= self.server_count.unwrap_or(0))
    }

    pub fn ok(&self) -> bool {
        self.all_in_kafka() && self.alive
    }

    fn per_core(&self) -> f64 {
        self.events_per_s / (self.cpu_pct / 100.0).max(1e-9)
    }

    /// The one-line summary printed as soon as the run is over.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}/req rep {}: {} events/s, p50 {} ms, p99 {} ms, non-2xx {}, errors {}, \
             CPU {:.0} % (load generator {:.0} %), RSS peak {:.0} MiB, Kafka {} of {} accepted (server's count {}, \
             drain {:.1} s){}",
            self.time,
            self.server,
            self.per_request,
            self.rep,
            num(Some(self.events_per_s), 0),
            num(self.p50_ms, 2),
            num(self.p99_ms, 2),
            self.rejected,
            self.errors,
            self.cpu_pct,
            self.load_cpu_pct,
            self.rss_peak_mib,
            num(self.kafka_records.map(|n| n as f64), 0),
            num(Some(self.accepted_events as f64), 0),
            num(self.server_count.map(|n| n as f64), 0),
            self.drain_s,
            match (self.alive, self.all_in_kafka()) {
                (false, _) => "  SERVER DIED",
                (true, false) => "  EVENTS MISSING FROM KAFKA",
                (true, true) => "",
            }
        )
    }
}

/// `1234567.8` → `1,234,568` (with `decimals` 0); `-` for `None`.
fn num(v: Option<f64>, decimals: usize) -> String {
    let Some(v) = v else { return "-".into() };
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    match frac {
        "" => format!("{sign}{grouped}"),
        f => format!("{sign}{grouped}.{f}"),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

type Metric = (&'static str, fn(&Run) -> Option<f64>, usize);

const METRICS: [Metric; 6] = [
    ("accepted events/s", |r| Some(r.events_per_s), 0),
    ("p50 latency ms", |r| r.p50_ms, 2),
    ("p99 latency ms", |r| r.p99_ms, 2),
    ("server CPU % (1 core = 100)", |r| Some(r.cpu_pct), 0),
    ("server RSS peak MiB (VmHWM)", |r| Some(r.rss_peak_mib), 0),
    ("events/s per server core", |r| Some(r.per_core()), 0),
];

/// The Markdown table of medians per workload, with the routegate / Fluent Bit ratio when
/// Fluent Bit ran.
pub fn medians(runs: &[Run], per_request: &[usize], with_fluent_bit: bool) -> String {
    let mut out = String::new();
    if with_fluent_bit {
        out += "| events/req | metric | routegate | Fluent Bit | ratio rg/fb |\n";
        out += "|---:|:---|---:|---:|---:|\n";
    } else {
        out += "| events/req | metric | routegate |\n|---:|:---|---:|\n";
    }
    for &n in per_request {
        let of = |server: &str| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.server == server && r.per_request == n)
                .collect()
        };
        let (rg, fb) = (of("rg"), of("fb"));
        for (label, get, decimals) in METRICS {
            let m = |rs: &[&Run]| median(rs.iter().filter_map(|r| get(r)).collect());
            let (a, b) = (m(&rg), m(&fb));
            out += &format!("| {n} | {label} | {}", num(a, decimals));
            if with_fluent_bit {
                let ratio = match (a, b) {
                    (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
                    _ => "-".into(),
                };
                out += &format!(" | {} | {ratio}", num(b, decimals));
            }
            out += " |\n";
        }
        let all = |rs: &[&Run]| match rs {
            [] => "-",
            _ if rs.iter().all(|r| r.all_in_kafka()) => "yes",
            _ => "NO",
        };
        out += &format!("| {n} | every accepted event in Kafka | {}", all(&rg));
        if with_fluent_bit {
            out += &format!(" | {} | ", all(&fb));
        }
        out += " |\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(num(Some(1_234_567.8), 0), "1,234,568");
        assert_eq!(num(Some(999.0), 0), "999");
        assert_eq!(num(Some(6.6251), 2), "6.63");
        assert_eq!(num(None, 0), "-");
    }

    #[test]
    fn the_median_of_two_runs_is_their_mean() {
        assert_eq!(median(vec![1.0, 3.0]), Some(2.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![]), None);
    }
}

//! The report: completeness and latency percentiles.

use std::collections::HashMap;

use crate::Opts;
use crate::client::Seen;

/// Percentiles of a sorted sample, in milliseconds.
fn percentiles(sorted: &[i64]) -> String {
    let p = |q: f64| match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * q) as usize] as f64 / 1000.0,
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        p(0.999),
        p(1.0)
    )
}

pub fn report(opts: &Opts, seen: &[Seen], events: u64, produced: &str) {
    // seq -> (created, durable), from the gateway.
    let stamps: HashMap<u64, (i64, i64)> = produced
        .split_whitespace()
        .skip(1)
        .filter_map(|w| {
            let mut f = w.split(',').map(|x| x.parse::<i64>().ok());
            Some((f.next()?? as u64, (f.next()??, f.next()??)))
        })
        .collect();
    let per_vehicle = |v: usize| {
        let (v, n) = (v as u64, opts.vehicles as u64);
        events / n + u64::from(v < events % n)
    };
    let (mut complete, mut short, mut over, mut closed, mut dups) = (0, 0, 0, 0, 0);
    let lagged = seen.iter().filter(|s| s.lagged).count();
    let (mut end_to_end, mut after_durable) = (Vec::new(), Vec::new());
    // seq -> (first, last) receive time over all clients
    let mut spread: HashMap<u64, (i64, i64)> = HashMap::new();
    for s in seen {
        match s.events.cmp(&s.vehicle.map_or(events, per_vehicle)) {
            std::cmp::Ordering::Equal => complete += 1,
            std::cmp::Ordering::Less => short += 1,
            std::cmp::Ordering::Greater => over += 1,
        }
        closed += u64::from(s.closed_early);
        dups += s.duplicates_or_disorder;
        for (seq, at) in &s.received {
            if let Some((created, durable)) = stamps.get(seq) {
                end_to_end.push(at - created);
                after_durable.push((at - durable).max(0));
                let (first, last) = spread.entry(*seq).or_insert((i64::MAX, i64::MIN));
                (*first, *last) = ((*first).min(*at), (*last).max(*at));
            }
        }
    }
    let mut appends: Vec<i64> = stamps.values().map(|(c, d)| d - c).collect();
    let mut first: Vec<i64> = spread
        .iter()
        .filter_map(|(seq, (f, _))| stamps.get(seq).map(|(_, d)| (f - d).max(0)))
        .collect();
    let mut fan_out: Vec<i64> = spread.values().map(|(f, l)| l - f).collect();
    for v in [
        &mut end_to_end,
        &mut after_durable,
        &mut appends,
        &mut first,
        &mut fan_out,
    ] {
        v.sort_unstable();
    }
    let expected: u64 = seen
        .iter()
        .map(|s| s.vehicle.map_or(events, per_vehicle))
        .sum();
    println!(
        "events appended: {}; append (durable write): {}",
        stamps.len(),
        percentiles(&appends)
    );
    println!(
        "messages delivered: {} ({expected} expected)",
        end_to_end.len()
    );
    println!(
        "clients: {complete} got exactly what they should, {short} fewer, {over} more, {closed} closed early ({lagged} told lagged), {dups} duplicate/out-of-order messages"
    );
    println!(
        "delivery latency, event creation -> client: {}",
        percentiles(&end_to_end)
    );
    println!(
        "delivery latency, append returned -> client: {}",
        percentiles(&after_durable)
    );
    println!(
        "per event, append returned -> first client: {}",
        percentiles(&first)
    );
    println!(
        "per event, first client -> last client: {}",
        percentiles(&fan_out)
    );
}

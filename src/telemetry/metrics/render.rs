//! The text exposition format (version 0.0.4) of [`Metrics`]: HELP and TYPE lines,
//! escaped label values, cumulative histogram buckets.
//!
//! This module owns only the text: which series exist and their labels are decided by the
//! slot layout in the parent module. It must not change any metric while rendering, and
//! takes the school-registry lock only to copy the counts out.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::lunch::menu_cache::CacheStats;

impl Metrics {
    /// The text exposition format (version 0.0.4) of every metric.
    pub fn render(&self, pools: &PoolReport<'_>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_requests(&mut out);
        self.render_auth(&mut out);
        self.render_catalog(&mut out);
        self.render_schools(&mut out, pools);
        out
    }

    /// The `ready` gauge: 1 while `/readyz` answers 200, else 0. Rendered by the caller
    /// (which knows the app's readiness) after [`render`](Self::render). The admin listener
    /// outlives the main one during shutdown, so this is where draining shows once the main
    /// listener has stopped accepting.
    pub fn render_readiness(out: &mut String, ready: bool) {
        header(
            out,
            "ready",
            "gauge",
            "1 while /readyz answers 200 (catalog loaded, keys fetched, not draining).",
        );
        let _ = writeln!(out, "ready {}", u8::from(ready));
    }

    /// The published-menu cache's series (`lunch::menu_cache`), from its counters as the
    /// caller read them.
    pub fn render_menu_cache(out: &mut String, stats: &CacheStats) {
        let lines: [(&str, &str, &str, String); 7] = [
            ("menu_cache_hits_total", "counter", "Public weeks answered from memory (including requests that waited on another's query of the same week).", stats.hits.saturating_add(stats.joined).to_string()),
            ("menu_cache_misses_total", "counter", "Public weeks read from the database and stored.", stats.misses.to_string()),
            ("menu_cache_bypassed_total", "counter", "Public weeks read from the database while the cache was off (notification connection down).", stats.bypassed.to_string()),
            ("menu_cache_bytes", "gauge", "Bytes held by the published-menu cache (bodies, tags and keys).", stats.bytes.to_string()),
            ("menu_cache_max_bytes", "gauge", "[cache] max_bytes.", stats.max_bytes.to_string()),
            ("menu_cache_entries", "gauge", "Public-week answers held.", stats.entries.to_string()),
            ("menu_cache_live", "gauge", "1 while the cache answers (its notification connection listens).", u8::from(stats.live).to_string()),
        ];
        for (name, kind, help, value) in lines {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            out,
            "menu_cache_invalidations_total",
            "counter",
            "Schools whose cached menus were dropped: local (a write, catalog change or admin call here), remote (another replica's notification).",
        );
        let _ = writeln!(
            out,
            "menu_cache_invalidations_total{{origin=\"local\"}} {}",
            stats.invalidations_local
        );
        let _ = writeln!(
            out,
            "menu_cache_invalidations_total{{origin=\"remote\"}} {}",
            stats.invalidations_remote
        );
    }

    fn render_requests(&self, out: &mut String) {
        header(
            out,
            "worker_connections_total",
            "counter",
            "Client connections accepted, by worker thread.",
        );
        for (worker, count) in self.worker_connections.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "worker_connections_total{{worker=\"{worker}\"}} {count}"
                );
            }
        }
        header(
            out,
            "http_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for (route, statuses) in self.requests.iter().enumerate() {
            for (status, count) in statuses.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "http_requests_total{{route=\"{}\",status=\"{}\"}} {count}",
                        route_label(route),
                        StatusLabel(status),
                    );
                }
            }
        }
        header(
            out,
            "http_request_duration_seconds",
            "histogram",
            "Time from request arrival to response head, by route.",
        );
        for (route, histogram) in self.durations.iter().enumerate() {
            let counts: Vec<u64> = histogram
                .buckets
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let route = route_label(route);
            let mut cumulative = 0;
            for (&(le, _), count) in BUCKETS.iter().zip(&counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}"
            );
            let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{route=\"{route}\"}} {total}"
            );
        }
    }

    fn render_auth(&self, out: &mut String) {
        header(
            out,
            "jwt_rejections_total",
            "counter",
            "Bearer tokens refused, by reason.",
        );
        for (error, count) in AuthError::ALL.iter().zip(&self.jwt_rejections) {
            let count = count.load(Ordering::Relaxed);
            let reason = error.reason();
            let _ = writeln!(out, "jwt_rejections_total{{reason=\"{reason}\"}} {count}");
        }
        counter(
            out,
            "token_cache_hits_total",
            "Tokens found already verified in the token cache.",
            &self.token_cache_hits,
        );
        counter(
            out,
            "token_cache_misses_total",
            "Tokens not in the token cache, verified in full.",
            &self.token_cache_misses,
        );
    }

    fn render_catalog(&self, out: &mut String) {
        header(
            out,
            "catalog_snapshot_generation",
            "gauge",
            "Generation of the catalog snapshot being served.",
        );
        let generation = self.catalog_generation.load(Ordering::Relaxed);
        let _ = writeln!(out, "catalog_snapshot_generation {generation}");
        let loaded = self.catalog_loaded_nanos.load(Ordering::Relaxed);
        header(
            out,
            "catalog_snapshot_age_seconds",
            "gauge",
            "Seconds since the catalog snapshot being served was loaded.",
        );
        // No sample before the first load: an age of 0 would claim a fresh catalog.
        if loaded != NEVER {
            let loaded_at = self.created + Duration::from_nanos(loaded);
            let age = Instant::now().saturating_duration_since(loaded_at);
            let _ = writeln!(out, "catalog_snapshot_age_seconds {}", age.as_secs_f64());
        }
        let results = [
            (
                "catalog_refresh_total",
                "Catalog refreshes, by result.",
                &self.catalog_refresh_ok,
                &self.catalog_refresh_error,
            ),
            (
                "provision_total",
                "School databases provisioned, by result.",
                &self.provision_ok,
                &self.provision_error,
            ),
        ];
        for (name, help, ok, error) in results {
            header(out, name, "counter", help);
            let ok = ok.load(Ordering::Relaxed);
            let error = error.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{result=\"ok\"}} {ok}");
            let _ = writeln!(out, "{name}{{result=\"error\"}} {error}");
        }
        counter(
            out,
            "control_loop_restarts_total",
            "Control loops that panicked or returned and were started again.",
            &self.control_loop_restarts,
        );
        header(
            out,
            "catalog_reads_total",
            "counter",
            "Catalog reads that updated the snapshot: every row (full) or only the schools notifications or provisioning named (incremental).",
        );
        for kind in ReadKind::ALL {
            let count = self.catalog_reads[kind as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "catalog_reads_total{{kind=\"{}\"}} {count}",
                kind.as_str()
            );
        }
        header(
            out,
            "schools",
            "gauge",
            "Schools in the catalog, by status.",
        );
        for (status, count) in SCHOOL_STATUSES.iter().zip(&self.schools) {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "schools{{status=\"{}\"}} {count}", status.as_str());
        }
    }

    fn render_schools(&self, out: &mut String, pools: &PoolReport<'_>) {
        let (top, other) = self.ranked_schools();
        header(
            out,
            "school_requests_total",
            "counter",
            "Requests per school; schools outside the top N by traffic are summed as \"other\".",
        );
        for (name, count) in &top {
            let _ = writeln!(
                out,
                "school_requests_total{{school=\"{}\"}} {count}",
                Escaped(name)
            );
        }
        let _ = writeln!(out, "school_requests_total{{school=\"other\"}} {other}");
        render_pools(out, &pool_samples(&top, pools));
        counter(
            out,
            "read_retries_total",
            "Reads run again on a fresh connection after theirs was found closed.",
            &self.read_retries,
        );
        header(
            out,
            "connection_budget_in_use",
            "gauge",
            "Database connections open across all schools.",
        );
        let _ = writeln!(out, "connection_budget_in_use {}", pools.budget_in_use);
        header(
            out,
            "connection_budget_limit",
            "gauge",
            "Most database connections open across all schools.",
        );
        let _ = writeln!(out, "connection_budget_limit {}", pools.budget_limit);
    }

    /// The label set: the top N schools by requests, ties broken by name so the set does
    /// not flicker between scrapes; and the requests of every other school (forgotten
    /// ones included), summed.
    fn ranked_schools(&self) -> (Vec<(String, u64)>, u64) {
        let mut ranked: Vec<(String, u64)> = self
            .lock_school_counters()
            .iter()
            .map(|(name, counter)| (name.clone(), counter.get()))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest = ranked.split_off(self.top_schools.min(ranked.len()));
        let other = rest
            .iter()
            .map(|(_, count)| count)
            .sum::<u64>()
            .saturating_add(self.forgotten_school_requests.load(Ordering::Relaxed));
        (ranked, other)
    }
}

/// The pool series to write: schools in the label set (`top`) keep their label, the rest
/// are summed under `other` (present only when there is such a pool).
fn pool_samples<'a>(
    top: &'a [(String, u64)],
    pools: &PoolReport<'a>,
) -> Vec<(&'a str, PoolGauges)> {
    let mut labelled: Vec<(&str, PoolGauges)> = top
        .iter()
        .map(|(name, _)| (name.as_str(), PoolGauges::default()))
        .collect();
    let mut rest = PoolGauges::default();
    let mut any_rest = false;
    for (school, gauges) in &pools.schools {
        let slot = match labelled.iter_mut().find(|(name, _)| name == school) {
            Some((_, slot)) => slot,
            None => {
                any_rest = true;
                &mut rest
            }
        };
        slot.connections = slot.connections.saturating_add(gauges.connections);
        slot.idle = slot.idle.saturating_add(gauges.idle);
        slot.waiting = slot.waiting.saturating_add(gauges.waiting);
        slot.requests = slot.requests.saturating_add(gauges.requests);
    }
    // A labelled school without a pool has no pool series.
    let has_pool = |name: &str| pools.schools.iter().any(|(school, _)| *school == name);
    labelled.retain(|(name, _)| has_pool(name));
    if any_rest {
        labelled.push(("other", rest));
    }
    labelled
}

fn render_pools(out: &mut String, samples: &[(&str, PoolGauges)]) {
    // (name, help, which gauge)
    type PoolSeries = (&'static str, &'static str, fn(&PoolGauges) -> u64);
    let gauges: [PoolSeries; 4] = [
        (
            "pool_connections",
            "Open connections in the school's pool.",
            |g| g.connections,
        ),
        (
            "pool_idle_connections",
            "Idle connections in the school's pool.",
            |g| g.idle,
        ),
        (
            "pool_waiting",
            "Requests waiting for a connection of the school's pool.",
            |g| g.waiting,
        ),
        (
            "pool_requests",
            "Requests on the school's connections now (pipelined when above pool_connections).",
            |g| g.requests,
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        for (school, sample) in samples {
            let _ = writeln!(
                out,
                "{name}{{school=\"{}\"}} {}",
                Escaped(school),
                value(sample)
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

pub(super) fn route_label(slot: usize) -> &'static str {
    RouteName::ALL
        .get(slot)
        .map_or("other", |route| route.name())
}

/// Writes the `status` label of a status slot.
pub(super) struct StatusLabel(pub(super) usize);

impl std::fmt::Display for StatusLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match STATUSES.get(self.0) {
            Some(code) => write!(f, "{code}"),
            None => {
                let class = self
                    .0
                    .checked_sub(STATUSES.len())
                    .and_then(|i| STATUS_CLASSES.get(i));
                f.write_str(class.copied().unwrap_or("other"))
            }
        }
    }
}

/// A label value escaped as the exposition format requires: `\`, `"` and newline.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => std::fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

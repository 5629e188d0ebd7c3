//! What requests spend: the model price catalog (`config.modelCatalog`) and each priced
//! request's cost in decimal USD.
//!
//! One [`Prices`] lives for the process (like agentgateway's model catalog): a config load
//! hands it the compiled sources, and catalog files are re-read when they change on disk
//! (checked every two seconds; a file that turns invalid keeps the last good prices and says
//! so in the log). `proxy` prices a request when its usage is final and records the result in
//! `ctx::LlmInfo::cost`; telemetry reads it from there.

pub mod budget;
pub mod catalog;
pub mod cost;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde_json::Value;

pub use catalog::Catalog;
pub use cost::{Breakdown, LookupStatus};

use crate::ctx::{CostInfo, LlmInfo};

/// One `config.modelCatalog` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A JSON file, re-read when it changes. Missing at start: skipped with a warning.
    File(PathBuf),
    /// Inline, already parsed.
    Inline(Catalog),
}

/// The compiled `config.modelCatalog`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogConfig {
    pub sources: Vec<Source>,
}

impl CatalogConfig {
    /// Parses one source as written (`{file}`, `{inline: "<json>"}` or `{inline: {...}}`);
    /// errors name the path inside it. A file is read now, so a broken one fails the load.
    pub fn source(v: &Value) -> Result<Source, String> {
        let obj = v
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| format!("expected `{{file: PATH}}` or `{{inline: ...}}`, got {v}"))?;
        match obj.iter().next() {
            Some((k, Value::String(path))) if k == "file" => {
                let path = PathBuf::from(path);
                if path.exists() {
                    read_file(&path).map_err(|e| format!("file: {e}"))?;
                }
                Ok(Source::File(path))
            }
            Some((k, Value::String(text))) if k == "inline" => {
                let doc: Value =
                    serde_json::from_str(text).map_err(|e| format!("inline: not JSON: {e}"))?;
                Catalog::parse(&doc).map(Source::Inline).map_err(inline_err)
            }
            Some((k, doc)) if k == "inline" => {
                Catalog::parse(doc).map(Source::Inline).map_err(inline_err)
            }
            Some((k, _)) => Err(format!("{k}: expected `file` (a path) or `inline`")),
            None => unreachable!("one key"),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                Source::File(p) => Some(p.clone()),
                Source::Inline(_) => None,
            })
            .collect()
    }

    /// Merges the sources in order. Unreadable files are skipped (and reported).
    fn merge(&self) -> (Catalog, Vec<String>) {
        let mut out = Catalog::default();
        let mut problems = Vec::new();
        for s in &self.sources {
            match s {
                Source::Inline(c) => out.merge(c.clone()),
                Source::File(p) => match read_file(p) {
                    Ok(c) => out.merge(c),
                    Err(e) => problems.push(format!("{}: {e}", p.display())),
                },
            }
        }
        (out, problems)
    }
}

/// `inline.<path>: msg` for an error `Catalog::parse` reports at `<path>`.
fn inline_err(e: String) -> String {
    match e.strip_prefix("catalog: ") {
        Some(rest) => format!("inline: {rest}"),
        None => format!("inline.{e}"),
    }
}

fn read_file(path: &std::path::Path) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    Catalog::parse(&doc)
}

/// The process's price table.
#[derive(Default)]
pub struct Prices {
    current: ArcSwapOption<Catalog>,
    config: Mutex<CatalogConfig>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl Prices {
    pub fn new() -> Arc<Prices> {
        Arc::new(Prices::default())
    }

    /// Applies a config's catalog (at start and on every reload). `None`: no catalog.
    pub fn configure(&self, config: Option<&CatalogConfig>) {
        let config = config.cloned().unwrap_or_default();
        {
            let mut held = self.config.lock().unwrap_or_else(|e| e.into_inner());
            if *held == config && self.current.load().is_some() {
                return;
            }
            *held = config.clone();
        }
        self.reload(&config);
    }

    fn reload(&self, config: &CatalogConfig) {
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) =
            config.files().iter().map(|p| modified(p)).collect();
        if config.sources.is_empty() {
            self.current.store(None);
            return;
        }
        let (catalog, problems) = config.merge();
        for p in &problems {
            tracing::warn!(target: "config", "model catalog file skipped: {p}");
        }
        if !problems.is_empty() && self.current.load().is_some() {
            tracing::warn!(target: "config", "model catalog: keeping the last prices that loaded");
            return;
        }
        tracing::info!(
            target: "config",
            "model catalog: {} provider(s), {} model(s)",
            catalog.providers.len(),
            catalog.models()
        );
        self.current.store(Some(Arc::new(catalog)));
    }

    /// Re-reads the catalog when a file's modification time changed.
    pub fn poll_files(&self) {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let files = config.files();
        if files.is_empty() {
            return;
        }
        let now: Vec<_> = files.iter().map(|p| modified(p)).collect();
        let changed = *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            self.reload(&config);
        }
    }

    /// Polls the catalog files every two seconds for as long as `prices` lives.
    pub fn watch(prices: &Arc<Prices>) {
        let weak: Weak<Prices> = Arc::downgrade(prices);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                // Small files; reading them off the runtime thread keeps requests moving.
                let _ = tokio::task::spawn_blocking(move || p.poll_files()).await;
            }
        });
    }

    /// Prices `info` (once): the lookup status always, the cost when priced.
    pub fn price(&self, info: &mut LlmInfo) {
        if info.cost.is_some() {
            return;
        }
        let current = self.current.load();
        let (status, breakdown) = cost::cost(current.as_deref(), info);
        info.cost = Some(Box::new(CostInfo {
            status: status.as_str(),
            lines: breakdown.map(|b| b.lines()),
        }));
    }

    pub fn has_catalog(&self) -> bool {
        self.current.load().is_some()
    }
}

fn modified(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
